"""Certification's state machine: submissions from intake, certify/return, resubmission, identical content,
the outbox (state and event in one write) and consumer idempotency."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from tests.service.test_certification_support import A, PREFIX, TERM, digest, problem_of, stored, world  # noqa: F401

SUBMISSIONS = "certification.submissions"


def test_a_submission_lands_submitted_with_its_files_and_audit(world):
    event = world.submit("o1", files=[stored("a.pdf"), stored("b.mp4")], address="198.51.100.20")
    doc = world.stored("o1")
    assert doc["state"] == "submitted" and doc["submission"] == 1 and doc["school"] == A
    assert doc["section_id"] == "S1" and doc["student_id"] == "s1" and doc["term"] == TERM
    assert [(f["name"], f["sha256"], f["size"], f["kind"]) for f in doc["files"]] == [
        ("a.pdf", digest("a.pdf"), 1234, "document"), ("b.mp4", digest("b.mp4"), 1234, "document")]
    assert doc["outbox"] == []  # a submission emits nothing
    [entry] = doc["audit"]
    assert entry["action"] == "submitted" and entry["actor"] == "s1" and entry["from"] == "198.51.100.20"
    assert entry["submission"] == 1 and entry["on_behalf_of"] is None
    assert event["payload"]["outcome_id"] == "o1"


def test_certify_writes_state_and_event_together(world):
    world.submit("o1")
    before = datetime.now(timezone.utc)
    response = world.certify("o1", "t1")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["state"] == "certified" and body["decided_by"] == "t1" and body["on_behalf_of"] is None
    assert body["reason"] is None and body["kept_from_identical_content"] is False
    doc = world.stored("o1")
    assert doc["state"] == "certified" and doc["decided_by"] == "t1" and doc["version"] == 2
    [event] = world.outbox("o1")
    assert event["type"] == "certification.outcome.certified.v1" and event["school"] == A
    assert event["producer"] == "certification"
    payload = event["payload"]
    assert {k: payload[k] for k in ("outcome_id", "school", "student_id", "section_id", "submission", "certified_by",
                                    "on_behalf_of", "kept_from_identical_content")} == {
        "outcome_id": "o1", "school": A, "student_id": "s1", "section_id": "S1", "submission": 1,
        "certified_by": "t1", "on_behalf_of": None, "kept_from_identical_content": False}
    certified_at = datetime.fromisoformat(payload["certified_at"])
    assert before - timedelta(seconds=1) <= certified_at <= datetime.now(timezone.utc)


def test_return_requires_a_reason_of_1_to_200_characters_and_emits_returned(world):
    world.submit("o1")
    for reason in (None, "", "   ", "x" * 201):
        problem_of(world.return_("o1", "t1", reason), 422, "validation_failed")
    problem_of(world.client.post(f"{PREFIX}/outcomes/o1/return", json={"reason": "ok", "grade": 90},
                                 headers=world.headers("t1")), 422, "validation_failed")
    problem_of(world.client.post(f"{PREFIX}/outcomes/o1/return", data="reason=x", headers=world.headers("t1"),
                                 content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type")
    assert world.stored("o1")["state"] == "submitted" and world.outbox("o1") == []  # bad input wrote nothing
    response = world.return_("o1", "t1", " 缺少學習反思 " + "x" * 150)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["state"] == "returned"
    doc = world.stored("o1")
    assert doc["state"] == "returned" and doc["reason"] == "缺少學習反思 " + "x" * 150
    [event] = world.outbox("o1")
    assert event["type"] == "certification.outcome.returned.v1"
    assert {k: event["payload"][k] for k in ("outcome_id", "school", "student_id", "section_id", "submission",
                                             "returned_by", "on_behalf_of", "reason")} == {
        "outcome_id": "o1", "school": A, "student_id": "s1", "section_id": "S1", "submission": 1,
        "returned_by": "t1", "on_behalf_of": None, "reason": doc["reason"]}
    assert event["payload"]["returned_at"]


def test_forbidden_transitions_are_409_and_write_nothing(world):
    world.submit("o1")
    assert world.certify("o1", "t1").status_code == 200
    version = world.stored("o1")["version"]
    problem_of(world.certify("o1", "t1"), 409, "invalid_transition")       # certify twice
    problem_of(world.return_("o1", "t1"), 409, "invalid_transition")       # return a certified one
    assert world.stored("o1")["version"] == version and len(world.outbox("o1")) == 1

    world.submit("o2", files=[stored("other.pdf")])  # (the same files as o1 would be kept certified at once)
    assert world.return_("o2", "t1").status_code == 200
    problem_of(world.certify("o2", "t1"), 409, "invalid_transition")       # certify a returned one
    problem_of(world.return_("o2", "t1"), 409, "invalid_transition")       # return it twice
    assert [e["type"] for e in world.outbox("o2")] == ["certification.outcome.returned.v1"]
    problem_of(world.certify("nope", "t1"), 404, "not_found")


def test_resubmission_after_a_return_can_be_certified(world):
    world.submit("o1", files=[stored("draft.pdf")])
    world.return_("o1", "t1", "照片模糊")
    world.submit("o1", files=[stored("final.pdf")], submission=2, address="198.51.100.99")
    doc = world.stored("o1")
    assert doc["state"] == "submitted" and doc["submission"] == 2 and doc.get("reason") is None
    assert doc.get("decided_by") is None and [f["name"] for f in doc["files"]] == ["final.pdf"]
    assert doc["brief"] == "brief of o1 #2"
    assert [(e["action"], e["submission"]) for e in doc["audit"]] == [("submitted", 1), ("returned", 1), ("submitted", 2)]
    assert doc["audit"][-1]["from"] == "198.51.100.99"
    assert world.certify("o1", "t1").status_code == 200
    events = world.outbox("o1")
    assert [(e["type"].split(".")[2], e["payload"]["submission"]) for e in events] == [("returned", 1), ("certified", 2)]


def test_the_same_submitted_event_twice_has_one_effect_and_an_older_one_is_ignored(world):
    first = world.submit("o1", files=[stored("v1.pdf")])
    world.replay(SUBMISSIONS, first)
    doc = world.stored("o1")
    assert len(doc["audit"]) == 1 and doc["version"] == 1
    world.return_("o1", "t1")
    world.submit("o1", files=[stored("v2.pdf")], submission=2)
    world.replay(SUBMISSIONS, first)                         # a late redelivery of submission 1
    world.submit("o1", files=[stored("v1b.pdf")], submission=1)  # or a different event of the older submission
    doc = world.stored("o1")
    assert doc["state"] == "submitted" and doc["submission"] == 2
    assert [f["name"] for f in doc["files"]] == ["v2.pdf"] and len(doc["audit"]) == 3


def test_a_new_submission_after_certification_is_refused(world):
    world.submit("o1", files=[stored("v1.pdf")])
    world.certify("o1", "t1")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("footprint.certification")
    logger.addHandler(handler)
    try:
        world.submit("o1", files=[stored("changed.pdf")], submission=2)
    finally:
        logger.removeHandler(handler)
    doc = world.stored("o1")
    assert doc["state"] == "certified" and doc["submission"] == 1 and [f["name"] for f in doc["files"]] == ["v1.pdf"]
    assert len(doc["audit"]) == 2 and len(world.outbox("o1")) == 1
    assert any("refused" in r.getMessage() and r.levelno == logging.WARNING for r in records)


def test_identical_content_keeps_the_certification(world):
    world.submit("o1", files=[stored("a.pdf"), stored("b.pdf")])
    world.certify("o1", "t1")
    # another outcome of the same student and section with the same SET of files (other order and names)
    world.submit("o2", files=[stored("B-renamed.pdf", "b.pdf"), stored("a.pdf"), stored("a-again.pdf", "a.pdf")])
    doc = world.stored("o2")
    assert doc["state"] == "certified" and doc["kept_from_identical_content"] is True and doc["decided_by"] == "t1"
    assert [(e["action"], e["actor"]) for e in doc["audit"]] == [("submitted", "s1"), ("kept", "t1")]
    assert doc["audit"][1]["kept_from_outcome_id"] == "o1" and doc["audit"][1]["kept_from_submission"] == 1
    [event] = world.outbox("o2")
    assert event["type"] == "certification.outcome.certified.v1"
    assert event["payload"]["kept_from_identical_content"] is True and event["payload"]["certified_by"] == "t1"
    assert event["payload"]["outcome_id"] == "o2" and event["payload"]["submission"] == 1
    problem_of(world.certify("o2", "t1"), 409, "invalid_transition")


def test_different_content_or_another_student_or_section_is_not_kept(world):
    world.submit("o1", files=[stored("a.pdf"), stored("b.pdf")])
    world.certify("o1", "t1")
    world.submit("o2", files=[stored("a.pdf")])                              # a subset is not identical
    world.submit("o3", files=[stored("a.pdf"), stored("b.pdf"), stored("c.pdf")])  # nor a superset
    world.submit("o4", student="s2", files=[stored("a.pdf"), stored("b.pdf")])  # another student
    world.submit("o5", section_id="S2", files=[stored("a.pdf"), stored("b.pdf")])  # another section
    for outcome_id in ("o2", "o3", "o4", "o5"):
        doc = world.stored(outcome_id)
        assert doc["state"] == "submitted" and doc["kept_from_identical_content"] is False, outcome_id
        assert world.outbox(outcome_id) == []


def test_identical_content_of_a_returned_submission_is_not_kept(world):
    world.submit("o1", files=[stored("a.pdf")])
    world.return_("o1", "t1")
    world.submit("o1", files=[stored("a.pdf")], submission=2)
    world.submit("o2", files=[stored("a.pdf")])
    assert world.stored("o1")["state"] == "submitted" and world.stored("o2")["state"] == "submitted"


def test_a_resubmission_of_a_certified_outcome_with_identical_content_is_kept(world):
    world.submit("o1", files=[stored("a.pdf")])
    world.certify("o1", "t1")
    world.submit("o1", files=[stored("a.pdf")], submission=2)
    doc = world.stored("o1")
    assert doc["state"] == "certified" and doc["submission"] == 2 and doc["kept_from_identical_content"] is True
    assert [e["payload"]["submission"] for e in world.outbox("o1")] == [1, 2]


def test_an_item_for_an_unknown_section_waits_for_the_section_event(world):
    world.submit("o9", section_id="S9")
    assert world.get("/queue", "t1").get_json()["total"] == 0
    problem_of(world.certify("o9", "t1"), 403, "forbidden")  # nobody is known to teach it yet
    world.section("S9", A, ["t1"])
    queue = world.get("/queue", "t1").get_json()
    assert [i["outcome_id"] for i in queue["items"]] == ["o9"] and queue["items"][0]["subject_name"] == "科目S9"
    assert world.certify("o9", "t1").status_code == 200


def test_section_teacher_changes_apply_at_once_and_stale_events_are_ignored(world):
    world.submit("o1")
    now = datetime.now(timezone.utc)
    world.section("S1", A, ["t2"], updated=True, at=now + timedelta(seconds=5))
    world.section("S1", A, ["t1"], updated=True, at=now + timedelta(seconds=1))  # older: ignored
    world.section("S1", "999002", ["tb"], updated=True, at=now + timedelta(seconds=9))  # never moves school
    problem_of(world.certify("o1", "t1"), 403, "forbidden")
    assert [i["outcome_id"] for i in world.get("/queue", "t2").get_json()["items"]] == ["o1"]
    assert world.certify("o1", "t2").status_code == 200


def test_a_submission_whose_envelope_and_payload_schools_differ_is_ignored(world):
    from services.certification.consumers import on_submission
    from shared.events import OutcomeSubmitted, make_event, parse_event

    payload = OutcomeSubmitted(outcome_id="ox", school=A, term=TERM, section_id="S1", course_code="1" * 23,
                               student_id="s1", brief="", files=[], submitted_by="s1", submitted_from="::1",
                               submission=1)
    on_submission(*parse_event(make_event(payload, school="999002", producer="intake")))
    assert world.stored("ox") is None
