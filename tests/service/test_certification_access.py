"""Who may do what in certification: section teachers, other teachers, substitutes (active, expired, future,
ended), students, curriculum staff; the audit trail (who, when, from where, for whom); tenant isolation."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.service.test_certification_support import A, PREFIX, problem_of, stored, taipei_day, world  # noqa: F401


def test_only_the_section_teacher_may_certify_or_return(world):
    world.submit("o1")
    world.submit("o2", files=[stored("other.pdf")])
    for user_id in ("t2", "t3", "h1", "cur", "adm", "s1", "s2"):  # other teacher, staff, the student owner, a classmate
        problem_of(world.certify("o1", user_id), 403, "forbidden")
        problem_of(world.return_("o1", user_id), 403, "forbidden")
    problem_of(world.certify("o1", "tb"), 404, "not_found")       # another school's teacher
    problem_of(world.return_("o1", "curb"), 404, "not_found")
    problem_of(world.certify("o1", "x", school=None, roles=["city_admin"]), 404, "not_found")
    problem_of(world.client.post(f"{PREFIX}/outcomes/o1/certify"), 401, "unauthenticated")
    doc = world.stored("o1")
    assert doc["state"] == "submitted" and doc["outbox"] == [] and len(doc["audit"]) == 1
    assert world.certify("o1", "t1").status_code == 200
    assert world.return_("o2", "t1").status_code == 200


def test_a_student_token_cannot_certify_even_their_own_outcome_in_bulk(world):
    world.submit("o1")
    problem_of(world.bulk("s1", {"section_id": "S1"}), 403, "forbidden")
    body = world.bulk("s1", {"outcome_ids": ["o1"]}).get_json()
    assert body["results"] == [{"outcome_id": "o1", "result": "skipped", "code": "forbidden"}]
    assert world.stored("o1")["state"] == "submitted"


@pytest.fixture
def substituted(world):
    """t3 substitutes for t1 from yesterday to tomorrow (assigned by curriculum)."""
    response = world.assign("cur", "t1", "t3", taipei_day(-1), taipei_day(1))
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def test_an_active_substitute_certifies_and_returns_on_behalf_of_the_absent_teacher(world, substituted):
    assert substituted["teacher_id"] == "t1" and substituted["substitute_id"] == "t3" and substituted["active"] is True
    assert substituted["teacher_name"] == "王老師" and substituted["substitute_name"] == "陳老師"
    world.submit("o1")
    world.submit("o2", files=[stored("other.pdf")])
    response = world.certify("o1", "t3", forwarded="203.0.113.5")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["decided_by"] == "t3" and body["on_behalf_of"] == "t1"
    assert body["audit"][-1]["actor"] == "t3" and body["audit"][-1]["on_behalf_of"] == "t1"
    [event] = world.outbox("o1")
    assert event["payload"]["certified_by"] == "t3" and event["payload"]["on_behalf_of"] == "t1"
    assert world.return_("o2", "t3", "請補檔").status_code == 200
    [event] = world.outbox("o2")
    assert event["payload"]["returned_by"] == "t3" and event["payload"]["on_behalf_of"] == "t1"
    assert world.stored("o2")["audit"][-1]["on_behalf_of"] == "t1"
    # a substitute for t1 is no substitute for t2
    world.submit("o3", section_id="S2", files=[stored("x.pdf")])
    problem_of(world.certify("o3", "t3"), 403, "forbidden")


@pytest.mark.parametrize("starts, ends", [(-10, -1), (1, 5)])
def test_expired_or_future_substitutes_may_not_act(world, starts, ends):
    assert world.assign("cur", "t1", "t3", taipei_day(starts), taipei_day(ends)).status_code == 201
    world.submit("o1")
    problem_of(world.certify("o1", "t3"), 403, "forbidden")
    problem_of(world.return_("o1", "t3"), 403, "forbidden")
    assert world.get("/queue", "t3").get_json()["total"] == 0


def test_a_substitute_period_includes_its_first_and_last_day(world):
    assert world.assign("adm", "t1", "t3", taipei_day(0), taipei_day(0)).status_code == 201  # school_admin may assign
    world.submit("o1")
    assert world.certify("o1", "t3").status_code == 200


def test_an_ended_assignment_no_longer_lets_the_substitute_act(world, substituted):
    world.submit("o1")
    problem_of(world.client.delete(f"{PREFIX}/substitutes/{substituted['id']}", headers=world.headers("t1")),
               403, "forbidden")
    assert world.client.delete(f"{PREFIX}/substitutes/{substituted['id']}", headers=world.headers("cur")).status_code == 204
    problem_of(world.client.delete(f"{PREFIX}/substitutes/{substituted['id']}", headers=world.headers("cur")),
               404, "not_found")
    problem_of(world.certify("o1", "t3"), 403, "forbidden")
    assert world.get("/substitutes", "cur").get_json()["items"] == []


def test_assigning_substitutes_rules(world):
    today, later = taipei_day(0), taipei_day(3)
    for user_id in ("t1", "h1", "s1"):  # only curriculum staff or the school admin assign
        problem_of(world.assign(user_id, "t1", "t3", today, later), 403, "forbidden")
    problem_of(world.assign("cur", "t1", "t3", later, today), 422, "validation_failed")  # ends before it starts
    problem_of(world.assign("cur", "t1", "t1", today, later), 422, "validation_failed")  # themself
    problem_of(world.assign("cur", "t1", "s1", today, later), 422, "validation_failed")  # a student is no teacher
    problem_of(world.assign("cur", "cur", "t3", today, later), 422, "validation_failed")  # nor curriculum staff
    problem_of(world.assign("cur", "t1", "tb", today, later), 404, "not_found")          # another school's teacher
    problem_of(world.assign("cur", "ghost", "t3", today, later), 404, "not_found")       # unknown to the directory
    problem_of(world.assign("cur", "t1", "t3", "2026-02-30", later), 422, "validation_failed")
    problem_of(world.client.post(f"{PREFIX}/substitutes", headers=world.headers("cur"), json={
        "teacher_id": "t1", "substitute_id": "t3", "starts_on": today, "ends_on": later, "note": "x"}),
        422, "validation_failed")
    assert world.assign("cur", "t1", "t3", today, later).status_code == 201
    problem_of(world.assign("cur", "t1", "t3", taipei_day(2), taipei_day(9)), 409, "conflict")  # overlaps
    assert world.assign("cur", "t1", "t3", taipei_day(4), taipei_day(9)).status_code == 201     # adjacent: fine
    assert world.assign("cur", "t1", "h1", today, later).status_code == 201                     # a second substitute


def test_who_sees_which_substitute_assignments(world, substituted):
    assert world.assign("cur", "t2", "h1", taipei_day(-30), taipei_day(-20)).status_code == 201
    everything = world.get("/substitutes", "cur").get_json()["items"]
    assert sorted((i["teacher_id"], i["substitute_id"], i["active"]) for i in everything) == [
        ("t1", "t3", True), ("t2", "h1", False)]
    assert [i["teacher_id"] for i in world.get("/substitutes?current=true", "adm").get_json()["items"]] == ["t1"]
    assert [i["teacher_id"] for i in world.get("/substitutes?teacher_id=t2", "cur").get_json()["items"]] == ["t2"]
    assert [i["id"] for i in world.get("/substitutes", "t3").get_json()["items"]] == [substituted["id"]]
    assert [i["id"] for i in world.get("/substitutes", "t1").get_json()["items"]] == [substituted["id"]]
    assert world.get("/substitutes", "s1").get_json()["items"] == []
    assert world.get("/substitutes", "curb").get_json()["items"] == []  # another school sees none of them


def test_the_audit_trail_records_who_when_from_where_and_for_whom(world, substituted):
    world.submit("o1", address="198.51.100.20")
    before = datetime.now(timezone.utc)
    world.return_("o1", "t1", "缺反思", forwarded="203.0.113.7, 10.0.0.1")
    world.submit("o1", files=[stored("v2.pdf")], submission=2, address="198.51.100.21")
    world.certify("o1", "t3", forwarded="2001:db8::7")
    after = datetime.now(timezone.utc)
    audit = world.get("/outcomes/o1", "t1").get_json()["audit"]
    assert [(e["action"], e["actor"], e["on_behalf_of"], e["from"], e["submission"]) for e in audit] == [
        ("submitted", "s1", None, "198.51.100.20", 1),
        ("returned", "t1", None, "203.0.113.7", 1),       # the first hop of X-Forwarded-For
        ("submitted", "s1", None, "198.51.100.21", 2),
        ("certified", "t3", "t1", "2001:db8::7", 2),      # the substitute, for the absent teacher
    ]
    assert audit[1]["reason"] == "缺反思"
    for entry in audit[1:]:
        assert before - timedelta(seconds=1) <= datetime.fromisoformat(entry["at"]) <= after + timedelta(seconds=1)


def test_without_a_forwarded_header_the_peer_address_is_recorded(world):
    world.submit("o1")
    world.submit("o2", files=[stored("other.pdf")])
    world.client.post(f"{PREFIX}/outcomes/o1/certify", headers=world.headers("t1"),
                      environ_base={"REMOTE_ADDR": "192.0.2.44"})
    world.client.post(f"{PREFIX}/outcomes/o2/certify", headers=world.headers("t1", forwarded="<script>, 10.0.0.1"),
                      environ_base={"REMOTE_ADDR": "192.0.2.45"})  # not an address: the peer instead
    assert world.stored("o1")["audit"][-1]["from"] == "192.0.2.44"
    assert world.stored("o2")["audit"][-1]["from"] == "192.0.2.45"


def test_who_may_read_an_outcome(world, substituted):
    world.submit("o1")
    world.return_("o1", "t1", "請補上反思", forwarded="203.0.113.7")
    for user_id in ("s1", "t1", "t3", "cur", "adm"):  # owner, section teacher, substitute, staff
        response = world.get("/outcomes/o1", user_id)
        assert response.status_code == 200, (user_id, response.get_data(as_text=True))
        body = response.get_json()
        assert body["state"] == "returned" and body["reason"] == "請補上反思" and len(body["audit"]) == 2
        assert body["student_name"] == "林同學" and body["subject_name"] == "科目S1"
    # a student sees who decided and why, not the teachers' addresses
    assert [e["from"] for e in world.get("/outcomes/o1", "s1").get_json()["audit"]] == [None, None]
    assert world.get("/outcomes/o1", "cur").get_json()["audit"][1]["from"] == "203.0.113.7"
    for user_id in ("s2", "t2", "h1"):  # others in the school: not revealed
        problem_of(world.get("/outcomes/o1", user_id), 404, "not_found")
    for user_id in ("tb", "curb", "sb"):  # other schools
        problem_of(world.get("/outcomes/o1", user_id), 404, "not_found")
    problem_of(world.get("/outcomes/nope", "cur"), 404, "not_found")


def test_tenant_isolation_on_every_endpoint(world, substituted):
    """School B's users meet school A's records, sections, teachers and assignments as 'not found'."""
    world.submit("o1")
    world.submit("ob", student="sb", section_id="SB")
    problem_of(world.certify("o1", "tb"), 404, "not_found")
    problem_of(world.return_("o1", "tb"), 404, "not_found")
    problem_of(world.get("/outcomes/o1", "curb"), 404, "not_found")
    assert world.bulk("tb", {"outcome_ids": ["o1", "ob"]}).get_json()["results"] == [
        {"outcome_id": "o1", "result": "skipped", "code": "not_found"},
        {"outcome_id": "ob", "result": "certified", "code": None}]
    problem_of(world.bulk("tb", {"section_id": "S1"}), 404, "not_found")
    problem_of(world.get("/queue?section_id=S1", "tb"), 404, "not_found")
    assert [i["outcome_id"] for i in world.get("/queue?state=certified", "tb").get_json()["items"]] == ["ob"]
    problem_of(world.get("/counts?teacher_id=t1", "curb"), 404, "not_found")
    problem_of(world.get("/substitutes?teacher_id=t1", "curb"), 404, "not_found")
    problem_of(world.assign("curb", "t1", "t3", taipei_day(0), taipei_day(1)), 404, "not_found")
    problem_of(world.assign("curb", "tb", "t3", taipei_day(0), taipei_day(1)), 404, "not_found")
    problem_of(world.client.delete(f"{PREFIX}/substitutes/{substituted['id']}", headers=world.headers("curb")),
               404, "not_found")
    assert world.stored("o1")["state"] == "submitted" and len(world.get("/substitutes", "cur").get_json()["items"]) == 1
    # and the other way round
    problem_of(world.get("/outcomes/ob", "cur"), 404, "not_found")
    problem_of(world.certify("ob", "t1"), 404, "not_found")


def test_a_substitute_assigned_in_school_b_grants_nothing_in_school_a(world):
    assert world.assign("curb", "tb", "tb2", taipei_day(-1), taipei_day(1)).status_code == 201
    world.submit("o1")
    # even a token claiming school A for tb2 does not make tb2 a substitute there
    problem_of(world.certify("o1", "tb2", school=A), 403, "forbidden")


def test_a_city_admin_has_no_certification_queue(world):
    problem_of(world.get("/queue", "ca", school=None, roles=["city_admin"]), 403, "forbidden")
    problem_of(world.get("/counts", "ca", school=None, roles=["city_admin"]), 403, "forbidden")


def test_bad_input_is_a_4xx_problem(world):
    for query in ("?state=draft", "?term=1131", "?limit=0", "?limit=100000", "?bogus=1", "?section_id=a%20b"):
        problem_of(world.get(f"/queue{query}", "t1"), 422, "validation_failed")
    problem_of(world.get("/counts?term=2024", "t1"), 422, "validation_failed")
    for body in ({}, {"outcome_ids": ["o1"], "section_id": "S1"}, {"outcome_ids": []}, {"outcome_ids": [""]},
                 {"outcome_ids": ["o"] * 501}, {"section_id": "S1", "all": True}):
        problem_of(world.bulk("t1", body), 422, "validation_failed")
    problem_of(world.client.post(f"{PREFIX}/bulk-certify", data="{nope", content_type="application/json",
                                 headers=world.headers("t1")), 400, "malformed_json")
    problem_of(world.client.get(f"{PREFIX}/queue"), 401, "unauthenticated")
    problem_of(world.client.put(f"{PREFIX}/outcomes/o1/certify", headers=world.headers("t1")), 405, "method_not_allowed")


def test_the_openapi_document_covers_the_routes(world):
    document = world.client.get("/openapi.json").get_json()
    assert {f"{PREFIX}/outcomes/{{outcome_id}}/certify", f"{PREFIX}/outcomes/{{outcome_id}}/return",
            f"{PREFIX}/bulk-certify", f"{PREFIX}/queue", f"{PREFIX}/counts", f"{PREFIX}/substitutes",
            f"{PREFIX}/substitutes/{{assignment_id}}", f"{PREFIX}/outcomes/{{outcome_id}}"} == set(document["paths"])
    assert document["paths"][f"{PREFIX}/queue"]["get"]["security"] == [{"bearer": []}]
    assert "from" in document["components"]["schemas"]["AuditOut"]["properties"]
    assert {"ReturnIn", "BulkCertifyIn", "SubstituteIn", "OutcomeOut"} <= set(document["components"]["schemas"])


def test_assignments_are_announced_for_intake(world, substituted):
    from services.certification.models import Substitute

    outbox = Substitute._get_collection().find_one({"_id": substituted["id"]})["outbox"]
    assert [i["event"]["type"] for i in outbox] == ["certification.substitute.assigned.v1"]
    payload = outbox[0]["event"]["payload"]
    assert (payload["teacher_id"], payload["substitute_id"]) == ("t1", "t3")
    assert world.client.delete(f"{PREFIX}/substitutes/{substituted['id']}", headers=world.headers("cur")).status_code == 204
    outbox = Substitute._get_collection().find_one({"_id": substituted["id"]})["outbox"]
    assert [i["event"]["type"] for i in outbox][-1] == "certification.substitute.removed.v1"
