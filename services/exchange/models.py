"""The exchange's documents (database ``footprint_exchange``). Every document carries its school.

Its own:
- ``Submission`` (aggregate, one per school and scope and period: ``<school>-term-<term>`` or
  ``<school>-year-<year>``): state, audit trail; ``exchange.submission.requested.v1`` and
  ``exchange.submission.finalized.v1`` leave with the write that causes them.
- ``Package`` (one per version of a submission, ``_id`` = the package id of shared/central.py): a small header
  — state, counts, the body's media key and sha256, send attempts, the claim of the worker at it, the receipt's
  key. The body (every student's rows and every file's sha256) lives in the media store: 3,000 students × 16
  selected rows with their files do not fit MongoDB's 16 MB document, and an immutable package is exactly what
  an object store keeps well; its sha256 is checked on every read.
- ``ReceiptStudent``: one student's 收訖明細 of one package (the four kinds), so a student reads only their own
  rows through an index and a dispute names a row that exists.
- ``Dispute`` (疑義): on one receipt row, by a student, staff or the platform itself (sha256 mismatch).
- ``Confirmation`` (收訖明細確認): a student's of their latest receipt (by themself, or by staff on their behalf),
  or the school's of the latest received version; one per student (or the school) and version.

Projections of other services' facts (fed by consumers, each row with a ``rev`` that every applied write
increments — the build's snapshot check compares them): students (user directory), sections, course records
(enrolments with their grades), cadres, selections, year locks, windows.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, DictField, Document, EmbeddedDocument, EmbeddedDocumentField,
                         FloatField, IntField, ListField, StringField)

from shared.outbox import Aggregate
from shared.projections import user_directory

ALIAS = "exchange"
SCOPES = ("term", "year")
PACKAGE_STATES = ("waiting", "building", "ready", "received", "failed")
DISPUTE_STATES = ("open", "correcting", "resolved", "rejected")


def now() -> datetime:
    """UTC now at millisecond precision, as MongoDB keeps it."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class AuditEntry(EmbeddedDocument):
    at = DateTimeField(required=True)
    by = StringField(required=True)   # a user id, or "platform"
    source = StringField(default="")  # the client address as the gateway saw it
    action = StringField(required=True)
    detail = DictField()


class Submission(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "submissions", "indexes": [("school", "-created_at")]}
    id = StringField(primary_key=True)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    scope = StringField(required=True, choices=SCOPES)
    term = StringField(required=True, regex=r"^[0-9]{3}0[12]$")
    year = StringField(required=True, regex=r"^[0-9]{3}$")
    state = StringField(required=True, choices=("open", "final"), default="open")
    latest_version = IntField(default=1)
    created_at = DateTimeField(required=True)
    created_by = StringField(required=True)
    finalized_at = DateTimeField(null=True)
    finalized_by = StringField(null=True)
    audit = ListField(EmbeddedDocumentField(AuditEntry), default=list)


class Package(Document):
    meta = {"db_alias": ALIAS, "collection": "packages",
            "indexes": [("submission_id", "version"), ("state", "next_attempt_at")]}
    id = StringField(primary_key=True)  # shared.central.package_id(school, term, scope, version)
    submission_id = StringField(required=True)
    school = StringField(required=True)
    scope = StringField(required=True, choices=SCOPES)
    term = StringField(required=True)
    year = StringField(required=True)
    version = IntField(required=True, min_value=1)
    corrects_version = IntField(null=True)
    answers_disputes = ListField(StringField(), default=list)  # the disputes a correction was built for
    state = StringField(required=True, choices=PACKAGE_STATES)
    requested_at = DateTimeField(required=True)
    requested_by = StringField(required=True)
    trace = DictField()  # the request's trace context: building and sending continue that trace
    # the body, once built (immutable from then on)
    built_at = DateTimeField(null=True)
    package_sha256 = StringField(null=True)
    body_key = StringField(null=True)
    body_sha256 = StringField(null=True)
    body_size = IntField(null=True)
    students = IntField(default=0)
    rows = DictField()  # kind -> how many rows
    # sending
    attempts = IntField(default=0)
    next_attempt_at = DateTimeField(null=True)
    claimed_by = StringField(null=True)
    claimed_until = DateTimeField(null=True)
    last_error = StringField(null=True)
    received_at = DateTimeField(null=True)
    receipt_id = StringField(null=True)
    receipt_key = StringField(null=True)
    receipt_sha256 = StringField(null=True)
    rejected_rows = IntField(default=0)
    mismatches = IntField(default=0)


class ReceiptStudent(Document):
    meta = {"db_alias": ALIAS, "collection": "receipt_students",
            "indexes": [("submission_id", "student_id", "version")]}
    id = StringField(primary_key=True)  # <package_id>:<student_id>
    package_id = StringField(required=True)
    submission_id = StringField(required=True)
    school = StringField(required=True)
    version = IntField(required=True)
    student_id = StringField(required=True)
    # kind -> {received, rejected, rows: [{key, status, reason, sha256}]} or null, as the central side sent it (JSON)
    receipt_json = StringField(required=True)

    def kinds(self) -> dict:
        return json.loads(self.receipt_json)


class Resolution(EmbeddedDocument):
    at = DateTimeField(required=True)
    by = StringField(required=True)
    source = StringField(default="")
    reason = StringField(default="")
    corrected_in_version = IntField(null=True)


class Dispute(Document):
    meta = {"db_alias": ALIAS, "collection": "disputes",
            "indexes": [("submission_id", "state"), ("submission_id", "student_id")]}
    id = StringField(primary_key=True)  # a uuid; platform-raised: platform:<package>:<student>:<kind>:<key>
    school = StringField(required=True)
    submission_id = StringField(required=True)
    version = IntField(required=True)  # the receipt (package version) the row was disputed on
    student_id = StringField(required=True)
    kind = StringField(required=True)
    row_key = StringField(required=True)
    reason = StringField(required=True)
    raised_by = StringField(required=True)  # a user id, or "platform"
    raised_from = StringField(default="")
    raised_at = DateTimeField(required=True)
    by_platform = BooleanField(default=False)
    detail = DictField()
    state = StringField(required=True, choices=DISPUTE_STATES, default="open")
    correction_version = IntField(null=True)
    resolution = EmbeddedDocumentField(Resolution, null=True)


class Confirmation(Document):
    meta = {"db_alias": ALIAS, "collection": "confirmations", "indexes": [("submission_id", "student_id", "version")]}
    id = StringField(primary_key=True)  # <submission>:student:<student id>:<version>, or <submission>:school:<version>
    school = StringField(required=True)
    submission_id = StringField(required=True)
    version = IntField(required=True)
    student_id = StringField(null=True)  # None: the school's confirmation
    by = StringField(required=True)  # the user who confirmed
    on_behalf = BooleanField(default=False)  # staff confirmed a student's receipt for them
    at = DateTimeField(required=True)
    source = StringField(default="")  # the client address as the gateway saw it


# ---- projections of other services' facts -------------------------------------------------------------------

class Section(Document):
    meta = {"db_alias": ALIAS, "collection": "sections", "indexes": [("school", "term")]}
    section_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    course_code = StringField()
    subject_name = StringField()
    credits = IntField()
    event_at = DateTimeField()
    rev = IntField(default=0)


class CourseRecord(Document):
    """An enrolment (records.enrolment.*) with its grade (records.grade.recorded.v1); each part keeps the time
    of the event that last wrote it, so neither an older enrolment event nor an older grade overwrites."""

    meta = {"db_alias": ALIAS, "collection": "course_records", "indexes": [("school", "term")]}
    enrolment_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    section_id = StringField()
    student_id = StringField()
    active = BooleanField(default=True)
    event_at = DateTimeField()
    score = FloatField(null=True)
    passed = BooleanField(null=True)
    credits_earned = IntField(null=True)
    grade_at = DateTimeField(null=True)
    rev = IntField(default=0)


class Cadre(Document):
    meta = {"db_alias": ALIAS, "collection": "cadres", "indexes": [("school", "term")]}
    cadre_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    student_id = StringField()
    level = StringField()
    unit = StringField()
    title = StringField()
    active = BooleanField(default=True)
    event_at = DateTimeField()
    rev = IntField(default=0)


class Selection(Document):
    """A student's 勾選 of a school year as intake announced it whole (the highest revision wins), kept as the rows it
    becomes in a package: made once when it arrives, so a build of thousands of students only joins them."""

    meta = {"db_alias": ALIAS, "collection": "selections", "indexes": [("school", "year")]}
    selection_id = StringField(primary_key=True)
    school = StringField(required=True)
    student_id = StringField(required=True)
    year = StringField(required=True)
    revision = IntField(required=True)
    rows = DictField()  # kind -> {count, text}: the selected items as central rows, canonical JSON (build.selection_rows)
    rev = IntField(default=0)


class YearLock(Document):
    """intake.selection.locked.v1: how many selections the year has and their revisions' sum when it was locked."""

    meta = {"db_alias": ALIAS, "collection": "year_locks"}
    id = StringField(primary_key=True)  # <school>:<year>
    school = StringField(required=True)
    year = StringField(required=True)
    students = IntField(required=True)
    revisions = IntField(null=True)
    locked_by = StringField()
    event_at = DateTimeField()


class Window(Document):
    """A school's window as scheduling last set it (scheduling.window.scheduled.v1)."""

    meta = {"db_alias": ALIAS, "collection": "windows", "indexes": [("school", "term", "kind")]}
    window_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    kind = StringField(required=True)
    starts_at = DateTimeField(required=True)
    ends_at = DateTimeField(required=True)
    event_at = DateTimeField()


DirectoryUser = user_directory(ALIAS)
