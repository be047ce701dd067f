"""Intake's documents (database ``footprint_intake``). Every document carries its school.

Aggregates (with outboxes): Outcome (課程學習成果), Performance (多元表現) and Selection (勾選, a student's
selected items of one school year). Local read models fed by
events, so intake never calls another service synchronously: the school's upload Policy (its own switch and
limits, set here by the school admin), Window (the upload windows scheduling announces), Section and
Enrolment (from records) and the user directory (from identity).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, DictField, Document, EmbeddedDocument, EmbeddedDocumentField,
                         FloatField, IntField, ListField, StringField)

from shared.outbox import Aggregate
from shared.finality import final_periods
from shared.projections import user_directory

ALIAS = "intake"

MiB = 1024 * 1024
DOCUMENT_LIMIT_MAX = 4 * MiB
MEDIA_LIMIT_MAX = 10 * MiB
MAX_FILES = 5          # per item
MAX_LINKS = 5          # external links per performance
BRIEF_MAX = 100        # characters
# 學年度 (3 digits) + 學期: "11201" as documented, or "1121" as shared.events.SectionFacts' pattern has it today.
TERM_PATTERN = r"^[0-9]{3}0?[12]$"

OUTCOME_STATUSES = ("draft", "submitted", "certified", "returned")
EDITABLE = ("draft", "returned")
# What a student may select (勾選) per school year, nationally; a school may set lower caps.
NATIONAL_SELECTION_CAPS = {"outcomes": 6, "performances": 10}
PERFORMANCE_CATEGORIES = ("competition", "licence", "service_learning", "group_activity", "flexible_learning",
                          "workplace_learning", "other")


def now() -> datetime:
    """UTC now at millisecond precision, as MongoDB keeps it (a response equals what a later read returns)."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


class Policy(Document):
    """A school's upload rules. Defaults apply until the school admin saves its own."""

    meta = {"db_alias": ALIAS, "collection": "policies"}
    school = StringField(primary_key=True, regex=r"^[0-9]{6}$")
    document_limit = IntField(default=DOCUMENT_LIMIT_MAX, min_value=1, max_value=DOCUMENT_LIMIT_MAX)
    media_limit = IntField(default=MEDIA_LIMIT_MAX, min_value=1, max_value=MEDIA_LIMIT_MAX)
    outcome_cap_per_term = IntField(default=6, min_value=1)
    performance_cap_per_year = IntField(default=10, min_value=1)
    outcome_selection_cap = IntField(default=NATIONAL_SELECTION_CAPS["outcomes"], min_value=1,
                                     max_value=NATIONAL_SELECTION_CAPS["outcomes"])
    performance_selection_cap = IntField(default=NATIONAL_SELECTION_CAPS["performances"], min_value=1,
                                         max_value=NATIONAL_SELECTION_CAPS["performances"])
    uploads_open = BooleanField(default=True)
    updated_at = DateTimeField(null=True)
    updated_by = StringField(null=True)

    @classmethod
    def of(cls, school: str) -> "Policy":
        return cls.objects(school=school).first() or cls(school=school)


class FileRecord(EmbeddedDocument):
    """A stored, verified file. ``storage_key`` is never shown to users; ``file_id`` is how they name it."""

    file_id = StringField(required=True)
    upload_key = StringField(required=True)
    storage_key = StringField(required=True)
    name = StringField(required=True, max_length=220)
    kind = StringField(required=True, choices=("document", "media"))
    media_type = StringField(required=True)
    size = IntField(required=True, min_value=1)
    sha256 = StringField(required=True, regex=r"^[0-9a-f]{64}$")
    uploaded_at = DateTimeField(required=True)
    uploaded_by = StringField(required=True)
    # The submission that first carried this file: such a file is evidence and is never deleted from the store.
    submitted_in = IntField(null=True)
    removed_at = DateTimeField(null=True)


class Item(Aggregate):
    """What outcomes and performances share: owner, files, soft deletion."""

    meta = {"abstract": True}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    student_id = StringField(required=True)
    brief = StringField(default="", max_length=BRIEF_MAX)
    files = ListField(EmbeddedDocumentField(FileRecord), default=list)
    # Files removed after they were part of a submission: kept (and downloadable by the item's viewers) as evidence.
    retired_files = ListField(EmbeddedDocumentField(FileRecord), default=list)
    deleted_at = DateTimeField(null=True)
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)

    def file(self, file_id: str, *, retired: bool = True) -> FileRecord | None:
        for record in list(self.files) + (list(self.retired_files) if retired else []):
            if record.file_id == file_id:
                return record
        return None

    def file_by_upload_key(self, upload_key: str) -> FileRecord | None:
        return next((f for f in self.files if f.upload_key == upload_key), None)


class Outcome(Item):
    """課程學習成果: one student's work for one of their course sections in one term."""

    meta = {"db_alias": ALIAS, "collection": "outcomes", "indexes": [
        ("school", "student_id", "term"), ("school", "section_id"), ("school", "updated_at"), "files.file_id",
        "retired_files.file_id"]}
    term = StringField(required=True, regex=TERM_PATTERN)
    section_id = StringField(required=True)
    enrolment_id = StringField(required=True)
    course_code = StringField(required=True)
    subject_name = StringField(default="")
    status = StringField(default="draft", choices=OUTCOME_STATUSES)
    submission = IntField(default=0)  # number of the latest submission; 0 until first submitted
    submitted_at = DateTimeField(null=True)
    submitted_by = StringField(null=True)
    submitted_from = StringField(null=True)
    certified_at = DateTimeField(null=True)
    certified_by = StringField(null=True)
    returned_at = DateTimeField(null=True)
    returned_by = StringField(null=True)
    return_reason = StringField(null=True)

    @property
    def editable(self) -> bool:
        return self.status in EDITABLE


class Performance(Item):
    """多元表現: a competition, licence, service learning, … with proof files and links, per school year."""

    meta = {"db_alias": ALIAS, "collection": "performances", "indexes": [
        ("school", "student_id", "year"), ("school", "updated_at"), "files.file_id", "retired_files.file_id"]}
    year = StringField(required=True, regex=r"^[0-9]{3}$")  # 學年度
    term = StringField(null=True, regex=TERM_PATTERN)
    category = StringField(required=True, choices=PERFORMANCE_CATEGORIES)
    name = StringField(required=True, max_length=100)
    organiser = StringField(default="", max_length=100)
    start_date = StringField(required=True, regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    end_date = StringField(required=True, regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    hours = FloatField(default=0, min_value=0, max_value=2000)
    result = StringField(default="", max_length=100)
    links = ListField(StringField(max_length=2048), default=list)
    status = StringField(default="draft", choices=("draft",))  # selection (勾選) for submission comes later

    @property
    def editable(self) -> bool:
        return self.status == "draft"


class Selection(Aggregate):
    """A student's 勾選 for one school year (``_id`` = <school>:<student_id>:<year>): which certified outcomes and
    which performances go to the central database. Replaced whole on each change (``revision`` +1, announced
    with intake.selection.changed.v1 in the same write); locked for good once the year is submitted."""

    meta = {"db_alias": ALIAS, "collection": "selections", "indexes": [("school", "year"), "performance_ids"]}
    id = StringField(primary_key=True)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    student_id = StringField(required=True)
    year = StringField(required=True, regex=r"^[0-9]{3}$")
    outcome_ids = ListField(StringField(), default=list)
    performance_ids = ListField(StringField(), default=list)
    revision = IntField(default=0)  # 0: a reservation before the first save (domain.put_selection), no selection yet
    updated_at = DateTimeField(null=True)
    updated_by = StringField(null=True)
    locked_at = DateTimeField(null=True)
    locked_by = StringField(null=True)

    @staticmethod
    def key(school: str, student_id: str, year: str) -> str:
        return f"{school}:{student_id}:{year}"

    @classmethod
    def saved(cls, **filters):
        """Selections a student saved (revision 1 or more): not the empty reservations put_selection makes first."""
        return cls.objects(revision__gte=1, **filters)


class YearLock(Aggregate):
    """A school year whose selections are locked (``_id`` = <school>:<year>): a selection after the lock (by a
    student who had none yet, too) is refused. Inserted first, announced (intake.selection.locked.v1) once every
    selection of the year is marked; see domain.lock_selections."""

    meta = {"db_alias": ALIAS, "collection": "year_locks"}
    id = StringField(primary_key=True)
    school = StringField(required=True)
    year = StringField(required=True)
    locked_at = DateTimeField(required=True)
    locked_by = StringField(required=True)
    announced_at = DateTimeField(null=True)  # None: a lock that stopped before announcing; the next call announces


class DirectUpload(Document):
    """A direct-to-store upload (presigned PUT) until intake has verified it: nothing of it is visible on the
    item. ``pending`` → ``completed`` (its FileRecord is on the item, same storage key) or ``failed`` (the
    object was deleted; a repeated complete gives the same answer) or ``expired`` (never completed: the sweep
    deleted whatever was stored). ``swept_at``: the sweep looked at it after its link could no longer be used."""

    meta = {"db_alias": ALIAS, "collection": "direct_uploads",
            "indexes": [("swept_at", "expires_at"), ("item_id", "state")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=r"^[0-9]{6}$")
    student_id = StringField(required=True)
    item_type = StringField(required=True, choices=("outcome", "performance"))
    item_id = StringField(required=True)
    upload_key = StringField(required=True)
    name = StringField(required=True, max_length=220)
    kind = StringField(required=True, choices=("document", "media"))
    size = IntField(required=True, min_value=1)
    sha256 = StringField(required=True, regex=r"^[0-9a-f]{64}$")
    storage_key = StringField(required=True)
    state = StringField(default="pending", choices=("pending", "completed", "failed", "expired"))
    failure_code = StringField(null=True)
    failure_detail = StringField(null=True)
    file_id = StringField(null=True)
    created_at = DateTimeField(default=now)
    expires_at = DateTimeField(required=True)   # the presigned PUT is refused by the store after this
    completed_at = DateTimeField(null=True)
    swept_at = DateTimeField(null=True)


# ---- projections of other services' facts -------------------------------------------------------------------

class Section(Document):
    """A course section as records announces it (records.section.*): who teaches it certifies its outcomes."""

    meta = {"db_alias": ALIAS, "collection": "sections", "indexes": [("school", "teacher_ids"), ("school", "term")]}
    section_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    course_code = StringField(required=True)
    subject_name = StringField(default="")
    teacher_ids = ListField(StringField(), default=list)
    event_at = DateTimeField()


class Substitution(Document):
    """代理人 as certification announces it (certification.substitute.*): the substitute may open what the
    absent teacher may, on the assignment's dates (Taiwan time)."""

    meta = {"db_alias": ALIAS, "collection": "substitutions", "indexes": [("school", "substitute_id")]}
    assignment_id = StringField(primary_key=True)
    school = StringField(required=True)
    teacher_id = StringField(required=True)
    substitute_id = StringField(required=True)
    starts_on = StringField(required=True)
    ends_on = StringField(required=True)
    removed = BooleanField(default=False)


class Enrolment(Document):
    """A student's enrolment in a section (records.enrolment.*)."""

    # Every equality a hot query makes is in one index (starting an outcome asks school, student, section and
    # active): a store's planner then never has to choose between an index and a scan (SecantusDB scans).
    meta = {"db_alias": ALIAS, "collection": "enrolments",
            "indexes": [("school", "student_id", "section_id", "active"), ("school", "section_id")]}
    enrolment_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    section_id = StringField(required=True)
    student_id = StringField(required=True)
    course_code = StringField(null=True)
    active = BooleanField(default=True)
    event_at = DateTimeField()


class Window(Document):
    """An upload window as scheduling announces it (scheduling.window.scheduled.v1; ``_id`` = <school>:<term>:<kind>):
    open from ``starts_at`` (inclusive) to ``ends_at`` (exclusive). No window known: uploads are not restricted."""

    meta = {"db_alias": ALIAS, "collection": "windows"}
    window_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    kind = StringField(required=True)
    starts_at = DateTimeField(required=True)
    ends_at = DateTimeField(required=True)
    revision = IntField(default=1)
    event_at = DateTimeField()


class School(Document):
    """A school as identity announces it (identity.school.*): the city's statistics list its schools by it."""

    meta = {"db_alias": ALIAS, "collection": "schools", "indexes": ["city"]}
    code = StringField(primary_key=True)
    name = StringField(default="")
    city = StringField(required=True)
    active = BooleanField(default=True)
    event_at = DateTimeField()


class Progress(Document):
    """What the statistics count of one student in one period (``_id`` = <school>:<student_id>:<period>), kept by
    reports.refresh: a term (``11201``: its outcomes, the performances recorded with that term) or a school year
    (``112``: all its performances). Always recomputed from the student's items, never incremented, so a repeated
    refresh cannot drift. ``*_days``: files uploaded per Taiwan date."""

    meta = {"db_alias": ALIAS, "collection": "progress", "indexes": [("school", "period"), ("school", "student_id")]}
    id = StringField(primary_key=True)
    school = StringField(required=True)
    student_id = StringField(required=True)
    period = StringField(required=True)
    outcomes = IntField(default=0)        # live outcomes with at least one file
    certified = IntField(default=0)
    performances = IntField(default=0)    # live performances
    outcome_days = DictField()
    performance_days = DictField()


class ProgressMark(Document):
    """How far reports.refresh has looked at a school's items (their ``updated_at``)."""

    meta = {"db_alias": ALIAS, "collection": "progress_marks"}
    school = StringField(primary_key=True)
    refreshed_to = DateTimeField(required=True)


class CounsellingEntry(Document):
    """A 課程諮詢紀錄 as records announces it (records.counselling.*): whose and which term, never its content; the
    statistics count those not removed."""

    meta = {"db_alias": ALIAS, "collection": "counselling_records", "indexes": [("school", "term")]}
    record_id = StringField(primary_key=True)
    school = StringField(required=True)
    term = StringField(required=True)
    student_id = StringField(required=True)
    removed = BooleanField(default=False)
    event_at = DateTimeField()


Directory = user_directory(ALIAS)
FinalPeriod = final_periods(ALIAS)  # school years a school made final (shared/finality.py)
