"""Events: a submission writes its state and its event in one document write; consumers are idempotent and
order-safe (stale, repeated and foreign events change nothing); the whole loop runs over the memory:// bus."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.intake.models import Directory, Enrolment, Outcome, Section
from shared.bus import ConsumerWorker, EventBus, ProcessedEvents, Subscription
from shared.documents import database
from shared.events import OutcomeCertified, SectionUpdated, make_event, parse_event
from tests.service.test_intake_support import (A, B, TERM, User, enrolment_event, jpeg, pdf, png, problem_of,
                                               section_event, sha, user_event, withdrawal_event,
                                               world)  # noqa: F401 (fixture)

OUTCOMES = "/api/v1/intake/outcomes"


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def submitted(world, files=(pdf(), png())):
    item = world.outcome()
    uploads = [world.upload(item, data, f"{n}.bin").get_json() for n, data in enumerate(files)]
    response = world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1", **{"X-Forwarded-For": "203.0.113.5"}))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json(), uploads


# ---- the outbox --------------------------------------------------------------------------------------------

def test_submit_writes_the_state_and_the_event_together(world):
    item, uploads = submitted(world)
    raw = world.raw(Outcome, item["id"])
    assert raw["status"] == "submitted" and raw["submission"] == 1
    [entry] = raw["outbox"]
    envelope, payload = parse_event(entry["event"])  # valid against the catalogue
    assert envelope.type == "intake.outcome.submitted.v1" and envelope.school == A and envelope.producer == "intake"
    assert (payload.outcome_id, payload.school, payload.term, payload.section_id, payload.student_id) == \
           (item["id"], A, TERM, "SEC-A1", "s1")
    assert (payload.submitted_by, payload.submitted_from, payload.submission, payload.brief) == \
           ("s1", "203.0.113.5", 1, item["brief"])
    assert [(f.file_id, f.sha256, f.size, f.kind) for f in payload.files] == \
           [(u["file_id"], u["sha256"], u["size"], u["kind"]) for u in uploads]
    assert [f.sha256 for f in payload.files] == [sha(pdf()), sha(png())]
    assert payload.course_code == item["course_code"]


def test_a_failed_submit_writes_neither_state_nor_event(world, monkeypatch):
    """A concurrent writer changes the document between read and write: the versioned write refuses (409)."""
    from services.intake import domain

    item = world.outcome()
    world.upload(item, pdf())
    real = domain.events.outcome_submitted

    def racing(outcome):
        Outcome._get_collection().update_one({"_id": outcome.id}, {"$inc": {"version": 1}})
        return real(outcome)

    monkeypatch.setattr(domain.events, "outcome_submitted", racing)
    problem_of(world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1")), 409, "conflict")
    raw = world.raw(Outcome, item["id"])
    assert raw["status"] == "draft" and raw["submission"] == 0 and raw["outbox"] == []


def test_a_concurrent_upload_is_retried_not_lost(world, monkeypatch):
    """Two files uploaded at once: the second one's versioned write conflicts, reloads and lands."""
    from services.intake import domain

    item = world.outcome()
    real = domain.save_with_events
    state = {"raced": False}

    def racing(doc, events=()):
        if not state["raced"] and isinstance(doc, Outcome) and doc.files:
            state["raced"] = True
            world.upload(item, jpeg(), "parallel.jpg", key="parallel-upload")  # lands first
        return real(doc, events)

    monkeypatch.setattr(domain, "save_with_events", racing)
    assert world.upload(item, pdf(), "mine.pdf", key="my-upload-01").status_code == 201
    names = [f["name"] for f in world.get(f"{OUTCOMES}/{item['id']}").get_json()["files"]]
    assert sorted(names) == ["mine.pdf", "parallel.jpg"] and len(world.objects()) == 2


# ---- consumers: idempotent and order-safe ------------------------------------------------------------------

def test_the_same_certification_event_twice_has_one_effect(world):
    item, _ = submitted(world)
    body = world.certify(item, 1)
    once = world.raw(Outcome, item["id"])
    world.deliver(body)
    twice = world.raw(Outcome, item["id"])
    assert once["status"] == "certified" and once == twice


def test_the_same_return_twice_and_a_late_certification_of_it(world):
    item, _ = submitted(world)
    body = world.send_back(item, 1, reason="缺心得")
    once = world.raw(Outcome, item["id"])
    world.deliver(body)
    assert world.raw(Outcome, item["id"]) == once and once["status"] == "returned" and once["return_reason"] == "缺心得"
    world.certify(item, 1)  # a conflicting decision about the same submission: the first one stands
    assert world.raw(Outcome, item["id"])["status"] == "returned"


def test_decisions_about_other_submissions_schools_or_students_are_ignored(world):
    item, _ = submitted(world)
    version = world.raw(Outcome, item["id"])["version"]
    world.certify(item, 2)                                   # a submission that does not exist yet
    world.certify({**item, "school": B}, 1)                  # another tenant naming this outcome
    world.certify({**item, "student_id": "s2"}, 1)           # another student
    world.send_back({**item, "id": uuid.uuid4().hex}, 1)     # an outcome intake never had
    raw = world.raw(Outcome, item["id"])
    assert raw["status"] == "submitted" and raw["version"] == version


def test_a_certification_arriving_before_the_draft_is_submitted_changes_nothing(world):
    item = world.outcome()
    world.certify(item, 0)
    world.certify(item, 1)
    assert world.raw(Outcome, item["id"])["status"] == "draft"


def test_section_events_twice_and_out_of_order(world):
    now = datetime.now(timezone.utc)
    newer = section_event("SEC-X", A, TERM, "物理", ["t_other"], at=now, cls=SectionUpdated)
    older = section_event("SEC-X", A, TERM, "物理", ["t_math"], at=now - timedelta(minutes=5))
    world.deliver(newer)
    world.deliver(older)    # late: must not overwrite the newer teachers
    world.deliver(newer)    # again: no second effect
    [section] = Section.objects(section_id="SEC-X")
    assert section.teacher_ids == ["t_other"] and section.subject_name == "物理"


def test_enrolment_withdrawn_before_its_creation_arrives(world):
    now = datetime.now(timezone.utc)
    world.deliver(withdrawal_event("E-late", A, TERM, "SEC-A2", "s1", at=now))
    world.deliver(enrolment_event("E-late", A, TERM, "SEC-A2", "s1", at=now - timedelta(minutes=1)))
    world.deliver(enrolment_event("E-late", A, TERM, "SEC-A2", "s1", at=now - timedelta(minutes=1)))
    [enrolment] = Enrolment.objects(enrolment_id="E-late")
    assert enrolment.active is False
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A2"}), 422, "not_enrolled")
    world.deliver(enrolment_event("E-again", A, TERM, "SEC-A2", "s1", at=now + timedelta(minutes=1)))  # re-enrolled
    assert world.outcome(section="SEC-A2")["section_id"] == "SEC-A2"


def test_user_events_twice_keep_one_directory_entry(world):
    body = user_event(User("s9", A, ("student",), class_name="103"))
    world.deliver(body)
    world.deliver(body)
    assert Directory.objects(id="s9").count() == 1 and Directory.objects(id="s9").first().class_name == "103"


def test_the_subscriptions(world):
    subs = {s.queue: s for s in world.runtime.spec.subscriptions(world.runtime)}
    assert set(subs) == {"intake.user-directory", "intake.course-catalogue", "intake.certification-status",
                         "intake.substitutes", "intake.windows", "intake.finality", "intake.schools",
                         "intake.counselling", "intake.submission-requests"}
    assert subs["intake.finality"].event_types == ["exchange.submission.finalized.v1"]
    assert subs["intake.submission-requests"].event_types == ["exchange.submission.requested.v1"]
    assert subs["intake.windows"].event_types == ["scheduling.window.scheduled.v1"]
    assert set(subs["intake.substitutes"].event_types) == {
        "certification.substitute.assigned.v1", "certification.substitute.removed.v1"}
    assert set(subs["intake.course-catalogue"].event_types) == {
        "records.section.created.v1", "records.section.updated.v1", "records.enrolment.created.v1",
        "records.enrolment.withdrawn.v1"}
    assert set(subs["intake.certification-status"].event_types) == {
        "certification.outcome.certified.v1", "certification.outcome.returned.v1"}


# ---- the whole loop on the memory:// bus ---------------------------------------------------------------------

@pytest.fixture
def running(world):
    tag = uuid.uuid4().hex[:8]
    seen: list = []
    listener = ConsumerWorker("memory://", "test", Subscription(
        queue=f"test-{tag}.submitted", event_types=["intake.outcome.submitted.v1"],
        handler=lambda envelope, payload: seen.append((envelope.id, payload))), ProcessedEvents(database("intake")))
    listener.start()
    assert listener.ready.wait(10)
    world.runtime.start_workers()
    bus = EventBus("memory://", "records")
    yield world, bus, seen, listener
    listener.stop()
    listener.join(3)
    bus.reset()


def test_events_flow_through_the_bus_once_each(running):
    world, bus, seen, _ = running
    now = datetime.now(timezone.utc)
    catalogue = world.runtime.consumers
    teacher = user_event(User("t_new", A, ("subject_teacher",)))
    section = section_event("SEC-BUS", A, TERM, "化學", ["t_new"], at=now)
    enrolment = enrolment_event("E-bus", A, TERM, "SEC-BUS", "s1", at=now)
    for body in (teacher, section, enrolment, section, enrolment):  # the second copies are redeliveries
        bus.publish(body)
    assert wait_for(lambda: Enrolment.objects(enrolment_id="E-bus").count() == 1 and Directory.objects(id="t_new").count())
    handled = {w.sub.queue: w for w in catalogue}
    assert wait_for(lambda: handled["intake.course-catalogue"].handled == 2)

    item = world.outcome(section="SEC-BUS")
    world.upload(item, pdf())
    assert world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1")).status_code == 200
    # the relay publishes the outbox event and pulls it from the document
    assert wait_for(lambda: len(seen) == 1)
    assert wait_for(lambda: world.raw(Outcome, item["id"])["outbox"] == [])
    event_id, payload = seen[0]
    assert payload.outcome_id == item["id"] and payload.files[0].sha256 == sha(pdf())
    certifier = world.tokens.headers("t_new", A, ("subject_teacher",))  # known to intake only through events
    assert world.client.get(f"/api/v1/intake/files/{payload.files[0].file_id}", headers=certifier).data == pdf()

    body = make_event(OutcomeCertified(outcome_id=item["id"], school=A, student_id="s1", section_id="SEC-BUS",
                                       submission=1, certified_by="t_new", certified_at=now), school=A,
                      producer="certification")
    bus.publish(body)
    bus.publish(body)
    assert wait_for(lambda: world.raw(Outcome, item["id"])["status"] == "certified")
    status_worker = handled["intake.certification-status"]
    assert wait_for(lambda: status_worker.handled == 1)
    time.sleep(0.2)
    assert status_worker.handled == 1  # the copy was recognised by its id and acknowledged without effect
    assert world.raw(Outcome, item["id"])["version"] == 4  # created, file, submitted, certified
    assert len(seen) == 1
