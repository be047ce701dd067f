"""Records: terms, course sections, enrolments, grades, the 預檢 export, and the events each change carries."""
from __future__ import annotations

import csv
import io
import re

from shared.events import parse_event
from tests.service.test_records_support import (COURSE, COURSE2, TERM, add_section, base, client, course, enrol,  # noqa: F401
                                                feed, h, outbox_events, problem_of, records, setup_term, uid, updated)


def test_terms_are_named_and_unique(client):
    created = client.post(f"{base()}/terms", json={"code": "11202"}, headers=h("curriculum"))
    assert created.status_code == 201
    assert created.get_json() == {"code": "11202", "name": "112學年度第2學期", "year": 112, "semester": 2}
    problem_of(client.post(f"{base()}/terms", json={"code": "11202"}, headers=h("admin")), 409, "conflict")
    for bad in ("1121", "11203", "11211", "00001", "abcde", "112011"):
        problem_of(client.post(f"{base()}/terms", json={"code": bad}, headers=h("curriculum")), 422, "invalid_term")
    # everyone of the school reads the terms; a city admin of the city too
    for who in ("student01", "teacher02", "cityadmin"):
        listed = client.get(f"{base()}/terms", headers=h(who))
        assert [t["code"] for t in listed.get_json()["items"]] == ["11202"], who


def test_section_is_stored_as_given_and_emits_a_full_snapshot(client, records):
    from services.records.models import Section

    setup_term(client)
    section = add_section(client, course_code=COURSE, section_name="跨班選修A", teachers=("teacher01", "teacher02"),
                          category="多元選修", credits=2, subject="程式設計")
    assert section["course_code"] == COURSE and section["section_name"] == "跨班選修A"
    assert [t["name"] for t in section["teachers"]] == ["teacher01@999001", "teacher02@999001"]
    (event,) = outbox_events(Section, _id=section["id"])
    assert event["type"] == "records.section.created.v1" and event["school"] == "999001" and event["producer"] == "records"
    assert event["payload"] == {"section_id": section["id"], "school": "999001", "term": "11201", "course_code": COURSE,
                                "subject_name": "程式設計", "credits": 2, "category": "多元選修",
                                "section_name": "跨班選修A", "teacher_ids": [uid("teacher01"), uid("teacher02")]}

    patched = client.patch(f"{base()}/sections/{section['id']}", headers=h("curriculum"),
                           json={"credits": 3, "teacher_ids": [uid("teacher02")]})
    assert patched.status_code == 200 and patched.get_json()["credits"] == 3
    events = outbox_events(Section, _id=section["id"])
    assert [e["type"] for e in events] == ["records.section.created.v1", "records.section.updated.v1"]
    assert events[1]["payload"]["credits"] == 3 and events[1]["payload"]["teacher_ids"] == [uid("teacher02")]
    assert events[1]["payload"]["subject_name"] == "程式設計"  # a full snapshot, not a diff
    # the same values again: nothing changes, no event
    assert client.patch(f"{base()}/sections/{section['id']}", headers=h("admin"), json={"credits": 3}).status_code == 200
    assert len(outbox_events(Section, _id=section["id"])) == 2
    # the same course for the same group twice is a conflict; for another group it is a new section
    problem_of(client.post(f"{base()}/sections", headers=h("curriculum"), json={
        "term": TERM, "course_code": COURSE, "subject_name": "x", "credits": 2, "category": "多元選修",
        "section_name": "跨班選修A"}), 409, "conflict")
    assert Section.objects(school="999001").count() == 1


def test_section_events_validate_against_the_catalogue(client, records):
    from services.records.models import Section

    setup_term(client)
    section = add_section(client)
    client.patch(f"{base()}/sections/{section['id']}", headers=h("curriculum"), json={"subject_name": "國文"})
    for event in outbox_events(Section, _id=section["id"]):
        envelope, payload = parse_event(event)
        assert payload.term == "11201" and payload.course_code == COURSE and envelope.school == "999001"


def test_enrolment_and_grade_events(client, records):
    from services.records.models import Enrolment

    setup_term(client)
    section = add_section(client)
    enrolment = enrol(client, section["id"], "student01", who="registrar")
    assert (enrolment["student_no"], enrolment["class_name"], enrolment["grade_level"], enrolment["grade"]) == \
        ("1120001", "101", 10, None)
    (created,) = outbox_events(Enrolment, _id=enrolment["id"])
    envelope, payload = parse_event(created)
    assert envelope.type == "records.enrolment.created.v1" and envelope.school == "999001"
    assert payload.model_dump() == {"enrolment_id": enrolment["id"], "school": "999001", "term": TERM,
                                    "section_id": section["id"], "course_code": COURSE, "student_id": uid("student01"),
                                    "student_no": "1120001"}
    problem_of(client.post(f"{base()}/sections/{section['id']}/enrolments", headers=h("curriculum"),
                           json={"student_no": "1120001"}), 409, "conflict")

    graded = client.put(f"{base()}/enrolments/{enrolment['id']}/grade", headers=h("registrar"),
                        json={"score": 87.5, "passed": True, "retake": False})
    assert graded.status_code == 200
    assert graded.get_json()["grade"] | {"recorded_at": None} == {"score": 87.5, "passed": True, "credits_earned": 4,
                                                                   "retake": False, "makeup": False, "recorded_at": None}
    # the same grade again changes nothing
    assert client.put(f"{base()}/enrolments/{enrolment['id']}/grade", headers=h("admin"),
                      json={"score": 87.5, "passed": True}).status_code == 200
    # a make-up exam after failing: passed, credits as given
    client.put(f"{base()}/enrolments/{enrolment['id']}/grade", headers=h("registrar"),
               json={"score": 60, "passed": True, "credits_earned": 4, "makeup": True})
    events = [parse_event(e) for e in outbox_events(Enrolment, _id=enrolment["id"])]
    assert [e.type for e, _ in events] == ["records.enrolment.created.v1", "records.grade.recorded.v1",
                                           "records.grade.recorded.v1"]
    assert (events[1][1].score, events[1][1].credits_earned) == (87.5, 4)
    assert (events[2][1].score, events[2][1].makeup, events[2][1].retake) == (60.0, True, False)
    problem_of(client.post(f"{base()}/enrolments/{enrolment['id']}/withdraw", headers=h("curriculum")),
               409, "invalid_transition")

    other = enrol(client, section["id"], "student03")
    withdrawn = client.post(f"{base()}/enrolments/{other['id']}/withdraw", headers=h("curriculum"))
    assert withdrawn.status_code == 200 and withdrawn.get_json()["status"] == "withdrawn"
    assert client.post(f"{base()}/enrolments/{other['id']}/withdraw", headers=h("curriculum")).status_code == 200
    assert [e["type"] for e in outbox_events(Enrolment, _id=other["id"])] == [
        "records.enrolment.created.v1", "records.enrolment.withdrawn.v1"]
    problem_of(client.put(f"{base()}/enrolments/{other['id']}/grade", headers=h("registrar"),
                          json={"score": 70, "passed": True}), 409, "invalid_transition")
    again = enrol(client, section["id"], "student03")  # re-enrolment after a withdrawal
    assert again["id"] == other["id"] and again["status"] == "active"
    assert outbox_events(Enrolment, _id=other["id"])[-1]["type"] == "records.enrolment.created.v1"


def test_the_relay_publishes_and_empties_the_outboxes(client, records, course):
    from services.records.models import Enrolment, Section

    pending = len(outbox_events(Section)) + len(outbox_events(Enrolment))
    assert pending == 4 + 6
    published = 0
    while moved := records.relay.relay_once():
        published += moved
    assert published == pending and outbox_events(Section) == [] and outbox_events(Enrolment) == []


def test_grade_rules(client, course):
    e1 = course["999001"]["e1"]
    for body, field in [({"score": 40, "passed": False, "credits_earned": 4}, "credits_earned"),
                        ({"score": 90, "passed": True, "credits_earned": 5}, "credits_earned")]:
        body_ = problem_of(client.put(f"{base()}/enrolments/{e1}/grade", headers=h("registrar"), json=body),
                           422, "validation_failed")
        assert {e["field"] for e in body_["errors"]} == {field}
    failed = client.put(f"{base()}/enrolments/{e1}/grade", headers=h("registrar"), json={"score": None, "passed": False})
    assert failed.get_json()["grade"]["credits_earned"] == 0 and failed.get_json()["grade"]["score"] is None
    retake = client.put(f"{base()}/enrolments/{e1}/grade", headers=h("registrar"),
                        json={"score": 75, "passed": True, "retake": True})
    assert retake.get_json()["grade"]["retake"] is True and retake.get_json()["grade"]["credits_earned"] == 4


def test_credits_cannot_drop_below_grades_already_earned(client, course):
    e1, section = course["999001"]["e1"], course["999001"]["section"]
    assert client.put(f"{base()}/enrolments/{e1}/grade", headers=h("registrar"),
                      json={"score": 75, "passed": True}).get_json()["grade"]["credits_earned"] == 4
    problem_of(client.patch(f"{base()}/sections/{section}", headers=h("curriculum"), json={"credits": 1}), 409, "conflict")
    assert client.patch(f"{base()}/sections/{section}", headers=h("curriculum"), json={"credits": 5}).status_code == 200


def test_only_senior_high_students_of_the_school_can_be_enrolled(client, records):
    setup_term(client)
    section = add_section(client)
    url = f"{base()}/sections/{section['id']}/enrolments"
    for body in ({"student_id": uid("junior")},                  # grade 9
                 {"student_id": uid("teacher02")},               # not a student
                 {"student_id": uid("student01", "999002")},     # another school's student: same answer as unknown
                 {"student_no": "9999999"}):
        problem_of(client.post(url, headers=h("curriculum"), json=body), 422, "validation_failed")
    feed(records, updated("student02", status="suspended"))
    problem_of(client.post(url, headers=h("curriculum"), json={"student_no": "1110002"}), 422, "validation_failed")
    problem_of(client.post(f"{base()}/sections/nope/enrolments", headers=h("curriculum"),
                           json={"student_no": "1120001"}), 404, "not_found")
    assert client.get(f"{base()}/sections/{section['id']}/enrolments", headers=h("curriculum")).get_json()["total"] == 0


def test_course_code_change_follows_into_enrolments(client, records, course):
    from services.records.models import Enrolment

    section = course["999001"]["section"]
    new_code = "A" * 23
    assert client.patch(f"{base()}/sections/{section}", headers=h("curriculum"),
                        json={"course_code": new_code}).status_code == 200
    assert {e.course_code for e in Enrolment.objects(section_id=section)} == {new_code}
    problem_of(client.patch(f"{base()}/sections/{section}", headers=h("curriculum"), json={"course_code": "a" * 23}),
               422, "invalid_course_code")
    problem_of(client.patch(f"{base()}/sections/{section}", headers=h("curriculum"), json={"term": "11202"}),
               422, "validation_failed")  # the term of a section is fixed


def test_sections_listing(client, course):
    every = client.get(f"{base()}/sections?term={TERM}", headers=h("student01")).get_json()
    assert every["total"] == 2 and {s["course_code"] for s in every["items"]} == {COURSE, COURSE2}
    mine = client.get(f"{base()}/sections?teacher_id={uid('teacher02')}", headers=h("teacher02")).get_json()
    assert [s["subject_name"] for s in mine["items"]] == ["英語文"]
    assert client.get(f"{base()}/sections?term=11202", headers=h("curriculum")).get_json()["total"] == 0
    one = client.get(f"{base()}/sections/{course['999001']['section']}", headers=h("cityadmin"))
    assert one.status_code == 200 and one.get_json()["subject_name"] == "國語文"


# ---- 預檢 ------------------------------------------------------------------------------------------------

def _precheck(client, who="registrar", school="999001", term=TERM):
    response = client.get(f"{base(school)}/terms/{term}/precheck.csv", headers=h(who, school))
    return response


def test_precheck_is_the_roster_without_grades(client, records, course):
    from services.records.models import Enrolment, Section

    ids = course["999001"]
    client.put(f"{base()}/enrolments/{ids['e1']}/grade", headers=h("registrar"), json={"score": 93.5, "passed": True})
    # a junior-high student's enrolment (written before the rule, or by another tool) is not in the export
    section = Section.objects(id=ids["section"]).first()
    Enrolment(school="999001", term=TERM, section_id=section.id, course_code=COURSE, student_id=uid("junior"),
              student_no="1130009").save()
    withdrawn = enrol(client, ids["section2"], "student01")
    client.post(f"{base()}/enrolments/{withdrawn['id']}/withdraw", headers=h("curriculum"))

    response = _precheck(client)
    assert response.status_code == 200 and response.is_streamed
    assert response.content_type == "text/csv; charset=utf-8"
    assert "precheck-999001-11201.csv" in response.headers["Content-Disposition"]
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["學號", "姓名", "班級", "年級", "課程代碼", "科目名稱", "學分數", "課程類別"]
    assert rows[1:] == [  # class by class, then by 學號
        ["1100003", "student03@999001", "101", "12", COURSE, "國語文", "4", "部定必修"],
        ["1120001", "student01@999001", "101", "10", COURSE, "國語文", "4", "部定必修"],
        ["1110002", "student02@999001", "102", "11", COURSE2, "英語文", "2", "部定必修"],
    ]
    text = raw.decode("utf-8-sig")
    assert "93.5" not in text and "1130009" not in text and "999002" not in text
    assert not re.search(r"[A-Z][12]\d{8}", text)
    # a city admin of the city may read it; the other school's export is its own
    assert _precheck(client, "cityadmin").status_code == 200
    other = list(csv.reader(io.StringIO(_precheck(client, school="999002").get_data().decode("utf-8-sig"))))
    assert {r[1] for r in other[1:]} == {"student01@999002", "student02@999002", "student03@999002"}


def test_precheck_access_and_bad_terms(client, course):
    for who in ("teacher01", "student01", "affairs", "office"):
        problem_of(_precheck(client, who), 403, "forbidden")
    problem_of(_precheck(client, "curriculum", term="1121"), 422, "invalid_term")
    problem_of(_precheck(client, "curriculum", term="11202"), 404, "not_found")
    problem_of(client.get(f"{base('999001')}/terms/{TERM}/precheck.csv", headers=h("registrar", "999002")),
               404, "not_found")
    problem_of(_precheck(client, "khhadmin"), 404, "not_found")


def test_precheck_quotes_cells_a_spreadsheet_would_run(client):
    setup_term(client)
    section = add_section(client, subject="=HYPERLINK(\"http://x\")")
    enrol(client, section["id"], "student01")
    text = _precheck(client).get_data().decode("utf-8-sig")
    assert "'=HYPERLINK" in text
