"""Certification's documents (database ``footprint_certification``). Every document carries its school.

- ``Certification`` (aggregate, one per course outcome): the state machine and its audit trail; each change
  and the event it causes are one document write (``shared.outbox.save_with_events``).
- ``Substitute``: a substitute certifier (代理人) assigned to an absent teacher for a period.
- ``Section`` and ``DirectoryUser``: projections of records' course sections and identity's users.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, Document, EmbeddedDocument, EmbeddedDocumentField, IntField,
                         ListField, StringField)

from shared.outbox import Aggregate
from shared.finality import final_periods
from shared.projections import user_directory

ALIAS = "certification"
STATES = ("submitted", "certified", "returned")
ACTIONS = ("submitted", "certified", "returned", "kept")
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


class Section(Document):
    """A course section as records announces it (records.section.created/updated.v1)."""

    meta = {"db_alias": ALIAS, "collection": "sections", "indexes": [("school", "teacher_ids"), ("school", "term")]}
    id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    course_code = StringField(required=True)
    subject_name = StringField(required=True)
    section_name = StringField(required=True)
    teacher_ids = ListField(StringField())
    event_at = DateTimeField()


DirectoryUser = user_directory(ALIAS)
FinalPeriod = final_periods(ALIAS)  # school years a school made final (shared/finality.py)


class OutcomeFile(EmbeddedDocument):
    file_id = StringField(required=True)
    name = StringField(required=True)
    sha256 = StringField(required=True, regex=r"^[0-9a-f]{64}$")
    size = IntField(required=True, min_value=0)
    kind = StringField(required=True, choices=("document", "media"))
    media_type = StringField()


class AuditEntry(EmbeddedDocument):
    """One transition: what, who (user id), for whom (substitute), when, from which client address."""

    action = StringField(required=True, choices=ACTIONS)
    actor = StringField(required=True)
    on_behalf_of = StringField(null=True)
    at = DateTimeField(required=True)
    from_address = StringField(db_field="from", null=True)
    submission = IntField(required=True)
    reason = StringField(null=True)
    # for "kept": the certified submission whose identical content this one keeps
    kept_from_outcome_id = StringField(null=True)
    kept_from_submission = IntField(null=True)


class Certification(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "certifications", "indexes": [
        ("school", "section_id", "state"),
        ("school", "student_id", "section_id", "state", "content_key"),
    ]}
    id = StringField(primary_key=True)  # the outcome id (intake's)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    term = StringField(required=True)
    section_id = StringField(required=True)
    course_code = StringField(required=True)
    student_id = StringField(required=True)
    brief = StringField(default="")
    files = ListField(EmbeddedDocumentField(OutcomeFile), default=list)
    # sha256 over the sorted set of the files' sha256s: identical content has the same key
    content_key = StringField(required=True)
    submission = IntField(required=True, min_value=1)
    submitted_by = StringField(required=True)
    submitted_at = DateTimeField(required=True)
    state = StringField(required=True, choices=STATES)
    reason = StringField(null=True, max_length=200)
    decided_by = StringField(null=True)
    on_behalf_of = StringField(null=True)
    decided_at = DateTimeField(null=True)
    kept_from_identical_content = BooleanField(default=False)
    audit = ListField(EmbeddedDocumentField(AuditEntry), default=list)

    @property
    def outcome_id(self) -> str:
        return self.id


class Substitute(Aggregate):
    """代理人: ``substitute_id`` certifies for ``teacher_id`` from ``starts_on`` to ``ends_on`` (dates, Taiwan time)."""

    meta = {"db_alias": ALIAS, "collection": "substitutes",
            "indexes": [("school", "substitute_id"), ("school", "teacher_id")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True)
    teacher_id = StringField(required=True)
    substitute_id = StringField(required=True)
    starts_on = StringField(required=True, regex=DATE)
    ends_on = StringField(required=True, regex=DATE)
    created_by = StringField(required=True)
    created_at = DateTimeField(default=now)
    deleted_by = StringField(null=True)
    deleted_at = DateTimeField(null=True)
