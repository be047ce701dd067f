"""Records' rules: who may read and write what, and the records themselves.

Tenancy first: every call names a school and is sealed by ``seal`` (a school user: their own school; a city
admin: the schools of their city). Another tenant's school or record is 404, never 403. Inside the school
the division of labour decides (WRITERS, READERS); a role that may not act is 403. Per-record visibility
(a student's own records, a homeroom teacher's class, a teacher's sections, a counsellor's own records)
is expressed as one MongoDB filter (``read_filter``) so lists and single reads follow the same rule.
"""
from __future__ import annotations

import csv
import io
import logging
import re
import threading
import time
from datetime import date as Date
from typing import Iterable, Iterator

from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from shared.auth import Principal
from shared.documents import by_id
from shared.errors import DomainError, field_error
from shared.filecheck import DOCUMENT, Inspector, clean_file_name, display_name
from shared.finality import refuse_if_term_final
from shared.outbox import save_with_events

from . import events
from .models import FinalPeriod
from .models import (ATTENDANCE_KINDS, COURSE_CODE_PATTERN, TERM_PATTERN, Achievement, Attachment, Attendance, Cadre,
                     CareerNote, ClubMembership, CounsellingRecord, Directory, Enrolment, Grade, Section, Term, key_id,
                     new_id, now)

log = logging.getLogger("footprint.records")

# Who writes what: the school's division of labour (school_admin may do all but counselling records).
WRITERS: dict[str, tuple[str, ...]] = {
    "terms": ("curriculum", "school_admin"),
    "sections": ("curriculum", "school_admin"),
    "enrolments": ("curriculum", "registrar", "school_admin"),
    "grades": ("registrar", "school_admin"),
    "cadres": ("student_affairs", "school_admin"),
    "clubs": ("student_affairs", "school_admin"),
    "attendance": ("student_affairs", "school_admin"),
    "achievements": ("student_affairs", "curriculum", "counselling_office", "school_admin"),
    "counselling": ("course_counsellor",),
    "career_notes": ("counselling_office", "school_admin"),
}
# Who reads every student's records of a kind in the school. Besides them: the student (own records),
# the homeroom teacher (their class, HOMEROOM_READS), a subject teacher (their sections' enrolments) and a
# course counsellor (the counselling records they wrote).
READERS: dict[str, tuple[str, ...]] = {
    "enrolments": ("registrar", "curriculum", "school_admin", "city_admin"),
    "precheck": ("registrar", "curriculum", "school_admin", "city_admin"),
    "cadres": ("student_affairs", "school_admin", "city_admin"),
    "clubs": ("student_affairs", "school_admin", "city_admin"),
    "attendance": ("student_affairs", "school_admin", "city_admin"),
    "achievements": ("student_affairs", "curriculum", "counselling_office", "school_admin", "city_admin"),
    # 課程諮詢紀錄 is private: the student, the counsellor who wrote it and the counselling office only.
    "counselling": ("counselling_office",),
    "career_notes": ("counselling_office", "course_counsellor", "school_admin"),
}
HOMEROOM_READS = {"enrolments", "cadres", "clubs", "attendance", "achievements"}
TEACHER_ROLES = ("subject_teacher",)
ATTACHMENT_LIMIT = 4 * 1024 * 1024
MAX_ATTACHMENTS = 5
CHUNK = 64 * 1024


def _active():
    # Directory entries made by UserCreated have no ``active`` field until a deactivation sets it False.
    return {"active__ne": False}


# ---- tenancy and roles -----------------------------------------------------------------------------------

def school_city(school: str) -> str | None:
    """The city of a school, as the directory knows it from its users (for city admins' tenant seal)."""
    user = Directory.objects(school=school).only("city").first()
    return user.city if user else None


def seal(principal: Principal, school: str) -> str:
    if not isinstance(school, str) or not re.fullmatch(r"[0-9]{6}", school):
        raise DomainError("not_found")
    if principal.school is not None:
        if principal.school != school:
            raise DomainError("not_found")
        return school
    if not principal.can_see_school(school, school_city(school)):
        raise DomainError("not_found")
    return school


def writer(principal: Principal, school: str, resource: str) -> str:
    seal(principal, school)
    if not principal.has(*WRITERS[resource]):
        raise DomainError("forbidden", f"your roles may not write {resource}")
    return school


def member(principal: Principal, school: str) -> str:
    """Anyone of the school (or a city admin of its city): terms and the course catalogue."""
    return seal(principal, school)


def _homeroom_students(principal: Principal, school: str) -> list[str] | None:
    if not principal.has("homeroom_teacher"):
        return None
    me = Directory.objects(id=principal.user_id, school=school).first()
    if me is None or not me.homeroom_class:
        return None
    return [d.id for d in Directory.objects(school=school, class_name=me.homeroom_class, roles="student").only("id")]


def read_filter(principal: Principal, school: str, resource: str, *, student_id: str | None = None) -> dict:
    """The MongoDB filter of the records of ``resource`` the caller may read (403 when none at all).

    Asking for a named student one may not see is 404 for a student (another student's records do not
    exist for them) and 403 for staff whose role does not cover that student.
    """
    seal(principal, school)
    base: dict = {"school": school}
    if student_id is not None:
        base["student_id"] = student_id
    if principal.has(*READERS[resource]):
        return base
    clauses: list[dict] = []
    own = principal.has("student")
    if own:
        clauses.append({"student_id": principal.user_id})
    homeroom = _homeroom_students(principal, school) if resource in HOMEROOM_READS else None
    if homeroom is not None:
        clauses.append({"student_id": {"$in": homeroom}})
    partial = False  # per-record rules that may cover some of any student's records
    if resource == "enrolments" and principal.has(*TEACHER_ROLES):
        mine = [s.id for s in Section.objects(school=school, teacher_ids=principal.user_id).only("id")]
        clauses.append({"section_id": {"$in": mine}})
        partial = True
    if resource == "counselling" and principal.has("course_counsellor"):
        clauses.append({"counsellor_id": principal.user_id})
        partial = True
    if not clauses:
        raise DomainError("forbidden", f"your roles may not read {resource}")
    if student_id is not None and not partial:
        if not ((own and student_id == principal.user_id) or (homeroom is not None and student_id in homeroom)):
            raise DomainError("not_found" if own else "forbidden")
    return {**base, "$or": clauses}


def visible(model, principal: Principal, school: str, resource: str, record_id: str):
    """One record the caller may read: 404 when absent, another tenant's or not theirs; 403 for a role that
    reads none of this kind."""
    seal(principal, school)
    if by_id(model, record_id, school=school) is None:
        raise DomainError("not_found")
    flt = read_filter(principal, school, resource)
    record = model.objects(__raw__={"$and": [{"_id": record_id}, flt]}).first()
    if record is None:
        raise DomainError("not_found")
    return record


# ---- look-ups in the directory ------------------------------------------------------------------------------

def resolve_student(school: str, *, student_id: str | None = None, student_no: str | None = None,
                    for_enrolment: bool = False, field: str | None = None):
    """An active student of ``school`` from the directory; the same 422 whether absent or another school's."""
    field = field or ("student_id" if student_id is not None else "student_no")
    query = Directory.objects(school=school, roles="student", **_active())
    user = (query.filter(id=student_id) if student_id is not None else query.filter(student_no=student_no)).first()
    if user is None or not user.student_no:
        raise DomainError("validation_failed", "no such student in this school", errors=[
            field_error(field, "unknown_student", "no such student in this school", "本校查無此學生")])
    if for_enrolment:
        problem = enrolment_problem(user)
        if problem:
            raise DomainError("validation_failed", problem[0], errors=[field_error(field, "not_enrollable", *problem)])
    return user


def enrolment_problem(user) -> tuple[str, str] | None:
    if user.grade not in (10, 11, 12):
        return "only students of grades 10-12 take senior-high courses", "僅高一至高三學生可修課"
    if user.status not in (None, "enrolled"):
        return "the student is not enrolled (在學)", "該生非在學狀態"
    return None


def resolve_teachers(school: str, teacher_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(teacher_ids))
    found = {d.id for d in Directory.objects(school=school, id__in=ids, roles__in=list(TEACHER_ROLES), **_active())}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DomainError("validation_failed", "teacher_ids must be subject teachers of this school", errors=[
            field_error("teacher_ids", "unknown_teacher", f"not a subject teacher of this school: {', '.join(missing)}",
                        "非本校任課教師：" + "、".join(missing))])
    return ids


def directory_of(user_ids: Iterable[str]) -> dict:
    ids = list(set(user_ids))
    return {d.id: d for d in Directory.objects(id__in=ids)} if ids else {}


# ---- terms and the course catalogue -------------------------------------------------------------------------

def parse_term(code) -> tuple[int, int]:
    if not isinstance(code, str) or not re.fullmatch(TERM_PATTERN, code) or code[:3] == "000":
        raise DomainError("invalid_term", f"{code!r}: 3-digit 學年度, 0, then 學期 1 or 2 (e.g. 11201)")
    return int(code[:3]), int(code[4])


def check_course_code(code) -> str:
    if not isinstance(code, str) or not re.fullmatch(COURSE_CODE_PATTERN, code):
        raise DomainError("invalid_course_code")
    return code


def term_name(code: str) -> str:
    year, semester = parse_term(code)
    return f"{year}學年度第{semester}學期"


def create_term(principal: Principal, school: str, code: str) -> Term:
    writer(principal, school, "terms")
    year, semester = parse_term(code)
    term = Term(id=f"{school}:{code}", school=school, code=code, year=year, semester=semester, name=term_name(code),
                created_by=principal.user_id)
    try:
        return term.save(force_insert=True)
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", f"term {code} exists") from exc


def list_terms(principal: Principal, school: str) -> list[Term]:
    member(principal, school)
    return list(Term.objects(school=school).order_by("-code"))


def require_term(school: str, code: str, *, field: str = "term") -> Term:
    parse_term(code)
    term = Term.objects(id=f"{school}:{code}").first()
    if term is None:
        raise DomainError("validation_failed", f"term {code} is not set up in this school", errors=[
            field_error(field, "unknown_term", f"term {code} is not set up; create it first", f"尚未建立學期 {code}")])
    return term


def grade_problems(credits: int, score: float | None, passed: bool, credits_earned: int) -> list[dict]:
    errors = []
    if score is not None and not 0 <= score <= 100:
        errors.append(field_error("score", "invalid_score", "score must be 0-100", "成績須介於 0 與 100"))
    if credits_earned > credits:
        errors.append(field_error("credits_earned", "too_many_credits", f"at most the section's {credits} credits",
                                  f"實得學分不可超過 {credits} 學分"))
    if not passed and credits_earned:
        errors.append(field_error("credits_earned", "credits_without_pass", "a failed course earns no credits",
                                  "未及格不可取得學分"))
    return errors


def create_section(principal: Principal, school: str, *, term: str, course_code: str, subject_name: str, credits: int,
                   category: str, section_name: str, teacher_ids: list[str]) -> Section:
    writer(principal, school, "sections")
    check_course_code(course_code)
    require_term(school, term)
    refuse_if_term_final(FinalPeriod, school, term)
    section = Section(school=school, term=term, course_code=course_code, subject_name=subject_name, credits=credits,
                      category=category, section_name=section_name, teacher_ids=resolve_teachers(school, teacher_ids),
                      created_by=principal.user_id)
    try:
        return save_with_events(section, [events.section_created(section)])
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", "this course code is already offered to this class or group in this term") from exc


def get_section(principal: Principal, school: str, section_id: str) -> Section:
    member(principal, school)
    section = by_id(Section, section_id, school=school)
    if section is None:
        raise DomainError("not_found")
    return section


def update_section(principal: Principal, school: str, section_id: str, changes: dict) -> Section:
    writer(principal, school, "sections")
    section = get_section(principal, school, section_id)
    refuse_if_term_final(FinalPeriod, school, section.term)
    if changes.get("course_code") is not None:
        check_course_code(changes["course_code"])
    if changes.get("teacher_ids") is not None:
        changes["teacher_ids"] = resolve_teachers(school, changes["teacher_ids"])
    if changes.get("credits") is not None and changes["credits"] < section.credits:
        # Grades already recorded must stay consistent: no one may have earned more than the course offers.
        over = Enrolment.objects(section_id=section.id, school=school, grade__credits_earned__gt=changes["credits"]).count()
        if over:
            raise DomainError("conflict", f"{over} recorded grade(s) earned more than {changes['credits']} credits")
    changed = False
    for field in ("course_code", "subject_name", "credits", "category", "section_name", "teacher_ids"):
        if changes.get(field) is not None and getattr(section, field) != changes[field]:
            setattr(section, field, changes[field])
            changed = True
    if not changed:
        return section
    code_changed = "course_code" in section._get_changed_fields()
    section.updated_at = now()
    try:
        save_with_events(section, [events.section_updated(section)])
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", "this course code is already offered to this class or group in this term") from exc
    if code_changed:  # keep the enrolments' copy in step (consumers key enrolments by section_id)
        Enrolment.objects(section_id=section.id).update(set__course_code=section.course_code, inc__version=1)
    return section


def list_sections(principal: Principal, school: str, *, term: str | None, teacher_id: str | None, offset: int,
                  limit: int) -> tuple[int, list[Section]]:
    member(principal, school)
    query = Section.objects(school=school)
    if term is not None:
        parse_term(term)
        query = query.filter(term=term)
    if teacher_id is not None:
        query = query.filter(teacher_ids=teacher_id)
    return query.count(), list(query.order_by("-term", "section_name", "course_code").skip(offset).limit(limit))


# ---- enrolments and grades ---------------------------------------------------------------------------------

def enrol(principal: Principal, school: str, section_id: str, *, student_id: str | None = None,
          student_no: str | None = None) -> Enrolment:
    writer(principal, school, "enrolments")
    section = get_section(principal, school, section_id)
    refuse_if_term_final(FinalPeriod, school, section.term)
    student = resolve_student(school, student_id=student_id, student_no=student_no, for_enrolment=True)
    existing = Enrolment.objects(section_id=section.id, student_id=student.id).first()
    if existing is not None:
        if existing.status == "active":
            raise DomainError("conflict", "the student is already enrolled in this section")
        existing.status, existing.withdrawn_at, existing.updated_at = "active", None, now()
        return save_with_events(existing, [events.enrolment_created(existing)])
    enrolment = Enrolment(school=school, term=section.term, section_id=section.id, course_code=section.course_code,
                          student_id=student.id, student_no=student.student_no, created_by=principal.user_id)
    try:
        return save_with_events(enrolment, [events.enrolment_created(enrolment)])
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", "the student is already enrolled in this section") from exc


def _enrolment(school: str, enrolment_id: str) -> Enrolment:
    """An enrolment about to change (withdrawn, graded): not in a final term."""
    enrolment = by_id(Enrolment, enrolment_id, school=school)
    if enrolment is None:
        raise DomainError("not_found")
    refuse_if_term_final(FinalPeriod, school, enrolment.term)
    return enrolment


def withdraw(principal: Principal, school: str, enrolment_id: str) -> Enrolment:
    writer(principal, school, "enrolments")
    enrolment = _enrolment(school, enrolment_id)
    if enrolment.status == "withdrawn":
        return enrolment
    if enrolment.grade is not None:
        raise DomainError("invalid_transition", "a graded enrolment cannot be withdrawn")
    enrolment.status, enrolment.withdrawn_at, enrolment.updated_at = "withdrawn", now(), now()
    return save_with_events(enrolment, [events.enrolment_withdrawn(enrolment)])


def record_grade(principal: Principal, school: str, enrolment_id: str, *, score: float | None, passed: bool,
                 credits_earned: int | None, retake: bool, makeup: bool) -> Enrolment:
    writer(principal, school, "grades")
    enrolment = _enrolment(school, enrolment_id)
    if enrolment.status != "active":
        raise DomainError("invalid_transition", "the enrolment is withdrawn")
    section = Section.objects(id=enrolment.section_id).first()
    credits = section.credits if section else 0
    if credits_earned is None:
        credits_earned = credits if passed else 0
    errors = grade_problems(credits, score, passed, credits_earned)
    if errors:
        raise DomainError("validation_failed", errors=errors)
    grade = Grade(score=score, passed=passed, credits_earned=credits_earned, retake=retake, makeup=makeup,
                  recorded_by=principal.user_id)
    if enrolment.grade is not None and enrolment.grade.values() == grade.values():
        return enrolment  # the same grade again: nothing changes, no event
    enrolment.grade, enrolment.updated_at = grade, now()
    return save_with_events(enrolment, [events.grade_recorded(enrolment)])


def list_enrolments(principal: Principal, school: str, *, term: str | None = None, section_id: str | None = None,
                    student_id: str | None = None, offset: int = 0, limit: int = 500) -> tuple[int, list[Enrolment]]:
    flt = read_filter(principal, school, "enrolments", student_id=student_id)
    if term is not None:
        parse_term(term)
        flt["term"] = term
    if section_id is not None:
        flt["section_id"] = section_id
    query = Enrolment.objects(__raw__=flt)
    return query.count(), list(query.order_by("term", "student_no", "course_code").skip(offset).limit(limit))


def roster(principal: Principal, school: str, section_id: str, *, offset: int, limit: int) -> tuple[Section, int, list]:
    """A section's students: its teachers and the staff who read enrolments."""
    section = get_section(principal, school, section_id)
    if not (principal.has(*READERS["enrolments"]) or principal.user_id in section.teacher_ids):
        raise DomainError("forbidden", "only the section's teachers and records staff read its roster")
    query = Enrolment.objects(school=school, section_id=section.id)
    return section, query.count(), list(query.order_by("student_no").skip(offset).limit(limit))


# ---- 預檢: the term's course roster for students to check, without grades -----------------------------------------

PRECHECK_COLUMNS = ["學號", "姓名", "班級", "年級", "課程代碼", "科目名稱", "學分數", "課程類別"]


def _cell(value) -> str:
    """Text cells that a spreadsheet would run as a formula are quoted (CSV injection)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text)):
        return "'" + text
    return text


def precheck_csv(principal: Principal, school: str, term: str, *, batch: int = 300) -> Iterator[bytes]:
    """Checks run now; the returned generator streams the CSV (UTF-8 with BOM) class by class."""
    seal(principal, school)
    if not principal.has(*READERS["precheck"]):
        raise DomainError("forbidden")
    parse_term(term)
    if Term.objects(id=f"{school}:{term}").first() is None:
        raise DomainError("not_found", f"term {term} is not set up")
    sections = {s.id: s for s in Section.objects(school=school, term=term)}
    students = sorted(
        ((d.class_name or "", d.student_no or "", d.id, d.display_name or "", d.grade)
         for d in Directory.objects(school=school, roles="student", grade__in=[10, 11, 12], **_active())
         .only("id", "class_name", "student_no", "display_name", "grade")))
    collection = Enrolment._get_collection()

    def generate() -> Iterator[bytes]:
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\r\n")
        out.writerow(PRECHECK_COLUMNS)
        yield ("\ufeff" + buffer.getvalue()).encode("utf-8")
        for start in range(0, len(students), batch):
            chunk = students[start:start + batch]
            by_id = {s[2]: s for s in chunk}
            rows = []
            for doc in collection.find({"school": school, "term": term, "status": "active",
                                        "student_id": {"$in": list(by_id)}}, {"student_id": 1, "section_id": 1}):
                section = sections.get(doc["section_id"])
                if section is None:
                    continue
                class_name, student_no, _, name, grade = by_id[doc["student_id"]]
                rows.append((class_name, student_no, section.course_code, section.section_name, name, grade, section))
            rows.sort(key=lambda r: r[:4])
            buffer.seek(0)
            buffer.truncate()
            for class_name, student_no, course_code, _, name, grade, section in rows:
                out.writerow([_cell(student_no), _cell(name), _cell(class_name), grade, course_code,
                              _cell(section.subject_name), section.credits, section.category])
            if rows:
                yield buffer.getvalue().encode("utf-8")

    return generate()


# ---- basic data: cadres, clubs, attendance, competitions and licences ---------------------------------------

def add_cadre(principal: Principal, school: str, *, student_id: str | None, student_no: str | None, term: str,
              level: str, unit: str, title: str) -> Cadre:
    writer(principal, school, "cadres")
    parse_term(term)
    refuse_if_term_final(FinalPeriod, school, term)
    student = resolve_student(school, student_id=student_id, student_no=student_no)
    cadre = Cadre(id=key_id(school, term, student.id, level, unit, title), school=school, term=term, student_id=student.id,
                  student_no=student.student_no, level=level, unit=unit, title=title, entered_by=principal.user_id)
    removed = Cadre.objects(id=cadre.id, removed_at__ne=None).first()
    if removed is not None:  # entered again after its removal: the tombstone comes back
        removed.removed_at, removed.entered_by = None, principal.user_id
        return save_with_events(removed, [events.cadre_recorded(removed)])
    try:
        return save_with_events(cadre, [events.cadre_recorded(cadre)])
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", "this cadre record exists") from exc


def add_club(principal: Principal, school: str, *, student_id: str | None, student_no: str | None, term: str, club: str,
             role: str) -> ClubMembership:
    writer(principal, school, "clubs")
    parse_term(term)
    refuse_if_term_final(FinalPeriod, school, term)
    student = resolve_student(school, student_id=student_id, student_no=student_no)
    membership = ClubMembership(id=key_id(school, term, student.id, club), school=school, term=term, student_id=student.id,
                                student_no=student.student_no, club=club, role=role, entered_by=principal.user_id)
    try:
        return membership.save(force_insert=True)
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("conflict", "the student is already a member of this club this term") from exc


def set_attendance(principal: Principal, school: str, term: str, student_id: str, counts: dict[str, int]) -> Attendance:
    writer(principal, school, "attendance")
    parse_term(term)
    refuse_if_term_final(FinalPeriod, school, term)
    student = resolve_student(school, student_id=student_id)
    full = {kind: int(counts.get(kind, 0)) for kind in ATTENDANCE_KINDS}
    record = Attendance.objects(id=key_id(school, term, student.id)).first()
    if record is None:
        record = Attendance(id=key_id(school, term, student.id), school=school, term=term, student_id=student.id,
                            student_no=student.student_no)
    record.counts, record.entered_by, record.updated_at = full, principal.user_id, now()
    return record.save()


def add_achievement(principal: Principal, school: str, *, student_id: str | None, student_no: str | None, kind: str,
                    name: str, organiser_unit: str, level: str, result: str, date: Date) -> Achievement:
    writer(principal, school, "achievements")
    student = resolve_student(school, student_id=student_id, student_no=student_no)
    role = next(r for r in WRITERS["achievements"] if principal.has(r))
    return Achievement(school=school, student_id=student.id, student_no=student.student_no, kind=kind, name=name,
                       organiser_unit=organiser_unit, level=level, result=result, date=date.isoformat(),
                       entered_by=principal.user_id, entered_role=role).save(force_insert=True)


def list_basic(model, resource: str, principal: Principal, school: str, *, term: str | None, student_id: str | None,
               offset: int, limit: int) -> tuple[int, list]:
    flt = read_filter(principal, school, resource, student_id=student_id)
    if term is not None:
        parse_term(term)
        flt["term"] = term
    if model is Cadre:
        flt["removed_at"] = None
    query = model.objects(__raw__=flt)
    order = ("-date", "student_no") if model is Achievement else ("-term", "student_no")
    return query.count(), list(query.order_by(*order).skip(offset).limit(limit))


def delete_basic(model, resource: str, principal: Principal, school: str, record_id: str) -> None:
    writer(principal, school, resource)
    record = by_id(model, record_id, school=school)
    if record is None or getattr(record, "removed_at", None) is not None:
        raise DomainError("not_found")
    if model is Achievement and not principal.has("school_admin", record.entered_role or "school_admin"):
        raise DomainError("forbidden", "only the organising unit that entered it may delete it")
    if getattr(record, "term", None):
        refuse_if_term_final(FinalPeriod, school, record.term)
    if model is Cadre:  # a tombstone, so the removal leaves with its write (the exchange sends cadres)
        record.removed_at = now()
        save_with_events(record, [events.cadre_removed(record)])
        return
    record.delete()


# ---- 課程諮詢紀錄 and career-planning notes -------------------------------------------------------------------

def create_counselling(principal: Principal, school: str, *, student_id: str | None, student_no: str | None, date: Date,
                       time_of_day: str, place: str, content: str, advice: str) -> CounsellingRecord:
    writer(principal, school, "counselling")
    student = resolve_student(school, student_id=student_id, student_no=student_no)
    record = CounsellingRecord(school=school, student_id=student.id, student_no=student.student_no, date=date.isoformat(),
                               time=time_of_day, place=place, counsellor_id=principal.user_id, content=content,
                               advice=advice, central=False, created_by=principal.user_id)
    return save_with_events(record, [events.counselling_logged(record)])


def _own_counselling(principal: Principal, school: str, record_id: str) -> CounsellingRecord:
    """A counselling record the caller wrote (only its counsellor changes it)."""
    writer(principal, school, "counselling")
    record = by_id(CounsellingRecord, record_id, school=school, counsellor_id=principal.user_id)
    if record is None:
        raise DomainError("not_found")
    return record


def update_counselling(principal: Principal, school: str, record_id: str, changes: dict) -> CounsellingRecord:
    record = _own_counselling(principal, school, record_id)
    term = events.term_of_day(record.date)
    for field, value in changes.items():
        if value is None:
            continue
        if field == "date":
            value = value.isoformat()
        setattr(record, "time" if field == "time_of_day" else field, value)
    record.updated_at = now()
    # intake counts records per term: a date that moves the record to another term is announced again
    moved = [events.counselling_logged(record)] if events.term_of_day(record.date) != term else []
    return save_with_events(record, moved)


def list_counselling(principal: Principal, school: str, *, student_id: str | None, offset: int, limit: int):
    flt = read_filter(principal, school, "counselling", student_id=student_id)
    query = CounsellingRecord.objects(__raw__=flt)
    return query.count(), list(query.order_by("-date", "-time").skip(offset).limit(limit))


def _discard(store, key: str) -> None:
    try:
        store.delete(key)
    except Exception as exc:  # the object may not exist; a leftover is logged for cleanup, never referenced
        log.warning("could not delete %s after a failed upload: %s", key, exc)


def add_attachment(principal: Principal, school: str, record_id: str, *, name: str | None, stream,
                   content_length: int | None, store) -> tuple[CounsellingRecord, Attachment]:
    """Stream the raw body through the file inspector into the media store; the record refers to the file
    only after it was stored completely and judged acceptable. Any failure deletes the object."""
    record = _own_counselling(principal, school, record_id)
    name = clean_file_name(name)
    if content_length is not None and content_length > ATTACHMENT_LIMIT:
        raise DomainError("file_too_large", f"at most {ATTACHMENT_LIMIT} bytes")
    if content_length == 0:
        raise DomainError("file_empty")
    if len(record.attachments) >= MAX_ATTACHMENTS:
        raise DomainError("conflict", f"at most {MAX_ATTACHMENTS} attachments per record")
    file_id = new_id()
    key = f"records/{school}/counselling/{record.id}/{file_id}"
    inspector = Inspector(limits={DOCUMENT: ATTACHMENT_LIMIT})
    received = 0

    failure: list[DomainError] = []  # the caller's fault, even when the store wraps it in its own error

    def chunks() -> Iterator[bytes]:
        nonlocal received
        while True:
            try:
                chunk = stream.read(CHUNK)
            except Exception as exc:  # the client went away or sent less than it announced
                failure.append(DomainError("file_corrupt", "the upload ended before the file was complete"))
                raise failure[-1] from exc
            if not chunk:
                return
            received += len(chunk)
            try:
                inspector.feed(chunk)  # raises mid-stream: wrong type, too large
            except DomainError as exc:
                failure.append(exc)
                raise
            yield chunk

    try:
        store.put(key, chunks())
        if content_length is not None and received != content_length:
            raise DomainError("file_corrupt", "the upload ended before its announced length")
        verdict = inspector.finish()
    except DomainError:
        _discard(store, key)
        raise
    except Exception as exc:
        _discard(store, key)
        if failure:
            raise failure[-1] from exc
        log.warning("attachment upload to %s failed: %s", key, exc)
        raise DomainError("storage_unavailable") from exc
    attachment = Attachment(file_id=file_id, name=display_name(name, verdict), media_type=verdict.media_type, size=verdict.size,
                            sha256=verdict.sha256, key=key, uploaded_by=principal.user_id)
    pushed = CounsellingRecord.objects(id=record.id, school=school, attachments__size=len(record.attachments)).update_one(
        push__attachments=attachment, set__updated_at=now())
    if pushed != 1:  # removed or changed meanwhile: the file is never referenced
        _discard(store, key)
        raise DomainError("conflict", "the record changed meanwhile; retry")
    record.reload()
    return record, attachment


def attachment_of(principal: Principal, school: str, record_id: str, file_id: str) -> Attachment:
    record = visible(CounsellingRecord, principal, school, "counselling", record_id)
    for attachment in record.attachments:
        if attachment.file_id == file_id:
            return attachment
    raise DomainError("not_found")


def delete_attachment(principal: Principal, school: str, record_id: str, file_id: str, store) -> None:
    record = _own_counselling(principal, school, record_id)
    attachment = next((a for a in record.attachments if a.file_id == file_id), None)
    if attachment is None:
        raise DomainError("not_found")
    CounsellingRecord.objects(id=record.id).update_one(pull__attachments__file_id=file_id, set__updated_at=now())
    _discard(store, attachment.key)


def create_career_note(principal: Principal, school: str, *, student_id: str | None, student_no: str | None, title: str,
                       content: str, groups: list[str]) -> CareerNote:
    writer(principal, school, "career_notes")
    student = resolve_student(school, student_id=student_id, student_no=student_no)
    return CareerNote(school=school, student_id=student.id, student_no=student.student_no, title=title, content=content,
                      groups=list(dict.fromkeys(groups)), central=False, author_id=principal.user_id).save(force_insert=True)


def list_career_notes(principal: Principal, school: str, *, student_id: str | None, offset: int, limit: int):
    flt = read_filter(principal, school, "career_notes", student_id=student_id)
    query = CareerNote.objects(__raw__=flt)
    return query.count(), list(query.order_by("-created_at").skip(offset).limit(limit))


# ---- demo data --------------------------------------------------------------------------------------------

DEMO_SCHOOLS = ("999001", "999002")
DEMO_TERM = "11201"
DEMO_COURSE_CODE = "10400000000000000000000"  # 23 characters
assert len(DEMO_COURSE_CODE) == 23


def _demo_users(school: str):
    teacher = Directory.objects(school=school, username="teacher01", **_active()).first()
    student = Directory.objects(school=school, username="student01", roles="student", **_active()).first()
    return (teacher, student) if teacher and student and student.student_no else None


def seed_school(school: str) -> Enrolment | None:
    """Term 11201, 國語文 for class 101 taught by teacher01, student01 enrolled (idempotent)."""
    users = _demo_users(school)
    if users is None:
        return None
    teacher, student = users
    try:
        if Term.objects(id=f"{school}:{DEMO_TERM}").first() is None:
            Term(id=f"{school}:{DEMO_TERM}", school=school, code=DEMO_TERM, year=112, semester=1,
                 name=term_name(DEMO_TERM), created_by="seed").save(force_insert=True)
        section = Section.objects(school=school, term=DEMO_TERM, course_code=DEMO_COURSE_CODE, section_name="101").first()
        if section is None:
            section = Section(school=school, term=DEMO_TERM, course_code=DEMO_COURSE_CODE, subject_name="國語文", credits=4,
                              category="部定必修", section_name="101", teacher_ids=[teacher.id], created_by="seed")
            save_with_events(section, [events.section_created(section)])
        enrolment = Enrolment.objects(section_id=section.id, student_id=student.id).first()
        if enrolment is None:
            enrolment = Enrolment(school=school, term=DEMO_TERM, section_id=section.id, course_code=section.course_code,
                                  student_id=student.id, student_no=student.student_no, created_by="seed")
            save_with_events(enrolment, [events.enrolment_created(enrolment)])
        return enrolment
    except (NotUniqueError, DuplicateKeyError):  # another process seeded at the same moment
        return Enrolment.objects(school=school, student_id=student.id, term=DEMO_TERM).first()


def seed_demo(runtime, *, timeout: float = 60.0, poll: float = 0.2) -> None:
    """Wait (in a daemon thread, at most ``timeout``) until identity's demo users reached the directory, then
    seed each demo school. Returns at once; the thread is kept in ``runtime.state['seed_thread']``."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not all(_demo_users(s) for s in DEMO_SCHOOLS):
            if time.monotonic() > deadline:
                log.warning("records demo seed: the directory does not know the demo users after %.0fs", timeout)
                return
            if runtime.stopping.wait(poll):
                return  # the service is stopping
        for school in DEMO_SCHOOLS:
            seed_school(school)
        log.info("records demo seed: term %s, 國語文 for 101, student01 enrolled", DEMO_TERM)

    thread = threading.Thread(target=run, name="records-seed-demo", daemon=True)
    runtime.state["seed_thread"] = thread
    thread.start()
    return None
