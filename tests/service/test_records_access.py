"""Records: who may write and read what, the tenant seal on every route, and bad input (4xx, never 500)."""
from __future__ import annotations

import pytest

from tests.service.test_records_support import (COURSE, STAFF, TERM, add_section, base, client, course,  # noqa: F401
                                                h, intruder, pdf, problem_of, records, stored_files, uid)

USERS = STAFF + ["student01", "cityadmin"]

STUDENT = {"student_no": "1120001"}


def _write(client, course, resource: str, who: str, n: int):
    ids = course["999001"]
    headers = h(who)
    if resource == "terms":
        return client.post(f"{base()}/terms", headers=headers, json={"code": f"{150 + n}01"})
    if resource == "sections":
        return client.post(f"{base()}/sections", headers=headers, json={
            "term": TERM, "course_code": COURSE, "subject_name": "數學", "credits": 4, "category": "部定必修",
            "section_name": f"S{n}", "teacher_ids": []})
    if resource == "enrolments":
        return client.post(f"{base()}/sections/{course['spare'][n]}/enrolments", headers=headers, json=STUDENT)
    if resource == "grades":
        return client.put(f"{base()}/enrolments/{ids['e1']}/grade", headers=headers, json={"score": 50 + n, "passed": False})
    if resource == "cadres":
        return client.post(f"{base()}/cadres", headers=headers, json={**STUDENT, "term": TERM, "level": "class",
                                                                      "unit": "101", "title": f"T{n}"})
    if resource == "clubs":
        return client.post(f"{base()}/clubs", headers=headers, json={**STUDENT, "term": TERM, "club": f"C{n}"})
    if resource == "attendance":
        return client.put(f"{base()}/attendance/{TERM}/{uid('student01')}", headers=headers, json={"counts": {"事假": n}})
    if resource == "achievements":
        return client.post(f"{base()}/achievements", headers=headers, json={
            **STUDENT, "kind": "competition", "name": f"A{n}", "organiser_unit": "教務處", "level": "校級",
            "result": "第一名", "date": "2024-05-01"})
    if resource == "counselling":
        return client.post(f"{base()}/counselling", headers=headers, json={
            **STUDENT, "date": "2024-05-01", "time": "10:00", "place": "輔導室", "content": "選課討論", "advice": "多元選修"})
    if resource == "career_notes":
        return client.post(f"{base()}/career-notes", headers=headers, json={
            **STUDENT, "title": "學群探索", "content": "對資訊有興趣", "groups": ["資訊", "工程"]})
    raise AssertionError(resource)


WRITERS = {
    "terms": {"admin", "curriculum"},
    "sections": {"admin", "curriculum"},
    "enrolments": {"admin", "curriculum", "registrar"},
    "grades": {"admin", "registrar"},
    "cadres": {"admin", "affairs"},
    "clubs": {"admin", "affairs"},
    "attendance": {"admin", "affairs"},
    "achievements": {"admin", "affairs", "curriculum", "office"},
    "counselling": {"counsellor", "counsellor2"},
    "career_notes": {"admin", "office"},
}


@pytest.fixture
def spare_course(client, course):
    course["spare"] = [add_section(client, course_code=COURSE, section_name=f"E{n}", teachers=())["id"]
                       for n in range(len(USERS))]
    return course


@pytest.mark.parametrize("resource", sorted(WRITERS))
def test_write_roles(client, spare_course, resource):
    for n, who in enumerate(USERS):
        response = _write(client, spare_course, resource, who, n)
        if who in WRITERS[resource]:
            assert response.status_code in (200, 201), (who, response.get_data(as_text=True))
        else:
            problem_of(response, 403, "forbidden")


def _visible(client, path: str, who: str) -> set[str]:
    response = client.get(f"{base()}/{path}", headers=h(who))
    assert response.status_code == 200, (who, response.get_data(as_text=True))
    return {item["student_no"] for item in response.get_json()["items"]}


def test_who_reads_enrolments_and_grades(client, course):
    everyone = {"1120001", "1100003", "1110002"}
    expected = {"registrar": everyone, "curriculum": everyone, "admin": everyone, "cityadmin": everyone,
                "teacher01": {"1120001", "1100003"},   # the 國語文 teacher and homeroom teacher of 101
                "teacher02": {"1110002"},              # the 英語文 teacher
                "homeroom102": {"1110002"}, "student01": {"1120001"}, "student02": {"1110002"}}
    for who, students in expected.items():
        assert _visible(client, "enrolments", who) == students, who
    for who in ("affairs", "office", "counsellor"):
        problem_of(client.get(f"{base()}/enrolments", headers=h(who)), 403, "forbidden")
    # naming a student one may not see: another student → 404; staff outside their class → 403
    problem_of(client.get(f"{base()}/enrolments?student_id={uid('student02')}", headers=h("student01")), 404, "not_found")
    problem_of(client.get(f"{base()}/enrolments?student_id={uid('student01')}", headers=h("homeroom102")), 403, "forbidden")
    assert _visible(client, f"enrolments?student_id={uid('student01')}", "student01") == {"1120001"}
    assert _visible(client, f"enrolments?student_id={uid('student01')}", "teacher02") == set()  # not in their section


def test_rosters_are_for_the_sections_teachers_and_records_staff(client, course):
    section = course["999001"]["section"]
    for who in ("teacher01", "registrar", "curriculum", "admin", "cityadmin"):
        roster = client.get(f"{base()}/sections/{section}/enrolments", headers=h(who))
        assert roster.status_code == 200, who
        body = roster.get_json()
        assert body["section"]["subject_name"] == "國語文"
        assert {(e["student_no"], e["student_name"], e["class_name"]) for e in body["items"]} == {
            ("1120001", "student01@999001", "101"), ("1100003", "student03@999001", "101")}
    for who in ("teacher02", "homeroom102", "student01", "affairs", "counsellor"):
        problem_of(client.get(f"{base()}/sections/{section}/enrolments", headers=h(who)), 403, "forbidden")


def test_who_reads_basic_data(client, course):
    for student in ("1120001", "1110002"):
        client.post(f"{base()}/cadres", headers=h("affairs"), json={"student_no": student, "term": TERM, "level": "class",
                                                                    "unit": "班級", "title": "班長"})
        client.post(f"{base()}/achievements", headers=h("office"), json={
            "student_no": student, "kind": "licence", "name": "英檢中級", "organiser_unit": "輔導室", "level": "校級",
            "result": "通過", "date": "2024-03-01"})
        client.post(f"{base()}/career-notes", headers=h("office"), json={"student_no": student, "title": "t", "content": "c"})
    both = {"1120001", "1110002"}
    for path, readers, forbidden in [
        ("cadres", {"affairs": both, "admin": both, "cityadmin": both, "teacher01": {"1120001"},
                    "homeroom102": {"1110002"}, "student01": {"1120001"}},
         ("registrar", "curriculum", "office", "counsellor", "teacher02")),
        ("achievements", {"affairs": both, "curriculum": both, "office": both, "admin": both, "teacher01": {"1120001"},
                          "student02": {"1110002"}}, ("registrar", "counsellor", "teacher02")),
        ("career-notes", {"office": both, "counsellor": both, "admin": both, "student01": {"1120001"}},
         ("teacher01", "homeroom102", "affairs", "registrar", "cityadmin")),
    ]:
        for who, students in readers.items():
            assert _visible(client, path, who) == students, (path, who)
        for who in forbidden:
            problem_of(client.get(f"{base()}/{path}", headers=h(who)), 403, "forbidden")
        problem_of(client.get(f"{base()}/{path}?student_id={uid('student02')}", headers=h("student01")), 404)


# ---- the tenant seal ------------------------------------------------------------------------------------------

@pytest.fixture
def world(client, course, records):
    """One of everything in 999001, to aim the other tenant at."""
    ids = dict(course["999001"])
    ids["cadre"] = client.post(f"{base()}/cadres", headers=h("affairs"), json={
        "student_no": "1120001", "term": TERM, "level": "school", "unit": "學生會", "title": "會長"}).get_json()["id"]
    ids["club"] = client.post(f"{base()}/clubs", headers=h("affairs"), json={
        "student_no": "1120001", "term": TERM, "club": "熱舞社", "role": "社長"}).get_json()["id"]
    ids["achievement"] = client.post(f"{base()}/achievements", headers=h("curriculum"), json={
        "student_no": "1120001", "kind": "competition", "name": "科展", "organiser_unit": "教務處", "level": "校級",
        "result": "第一名", "date": "2024-05-01"}).get_json()["id"]
    ids["counselling"] = client.post(f"{base()}/counselling", headers=h("counsellor"), json={
        "student_no": "1120001", "date": "2024-05-01", "time": "10:00", "place": "輔導室", "content": "x"}).get_json()["id"]
    attached = client.post(f"{base()}/counselling/{ids['counselling']}/attachments?name=a.pdf", data=pdf(),
                           content_type="application/pdf", headers=h("counsellor"))
    ids["file"] = attached.get_json()["attachments"][0]["file_id"]
    job = client.post(f"{base()}/imports/clubs?wait=true", headers=h("affairs"), content_type="text/csv",
                      data="學期,學號,社團名稱\n11201,1110002,吉他社\n".encode())
    ids["job"] = job.get_json()["id"]
    client.put(f"{base()}/enrolments/{ids['e1']}/grade", headers=h("registrar"), json={"score": 88, "passed": True})
    return ids


def routes(ids: dict) -> list[tuple[str, str, dict]]:
    s, e, c = ids["section"], ids["e1"], ids["counselling"]
    student = {"student_no": "1120001"}
    return [
        ("GET", "terms", {}), ("POST", "terms", {"json": {"code": "11301"}}),
        ("GET", "sections", {}), ("GET", f"sections/{s}", {}),
        ("POST", "sections", {"json": {"term": TERM, "course_code": COURSE, "subject_name": "x", "credits": 1,
                                       "category": "其他", "section_name": "Z"}}),
        ("PATCH", f"sections/{s}", {"json": {"credits": 1}}), ("GET", f"sections/{s}/enrolments", {}),
        ("POST", f"sections/{s}/enrolments", {"json": student}), ("GET", "enrolments", {}),
        ("POST", f"enrolments/{e}/withdraw", {}), ("PUT", f"enrolments/{e}/grade", {"json": {"score": 1, "passed": False}}),
        ("GET", f"terms/{TERM}/precheck.csv", {}),
        ("GET", "cadres", {}), ("POST", "cadres", {"json": {**student, "term": TERM, "level": "club", "unit": "u", "title": "t"}}),
        ("DELETE", f"cadres/{ids['cadre']}", {}),
        ("GET", "clubs", {}), ("POST", "clubs", {"json": {**student, "term": TERM, "club": "c"}}),
        ("DELETE", f"clubs/{ids['club']}", {}),
        ("GET", "attendance", {}), ("PUT", f"attendance/{TERM}/{uid('student01')}", {"json": {"counts": {"曠課": 1}}}),
        ("GET", "achievements", {}), ("DELETE", f"achievements/{ids['achievement']}", {}),
        ("POST", "achievements", {"json": {**student, "kind": "licence", "name": "n", "organiser_unit": "u", "level": "l",
                                           "result": "r", "date": "2024-01-01"}}),
        ("GET", "counselling", {}), ("GET", f"counselling/{c}", {}), ("PATCH", f"counselling/{c}", {"json": {"place": "x"}}),
        ("POST", "counselling", {"json": {**student, "date": "2024-01-01", "time": "09:00", "place": "p", "content": "c"}}),
        ("POST", f"counselling/{c}/attachments?name=b.pdf", {"data": pdf(), "content_type": "application/pdf"}),
        ("GET", f"counselling/{c}/attachments/{ids['file']}", {}),
        ("DELETE", f"counselling/{c}/attachments/{ids['file']}", {}),
        ("GET", "career-notes", {}), ("POST", "career-notes", {"json": {**student, "title": "t", "content": "c"}}),
        ("POST", "imports/sections?wait=true", {"data": b"x", "content_type": "text/csv"}),
        ("GET", f"imports/jobs/{ids['job']}", {}),
    ]


def _snapshot(records):
    from services.records.models import (Achievement, Attendance, Cadre, ClubMembership, CounsellingRecord, Enrolment,
                                         ImportJob, Section, Term)

    models = (Achievement, Attendance, Cadre, ClubMembership, CounsellingRecord, Enrolment, ImportJob, Section, Term)
    return ({m.__name__: sorted(map(repr, m._get_collection().find({"school": "999001"}))) for m in models},
            stored_files(records))


def test_every_route_is_sealed_against_other_tenants(client, world, records):
    before = _snapshot(records)
    table = routes(world)
    for headers in (intruder("999002"), h("khhadmin"), h("student01", "999002"), h("registrar", "999002")):
        for method, path, kwargs in table:
            response = client.open(f"{base()}/{path}", method=method, headers=headers, **kwargs)
            problem_of(response, 404, "not_found")
    # the other tenant's own path with 999001's ids: not found either
    for method, path, kwargs in table:
        if any(world[k] in path for k in ("section", "e1", "cadre", "club", "achievement", "counselling", "job")):
            problem_of(client.open(f"{base('999002')}/{path}", method=method, headers=intruder("999002"), **kwargs),
                       404, "not_found")
    assert _snapshot(records) == before
    # and a made-up school code
    problem_of(client.get("/api/v1/records/schools/12345/terms", headers=h("admin")), 404, "not_found")
    problem_of(client.get("/api/v1/records/schools/123456/terms", headers=h("cityadmin")), 404, "not_found")


def test_the_city_admin_reads_and_never_writes(client, world):
    for method, path, kwargs in routes(world):
        response = client.open(f"{base()}/{path}", method=method, headers=h("cityadmin"), **kwargs)
        if method == "GET" and "counselling" not in path and "career-notes" not in path:
            assert response.status_code == 200, (path, response.get_data(as_text=True))
        else:
            problem_of(response, 403, "forbidden")


def test_no_grade_or_national_id_reaches_another_school(client, world, records):
    import re

    from services.records.models import Enrolment, Section
    from tests.service.test_records_support import outbox_events

    other = client.get(f"{base('999002')}/enrolments", headers=h("registrar", "999002")).get_json()
    assert other["total"] == 3 and all(item["grade"] is None for item in other["items"])
    assert all(item["school"] == "999002" for item in other["items"])
    for event in outbox_events(Enrolment) + outbox_events(Section):
        assert event["school"] == event["payload"]["school"]
        assert not re.search(r"\b[A-Z][12]\d{8}\b", str(event)), event
    grades = [e for e in outbox_events(Enrolment) if e["type"] == "records.grade.recorded.v1"]
    assert [(g["school"], g["payload"]["score"]) for g in grades] == [("999001", 88.0)]


# ---- bad input ------------------------------------------------------------------------------------------------

BAD = [
    ("POST", "terms", {"json": {"code": 11201}}, 422, "validation_failed"),
    ("POST", "terms", {"json": {"code": "1121"}}, 422, "invalid_term"),
    ("POST", "terms", {"json": {"code": "11201", "name": "x"}}, 422, "validation_failed"),
    ("POST", "terms", {"data": "{not json", "content_type": "application/json"}, 400, "malformed_json"),
    ("POST", "terms", {"data": "code=11201", "content_type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type"),
    ("POST", "terms", {"data": b"\xff\xfe\x00", "content_type": "application/json"}, 400, "malformed_json"),
    ("POST", "terms", {"json": ["11201"]}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"course_code": "1" * 22}}, 422, "invalid_course_code"),
    ("POST", "sections", {"json": {"course_code": "1" * 24}}, 422, "invalid_course_code"),
    ("POST", "sections", {"json": {"course_code": "1" * 22 + "a"}}, 422, "invalid_course_code"),
    ("POST", "sections", {"json": {"course_code": "1" * 22 + "-"}}, 422, "invalid_course_code"),
    ("POST", "sections", {"json": {"course_code": "１" * 23}}, 422, "invalid_course_code"),
    ("POST", "sections", {"json": {"term": "11203"}}, 422, "invalid_term"),
    ("POST", "sections", {"json": {"term": "11202"}}, 422, "validation_failed"),          # not set up
    ("POST", "sections", {"json": {"credits": "4"}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"credits": 21}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"credits": 2.5}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"category": "體育"}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"section_name": ""}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"teacher_ids": ["u-999001-student01"]}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"teacher_ids": ["u-999002-teacher01"]}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"teacher_ids": "u-999001-teacher01"}}, 422, "validation_failed"),
    ("POST", "sections", {"json": {"owner": "me"}}, 422, "validation_failed"),
    ("POST", "sections", {"data": '{"term": "11201", "x": ' + "1" * 70000 + "}", "content_type": "application/json"},
     413, "payload_too_large"),
    ("GET", "sections?term=1121", {}, 422, "invalid_term"),
    ("GET", "sections?bogus=1", {}, 422, "validation_failed"),
    ("GET", "sections?limit=0", {}, 422, "validation_failed"),
    ("GET", "sections/nope", {}, 404, "not_found"),
    ("GET", "enrolments?term=abcde", {}, 422, "invalid_term"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": 101, "passed": True}}, 422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": -1, "passed": False}}, 422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": "90", "passed": True}}, 422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": 90, "passed": "yes"}}, 422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": 90}}, 422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"data": '{"score": NaN, "passed": true}', "content_type": "application/json"},
     422, "validation_failed"),
    ("PUT", "enrolments/{e1}/grade", {"json": {"score": 90, "passed": True, "credits_earned": -1}}, 422, "validation_failed"),
    ("PUT", "enrolments/nope/grade", {"json": {"score": 90, "passed": True}}, 404, "not_found"),
    ("POST", "sections/{section}/enrolments", {"json": {}}, 422, "validation_failed"),
    ("POST", "sections/{section}/enrolments", {"json": {"student_no": "1120001", "student_id": "x"}}, 422,
     "validation_failed"),
    ("POST", "cadres", {"json": {"student_no": "1120001", "term": TERM, "level": "national", "unit": "u", "title": "t"}},
     422, "validation_failed"),
    ("POST", "cadres", {"json": {"student_no": "1120001", "term": "2024", "level": "class", "unit": "u", "title": "t"}},
     422, "invalid_term"),
    ("POST", "clubs", {"json": {"student_no": "1120001", "term": TERM, "club": "x" * 61}}, 422, "validation_failed"),
    ("PUT", f"attendance/{TERM}/u-999001-student01", {"json": {"counts": {"事假": -1}}}, 422, "validation_failed"),
    ("PUT", f"attendance/{TERM}/u-999001-student01", {"json": {"counts": {"請假": 1}}}, 422, "validation_failed"),
    ("PUT", f"attendance/{TERM}/u-999001-student01", {"json": {"counts": {"事假": True}}}, 422, "validation_failed"),
    ("PUT", "attendance/11209/u-999001-student01", {"json": {"counts": {}}}, 422, "invalid_term"),
    ("PUT", f"attendance/{TERM}/u-999001-teacher01", {"json": {"counts": {}}}, 422, "validation_failed"),
    ("POST", "achievements", {"json": {"student_no": "1120001", "kind": "award", "name": "n", "organiser_unit": "u",
                                       "level": "l", "result": "r", "date": "2024-01-01"}}, 422, "validation_failed"),
    ("POST", "achievements", {"json": {"student_no": "1120001", "kind": "licence", "name": "n", "organiser_unit": "u",
                                       "level": "l", "result": "r", "date": "2024-13-01"}}, 422, "validation_failed"),
    ("POST", "career-notes", {"json": {"student_no": "1120001", "title": "t", "content": "c", "groups": ["魔法"]}},
     422, "validation_failed"),
]


@pytest.mark.parametrize("method, path, kwargs, status, code", BAD)
def test_bad_input_is_a_4xx_problem_and_writes_nothing(client, course, records, method, path, kwargs, status, code):
    ids = course["999001"]
    who = {"terms": "curriculum", "sections": "curriculum", "enrolments": "registrar", "cadres": "affairs",
           "clubs": "affairs", "attendance": "affairs", "achievements": "affairs", "career-notes": "office"}[
        path.split("/")[0].split("?")[0]]
    if "/enrolments" in path and path.startswith("sections/"):
        who = "curriculum"
    if "json" in kwargs and isinstance(kwargs["json"], dict) and path == "sections":
        kwargs = {"json": {"term": TERM, "course_code": COURSE, "subject_name": "數學", "credits": 4, "category": "部定必修",
                           "section_name": "NEW", **kwargs["json"]}}
    before = _snapshot(records)
    response = client.open(f"{base()}/{path.format(**ids)}", method=method, headers=h(who), **kwargs)
    problem_of(response, status, code)
    assert _snapshot(records) == before


def test_unauthenticated_and_bad_tokens(client, course):
    problem_of(client.get(f"{base()}/terms"), 401, "unauthenticated")
    problem_of(client.get(f"{base()}/terms", headers={"Authorization": "Bearer x.y.z"}), 401, "invalid_token")
    from tests.tokens import TestTokens

    forged = TestTokens().headers(uid("admin"), "999001", ["school_admin"])
    problem_of(client.get(f"{base()}/terms", headers=forged), 401, "invalid_token")
    from tests.service.test_records_support import TOKENS

    temporary = TOKENS.headers(uid("student01"), "999001", ["student"], receipts_only=True)
    problem_of(client.get(f"{base()}/enrolments", headers=temporary), 403, "forbidden")
    problem_of(client.get("/api/v1/records/nothing", headers=h("admin")), 404, "route_not_found")
    problem_of(client.delete(f"{base()}/terms", headers=h("admin")), 405, "method_not_allowed")


def test_openapi_declares_every_route_with_strict_models(client):
    document = client.get("/openapi.json").get_json()
    paths = document["paths"]
    assert len([op for ops in paths.values() for op in ops]) >= 30
    schemas = document["components"]["schemas"]
    for path, operations in paths.items():
        assert path.startswith("/api/v1/records/schools/{code}/"), path
        for method, operation in operations.items():
            assert operation["security"] == [{"bearer": []}], (method, path)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                schema = schemas[body["schema"]["$ref"].rsplit("/", 1)[1]]
                assert schema.get("additionalProperties") is False, (method, path)
            ok = operation["responses"].get("200") or operation["responses"].get("201") or \
                operation["responses"].get("202") or operation["responses"].get("204")
            assert ok is not None, (method, path)
            if method != "delete" and not path.endswith(("precheck.csv", "{file_id}")):
                assert ok["content"]["application/json"]["schema"]["$ref"], (method, path)
    assert "records: counselling" in paths["/api/v1/records/schools/{code}/counselling"]["post"]["tags"]
    assert schemas["CounsellingOut"]["properties"]["central"]["const"] is False
