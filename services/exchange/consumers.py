"""What the exchange learns from other services, each fed by events into its own database (no synchronous call
to any of them while it builds a package):

- ``exchange.user-directory``: identity.user.* → who a student is;
- ``exchange.course-records``: records.section.*, records.enrolment.*, records.grade.recorded.v1 → sections and
  course records (enrolments with their grades);
- ``exchange.cadres``: records.cadre.recorded/removed.v1 → cadres (basic data);
- ``exchange.selections``: intake.selection.changed.v1 → each student's selection, whole, with every file's
  sha256; intake.selection.locked.v1 → the year's lock with its count and revisions' sum;
- ``exchange.windows``: scheduling.window.scheduled.v1 → the windows (receipt confirmation, submission).

Every handler is repeatable and order-safe: a row keeps the time (or revision) of the fact that last wrote it and
an older one changes nothing; every applied write increments the row's ``rev`` (the build's snapshot check).
"""
from __future__ import annotations

from pymongo.errors import DuplicateKeyError

from shared.bus import Subscription
from shared.events import (CadreRecorded, CadreRemoved, EnrolmentCreated, EnrolmentWithdrawn, Envelope, GradeRecorded,
                           SectionCreated, SectionUpdated, SelectionChanged, SelectionLocked, WindowSet)
from shared.projections import unless_newer, user_directory_subscription

from .build import selection_rows
from .models import Cadre, CourseRecord, DirectoryUser, Section, Selection, Window, YearLock

COURSE_EVENTS = ["records.section.created.v1", "records.section.updated.v1", "records.enrolment.created.v1",
                 "records.enrolment.withdrawn.v1", "records.grade.recorded.v1"]
CADRE_EVENTS = ["records.cadre.recorded.v1", "records.cadre.removed.v1"]
SELECTION_EVENTS = ["intake.selection.changed.v1", "intake.selection.locked.v1"]


def _write(model, selector: dict, values: dict) -> bool:
    """Upsert ``values`` where ``selector`` (the row, unless a newer fact wrote it) matches; False when stale."""
    try:
        model._get_collection().update_one(selector, {"$set": values, "$inc": {"rev": 1}}, upsert=True)
    except DuplicateKeyError:
        return False  # the stored row is newer than this fact
    return True


def apply_course_event(envelope: Envelope, payload) -> None:
    at = envelope.occurred_at
    if isinstance(payload, (SectionCreated, SectionUpdated)):
        _write(Section, unless_newer(payload.section_id, at), {
            "school": payload.school, "term": payload.term, "course_code": payload.course_code,
            "subject_name": payload.subject_name, "credits": payload.credits, "event_at": at})
    elif isinstance(payload, (EnrolmentCreated, EnrolmentWithdrawn)):
        _write(CourseRecord, unless_newer(payload.enrolment_id, at), {
            "school": payload.school, "term": payload.term, "section_id": payload.section_id,
            "student_id": payload.student_id, "active": isinstance(payload, EnrolmentCreated), "event_at": at})
    elif isinstance(payload, GradeRecorded):
        # The grade has a clock of its own: an enrolment event never hides a grade, nor an older grade a newer one.
        _write(CourseRecord, {"_id": payload.enrolment_id, "grade_at": {"$not": {"$gt": at}}}, {
            "school": payload.school, "term": payload.term, "section_id": payload.section_id,
            "student_id": payload.student_id, "score": payload.score, "passed": payload.passed,
            "credits_earned": payload.credits_earned, "grade_at": at})


def apply_cadre_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, (CadreRecorded, CadreRemoved)):
        values = {"school": payload.school, "term": payload.term, "student_id": payload.student_id,
                  "active": isinstance(payload, CadreRecorded), "event_at": envelope.occurred_at}
        if isinstance(payload, CadreRecorded):
            values.update(level=payload.level, unit=payload.unit, title=payload.title)
        _write(Cadre, unless_newer(payload.cadre_id, envelope.occurred_at), values)


def apply_selection_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, SelectionChanged):
        # The whole selection, replaced only by a higher revision (a late or repeated one changes nothing).
        _write(Selection, {"_id": payload.selection_id, "revision": {"$not": {"$gte": payload.revision}}}, {
            "school": payload.school, "student_id": payload.student_id, "year": payload.year,
            "revision": payload.revision,
            "rows": selection_rows([o.model_dump(mode="json") for o in payload.outcomes],
                                   [p.model_dump(mode="json") for p in payload.performances])})
    elif isinstance(payload, SelectionLocked):
        # The latest announcement of the lock wins (intake announces it again on every year submission).
        try:
            YearLock._get_collection().update_one(
                unless_newer(f"{payload.school}:{payload.year}", envelope.occurred_at),
                {"$set": {"school": payload.school, "year": payload.year, "students": payload.students,
                          "revisions": payload.revisions, "locked_by": payload.locked_by,
                          "event_at": envelope.occurred_at}}, upsert=True)
        except DuplicateKeyError:
            pass


def apply_window_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, WindowSet):
        try:
            Window._get_collection().update_one(unless_newer(payload.window_id, envelope.occurred_at), {"$set": {
                "school": payload.school, "term": payload.term, "kind": payload.kind, "starts_at": payload.starts_at,
                "ends_at": payload.ends_at, "event_at": envelope.occurred_at}}, upsert=True)
        except DuplicateKeyError:
            pass


def subscriptions(runtime) -> list[Subscription]:
    return [
        user_directory_subscription("exchange", DirectoryUser),  # queue exchange.user-directory
        Subscription(queue="exchange.course-records", event_types=COURSE_EVENTS, handler=apply_course_event),
        Subscription(queue="exchange.cadres", event_types=CADRE_EVENTS, handler=apply_cadre_event),
        Subscription(queue="exchange.selections", event_types=SELECTION_EVENTS, handler=apply_selection_event),
        Subscription(queue="exchange.windows", event_types=["scheduling.window.scheduled.v1"],
                     handler=apply_window_event),
    ]
