"""Scheduling's documents (database ``footprint_scheduling``). Every document carries its school.

- ``Schedule`` (aggregate, one per school and term): the term's windows; every change and the
  ``scheduling.window.scheduled.v1`` events it causes are one document write (``shared.outbox.save_with_events``).
- ``Edge`` (aggregate, one per window edge: opened, closing, closed): inserted once with its event by the
  edge job; the unique ``_id`` is the claim, so of two job runners racing only one inserts it.
- ``Notification``: a user's reminders (e.g. 成果上傳 closes in 3 days and nothing of yours was sent).
- ``Enrolment``, ``Submission`` and ``DirectoryUser``: projections of records' enrolments, intake's outcome
  submissions and identity's users, to know whom a reminder is for.
"""
from __future__ import annotations

from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, DictField, Document, EmbeddedDocument, EmbeddedDocumentField,
                         IntField, ListField, StringField)

from shared.events import WINDOW_NAMES
from shared.outbox import Aggregate
from shared.projections import user_directory

ALIAS = "scheduling"
KINDS = tuple(WINDOW_NAMES)
EDGES = ("opened", "closing", "closed")


def now() -> datetime:
    """UTC now at millisecond precision, as MongoDB keeps it."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Window(EmbeddedDocument):
    kind = StringField(required=True, choices=KINDS)
    starts_at = DateTimeField(required=True)
    ends_at = DateTimeField(required=True)
    revision = IntField(default=1, min_value=1)
    updated_at = DateTimeField(required=True)
    updated_by = StringField(required=True)


class Schedule(Aggregate):
    """A school's windows for one term (``_id`` = ``<school>:<term>``)."""

    meta = {"db_alias": ALIAS, "collection": "schedules",
            "indexes": [("school", "term"), ("active_until", "active_from")]}
    id = StringField(primary_key=True)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    term = StringField(required=True, regex=r"^[0-9]{3}0[12]$")
    city = StringField(required=True)
    windows = ListField(EmbeddedDocumentField(Window), default=list)
    # earliest start and latest end of its windows: the edge job looks only at schedules still to act on
    active_from = DateTimeField(required=True)
    active_until = DateTimeField(required=True)
    created_at = DateTimeField(required=True)
    created_by = StringField(required=True)
    updated_at = DateTimeField(required=True)

    def window(self, kind: str) -> Window | None:
        return next((w for w in self.windows if w.kind == kind), None)


class Edge(Aggregate):
    """One edge of one window that was announced: its ``_id`` names the window, the edge and its moment."""

    meta = {"db_alias": ALIAS, "collection": "edges", "indexes": [("school", "term")]}
    id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    kind = StringField(required=True, choices=KINDS)
    edge = StringField(required=True, choices=EDGES)
    at = DateTimeField(required=True)          # when the edge was due
    starts_at = DateTimeField(required=True)   # the window as it was then
    ends_at = DateTimeField(required=True)
    revision = IntField(required=True)
    claimed_at = DateTimeField(required=True)
    claimed_by = StringField(required=True)


class Notification(Document):
    """A reminder for one user. ``_id`` is derived from what caused it, so a repeated cause adds nothing."""

    meta = {"db_alias": ALIAS, "collection": "notifications", "indexes": [("user_id", "-created_at")]}
    id = StringField(primary_key=True)
    school = StringField(required=True)
    user_id = StringField(required=True)
    topic = StringField(required=True)  # what it is about, e.g. window_closing
    term = StringField(required=True)
    window_kind = StringField(required=True, choices=KINDS)
    starts_at = DateTimeField(required=True)
    ends_at = DateTimeField(required=True)
    title = DictField()    # {"zh-TW": …, "en": …}
    message = DictField()  # {"zh-TW": …, "en": …}
    created_at = DateTimeField(required=True)
    read_at = DateTimeField(null=True)


# ---- projections of other services' facts -------------------------------------------------------------------

class Enrolment(Document):
    """A student's enrolment in a section of a term (records.enrolment.*)."""

    meta = {"db_alias": ALIAS, "collection": "enrolments", "indexes": [("school", "term", "active")]}
    enrolment_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    student_id = StringField(required=True)
    active = BooleanField(default=True)
    event_at = DateTimeField()


class Submission(Document):
    """A course outcome a student sent for certification (intake.outcome.submitted.v1)."""

    meta = {"db_alias": ALIAS, "collection": "submissions", "indexes": [("school", "term")]}
    outcome_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    student_id = StringField(required=True)


DirectoryUser = user_directory(ALIAS)
