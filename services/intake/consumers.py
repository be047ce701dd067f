"""What intake learns from other services, each fed by events into intake's own database.

- ``intake.user-directory``: identity.user.* → who a user is (school, roles, class, homeroom class);
- ``intake.course-catalogue``: records.section.* and records.enrolment.* → Section and Enrolment;
- ``intake.certification-status``: certification.outcome.certified/returned → the outcome's status;
- ``intake.substitutes``: certification.substitute.* → who may open a teacher's outcomes for them (代理人);
- ``intake.schools``: identity.school.* → School (the schools of a city, for the city's statistics);
- ``intake.counselling``: records.counselling.* → CounsellingEntry (counted per school, term and student; no content);
- ``intake.windows``: scheduling.window.scheduled.v1 → the upload and selection windows intake enforces (Window; every replica
  reads the same collection, so a change applies everywhere at once);
- ``intake.finality``: exchange.submission.finalized.v1 → the school years whose outcomes, performances and
  selections refuse every change (409 year_final; shared/finality.py);
- ``intake.submission-requests``: exchange.submission.requested.v1 of a year → the year's selections are locked
  (and the lock announced, with the selections' count and revisions' sum) before the exchange builds from them.

Every handler is idempotent (the bus also drops redelivered ids) and order-safe: projections keep the time
of the event that last wrote them and ignore older ones; a certification decision applies only to the
outcome's current submission while it awaits one.
"""
from __future__ import annotations

import logging

from pymongo.errors import DuplicateKeyError

from shared.bus import Subscription
from shared.events import (EnrolmentCreated, EnrolmentWithdrawn, Envelope, OutcomeCertified, OutcomeReturned,
                           SectionCreated, SectionUpdated, SubstituteAssigned, SubstituteRemoved, WindowSet)
from shared.finality import finality_subscription
from shared.events import SubmissionRequested
from shared.events import CounsellingLogged, CounsellingRemoved, SchoolCreated, SchoolDeactivated, SchoolUpdated
from shared.projections import unless_newer, user_directory_subscription

from .domain import lock_selections
from .models import Directory, Enrolment, FinalPeriod, Outcome, Section, Substitution, Window, now
from .models import CounsellingEntry, School

log = logging.getLogger("footprint.intake.consumers")

CATALOGUE_EVENTS = ["records.section.created.v1", "records.section.updated.v1", "records.enrolment.created.v1",
                    "records.enrolment.withdrawn.v1"]
CERTIFICATION_EVENTS = ["certification.outcome.certified.v1", "certification.outcome.returned.v1"]
SUBSTITUTE_EVENTS = ["certification.substitute.assigned.v1", "certification.substitute.removed.v1"]


def apply_substitute_event(envelope: Envelope, payload) -> None:
    """Idempotent and order-safe: a removal is final, so a late assignment never brings one back."""
    collection = Substitution._get_collection()
    if isinstance(payload, SubstituteAssigned):
        collection.update_one({"_id": payload.assignment_id}, {"$setOnInsert": {
            "school": payload.school, "teacher_id": payload.teacher_id, "substitute_id": payload.substitute_id,
            "starts_on": payload.starts_on, "ends_on": payload.ends_on, "removed": False}}, upsert=True)
    elif isinstance(payload, SubstituteRemoved):
        collection.update_one({"_id": payload.assignment_id},
                              {"$set": {"removed": True, "school": payload.school},
                               "$setOnInsert": {"teacher_id": "", "substitute_id": "", "starts_on": "", "ends_on": ""}},
                              upsert=True)


def _upsert_if_newer(model, key: str, envelope: Envelope, values: dict) -> bool:
    """Write ``values`` unless the stored record came from a newer event; True when written."""
    collection = model._get_collection()
    try:
        result = collection.update_one(unless_newer(key, envelope.occurred_at),
                                       {"$set": {**values, "event_at": envelope.occurred_at}},
                                       upsert=True)
    except DuplicateKeyError:
        return False  # the stored record is newer than this event
    return bool(result.matched_count or result.upserted_id is not None)


def apply_catalogue_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, (SectionCreated, SectionUpdated)):
        _upsert_if_newer(Section, payload.section_id, envelope, {
            "school": payload.school, "term": payload.term, "course_code": payload.course_code,
            "subject_name": payload.subject_name, "teacher_ids": list(payload.teacher_ids)})
    elif isinstance(payload, EnrolmentCreated):
        _upsert_if_newer(Enrolment, payload.enrolment_id, envelope, {
            "school": payload.school, "term": payload.term, "section_id": payload.section_id,
            "student_id": payload.student_id, "course_code": payload.course_code, "active": True})
    elif isinstance(payload, EnrolmentWithdrawn):
        written = _upsert_if_newer(Enrolment, payload.enrolment_id, envelope, {
            "school": payload.school, "term": payload.term, "section_id": payload.section_id,
            "student_id": payload.student_id, "active": False})
        if not written:
            log.info("ignored stale withdrawal of enrolment %s", payload.enrolment_id)


# The windows intake enforces: uploads of each kind, and 勾選 (selection).
ENFORCED_WINDOWS = ("outcome_upload", "performance_upload", "selection")


def apply_window_event(envelope: Envelope, payload) -> None:
    """The latest announcement of a window wins (by occurred_at); a repeated or older one changes nothing."""
    if isinstance(payload, WindowSet) and payload.kind in ENFORCED_WINDOWS \
            and envelope.school in (None, payload.school):
        _upsert_if_newer(Window, payload.window_id, envelope, {
            "school": payload.school, "term": payload.term, "kind": payload.kind, "starts_at": payload.starts_at,
            "ends_at": payload.ends_at, "revision": payload.revision})


def apply_certification_event(envelope: Envelope, payload) -> None:
    if not isinstance(payload, (OutcomeCertified, OutcomeReturned)):
        return
    certified = isinstance(payload, OutcomeCertified)
    # One conditional update: it applies only to the outcome's current submission while it awaits a decision,
    # so a repeated, late or stale event (an older submission's decision) changes nothing.
    query = {"_id": payload.outcome_id, "school": payload.school, "student_id": payload.student_id,
             "section_id": payload.section_id, "submission": payload.submission, "status": "submitted",
             "deleted_at": None}
    if certified:
        changes = {"status": "certified", "certified_at": payload.certified_at, "certified_by": payload.certified_by,
                   "updated_at": now()}
    else:
        changes = {"status": "returned", "returned_at": payload.returned_at, "returned_by": payload.returned_by,
                   "return_reason": payload.reason, "updated_at": now()}
    result = Outcome._get_collection().update_one(query, {"$set": changes, "$inc": {"version": 1}})
    if result.modified_count == 0:
        current = Outcome._get_collection().find_one({"_id": payload.outcome_id},
                                                     {"status": 1, "submission": 1, "school": 1})
        log.info("ignored %s for outcome %s submission %s (now: %s)", envelope.type, payload.outcome_id,
                 payload.submission, current and {k: current.get(k) for k in ("school", "status", "submission")})


SCHOOL_EVENTS = ["identity.school.created.v1", "identity.school.updated.v1", "identity.school.deactivated.v1"]
COUNSELLING_EVENTS = ["records.counselling.logged.v1", "records.counselling.removed.v1"]


def apply_school_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, (SchoolCreated, SchoolUpdated)):
        _upsert_if_newer(School, payload.code, envelope, {"name": payload.name, "city": payload.city, "active": True})
    elif isinstance(payload, SchoolDeactivated):
        School._get_collection().update_one({"_id": payload.code}, {"$set": {"active": False}})


def apply_counselling_event(envelope: Envelope, payload) -> None:
    """The latest announcement wins (records never logs a record again after removing it)."""
    if isinstance(payload, CounsellingLogged):
        _upsert_if_newer(CounsellingEntry, payload.record_id, envelope, {
            "school": payload.school, "term": payload.term, "student_id": payload.student_id})
    elif isinstance(payload, CounsellingRemoved):
        _upsert_if_newer(CounsellingEntry, payload.record_id, envelope, {
            "school": payload.school, "term": payload.term, "student_id": payload.student_id, "removed": True})


def apply_submission_request(envelope: Envelope, payload) -> None:
    """The exchange was asked for a year's submission: lock the year's selections first (repeatable)."""
    if isinstance(payload, SubmissionRequested) and payload.scope == "year":
        lock_selections(payload.school, payload.year, payload.requested_by, announce_again=True)


def subscriptions(runtime) -> list[Subscription]:
    return [
        user_directory_subscription("intake", Directory),
        Subscription(queue="intake.course-catalogue", event_types=CATALOGUE_EVENTS, handler=apply_catalogue_event),
        Subscription(queue="intake.certification-status", event_types=CERTIFICATION_EVENTS,
                     handler=apply_certification_event),
        Subscription(queue="intake.substitutes", event_types=SUBSTITUTE_EVENTS, handler=apply_substitute_event),
        Subscription(queue="intake.windows", event_types=["scheduling.window.scheduled.v1"], handler=apply_window_event),
        Subscription(queue="intake.schools", event_types=SCHOOL_EVENTS, handler=apply_school_event),
        Subscription(queue="intake.counselling", event_types=COUNSELLING_EVENTS, handler=apply_counselling_event),
        finality_subscription("intake", FinalPeriod),  # queue intake.finality
        Subscription(queue="intake.submission-requests", event_types=["exchange.submission.requested.v1"],
                     handler=apply_submission_request),
    ]
