"""Teachers' queues and counts, bulk certification, and one run end to end over the memory bus."""
from __future__ import annotations

import time
import uuid

from shared.bus import ConsumerWorker, EventBus, ProcessedEvents, Subscription
from shared.documents import database
from shared.events import OutcomeSubmitted, SectionCreated, UserCreated, make_event
from tests.service.test_certification_support import (A, COURSE, TERM, problem_of, stored, taipei_day,  # noqa: F401
                                                      world)


def fill(world):
    """S1 (t1): o1 o2 submitted, o3 certified, o4 returned; S2 (t2): o5 submitted; S1b (t1, another term): o6."""
    world.section("S1b", A, ["t1", "h1"], term="11302")
    world.submit("o1", files=[stored("1.pdf")])
    world.submit("o2", student="s2", files=[stored("2.pdf")])
    world.submit("o3", files=[stored("3.pdf")])
    world.submit("o4", student="s2", files=[stored("4.pdf")])
    world.submit("o5", section_id="S2", files=[stored("5.pdf")])
    world.submit("o6", section_id="S1b", term="11302", files=[stored("6.pdf")])
    assert world.certify("o3", "t1").status_code == 200
    assert world.return_("o4", "t1", "再補充").status_code == 200


def ids(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["outcome_id"] for item in response.get_json()["items"]]


def test_the_queue_holds_the_callers_sections_with_student_names(world):
    fill(world)
    queue = world.get("/queue", "t1").get_json()
    assert queue["total"] == 3 and [i["outcome_id"] for i in queue["items"]] == ["o1", "o2", "o6"]
    first = queue["items"][0]
    assert first["student_name"] == "林同學" and first["student_no"] == "no-s1" and first["class_name"] == "101"
    assert first["subject_name"] == "科目S1" and first["section_name"] == "班S1" and first["on_behalf_of"] is None
    assert first["files"][0]["sha256"] and first["state"] == "submitted" and first["course_code"] == COURSE
    assert ids(world.get("/queue?state=certified", "t1")) == ["o3"]
    returned = world.get("/queue?state=returned", "t1").get_json()["items"]
    assert [(i["outcome_id"], i["reason"]) for i in returned] == [("o4", "再補充")]
    assert ids(world.get(f"/queue?term={TERM}", "t1")) == ["o1", "o2"]
    assert ids(world.get("/queue?section_id=S1b", "t1")) == ["o6"]
    assert ids(world.get("/queue?limit=1&offset=1", "t1")) == ["o2"]
    assert ids(world.get("/queue", "t2")) == ["o5"]
    assert ids(world.get("/queue", "h1")) == ["o6"]  # co-teacher of S1b
    assert ids(world.get("/queue", "s1")) == [] and ids(world.get("/queue", "cur")) == []
    problem_of(world.get("/queue?section_id=S2", "t1"), 403, "forbidden")
    problem_of(world.get("/queue?section_id=S404", "t1"), 404, "not_found")


def test_a_substitute_sees_the_absent_teachers_queue_while_the_period_lasts(world):
    fill(world)
    assert world.assign("cur", "t1", "t2", taipei_day(0), taipei_day(2)).status_code == 201
    items = world.get("/queue", "t2").get_json()["items"]
    assert [(i["outcome_id"], i["on_behalf_of"]) for i in items] == [("o1", "t1"), ("o2", "t1"), ("o5", None), ("o6", "t1")]
    assert ids(world.get("/queue?section_id=S1", "t2")) == ["o1", "o2"]
    assert world.assign("cur", "t2", "t3", taipei_day(-9), taipei_day(-1)).status_code == 201  # over
    assert ids(world.get("/queue", "t3")) == []


def test_counts_per_section(world):
    fill(world)
    body = world.get("/counts", "t1").get_json()
    assert body["teacher_id"] == "t1"
    assert [(s["section_id"], s["term"], s["pending"], s["certified"], s["returned"]) for s in body["sections"]] == [
        ("S1", TERM, 2, 1, 1), ("S1b", "11302", 1, 0, 0)]
    assert body["totals"] == {"pending": 3, "certified": 1, "returned": 1}
    assert [s["section_id"] for s in world.get(f"/counts?term={TERM}", "t1").get_json()["sections"]] == ["S1"]
    # staff may look at a teacher's counts; teachers only at their own
    assert world.get("/counts?teacher_id=t1", "cur").get_json()["sections"] == body["sections"]
    assert world.get("/counts?teacher_id=t1", "adm").get_json()["totals"] == body["totals"]
    problem_of(world.get("/counts?teacher_id=t1", "t2"), 403, "forbidden")
    problem_of(world.get("/counts?teacher_id=t1", "s1"), 403, "forbidden")
    problem_of(world.get("/counts?teacher_id=ghost", "cur"), 404, "not_found")
    assert world.get("/counts?teacher_id=t2", "t2").get_json()["totals"] == {"pending": 1, "certified": 0, "returned": 0}
    assert world.get("/counts", "s1").get_json()["sections"] == []
    # a section with nothing yet still shows, with zeros; a substitute's counts include the absent teacher's sections
    world.section("S3", A, ["t3"])
    assert world.assign("cur", "t1", "t3", taipei_day(0), taipei_day(0)).status_code == 201
    rows = world.get("/counts", "t3").get_json()["sections"]
    assert [(r["section_id"], r["on_behalf_of"], r["pending"]) for r in rows] == [
        ("S1", "t1", 2), ("S3", None, 0), ("S1b", "t1", 1)]


def test_bulk_certify_listed_outcomes_reports_each_item(world):
    fill(world)
    response = world.bulk("t1", {"outcome_ids": ["o1", "o3", "o4", "o5", "nope", "o2", "o1"]}, forwarded="203.0.113.9")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["results"] == [
        {"outcome_id": "o1", "result": "certified", "code": None},
        {"outcome_id": "o3", "result": "skipped", "code": "invalid_transition"},  # already certified
        {"outcome_id": "o4", "result": "skipped", "code": "invalid_transition"},  # returned, not resubmitted
        {"outcome_id": "o5", "result": "skipped", "code": "forbidden"},           # t2's section
        {"outcome_id": "nope", "result": "skipped", "code": "not_found"},
        {"outcome_id": "o2", "result": "certified", "code": None},
    ]  # the repeated o1 counts once
    assert body["certified"] == 2 and body["skipped"] == 4
    for outcome_id in ("o1", "o2"):  # each certified item: its state and its own event, in one write
        doc = world.stored(outcome_id)
        assert doc["state"] == "certified" and doc["audit"][-1]["from"] == "203.0.113.9"
        assert [(e["type"], e["payload"]["outcome_id"]) for e in world.outbox(outcome_id)] == [
            ("certification.outcome.certified.v1", outcome_id)]
    assert world.stored("o5")["state"] == "submitted" and world.outbox("o5") == []
    assert world.stored("o4")["state"] == "returned"


def test_bulk_certify_a_whole_section(world):
    fill(world)
    body = world.bulk("t1", {"section_id": "S1"}).get_json()
    assert [(r["outcome_id"], r["result"]) for r in body["results"]] == [("o1", "certified"), ("o2", "certified")]
    assert world.stored("o4")["state"] == "returned" and world.stored("o6")["state"] == "submitted"
    assert world.bulk("t1", {"section_id": "S1"}).get_json() == {"certified": 0, "skipped": 0, "results": []}
    problem_of(world.bulk("t1", {"section_id": "S2"}), 403, "forbidden")
    problem_of(world.bulk("t1", {"section_id": "S404"}), 404, "not_found")
    assert world.assign("cur", "t2", "t1", taipei_day(0), taipei_day(1)).status_code == 201
    body = world.bulk("t1", {"section_id": "S2"}).get_json()
    assert body["certified"] == 1
    assert world.outbox("o5")[0]["payload"]["on_behalf_of"] == "t2"


def wait_for(predicate, timeout: float = 60.0) -> bool:
    """Generous: a deadline only costs time when the test fails anyway (consumers are threads on a loaded box)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_end_to_end_over_the_memory_bus(world):
    """records, identity and intake publish on the bus; the workers feed the projections and the queue; the
    teacher certifies over HTTP; the relay publishes the certified event to whoever listens."""
    runtime = world.runtime
    runtime.start_workers()
    tag = uuid.uuid4().hex[:8]
    outcome_id, section_id, teacher, student = f"o-{tag}", f"S-{tag}", f"t-{tag}", f"s-{tag}"
    heard: list = []
    observer = ConsumerWorker("memory://", "observer", Subscription(
        queue=f"test-observer-{tag}", event_types=["certification.outcome.certified.v1"],
        handler=lambda envelope, payload: heard.append(payload)), ProcessedEvents(database("certification")))
    observer.start()
    buses = {name: EventBus("memory://", name) for name in ("identity", "records", "intake")}
    try:
        assert observer.ready.wait(60)
        buses["identity"].publish(make_event(UserCreated(
            user_id=student, school=A, city="TPE", username=student, display_name="吳同學", roles=["student"]),
            school=A, producer="identity"))
        submitted = make_event(OutcomeSubmitted(
            outcome_id=outcome_id, school=A, term=TERM, section_id=section_id, course_code=COURSE, student_id=student,
            brief="實驗報告", files=[stored("lab.pdf")], submitted_by=student, submitted_from="198.51.100.1",
            submission=1), school=A, producer="intake")
        buses["intake"].publish(submitted)
        assert wait_for(lambda: world.stored(outcome_id) is not None)
        assert ids(world.get("/queue", teacher)) == []  # the section is not known yet
        buses["records"].publish(make_event(SectionCreated(
            section_id=section_id, school=A, term=TERM, course_code=COURSE, subject_name="物理", credits=2,
            category="部定必修", section_name="201", teacher_ids=[teacher]), school=A, producer="records"))
        assert wait_for(lambda: ids(world.get("/queue", teacher)) == [outcome_id])
        assert wait_for(lambda: world.get("/queue", teacher).get_json()["items"][0]["student_name"] == "吳同學")
        response = world.certify(outcome_id, teacher, forwarded="203.0.113.50")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert wait_for(lambda: [p.outcome_id for p in heard] == [outcome_id])
        assert heard[0].certified_by == teacher and heard[0].school == A and heard[0].submission == 1
        assert wait_for(lambda: world.outbox(outcome_id) == [])  # relayed, then pulled from the outbox
        buses["intake"].publish(submitted)  # a redelivery of the same event: handled once
        # A marker behind it on the same queue (one consumer, in order): once the marker's outcome is stored, the
        # redelivery ahead of it was dealt with. Its section is unknown, so it shows in nobody's queue.
        marker = make_event(OutcomeSubmitted(
            outcome_id=f"marker-{tag}", school=A, term=TERM, section_id=f"S-marker-{tag}", course_code=COURSE,
            student_id=student, brief="marker", files=[stored("marker.pdf")], submitted_by=student,
            submitted_from="198.51.100.1", submission=1), school=A, producer="intake")
        buses["intake"].publish(marker)
        assert wait_for(lambda: world.stored(f"marker-{tag}") is not None)
        doc = world.stored(outcome_id)
        assert doc["state"] == "certified" and [e["action"] for e in doc["audit"]] == ["submitted", "certified"]
        assert ids(world.get("/queue", teacher)) == []
    finally:
        observer.stop()
        observer.join(5)
        for bus in buses.values():
            bus.reset()
