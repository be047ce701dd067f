"""Final (定案) means final in every service that owns submitted data: once the exchange announces
exchange.submission.finalized.v1, records refuses every change of that term's basic data and course records
(409 term_final, also row by row in imports), intake every change of that school year's outcomes, performances and
selections, and certification every decision on them (409 year_final). Other terms, years and schools go on."""
from __future__ import annotations

from datetime import datetime, timezone

from shared.events import SubmissionFinalized, make_event, parse_event
from tests.service.test_records_support import (COURSE2, base, client, course, h, handler_of,  # noqa: F401 (fixtures)
                                                problem_of, records, setup_term, uid)
from tests.service import test_certification_support as certification_support
from tests.service import test_intake_support as intake_support

A, B = "999001", "999002"


def finalized(scope: str, term: str, school: str = A) -> tuple:
    body = make_event(SubmissionFinalized(submission_id=f"{school}-{term}-{scope}", school=school, scope=scope, term=term,
                                          year=term[:3], version=1, finalized_by="u-admin",
                                          finalized_at=datetime.now(timezone.utc)), school=school, producer="exchange")
    return parse_event(body)


# ---- records: a final term --------------------------------------------------------------------------------

def make_final(records, scope: str, term: str, school: str = A) -> None:
    handler = handler_of(records, "records.finality")
    envelope, payload = finalized(scope, term, school)
    handler(envelope, payload)
    handler(envelope, payload)  # a redelivery changes nothing


def test_a_final_term_refuses_every_change_of_its_course_records_and_basic_data(records, client, course):
    own = course[A]
    response = client.put(f"{base()}/enrolments/{own['e1']}/grade", headers=h("registrar"),
                          json={"score": 80, "passed": True})
    assert response.status_code == 200, response.get_data(as_text=True)
    make_final(records, "term", "11201")

    attempts = [
        client.post(f"{base()}/sections", headers=h("curriculum"), json={
            "term": "11201", "course_code": "1040000000000000000000C", "subject_name": "數學", "credits": 2,
            "category": "部定必修", "section_name": "103", "teacher_ids": []}),
        client.patch(f"{base()}/sections/{own['section']}", headers=h("curriculum"), json={"subject_name": "改名"}),
        client.post(f"{base()}/sections/{own['section2']}/enrolments", headers=h("curriculum"),
                    json={"student_id": uid("student01")}),
        client.post(f"{base()}/enrolments/{own['e2']}/withdraw", headers=h("curriculum")),
        client.put(f"{base()}/enrolments/{own['e1']}/grade", headers=h("registrar"), json={"score": 90, "passed": True}),
        client.post(f"{base()}/cadres", headers=h("affairs"), json={
            "student_id": uid("student01"), "term": "11201", "level": "class", "unit": "101", "title": "班長"}),
        client.post(f"{base()}/clubs", headers=h("affairs"), json={
            "student_id": uid("student01"), "term": "11201", "club": "天文社", "role": "社員"}),
        client.put(f"{base()}/attendance/11201/{uid('student01')}", headers=h("affairs"), json={"counts": {"病假": 1}}),
    ]
    for response in attempts:
        body = problem_of(response, 409, "term_final")
        assert "定案" in body["message"]["zh-TW"]

    grade = client.get(f"{base()}/enrolments?term=11201", headers=h("registrar")).get_json()
    assert {row["id"]: (row.get("grade") or {}).get("score") for row in grade["items"]}[own["e1"]] == 80


def test_a_final_term_leaves_other_terms_and_other_schools_alone(records, client, course):
    make_final(records, "term", "11201")
    setup_term(client, A, "11202")
    response = client.post(f"{base()}/sections", headers=h("curriculum"), json={
        "term": "11202", "course_code": COURSE2, "subject_name": "英語文", "credits": 2, "category": "部定必修",
        "section_name": "102", "teacher_ids": []})
    assert response.status_code == 201, response.get_data(as_text=True)
    other = course[B]
    response = client.put(f"{base(B)}/enrolments/{other['e1']}/grade", headers=h("registrar", B),
                          json={"score": 70, "passed": True})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_an_import_into_a_final_term_rejects_its_rows_and_writes_nothing(records, client, course):
    make_final(records, "term", "11201")
    csv = "學期,課程代碼,科目名稱,學分數,課程類別,開課班級,授課教師\n11201,1040000000000000000000D,物理,2,部定必修,104,\n"
    response = client.post(f"{base()}/imports/sections?wait=true", data=csv.encode("utf-8"), content_type="text/csv",
                           headers=h("curriculum"))
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()["report"]
    assert (report["created"], report["rejected"]) == (0, 1), report
    assert {(e["field"], e["code"]) for row in report["errors"] for e in row["errors"]} == {("term", "term_final")}
    sections = client.get(f"{base()}/sections?term=11201", headers=h("curriculum")).get_json()
    assert all(s["course_code"] != "1040000000000000000000D" for s in sections["items"])


# ---- intake: a final school year ------------------------------------------------------------------------------

def test_a_final_year_refuses_every_change_of_outcomes_performances_and_selections(tmp_path):
    world = intake_support.make_world(tmp_path)
    try:
        draft = world.outcome()
        assert world.upload(draft, intake_support.pdf()).status_code == 201
        performance = world.performance()
        other_year = world.performance(term="11301", start_date="2024-09-01", end_date="2024-09-02")
        envelope, payload = finalized("year", "11202")
        world.deliver({"id": envelope.id, "type": envelope.type, "school": envelope.school,
                       "occurred_at": envelope.occurred_at.isoformat(), "producer": envelope.producer,
                       "payload": payload.model_dump(mode="json")})
        outcomes, performances = "/api/v1/intake/outcomes", "/api/v1/intake/performances"
        attempts = [
            world.client.post(outcomes, headers=world.h("s1"), json={"section_id": "SEC-A3", "brief": "第二學期"}),
            world.client.patch(f"{outcomes}/{draft['id']}", headers=world.h("s1"), json={"brief": "改寫"}),
            world.upload(draft, intake_support.pdf(b"another"), key="after-final"),
            world.client.post(f"{outcomes}/{draft['id']}/submit", headers=world.h("s1")),
            world.client.delete(f"{outcomes}/{draft['id']}", headers=world.h("s1")),
            world.client.post(performances, headers=world.h("s1"), json={
                "category": "competition", "name": "科展", "organiser": "教育部", "start_date": "2023-09-01",
                "end_date": "2023-09-03", "hours": 2, "brief": "", "result": "", "term": intake_support.TERM}),
            world.client.patch(f"{performances}/{performance['id']}", headers=world.h("s1"), json={"name": "改名"}),
            world.client.put("/api/v1/intake/selections/112", headers=world.h("s1"),
                             json={"outcome_ids": [], "performance_ids": [performance["id"]]}),
        ]
        for response in attempts:
            intake_support.problem_of(response, 409, "year_final")
        # School year 113 is not final: its performance still changes.
        response = world.client.patch(f"{performances}/{other_year['id']}", headers=world.h("s1"),
                                      json={"name": "113 學年度的科展"})
        assert response.status_code == 200, response.get_data(as_text=True)
    finally:
        world.runtime.stop_workers()


# ---- certification: no decision on a final year's outcome -----------------------------------------------------

def test_a_final_year_refuses_certification_decisions(tmp_path):
    from services.certification.app import create_runtime
    from shared.config import Settings
    from tests.conftest import test_documents
    from tests.tokens import TestTokens

    tokens = TestTokens()
    runtime = create_runtime(Settings(service="certification", bus_url="memory://", **test_documents(),
                                      var_dir=tmp_path, relay_poll_seconds=0.05, consumer_backoff_ms=10,
                                      consumer_max_retries=2))
    runtime.verifier = tokens.verifier
    world = certification_support.World(runtime, runtime.create_app().test_client(), tokens).seed()
    try:
        teacher = certification_support.SECTIONS["S1"][1][0]
        world.submit("O-final", "s1", "S1")
        world.submit("O-open", "s1", "S1", term="11401")
        envelope, payload = finalized("year", certification_support.TERM)
        world.handlers["certification.finality"](envelope, payload)
        certification_support.problem_of(world.certify("O-final", teacher), 409, "year_final")
        certification_support.problem_of(world.return_("O-final", teacher), 409, "year_final")
        results = world.bulk(teacher, {"outcome_ids": ["O-final", "O-open"]}).get_json()
        by_id = {row["outcome_id"]: row for row in (results["results"] if isinstance(results, dict) else results)}
        assert by_id["O-final"]["code"] == "year_final" and by_id["O-open"]["result"] == "certified"
        assert world.stored("O-final")["state"] == "submitted"
    finally:
        runtime.stop_workers()
