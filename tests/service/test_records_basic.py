"""Basic data besides identity: cadres, clubs, attendance, in-school competitions and licences."""
from __future__ import annotations

from tests.service.test_records_support import TERM, base, client, h, problem_of, records, uid  # noqa: F401


def test_cadres(client):
    body = {"student_no": "1120001", "term": TERM, "level": "club", "unit": "熱舞社", "title": "社長"}
    created = client.post(f"{base()}/cadres", headers=h("affairs"), json=body)
    assert created.status_code == 201
    cadre = created.get_json()
    assert (cadre["student_id"], cadre["level"], cadre["title"]) == (uid("student01"), "club", "社長")
    problem_of(client.post(f"{base()}/cadres", headers=h("admin"), json=body), 409, "conflict")
    client.post(f"{base()}/cadres", headers=h("affairs"), json={**body, "term": "11202", "title": "副社長"})
    listed = client.get(f"{base()}/cadres?term={TERM}", headers=h("student01")).get_json()
    assert [c["title"] for c in listed["items"]] == ["社長"]
    assert client.get(f"{base()}/cadres", headers=h("student01")).get_json()["total"] == 2
    problem_of(client.delete(f"{base()}/cadres/{cadre['id']}", headers=h("registrar")), 403, "forbidden")
    assert client.delete(f"{base()}/cadres/{cadre['id']}", headers=h("affairs")).status_code == 204
    problem_of(client.delete(f"{base()}/cadres/{cadre['id']}", headers=h("affairs")), 404, "not_found")
    assert client.get(f"{base()}/cadres", headers=h("affairs")).get_json()["total"] == 1


def test_clubs(client):
    created = client.post(f"{base()}/clubs", headers=h("affairs"),
                          json={"student_id": uid("student02"), "term": TERM, "club": "吉他社"})
    assert created.status_code == 201 and created.get_json()["role"] == "社員"
    problem_of(client.post(f"{base()}/clubs", headers=h("affairs"),
                           json={"student_no": "1110002", "term": TERM, "club": "吉他社", "role": "社長"}), 409, "conflict")
    problem_of(client.post(f"{base()}/clubs", headers=h("affairs"),
                           json={"student_no": "1110002", "term": TERM, "club": "吉他社", "extra": 1}), 422)
    problem_of(client.post(f"{base()}/clubs", headers=h("affairs"),
                           json={"student_no": "9999999", "term": TERM, "club": "吉他社"}), 422, "validation_failed")
    listed = client.get(f"{base()}/clubs", headers=h("homeroom102")).get_json()
    assert [(c["student_no"], c["club"]) for c in listed["items"]] == [("1110002", "吉他社")]
    assert client.get(f"{base()}/clubs", headers=h("teacher01")).get_json()["total"] == 0  # homeroom of 101


def test_attendance_is_one_summary_per_student_and_term(client):
    url = f"{base()}/attendance/{TERM}/{uid('student01')}"
    first = client.put(url, headers=h("affairs"), json={"counts": {"事假": 2, "遲到": 5}})
    assert first.status_code == 200
    assert first.get_json()["counts"] == {"事假": 2, "病假": 0, "公假": 0, "喪假": 0, "曠課": 0, "遲到": 5}
    second = client.put(url, headers=h("admin"), json={"counts": {"病假": 1}})
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.get_json()["counts"] == {"事假": 0, "病假": 1, "公假": 0, "喪假": 0, "曠課": 0, "遲到": 0}
    mine = client.get(f"{base()}/attendance", headers=h("student01")).get_json()
    assert mine["total"] == 1 and mine["items"][0]["counts"]["病假"] == 1
    assert client.get(f"{base()}/attendance", headers=h("student02")).get_json()["total"] == 0
    problem_of(client.put(f"{base()}/attendance/{TERM}/{uid('student01', '999002')}", headers=h("affairs"),
                          json={"counts": {}}), 422, "validation_failed")


def test_competitions_and_licences_belong_to_their_organising_unit(client):
    def add(who, name):
        response = client.post(f"{base()}/achievements", headers=h(who), json={
            "student_no": "1120001", "kind": "competition", "name": name, "organiser_unit": "教務處", "level": "校級",
            "result": "第二名", "date": "2024-04-30"})
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    science = add("curriculum", "科展")
    speech = add("affairs", "演講比賽")
    assert (science["entered_role"], speech["entered_role"]) == ("curriculum", "student_affairs")
    listed = client.get(f"{base()}/achievements?student_id={uid('student01')}", headers=h("student01")).get_json()
    assert {a["name"] for a in listed["items"]} == {"科展", "演講比賽"} and listed["items"][0]["date"] == "2024-04-30"
    problem_of(client.delete(f"{base()}/achievements/{science['id']}", headers=h("affairs")), 403, "forbidden")
    problem_of(client.delete(f"{base()}/achievements/{science['id']}", headers=h("office")), 403, "forbidden")
    assert client.delete(f"{base()}/achievements/{science['id']}", headers=h("curriculum")).status_code == 204
    assert client.delete(f"{base()}/achievements/{speech['id']}", headers=h("admin")).status_code == 204
    assert client.get(f"{base()}/achievements", headers=h("office")).get_json()["total"] == 0


def test_a_deactivated_student_gets_no_new_records(client, records):
    from tests.service.test_records_support import deactivated, feed

    feed(records, deactivated("student03"))
    problem_of(client.post(f"{base()}/clubs", headers=h("affairs"),
                           json={"student_no": "1100003", "term": TERM, "club": "圍棋社"}), 422, "validation_failed")
