"""Records' documents (database ``footprint_records``). Every document carries its school.

Aggregates (emit events through their outbox): Section, Enrolment (its grade included), Cadre (the exchange sends
cadres centrally; a removed one stays as a tombstone so its removal leaves with its write).
Everything else is school-internal data that no other service needs yet.
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone

from mongoengine import (BooleanField, DateTimeField, DictField, Document, EmbeddedDocument, EmbeddedDocumentField,
                         FloatField, IntField, ListField, StringField)

from shared.outbox import Aggregate
from shared.finality import final_periods
from shared.projections import user_directory

ALIAS = "records"

# 學年度 (3 digits) + 0 + 學期 (1|2): 11201 = 112學年度第1學期.
TERM_PATTERN = r"^[0-9]{3}0[12]$"
# 課程代碼: 23 letters or digits, stored exactly as given.
COURSE_CODE_PATTERN = r"^[0-9A-Z]{23}$"
SCHOOL_PATTERN = r"^[0-9]{6}$"
CATEGORIES = ("部定必修", "校訂必修", "加深加廣選修", "補強性選修", "多元選修", "團體活動時間", "彈性學習時間", "其他")
ATTENDANCE_KINDS = ("事假", "病假", "公假", "喪假", "曠課", "遲到")
CADRE_LEVELS = ("school", "class", "club")
ACHIEVEMENT_KINDS = ("competition", "licence")
# The 18 學群 of the university admission guidance (ColleGo!), for career-planning notes.
STUDY_GROUPS = ("資訊", "工程", "數理化", "醫藥衛生", "生命科學", "生物資源", "地球環境", "建築設計", "藝術", "社會心理",
                "大眾傳播", "外語", "文史哲", "教育", "法政", "管理", "財經", "遊憩運動")

# Who identity says a user is (school, roles, class, homeroom), fed by identity.user.* events.
Directory = user_directory(ALIAS)
FinalPeriod = final_periods(ALIAS)  # terms a school made final (shared/finality.py)


def now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return uuid.uuid4().hex


def key_id(*parts: str) -> str:
    """A deterministic id from a natural key: the same record written twice is the same document."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class Term(Document):
    meta = {"db_alias": ALIAS, "collection": "terms", "indexes": ["school"]}
    id = StringField(primary_key=True)  # "<school>:<code>"
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    code = StringField(required=True, regex=TERM_PATTERN)
    year = IntField(required=True)
    semester = IntField(required=True, choices=(1, 2))
    name = StringField(required=True)
    created_by = StringField()
    created_at = DateTimeField(default=now)


class Section(Aggregate):
    """A course section (開課): one course code taught to a class or group in a term."""

    meta = {"db_alias": ALIAS, "collection": "sections", "indexes": [
        {"fields": ["school", "term", "course_code", "section_name"], "unique": True},
        ("school", "teacher_ids"),
    ]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    term = StringField(required=True, regex=TERM_PATTERN)
    course_code = StringField(required=True, regex=COURSE_CODE_PATTERN)
    subject_name = StringField(required=True, min_length=1, max_length=60)
    credits = IntField(required=True, min_value=0, max_value=20)
    category = StringField(required=True, choices=CATEGORIES)
    section_name = StringField(required=True, min_length=1, max_length=40)
    teacher_ids = ListField(StringField(), default=list)
    import_fingerprint = StringField(null=True)
    created_by = StringField()
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)


class Grade(EmbeddedDocument):
    """學業成績 of one enrolment."""

    score = FloatField(null=True, min_value=0, max_value=100)
    passed = BooleanField(required=True)
    credits_earned = IntField(required=True, min_value=0, max_value=20)
    retake = BooleanField(default=False)   # 重修
    makeup = BooleanField(default=False)   # 補考
    recorded_by = StringField()
    recorded_at = DateTimeField(default=now)

    def values(self) -> tuple:
        return (self.score, self.passed, self.credits_earned, self.retake, self.makeup)


class Enrolment(Aggregate):
    """修課: one student in one section."""

    meta = {"db_alias": ALIAS, "collection": "enrolments", "indexes": [
        {"fields": ["section_id", "student_id"], "unique": True},
        ("school", "term", "student_no"),
        ("school", "student_id"),
    ]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    term = StringField(required=True, regex=TERM_PATTERN)
    section_id = StringField(required=True)
    course_code = StringField(required=True, regex=COURSE_CODE_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    status = StringField(required=True, choices=("active", "withdrawn"), default="active")
    grade = EmbeddedDocumentField(Grade, null=True)
    created_by = StringField()
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)
    withdrawn_at = DateTimeField(null=True)


class Cadre(Aggregate):
    """幹部經歷: school, class or club level. ``removed_at`` set: removed (records.cadre.removed.v1), listed nowhere."""

    meta = {"db_alias": ALIAS, "collection": "cadres", "indexes": [("school", "term"), ("school", "student_id")]}
    id = StringField(primary_key=True)  # key_id(school, term, student, level, unit, title)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    term = StringField(required=True, regex=TERM_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    level = StringField(required=True, choices=CADRE_LEVELS)
    unit = StringField(required=True, max_length=60)
    title = StringField(required=True, max_length=60)
    entered_by = StringField()
    created_at = DateTimeField(default=now)
    removed_at = DateTimeField(null=True)


class ClubMembership(Document):
    """社團經歷: one club per student per term, with the role held."""

    meta = {"db_alias": ALIAS, "collection": "club_memberships", "indexes": [("school", "term"), ("school", "student_id")]}
    id = StringField(primary_key=True)  # key_id(school, term, student, club)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    term = StringField(required=True, regex=TERM_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    club = StringField(required=True, max_length=60)
    role = StringField(required=True, max_length=40)
    entered_by = StringField()
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)


class Attendance(Document):
    """出缺勤 summary of one student in one term: counts per kind."""

    meta = {"db_alias": ALIAS, "collection": "attendance", "indexes": [("school", "term"), ("school", "student_id")]}
    id = StringField(primary_key=True)  # key_id(school, term, student)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    term = StringField(required=True, regex=TERM_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    counts = DictField(IntField(min_value=0))
    entered_by = StringField()
    updated_at = DateTimeField(default=now)


class Achievement(Document):
    """In-school competitions (校內競賽) and licences (檢定/證照), entered by the organising unit."""

    meta = {"db_alias": ALIAS, "collection": "achievements", "indexes": [("school", "student_id")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    kind = StringField(required=True, choices=ACHIEVEMENT_KINDS)
    name = StringField(required=True, max_length=100)
    organiser_unit = StringField(required=True, max_length=60)
    level = StringField(required=True, max_length=40)
    result = StringField(required=True, max_length=60)
    date = StringField(required=True, regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    entered_by = StringField()
    entered_role = StringField()  # the organising role that entered it; that role (or the school admin) may delete it
    created_at = DateTimeField(default=now)


class Attachment(EmbeddedDocument):
    file_id = StringField(required=True)
    name = StringField(required=True)
    media_type = StringField(required=True)
    size = IntField(required=True)
    sha256 = StringField(required=True)
    key = StringField(required=True)
    uploaded_by = StringField()
    uploaded_at = DateTimeField(default=now)


class CounsellingRecord(Aggregate):
    """課程諮詢紀錄. Private to the student, its counsellor and the counselling office; never sent centrally.
    An aggregate only so that intake can count them (records.counselling.*: ids, school, term, student; no content)."""

    meta = {"db_alias": ALIAS, "collection": "counselling_records",
            "indexes": [("school", "student_id"), ("school", "counsellor_id")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    date = StringField(required=True, regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    time = StringField(required=True, regex=r"^[0-9]{2}:[0-9]{2}$")
    place = StringField(required=True, max_length=60)
    counsellor_id = StringField(required=True)
    content = StringField(required=True, max_length=4000)
    advice = StringField(max_length=4000, default="")
    attachments = ListField(EmbeddedDocumentField(Attachment), default=list)
    central = BooleanField(default=False)  # always False: 課程諮詢紀錄 stays at school
    created_by = StringField()
    created_at = DateTimeField(default=now)
    updated_at = DateTimeField(default=now)


class CareerNote(Document):
    """學群探索與就業規劃 notes written by the counselling office."""

    meta = {"db_alias": ALIAS, "collection": "career_notes", "indexes": [("school", "student_id")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    student_id = StringField(required=True)
    student_no = StringField(required=True)
    title = StringField(required=True, max_length=100)
    content = StringField(required=True, max_length=4000)
    groups = ListField(StringField(choices=STUDY_GROUPS), default=list)
    central = BooleanField(default=False)
    author_id = StringField(required=True)
    created_at = DateTimeField(default=now)


class ImportJob(Document):
    """A bulk import and its progress; the report is filled in when it is done."""

    meta = {"db_alias": ALIAS, "collection": "import_jobs", "indexes": [("school", "created_at")]}
    id = StringField(primary_key=True, default=new_id)
    school = StringField(required=True, regex=SCHOOL_PATTERN)
    kind = StringField(required=True)
    status = StringField(required=True, choices=("queued", "running", "done", "failed"), default="queued")
    dry_run = BooleanField(default=False)
    file_name = StringField(null=True)
    size = IntField(default=0)
    rows_total = IntField(null=True)
    rows_done = IntField(default=0)
    report = DictField(null=True)
    error = DictField(null=True)
    created_by = StringField()
    created_at = DateTimeField(default=now)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=now)
