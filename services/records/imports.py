"""Bulk import of sections, enrolments, grades, cadres, clubs and attendance from CSV/XLSX, as background jobs.

Rules (as identity's imports): every row is checked on its own and reported with its spreadsheet row
number; a rejected row writes nothing; accepted rows are written even when others are rejected; importing
the same file again changes nothing and emits no events (a row whose values equal what is stored is
"unchanged"; sections also keep the fingerprint of the row that last wrote them). Headers may be Chinese
or English; CSV may be UTF-8 (with or without BOM) or Big5/CP950 as Excel saves it; XLSX is read with
openpyxl in read-only mode.

Progress: the upload is spooled (≤ 20 MiB) and an ImportJob (queued → running → done|failed, rows_total,
rows_done, report) is processed by a background thread; ``?wait=true`` processes it in the request.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import IO, Callable

from mongoengine.errors import NotUniqueError
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.auth import Principal
from shared.errors import DomainError, field_error, problem
from shared.finality import is_final
from shared.spreadsheets import NumericCell, read_rows
from shared.outbox import insert_with_events, save_with_events
from shared.tracing import span

from . import events
from .domain import WRITERS, enrolment_problem, grade_problems, seal
from .models import FinalPeriod
from .models import (ATTENDANCE_KINDS, CADRE_LEVELS, CATEGORIES, COURSE_CODE_PATTERN, TERM_PATTERN, Attendance, Cadre,
                     ClubMembership, Directory, Enrolment, Grade, ImportJob, Section, Term, key_id, now)

log = logging.getLogger("footprint.records.imports")

MAX_ROWS = 100_000
MAX_REPORTED_ROWS = 1000
PROGRESS_EVERY = 200
STALE_AFTER = timedelta(minutes=15)

KINDS = ("sections", "enrolments", "grades", "cadres", "clubs", "attendance")
IMPORT_WRITERS = {"sections": WRITERS["sections"], "enrolments": WRITERS["enrolments"], "grades": WRITERS["grades"],
                  "cadres": WRITERS["cadres"], "clubs": WRITERS["clubs"], "attendance": WRITERS["attendance"]}

_COMMON = {"學期": "term", "學年期": "term", "學年學期": "term", "term": "term", "學號": "student_no",
           "student_no": "student_no", "姓名": "name", "name": "name"}
_SECTION_REF = {"課程代碼": "course_code", "course_code": "course_code", "開課班級": "section_name", "班群": "section_name",
                "section_name": "section_name", "section": "section_name"}
COLUMNS = {
    "sections": {**_COMMON, **_SECTION_REF, "科目名稱": "subject_name", "科目": "subject_name", "subject_name": "subject_name",
                 "subject": "subject_name", "學分數": "credits", "學分": "credits", "credits": "credits",
                 "課程類別": "category", "類別": "category", "category": "category", "班級": "section_name",
                 "授課教師": "teachers", "授課教師帳號": "teachers", "教師帳號": "teachers", "teachers": "teachers",
                 "teacher": "teachers"},
    "enrolments": {**_COMMON, **_SECTION_REF},
    "grades": {**_COMMON, **_SECTION_REF, "成績": "score", "學期成績": "score", "score": "score", "及格": "passed",
               "是否及格": "passed", "passed": "passed", "實得學分": "credits_earned", "取得學分": "credits_earned",
               "credits_earned": "credits_earned", "重修": "retake", "retake": "retake", "補考": "makeup", "makeup": "makeup"},
    "cadres": {**_COMMON, "幹部層級": "level", "層級": "level", "level": "level", "單位": "unit", "unit": "unit",
               "職稱": "title", "幹部名稱": "title", "title": "title"},
    "clubs": {**_COMMON, "社團名稱": "club", "社團": "club", "club": "club", "職務": "role", "擔任職務": "role",
              "角色": "role", "role": "role"},
    "attendance": {**_COMMON, **{k: k for k in ATTENDANCE_KINDS}, "personal_leave": "事假", "sick_leave": "病假",
                   "official_leave": "公假", "funeral_leave": "喪假", "absent": "曠課", "absence": "曠課", "late": "遲到"},
}
REQUIRED = {
    "sections": {"term", "course_code", "subject_name", "credits", "category", "section_name"},
    "enrolments": {"term", "student_no", "course_code"},
    "grades": {"term", "student_no", "course_code", "score"},
    "cadres": {"term", "student_no", "level", "unit", "title"},
    "clubs": {"term", "student_no", "club"},
    "attendance": {"term", "student_no"},
}
LEVEL_NAMES = {"校級": "school", "全校": "school", "班級": "class", "社團": "club", "school": "school", "class": "class",
               "club": "club"}
YES = {"是", "y", "yes", "true", "1", "v", "✓", "及格", "通過"}
NO = {"否", "n", "no", "false", "0", "", "不及格", "未通過"}


@dataclass
class Row:
    number: int
    values: dict
    errors: list = field(default_factory=list)
    action: str | None = None  # created | updated | unchanged

    def error(self, column: str, code: str, en: str, zh: str) -> None:
        self.errors.append(field_error(column, code, en, zh))


# ---- reading files -----------------------------------------------------------------------------------------

def _columns(kind: str, header: list[str]) -> list[str | None]:
    mapping = COLUMNS[kind]
    names = []
    for cell in header:
        name = str(cell).strip().lstrip("\ufeff").strip()
        names.append(mapping.get(name.lower() if name.isascii() else name))
    return names


def _missing(kind: str, columns: list, default_term: str | None) -> list[str]:
    missing = REQUIRED[kind] - set(columns) - ({"term"} if default_term else set())
    if kind == "attendance" and not set(ATTENDANCE_KINDS) & set(columns):
        missing.add("事假|病假|公假|喪假|曠課|遲到")
    return sorted(missing)


def check_header(kind: str, stream: IO[bytes], default_term: str | None) -> None:
    """Fail fast (before a job is queued) on an unreadable file or missing columns."""
    rows = read_rows(stream)
    try:
        header = next(rows, None)
    finally:
        rows.close()
        stream.seek(0)
    if not header or not any(str(c).strip() for c in header):
        raise DomainError("invalid_import_file", "the file is empty")
    missing = _missing(kind, _columns(kind, header), default_term)
    if missing:
        raise DomainError("invalid_import_file", f"missing columns: {missing}", errors=[
            field_error(m, "missing_column", f"column {m} is missing", f"缺少欄位 {m}") for m in missing])


def parse(kind: str, stream: IO[bytes], default_term: str | None) -> list[Row]:
    rows = read_rows(stream)
    header = next(rows, None)
    if not header:
        raise DomainError("invalid_import_file", "the file is empty")
    columns = _columns(kind, header)
    missing = _missing(kind, columns, default_term)
    if missing:
        raise DomainError("invalid_import_file", f"missing columns: {missing}")
    result = []
    for number, values in enumerate(rows, start=2):
        if not any(str(v).strip() for v in values):
            continue
        if len(result) >= MAX_ROWS:
            raise DomainError("payload_too_large", f"at most {MAX_ROWS} rows per file")
        cells = {}
        for column, value in zip(columns, values):
            if column and column not in cells:
                stripped = value.strip()
                if isinstance(value, NumericCell):
                    stripped = NumericCell(stripped)
                    stripped.digits = value.digits
                cells[column] = stripped
        if default_term and not cells.get("term"):
            cells["term"] = default_term
        result.append(Row(number, cells))
    return result


# ---- row checks ------------------------------------------------------------------------------------------

def _required(row: Row, names) -> bool:
    ok = True
    for name in names:
        if not row.values.get(name):
            row.error(name, "required", f"{name} is required", f"{name} 為必填")
            ok = False
    return ok


def _term(row: Row, terms: set[str], *, must_exist: bool) -> None:
    term = row.values.get("term", "")
    if term and (not re.fullmatch(TERM_PATTERN, term) or term[:3] == "000"):
        row.error("term", "invalid_term", "term like 11201 (學年度 + 0 + 學期)", "學期代碼格式錯誤（例：11201）")
    elif term and must_exist and term not in terms:
        row.error("term", "unknown_term", f"term {term} is not set up in this school", f"尚未建立學期 {term}")


def _course_code(row: Row) -> None:
    code = row.values.get("course_code", "")
    if isinstance(code, NumericCell) and code.digits > 15:
        row.error("course_code", "invalid_course_code", "the course code was stored as a number and lost digits; format the "
                  "column as text", "課程代碼被存成數字而失真，請將該欄設為文字格式")
    elif code and not re.fullmatch(COURSE_CODE_PATTERN, code):
        row.error("course_code", "invalid_course_code", "a course code has exactly 23 letters or digits",
                  "課程代碼須為 23 碼英數字")


def _int(row: Row, name: str, low: int, high: int, *, default: int | None = None) -> int | None:
    text = row.values.get(name, "")
    if text == "" and default is not None:
        return default
    if not re.fullmatch(r"[0-9]+", text or "") or not low <= int(text) <= high:
        row.error(name, "invalid_number", f"{name} must be a whole number {low}-{high}", f"{name} 須為 {low}–{high} 的整數")
        return None
    return int(text)


def _flag(row: Row, name: str) -> bool | None:
    text = (row.values.get(name) or "").strip().lower()
    if text in YES:
        return True
    if text in NO:
        return False
    row.error(name, "invalid_flag", f"{name} must be 是/否 (yes/no)", f"{name} 須為 是 或 否")
    return None


def fingerprint(kind: str, school: str, values: dict) -> str:
    parts = [kind, school] + [f"{k}={values[k]}" for k in sorted(values)]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Importer:
    """Checks rows against what the school has, then writes the accepted ones in batches."""

    kind = ""

    def __init__(self, school: str, principal: Principal, rows: list[Row], *, dry_run: bool):
        self.school = school
        self.principal = principal
        self.dry_run = dry_run
        self.seen: set = set()
        self.terms = {t.code for t in Term.objects(school=school).only("code")}
        self.file_terms = {r.values.get("term") for r in rows if r.values.get("term")}
        self.final_terms = {t for t in self.file_terms if is_final(FinalPeriod, school, "term", t)}
        self.students = {d.student_no: d for d in Directory.objects(school=school, roles="student", active__ne=False)
                         .only("id", "student_no", "grade", "status", "class_name") if d.student_no}

    def check_term(self, row: Row, *, must_exist: bool) -> None:
        _term(row, self.terms, must_exist=must_exist)
        if row.values.get("term") in self.final_terms:
            row.error("term", "term_final", "the term's submitted data is final and can no longer change",
                      "本學期提交的資料已定案，不能再變更")

    def student(self, row: Row):
        number = row.values.get("student_no", "")
        student = self.students.get(number) if number else None
        if number and student is None:
            row.error("student_no", "unknown_student", f"no student {number} in this school", f"本校查無學號 {number}")
        return student

    def once(self, row: Row, key, column: str) -> bool:
        if key in self.seen:
            row.error(column, "duplicate_in_file", "appears twice in this file", "檔案中重複出現")
            return False
        self.seen.add(key)
        return True

    def check(self, row: Row) -> None:
        raise NotImplementedError

    def flush(self, rows: list[Row]) -> None:
        """Write the accepted rows of one batch."""
        raise NotImplementedError


class _SectionLookup:
    def _load_sections(self) -> None:
        self.sections: dict[tuple, Section] = {}
        self.by_code: dict[tuple, list[Section]] = {}
        for section in Section.objects(school=self.school, term__in=list(self.file_terms)):
            self.sections[(section.term, section.course_code, section.section_name)] = section
            self.by_code.setdefault((section.term, section.course_code), []).append(section)

    def section(self, row: Row) -> Section | None:
        v = row.values
        if v.get("section_name"):
            section = self.sections.get((v["term"], v["course_code"], v["section_name"]))
        else:
            candidates = self.by_code.get((v["term"], v["course_code"]), [])
            if len(candidates) > 1:
                row.error("section_name", "ambiguous_section", "several sections have this course code; give 開課班級",
                          "此課程代碼有多個開課班級，請填寫開課班級")
                return None
            section = candidates[0] if candidates else None
        if section is None:
            row.error("course_code", "unknown_section", "no such section in this term", "本學期查無此開課資料")
        return section

    def _load_enrolments(self, *fields: str) -> dict[tuple, dict]:
        """The file's terms' enrolments of the school by (section id, student id), with ``fields``."""
        projection = dict.fromkeys(("section_id", "student_id", "status", *fields), 1)
        return {(d["section_id"], d["student_id"]): d for d in Enrolment._get_collection().find(
            {"school": self.school, "term": {"$in": list(self.file_terms)}}, projection)}


class SectionImporter(Importer):
    kind = "sections"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.teachers = {d.username: d.id for d in Directory.objects(school=self.school, roles="subject_teacher",
                                                                     active__ne=False).only("id", "username")}
        self.existing = {(s.term, s.course_code, s.section_name): s
                         for s in Section.objects(school=self.school, term__in=list(self.file_terms))}

    def check(self, row: Row) -> None:
        v = row.values
        _required(row, REQUIRED["sections"])
        self.check_term(row, must_exist=True)
        _course_code(row)
        credits = _int(row, "credits", 0, 20) if v.get("credits") else None
        if v.get("category") and v["category"] not in CATEGORIES:
            row.error("category", "invalid_category", "category must be one of " + "/".join(CATEGORIES),
                      "課程類別須為 " + "、".join(CATEGORIES))
        if len(v.get("subject_name", "")) > 60 or len(v.get("section_name", "")) > 40:
            row.error("subject_name", "too_long", "subject at most 60, section at most 40 characters", "科目名稱或開課班級過長")
        teacher_ids = []
        for username in [u for u in re.split(r"[;,、，；\s]+", v.get("teachers", "")) if u]:
            if username not in self.teachers:
                row.error("teachers", "unknown_teacher", f"{username} is not a subject teacher of this school",
                          f"{username} 非本校任課教師")
            elif self.teachers[username] not in teacher_ids:
                teacher_ids.append(self.teachers[username])
        if row.errors:
            return
        key = (v["term"], v["course_code"], v["section_name"])
        if not self.once(row, key, "course_code"):
            return
        wanted = {"subject_name": v["subject_name"], "credits": credits, "category": v["category"], "teacher_ids": teacher_ids}
        row.fingerprint = fingerprint(self.kind, self.school, {**wanted, "key": key})
        existing = self.existing.get(key)
        if existing is None:
            row.action, row.doc = "created", Section(school=self.school, term=key[0], course_code=key[1],
                                                     section_name=key[2], created_by=self.principal.user_id,
                                                     import_fingerprint=row.fingerprint, **wanted)
        elif all(getattr(existing, k) == w for k, w in wanted.items()):
            row.action = "unchanged"
        else:
            for name, value in wanted.items():
                setattr(existing, name, value)
            existing.import_fingerprint, existing.updated_at = row.fingerprint, now()
            row.action, row.doc = "updated", existing

    def flush(self, rows: list[Row]) -> None:
        _insert([r for r in rows if r.action == "created"], lambda s: [events.section_created(s)])
        for row in rows:
            if row.action == "updated":
                _save(row, lambda s: [events.section_updated(s)])


class EnrolmentImporter(_SectionLookup, Importer):
    kind = "enrolments"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._load_sections()
        self.existing = self._load_enrolments()

    def check(self, row: Row) -> None:
        _required(row, REQUIRED["enrolments"])
        self.check_term(row, must_exist=True)
        _course_code(row)
        student = self.student(row)
        if row.errors:
            return
        section = self.section(row)
        if student is not None and (problem_text := enrolment_problem(student)):
            row.error("student_no", "not_enrollable", *problem_text)
        if row.errors or not self.once(row, (section.id, student.id), "student_no"):
            return
        existing = self.existing.get((section.id, student.id))
        if existing is None:
            row.action, row.doc = "created", Enrolment(
                school=self.school, term=section.term, section_id=section.id, course_code=section.course_code,
                student_id=student.id, student_no=student.student_no, created_by=self.principal.user_id)
        elif existing["status"] == "active":
            row.action = "unchanged"
        else:
            row.action, row.enrolment_id = "updated", existing["_id"]

    def flush(self, rows: list[Row]) -> None:
        _insert([r for r in rows if r.action == "created"], lambda e: [events.enrolment_created(e)])
        for row in rows:
            if row.action == "updated":  # re-enrolment after a withdrawal
                enrolment = Enrolment.objects(id=row.enrolment_id).first()
                if enrolment is None or enrolment.status == "active":
                    row.action = "unchanged"
                    continue
                enrolment.status, enrolment.withdrawn_at, enrolment.updated_at = "active", None, now()
                row.doc = enrolment
                _save(row, lambda e: [events.enrolment_created(e)])


class GradeImporter(_SectionLookup, Importer):
    kind = "grades"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._load_sections()
        self.existing = self._load_enrolments("grade")

    def check(self, row: Row) -> None:
        v = row.values
        _required(row, ("term", "student_no", "course_code"))
        self.check_term(row, must_exist=True)
        _course_code(row)
        score = None
        if v.get("score"):
            try:
                score = float(v["score"])
                if not 0 <= score <= 100:
                    raise ValueError
            except ValueError:
                row.error("score", "invalid_score", "score must be a number 0-100", "成績須為 0–100 的數字")
        passed = _flag(row, "passed") if v.get("passed") else (score >= 60 if score is not None else None)
        if passed is None and not v.get("passed") and score is None and not row.errors:
            row.error("passed", "required", "give a score or 及格 是/否", "請填成績或是否及格")
        retake = _flag(row, "retake") if v.get("retake") else False
        makeup = _flag(row, "makeup") if v.get("makeup") else False
        student = self.student(row)
        if row.errors:
            return
        section = self.section(row)
        if row.errors:
            return
        enrolment = self.existing.get((section.id, student.id))
        if enrolment is None or enrolment["status"] != "active":
            row.error("student_no", "not_enrolled", "the student is not enrolled in this section", "該生未修習此課程")
            return
        credits_earned = _int(row, "credits_earned", 0, 20, default=section.credits if passed else 0)
        if credits_earned is None:
            return
        for problem_ in grade_problems(section.credits, score, passed, credits_earned):
            row.errors.append(problem_)
        if row.errors or not self.once(row, enrolment["_id"], "student_no"):
            return
        values = (score, passed, credits_earned, retake, makeup)
        stored = enrolment.get("grade")
        if stored and (stored.get("score"), stored.get("passed"), stored.get("credits_earned"), stored.get("retake", False),
                       stored.get("makeup", False)) == values:
            row.action = "unchanged"
        else:
            row.action, row.enrolment_id, row.grade = "updated" if stored else "created", enrolment["_id"], values

    def flush(self, rows: list[Row]) -> None:
        for row in rows:
            if row.action in ("created", "updated"):
                enrolment = Enrolment.objects(id=row.enrolment_id).first()
                score, passed, credits_earned, retake, makeup = row.grade
                enrolment.grade = Grade(score=score, passed=passed, credits_earned=credits_earned, retake=retake,
                                        makeup=makeup, recorded_by=self.principal.user_id)
                enrolment.updated_at = now()
                row.doc = enrolment
                _save(row, lambda e: [events.grade_recorded(e)])


class CadreImporter(Importer):
    kind = "cadres"

    def check(self, row: Row) -> None:
        v = row.values
        _required(row, REQUIRED["cadres"])
        self.check_term(row, must_exist=False)
        level = LEVEL_NAMES.get(v.get("level", "").lower() if v.get("level", "").isascii() else v.get("level", ""))
        if v.get("level") and level not in CADRE_LEVELS:
            row.error("level", "invalid_level", "level must be 校級/班級/社團 (school/class/club)", "層級須為 校級、班級 或 社團")
        if len(v.get("unit", "")) > 60 or len(v.get("title", "")) > 60:
            row.error("title", "too_long", "unit and title at most 60 characters", "單位或職稱過長")
        student = self.student(row)
        if row.errors:
            return
        record_id = key_id(self.school, v["term"], student.id, level, v["unit"], v["title"])
        if not self.once(row, record_id, "title"):
            return
        stored = Cadre.objects(id=record_id).first()
        if stored is not None and stored.removed_at is None:
            row.action = "unchanged"
        elif stored is not None:  # removed before: entered again
            stored.removed_at, stored.entered_by = None, self.principal.user_id
            row.action, row.doc = "updated", stored
        else:
            row.action, row.doc = "created", Cadre(id=record_id, school=self.school, term=v["term"], student_id=student.id,
                                                   student_no=student.student_no, level=level, unit=v["unit"],
                                                   title=v["title"], entered_by=self.principal.user_id)

    def flush(self, rows: list[Row]) -> None:
        _insert([r for r in rows if r.action == "created"], lambda c: [events.cadre_recorded(c)])
        for row in rows:
            if row.action == "updated":
                _save(row, lambda c: [events.cadre_recorded(c)])


class ClubImporter(Importer):
    kind = "clubs"

    def check(self, row: Row) -> None:
        v = row.values
        _required(row, REQUIRED["clubs"])
        self.check_term(row, must_exist=False)
        role = v.get("role") or "社員"
        if len(v.get("club", "")) > 60 or len(role) > 40:
            row.error("club", "too_long", "club at most 60, role at most 40 characters", "社團名稱或職務過長")
        student = self.student(row)
        if row.errors:
            return
        record_id = key_id(self.school, v["term"], student.id, v["club"])
        if not self.once(row, record_id, "club"):
            return
        existing = ClubMembership.objects(id=record_id).first()
        if existing is None:
            row.action, row.doc = "created", ClubMembership(
                id=record_id, school=self.school, term=v["term"], student_id=student.id, student_no=student.student_no,
                club=v["club"], role=role, entered_by=self.principal.user_id)
        elif existing.role == role:
            row.action = "unchanged"
        else:
            existing.role, existing.entered_by, existing.updated_at = role, self.principal.user_id, now()
            row.action, row.doc = "updated", existing

    def flush(self, rows: list[Row]) -> None:
        _insert_plain([r for r in rows if r.action == "created"])
        for row in rows:
            if row.action == "updated":
                row.doc.save()


class AttendanceImporter(Importer):
    kind = "attendance"

    def check(self, row: Row) -> None:
        v = row.values
        _required(row, REQUIRED["attendance"])
        self.check_term(row, must_exist=False)
        counts = {kind: _int(row, kind, 0, 10000, default=0) for kind in ATTENDANCE_KINDS}
        student = self.student(row)
        if row.errors:
            return
        record_id = key_id(self.school, v["term"], student.id)
        if not self.once(row, record_id, "student_no"):
            return
        existing = Attendance.objects(id=record_id).first()
        if existing is None:
            row.action, row.doc = "created", Attendance(id=record_id, school=self.school, term=v["term"],
                                                        student_id=student.id, student_no=student.student_no,
                                                        counts=counts, entered_by=self.principal.user_id)
        elif dict(existing.counts) == counts:
            row.action = "unchanged"
        else:
            existing.counts, existing.entered_by, existing.updated_at = counts, self.principal.user_id, now()
            row.action, row.doc = "updated", existing

    def flush(self, rows: list[Row]) -> None:
        _insert_plain([r for r in rows if r.action == "created"])
        for row in rows:
            if row.action == "updated":
                row.doc.save()


IMPORTERS: dict[str, type[Importer]] = {"sections": SectionImporter, "enrolments": EnrolmentImporter,
                                        "grades": GradeImporter, "cadres": CadreImporter, "clubs": ClubImporter,
                                        "attendance": AttendanceImporter}


# ---- writing ---------------------------------------------------------------------------------------------

def _conflict(row: Row) -> None:
    row.action = None
    row.error("row", "conflict", "the record was written by someone else meanwhile; import again", "資料已被同時修改，請重新匯入")


def _insert(rows: list[Row], events_of: Callable) -> None:
    """Insert new aggregates with their events in batches; after a race, one by one (a duplicate → row error)."""
    if not rows:
        return
    try:
        insert_with_events([r.doc for r in rows], events_of)
        return
    except (BulkWriteError, DuplicateKeyError, NotUniqueError):
        pass
    model = type(rows[0].doc)
    for row in rows:
        if model.objects(id=row.doc.id).only("id").first() is not None:
            continue  # this batch's ordered insert had written it before the failure
        row.doc._created, row.doc.outbox = True, []
        try:
            save_with_events(row.doc, events_of(row.doc))
        except (NotUniqueError, DuplicateKeyError):
            _conflict(row)


def _save(row: Row, events_of: Callable) -> None:
    try:
        save_with_events(row.doc, events_of(row.doc))
    except DomainError:
        _conflict(row)


def _insert_plain(rows: list[Row]) -> None:
    if not rows:
        return
    model = type(rows[0].doc)
    try:
        model._get_collection().insert_many([r.doc.to_mongo().to_dict() for r in rows], ordered=False)
    except BulkWriteError as exc:
        failed = {e["index"] for e in exc.details.get("writeErrors", []) if e.get("code") != 11000}
        for index in failed:
            _conflict(rows[index])


# ---- the job --------------------------------------------------------------------------------------------

def authorise(principal: Principal, school: str, kind: str) -> str:
    seal(principal, school)
    if kind not in KINDS:
        raise DomainError("not_found", f"unknown import kind {kind}")
    if not principal.has(*IMPORT_WRITERS[kind]):
        raise DomainError("forbidden", f"your roles may not import {kind}")
    return school


def import_rows(school: str, principal: Principal, kind: str, stream: IO[bytes], *, default_term: str | None = None,
                dry_run: bool = False, progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    rows = parse(kind, stream, default_term)
    progress(0, len(rows))
    importer = IMPORTERS[kind](school, principal, rows, dry_run=dry_run)
    for start in range(0, len(rows), PROGRESS_EVERY):
        batch = rows[start:start + PROGRESS_EVERY]
        for row in batch:
            importer.check(row)
            if row.errors:
                row.action = None
        if not dry_run:
            importer.flush(batch)
        progress(min(start + PROGRESS_EVERY, len(rows)), len(rows))
    rejected = [r for r in rows if r.errors]
    count = lambda action: sum(1 for r in rows if r.action == action)  # noqa: E731
    return {"kind": kind, "school": school, "dry_run": dry_run, "rows": len(rows), "created": count("created"),
            "updated": count("updated"), "unchanged": count("unchanged"), "rejected": len(rejected),
            "errors": [{"row": r.number, "errors": r.errors} for r in rejected[:MAX_REPORTED_ROWS]],
            "errors_truncated": len(rejected) > MAX_REPORTED_ROWS}


def run_job(job_id: str, stream: IO[bytes], principal: Principal, *, default_term: str | None = None,
            trace: dict | None = None) -> tuple[ImportJob, DomainError | None]:
    """Process a queued job now (in this thread); returns the job and the error that failed it, if any."""
    job = ImportJob.objects(id=job_id).first()
    started = now()
    ImportJob.objects(id=job_id).update_one(set__status="running", set__started_at=started, set__updated_at=started)

    def progress(done: int, total: int) -> None:
        ImportJob.objects(id=job_id).update_one(set__rows_done=done, set__rows_total=total, set__updated_at=now())

    failure: DomainError | None = None
    with span("records", "records import", parent_headers=trace or {},
              attributes={"footprint.school": job.school, "footprint.import_kind": job.kind}):
        try:
            report = import_rows(job.school, principal, job.kind, stream, default_term=default_term, dry_run=job.dry_run,
                                 progress=progress)
            ImportJob.objects(id=job_id).update_one(set__status="done", set__report=report, set__finished_at=now(),
                                                    set__updated_at=now())
        except DomainError as exc:
            failure = exc
            ImportJob.objects(id=job_id).update_one(set__status="failed", set__finished_at=now(), set__updated_at=now(),
                                                    set__error=problem(exc.code, exc.detail, errors=exc.errors))
        except Exception:
            log.exception("import job %s failed", job_id)
            failure = DomainError("internal_error")
            ImportJob.objects(id=job_id).update_one(set__status="failed", set__finished_at=now(), set__updated_at=now(),
                                                    set__error=problem("internal_error"))
    return ImportJob.objects(id=job_id).first(), failure


class ImportRunner:
    """Background import threads, at most ``concurrency`` processing at once (the others wait queued)."""

    def __init__(self, concurrency: int = 2):
        self._slots = threading.BoundedSemaphore(concurrency)
        self.threads: dict[str, threading.Thread] = {}

    def submit(self, job_id: str, stream: IO[bytes], principal: Principal, *, default_term: str | None,
               trace: dict | None) -> threading.Thread:
        def work() -> None:
            try:
                with self._slots:
                    run_job(job_id, stream, principal, default_term=default_term, trace=trace)
            finally:
                stream.close()
                self.threads.pop(job_id, None)

        thread = threading.Thread(target=work, name=f"records-import-{job_id[:8]}", daemon=True)
        self.threads[job_id] = thread
        thread.start()
        return thread

    def join(self, timeout: float = 10.0) -> None:
        for thread in list(self.threads.values()):
            thread.join(timeout)


def get_job(principal: Principal, school: str, job_id: str) -> ImportJob:
    seal(principal, school)
    job = ImportJob.objects(id=job_id, school=school).first()
    if job is None:
        raise DomainError("not_found")
    if job.created_by != principal.user_id and not principal.has(*IMPORT_WRITERS.get(job.kind, ()), "city_admin"):
        raise DomainError("forbidden")
    updated = job.updated_at if job.updated_at.tzinfo else job.updated_at.replace(tzinfo=timezone.utc)
    if job.status in ("queued", "running") and now() - updated > STALE_AFTER:
        # The process that ran it stopped (restart, crash): say so instead of "running" forever.
        ImportJob.objects(id=job.id, status=job.status).update_one(
            set__status="failed", set__finished_at=now(), set__updated_at=now(),
            set__error=problem("internal_error", "the import was interrupted; upload the file again"))
        job.reload()
    return job
