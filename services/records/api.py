"""Records' HTTP API (behind the gateway at /api/v1/records/…).

Every route names its school: ``/api/v1/records/schools/<code>/…``. Each view seals the tenant and checks the
caller's role (domain) BEFORE reading the body, so another tenant's caller gets 404 and a wrong role 403
whatever they send.
"""
from __future__ import annotations

import logging
from datetime import date as Date
from typing import Annotated, Literal
from urllib.parse import quote, unquote

from flask import Response, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from shared.auth import current_principal, require_auth
from shared.errors import DomainError
from shared.filecheck import clean_file_name
from shared.http import Api, json_response, read_json, read_query
from shared.spreadsheets import spool_upload
from shared.storage import StorageError, verified_read
from shared.tracing import current_carrier

from . import domain, imports
from .models import (ACHIEVEMENT_KINDS, ATTENDANCE_KINDS, CADRE_LEVELS, CATEGORIES, STUDY_GROUPS, Achievement, Attendance,
                     Cadre, CareerNote, ClubMembership, CounsellingRecord, Enrolment, ImportJob, Section, Term)

log = logging.getLogger("footprint.records.api")
P = "/api/v1/records/schools/<code>"
MAX_IMPORT_BYTES = 20 * 1024 * 1024

Category = Literal[CATEGORIES]  # type: ignore[valid-type]
AttendanceKind = Literal[ATTENDANCE_KINDS]  # type: ignore[valid-type]
StudyGroup = Literal[STUDY_GROUPS]  # type: ignore[valid-type]
Credits = Annotated[int, Field(strict=True, ge=0, le=20)]
Text = Annotated[str, Field(min_length=1, max_length=60)]
LongText = Annotated[str, Field(min_length=1, max_length=4000)]


# ---- request models ------------------------------------------------------------------------------------------

class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StudentRef(Body):
    """Name the student by directory user id or by 學號 (exactly one)."""

    student_id: str | None = Field(default=None, min_length=1, max_length=64)
    student_no: str | None = Field(default=None, min_length=1, max_length=20)

    @model_validator(mode="after")
    def exactly_one(self):
        if (self.student_id is None) == (self.student_no is None):
            raise ValueError("give exactly one of student_id or student_no")
        return self


class TermIn(Body):
    code: str = Field(max_length=10, description="學年度 + 0 + 學期, e.g. 11201 = 112學年度第1學期")


class SectionIn(Body):
    term: str = Field(max_length=10)
    course_code: str = Field(max_length=40, description="課程代碼: exactly 23 of [0-9A-Z], stored as given")
    subject_name: Text
    credits: Credits
    category: Category
    section_name: Annotated[str, Field(min_length=1, max_length=40, description="class or group, e.g. 101 or 跨班選修A")]
    teacher_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=10)


class SectionPatch(Body):
    course_code: str | None = Field(default=None, max_length=40)
    subject_name: Text | None = None
    credits: Credits | None = None
    category: Category | None = None
    section_name: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    teacher_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(default=None, max_length=10)


class EnrolIn(StudentRef):
    pass


class GradeIn(Body):
    score: Annotated[float, Field(strict=True, ge=0, le=100, allow_inf_nan=False)] | None
    passed: StrictBool
    credits_earned: Credits | None = Field(default=None, description="default: the section's credits if passed, else 0")
    retake: StrictBool = Field(default=False, description="重修")
    makeup: StrictBool = Field(default=False, description="補考")


class CadreIn(StudentRef):
    term: str = Field(max_length=10)
    level: Literal[CADRE_LEVELS]  # type: ignore[valid-type]
    unit: Text
    title: Text


class ClubIn(StudentRef):
    term: str = Field(max_length=10)
    club: Text
    role: Annotated[str, Field(min_length=1, max_length=40)] = "社員"


class AttendanceIn(Body):
    counts: dict[AttendanceKind, Annotated[int, Field(strict=True, ge=0, le=10000)]]


class AchievementIn(StudentRef):
    kind: Literal[ACHIEVEMENT_KINDS]  # type: ignore[valid-type]
    name: Annotated[str, Field(min_length=1, max_length=100)]
    organiser_unit: Text
    level: Annotated[str, Field(min_length=1, max_length=40)]
    result: Text
    date: Date


class CounsellingIn(StudentRef):
    date: Date
    time: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="HH:MM")
    place: Text
    content: LongText
    advice: Annotated[str, Field(max_length=4000)] = ""


class CounsellingPatch(Body):
    date: Date | None = None
    time: str | None = Field(default=None, pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    place: Text | None = None
    content: LongText | None = None
    advice: Annotated[str, Field(max_length=4000)] | None = None


class CareerNoteIn(StudentRef):
    title: Annotated[str, Field(min_length=1, max_length=100)]
    content: LongText
    groups: list[StudyGroup] = Field(default_factory=list, max_length=18, description="學群 explored")


# ---- query models --------------------------------------------------------------------------------------------

class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=200, ge=1, le=1000)


class SectionQuery(Query):
    term: str | None = Field(default=None, max_length=10)
    teacher_id: str | None = Field(default=None, max_length=64)


class EnrolmentQuery(Query):
    term: str | None = Field(default=None, max_length=10)
    section_id: str | None = Field(default=None, max_length=64)
    student_id: str | None = Field(default=None, max_length=64)


class StudentQuery(Query):
    term: str | None = Field(default=None, max_length=10)
    student_id: str | None = Field(default=None, max_length=64)


class StudentOnlyQuery(Query):
    student_id: str | None = Field(default=None, max_length=64)


class AttachmentQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="the file's display name")


class ImportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wait: bool = Field(default=False, description="process in the request and answer 200 with the finished job")
    dry_run: bool = False
    term: str | None = Field(default=None, max_length=10, description="term for rows without a 學期 column")


# ---- response models -----------------------------------------------------------------------------------------

class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TermOut(Out):
    code: str
    name: str
    year: int
    semester: int


class TermList(Out):
    items: list[TermOut]


class Person(Out):
    id: str
    name: str | None


class SectionOut(Out):
    id: str
    school: str
    term: str
    course_code: str
    subject_name: str
    credits: int
    category: str
    section_name: str
    teacher_ids: list[str]
    teachers: list[Person]


class SectionList(Out):
    total: int
    items: list[SectionOut]


class GradeOut(Out):
    score: float | None
    passed: bool
    credits_earned: int
    retake: bool
    makeup: bool
    recorded_at: str | None


class EnrolmentOut(Out):
    id: str
    school: str
    term: str
    section_id: str
    course_code: str
    subject_name: str | None
    student_id: str
    student_no: str
    student_name: str | None
    class_name: str | None
    grade_level: int | None = Field(description="年級 10-12")
    status: Literal["active", "withdrawn"]
    grade: GradeOut | None = Field(description="學業成績")


class EnrolmentList(Out):
    total: int
    items: list[EnrolmentOut]


class RosterOut(EnrolmentList):
    section: SectionOut


class CadreOut(Out):
    id: str
    term: str
    student_id: str
    student_no: str
    level: str
    unit: str
    title: str


class CadreList(Out):
    total: int
    items: list[CadreOut]


class ClubOut(Out):
    id: str
    term: str
    student_id: str
    student_no: str
    club: str
    role: str


class ClubList(Out):
    total: int
    items: list[ClubOut]


class AttendanceOut(Out):
    id: str
    term: str
    student_id: str
    student_no: str
    counts: dict[str, int]


class AttendanceList(Out):
    total: int
    items: list[AttendanceOut]


class AchievementOut(Out):
    id: str
    student_id: str
    student_no: str
    kind: str
    name: str
    organiser_unit: str
    level: str
    result: str
    date: str
    entered_role: str | None


class AchievementList(Out):
    total: int
    items: list[AchievementOut]


class AttachmentOut(Out):
    file_id: str
    name: str
    media_type: str
    size: int
    sha256: str


class CounsellingOut(Out):
    id: str
    student_id: str
    student_no: str
    date: str
    time: str
    place: str
    counsellor_id: str
    content: str
    advice: str
    attachments: list[AttachmentOut]
    central: Literal[False] = Field(description="課程諮詢紀錄 is never sent to the central database")


class CounsellingList(Out):
    total: int
    items: list[CounsellingOut]


class CareerNoteOut(Out):
    id: str
    student_id: str
    student_no: str
    title: str
    content: str
    groups: list[str]
    author_id: str
    central: Literal[False]
    created_at: str


class CareerNoteList(Out):
    total: int
    items: list[CareerNoteOut]


class ImportJobOut(Out):
    id: str
    school: str
    kind: str
    status: Literal["queued", "running", "done", "failed"]
    dry_run: bool
    file_name: str | None
    size: int
    rows_total: int | None
    rows_done: int
    report: dict | None = Field(description="kind, rows, created, updated, unchanged, rejected, errors[{row, errors}]")
    error: dict | None = Field(description="a problem document when the job failed")
    created_at: str
    finished_at: str | None


# ---- rendering -------------------------------------------------------------------------------------------------

def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def term_out(term: Term) -> dict:
    return {"code": term.code, "name": term.name, "year": term.year, "semester": term.semester}


def section_out(section: Section, people: dict | None = None) -> dict:
    people = people if people is not None else domain.directory_of(section.teacher_ids)
    return {"id": section.id, "school": section.school, "term": section.term, "course_code": section.course_code,
            "subject_name": section.subject_name, "credits": section.credits, "category": section.category,
            "section_name": section.section_name, "teacher_ids": list(section.teacher_ids),
            "teachers": [{"id": t, "name": people[t].display_name if t in people else None} for t in section.teacher_ids]}


def enrolments_out(items: list[Enrolment]) -> list[dict]:
    people = domain.directory_of(e.student_id for e in items)
    sections = {s.id: s for s in Section.objects(id__in=list({e.section_id for e in items}))} if items else {}
    result = []
    for e in items:
        student, section = people.get(e.student_id), sections.get(e.section_id)
        grade = None
        if e.grade is not None:
            grade = {"score": e.grade.score, "passed": e.grade.passed, "credits_earned": e.grade.credits_earned,
                     "retake": e.grade.retake, "makeup": e.grade.makeup, "recorded_at": _iso(e.grade.recorded_at)}
        result.append({"id": e.id, "school": e.school, "term": e.term, "section_id": e.section_id,
                       "course_code": e.course_code, "subject_name": section.subject_name if section else None,
                       "student_id": e.student_id, "student_no": e.student_no,
                       "student_name": student.display_name if student else None,
                       "class_name": student.class_name if student else None,
                       "grade_level": student.grade if student else None, "status": e.status, "grade": grade})
    return result


def cadre_out(c: Cadre) -> dict:
    return {"id": c.id, "term": c.term, "student_id": c.student_id, "student_no": c.student_no, "level": c.level,
            "unit": c.unit, "title": c.title}


def club_out(c: ClubMembership) -> dict:
    return {"id": c.id, "term": c.term, "student_id": c.student_id, "student_no": c.student_no, "club": c.club,
            "role": c.role}


def attendance_out(a: Attendance) -> dict:
    return {"id": a.id, "term": a.term, "student_id": a.student_id, "student_no": a.student_no,
            "counts": {kind: int((a.counts or {}).get(kind, 0)) for kind in ATTENDANCE_KINDS}}


def achievement_out(a: Achievement) -> dict:
    return {"id": a.id, "student_id": a.student_id, "student_no": a.student_no, "kind": a.kind, "name": a.name,
            "organiser_unit": a.organiser_unit, "level": a.level, "result": a.result, "date": a.date,
            "entered_role": a.entered_role}


def attachment_out(a) -> dict:
    return {"file_id": a.file_id, "name": a.name, "media_type": a.media_type, "size": a.size, "sha256": a.sha256}


def counselling_out(r: CounsellingRecord) -> dict:
    return {"id": r.id, "student_id": r.student_id, "student_no": r.student_no, "date": r.date, "time": r.time,
            "place": r.place, "counsellor_id": r.counsellor_id, "content": r.content, "advice": r.advice or "",
            "attachments": [attachment_out(a) for a in r.attachments], "central": False}


def career_note_out(n: CareerNote) -> dict:
    return {"id": n.id, "student_id": n.student_id, "student_no": n.student_no, "title": n.title, "content": n.content,
            "groups": list(n.groups), "author_id": n.author_id, "central": False, "created_at": _iso(n.created_at)}


def job_out(job: ImportJob) -> dict:
    return {"id": job.id, "school": job.school, "kind": job.kind, "status": job.status, "dry_run": job.dry_run,
            "file_name": job.file_name, "size": job.size, "rows_total": job.rows_total, "rows_done": job.rows_done,
            "report": job.report, "error": job.error, "created_at": _iso(job.created_at),
            "finished_at": _iso(job.finished_at)}


def page(total: int, items: list[dict]) -> dict:
    return {"total": total, "items": items}


def _display_name(raw: str | None) -> str | None:
    """The optional X-File-Name of an import, kept for the job list only if it is a clean file name."""
    try:
        return clean_file_name(unquote(raw)) if raw else None
    except DomainError:
        return None


def _content_disposition(name: str) -> str:
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


# ---- routes ----------------------------------------------------------------------------------------------------

def install(app, runtime) -> None:
    store = runtime.state["media"]
    runner: imports.ImportRunner = runtime.state["imports"]
    app.extensions["footprint.ready"]["media"] = store.ping
    api = Api("records", "Records")

    def who():
        return current_principal()

    # -- terms -------------------------------------------------------------------------------------------
    @api.route("GET", f"{P}/terms", summary="The school's terms (學期)", response=TermList, tags=["records: catalogue"])
    @require_auth()
    def list_terms(code):
        return json_response({"items": [term_out(t) for t in domain.list_terms(who(), code)]})

    @api.route("POST", f"{P}/terms", summary="Set up a term (curriculum)", body=TermIn, response=TermOut, status=201,
               tags=["records: catalogue"])
    @require_auth()
    def create_term(code):
        domain.writer(who(), code, "terms")
        return json_response(term_out(domain.create_term(who(), code, read_json(TermIn).code)), 201)

    # -- sections ----------------------------------------------------------------------------------------
    @api.route("GET", f"{P}/sections", summary="Course sections (開課) of the school", query=SectionQuery,
               response=SectionList, tags=["records: catalogue"])
    @require_auth()
    def list_sections(code):
        domain.member(who(), code)
        q = read_query(SectionQuery)
        total, items = domain.list_sections(who(), code, term=q.term, teacher_id=q.teacher_id, offset=q.offset, limit=q.limit)
        people = domain.directory_of(t for s in items for t in s.teacher_ids)
        return json_response(page(total, [section_out(s, people) for s in items]))

    @api.route("POST", f"{P}/sections", summary="Offer a course section (curriculum)", body=SectionIn, response=SectionOut,
               status=201, tags=["records: catalogue"])
    @require_auth()
    def create_section(code):
        domain.writer(who(), code, "sections")
        body = read_json(SectionIn)
        return json_response(section_out(domain.create_section(who(), code, **body.model_dump())), 201)

    @api.route("GET", f"{P}/sections/<section_id>", summary="One course section", response=SectionOut,
               tags=["records: catalogue"])
    @require_auth()
    def get_section(code, section_id):
        return json_response(section_out(domain.get_section(who(), code, section_id)))

    @api.route("PATCH", f"{P}/sections/<section_id>", summary="Change a course section (curriculum)", body=SectionPatch,
               response=SectionOut, tags=["records: catalogue"])
    @require_auth()
    def patch_section(code, section_id):
        domain.writer(who(), code, "sections")
        changes = read_json(SectionPatch).model_dump(exclude_unset=True)
        return json_response(section_out(domain.update_section(who(), code, section_id, changes)))

    @api.route("GET", f"{P}/sections/<section_id>/enrolments",
               summary="A section's roster (its teachers, registrar, curriculum)", query=Query, response=RosterOut,
               tags=["records: enrolments"])
    @require_auth()
    def section_roster(code, section_id):
        domain.member(who(), code)
        q = read_query(Query)
        section, total, items = domain.roster(who(), code, section_id, offset=q.offset, limit=q.limit)
        return json_response({"section": section_out(section), **page(total, enrolments_out(items))})

    # -- enrolments and grades ------------------------------------------------------------------------------
    @api.route("POST", f"{P}/sections/<section_id>/enrolments", summary="Enrol a student (修課; curriculum, registrar)",
               body=EnrolIn, response=EnrolmentOut, status=201, tags=["records: enrolments"])
    @require_auth()
    def enrol(code, section_id):
        domain.writer(who(), code, "enrolments")
        body = read_json(EnrolIn)
        enrolment = domain.enrol(who(), code, section_id, student_id=body.student_id, student_no=body.student_no)
        return json_response(enrolments_out([enrolment])[0], 201)

    @api.route("GET", f"{P}/enrolments",
               summary="Enrolments with grades the caller may read (own, class, sections, or all for records staff)",
               query=EnrolmentQuery, response=EnrolmentList, tags=["records: enrolments"])
    @require_auth()
    def list_enrolments(code):
        domain.member(who(), code)
        q = read_query(EnrolmentQuery)
        total, items = domain.list_enrolments(who(), code, term=q.term, section_id=q.section_id, student_id=q.student_id,
                                              offset=q.offset, limit=q.limit)
        return json_response(page(total, enrolments_out(items)))

    @api.route("POST", f"{P}/enrolments/<enrolment_id>/withdraw", summary="Withdraw an enrolment (退選)",
               response=EnrolmentOut, tags=["records: enrolments"])
    @require_auth()
    def withdraw(code, enrolment_id):
        return json_response(enrolments_out([domain.withdraw(who(), code, enrolment_id)])[0])

    @api.route("PUT", f"{P}/enrolments/<enrolment_id>/grade", summary="Record the grade (學業成績; registrar)",
               body=GradeIn, response=EnrolmentOut, tags=["records: enrolments"])
    @require_auth()
    def record_grade(code, enrolment_id):
        domain.writer(who(), code, "grades")
        body = read_json(GradeIn)
        enrolment = domain.record_grade(who(), code, enrolment_id, **body.model_dump())
        return json_response(enrolments_out([enrolment])[0])

    @api.route("GET", f"{P}/terms/<term>/precheck.csv",
               summary="預檢: the term's course roster of grades 10-12, without grades (CSV, UTF-8 with BOM, streamed)",
               tags=["records: enrolments"])
    @require_auth()
    def precheck(code, term):
        rows = domain.precheck_csv(who(), code, term)
        return Response(rows, content_type="text/csv; charset=utf-8", direct_passthrough=True, headers={
            "Content-Disposition": _content_disposition(f"precheck-{code}-{term}.csv"), "Cache-Control": "no-store"})

    # -- basic data ------------------------------------------------------------------------------------------
    @api.route("GET", f"{P}/cadres", summary="幹部經歷 the caller may read", query=StudentQuery, response=CadreList,
               tags=["records: basic data"])
    @require_auth()
    def list_cadres(code):
        domain.member(who(), code)
        q = read_query(StudentQuery)
        total, items = domain.list_basic(Cadre, "cadres", who(), code, term=q.term, student_id=q.student_id,
                                         offset=q.offset, limit=q.limit)
        return json_response(page(total, [cadre_out(c) for c in items]))

    @api.route("POST", f"{P}/cadres", summary="Add a cadre record (幹部; student affairs)", body=CadreIn,
               response=CadreOut, status=201, tags=["records: basic data"])
    @require_auth()
    def add_cadre(code):
        domain.writer(who(), code, "cadres")
        return json_response(cadre_out(domain.add_cadre(who(), code, **read_json(CadreIn).model_dump())), 201)

    @api.route("DELETE", f"{P}/cadres/<record_id>", summary="Delete a cadre record", status=204,
               tags=["records: basic data"])
    @require_auth()
    def delete_cadre(code, record_id):
        domain.delete_basic(Cadre, "cadres", who(), code, record_id)
        return "", 204

    @api.route("GET", f"{P}/clubs", summary="社團經歷 the caller may read", query=StudentQuery, response=ClubList,
               tags=["records: basic data"])
    @require_auth()
    def list_clubs(code):
        domain.member(who(), code)
        q = read_query(StudentQuery)
        total, items = domain.list_basic(ClubMembership, "clubs", who(), code, term=q.term, student_id=q.student_id,
                                         offset=q.offset, limit=q.limit)
        return json_response(page(total, [club_out(c) for c in items]))

    @api.route("POST", f"{P}/clubs", summary="Add a club membership (社團; student affairs)", body=ClubIn,
               response=ClubOut, status=201, tags=["records: basic data"])
    @require_auth()
    def add_club(code):
        domain.writer(who(), code, "clubs")
        return json_response(club_out(domain.add_club(who(), code, **read_json(ClubIn).model_dump())), 201)

    @api.route("DELETE", f"{P}/clubs/<record_id>", summary="Delete a club membership", status=204,
               tags=["records: basic data"])
    @require_auth()
    def delete_club(code, record_id):
        domain.delete_basic(ClubMembership, "clubs", who(), code, record_id)
        return "", 204

    @api.route("GET", f"{P}/attendance", summary="出缺勤 summaries the caller may read", query=StudentQuery,
               response=AttendanceList, tags=["records: basic data"])
    @require_auth()
    def list_attendance(code):
        domain.member(who(), code)
        q = read_query(StudentQuery)
        total, items = domain.list_basic(Attendance, "attendance", who(), code, term=q.term, student_id=q.student_id,
                                         offset=q.offset, limit=q.limit)
        return json_response(page(total, [attendance_out(a) for a in items]))

    @api.route("PUT", f"{P}/attendance/<term>/<student_id>",
               summary="Set a student's attendance summary for a term (counts per kind; student affairs)",
               body=AttendanceIn, response=AttendanceOut, tags=["records: basic data"])
    @require_auth()
    def put_attendance(code, term, student_id):
        domain.writer(who(), code, "attendance")
        body = read_json(AttendanceIn)
        return json_response(attendance_out(domain.set_attendance(who(), code, term, student_id, dict(body.counts))))

    @api.route("GET", f"{P}/achievements", summary="校內競賽 and 檢定/證照 the caller may read", query=StudentOnlyQuery,
               response=AchievementList, tags=["records: basic data"])
    @require_auth()
    def list_achievements(code):
        domain.member(who(), code)
        q = read_query(StudentOnlyQuery)
        total, items = domain.list_basic(Achievement, "achievements", who(), code, term=None, student_id=q.student_id,
                                         offset=q.offset, limit=q.limit)
        return json_response(page(total, [achievement_out(a) for a in items]))

    @api.route("POST", f"{P}/achievements",
               summary="Add an in-school competition result or licence (the organising unit)", body=AchievementIn,
               response=AchievementOut, status=201, tags=["records: basic data"])
    @require_auth()
    def add_achievement(code):
        domain.writer(who(), code, "achievements")
        return json_response(achievement_out(domain.add_achievement(who(), code, **read_json(AchievementIn).model_dump())), 201)

    @api.route("DELETE", f"{P}/achievements/<record_id>", summary="Delete a competition or licence record", status=204,
               tags=["records: basic data"])
    @require_auth()
    def delete_achievement(code, record_id):
        domain.delete_basic(Achievement, "achievements", who(), code, record_id)
        return "", 204

    # -- counselling -------------------------------------------------------------------------------------------
    @api.route("GET", f"{P}/counselling",
               summary="課程諮詢紀錄 the caller may read (the student, its counsellor, the counselling office)",
               query=StudentOnlyQuery, response=CounsellingList, tags=["records: counselling"])
    @require_auth()
    def list_counselling(code):
        domain.member(who(), code)
        q = read_query(StudentOnlyQuery)
        total, items = domain.list_counselling(who(), code, student_id=q.student_id, offset=q.offset, limit=q.limit)
        return json_response(page(total, [counselling_out(r) for r in items]))

    @api.route("POST", f"{P}/counselling", summary="Write a course counselling record (course counsellor)",
               body=CounsellingIn, response=CounsellingOut, status=201, tags=["records: counselling"])
    @require_auth()
    def create_counselling(code):
        domain.writer(who(), code, "counselling")
        body = read_json(CounsellingIn)
        record = domain.create_counselling(who(), code, student_id=body.student_id, student_no=body.student_no,
                                           date=body.date, time_of_day=body.time, place=body.place,
                                           content=body.content, advice=body.advice)
        return json_response(counselling_out(record), 201)

    @api.route("GET", f"{P}/counselling/<record_id>", summary="One course counselling record", response=CounsellingOut,
               tags=["records: counselling"])
    @require_auth()
    def get_counselling(code, record_id):
        return json_response(counselling_out(domain.visible(CounsellingRecord, who(), code, "counselling", record_id)))

    @api.route("PATCH", f"{P}/counselling/<record_id>", summary="Change one's own counselling record",
               body=CounsellingPatch, response=CounsellingOut, tags=["records: counselling"])
    @require_auth()
    def patch_counselling(code, record_id):
        domain.writer(who(), code, "counselling")
        changes = read_json(CounsellingPatch).model_dump(exclude_unset=True)
        return json_response(counselling_out(domain.update_counselling(who(), code, record_id, changes)))

    @api.route("POST", f"{P}/counselling/<record_id>/attachments",
               summary="Attach a file (PDF/JPG/PNG ≤ 4 MiB, judged by content) to one's counselling record; raw body",
               query=AttachmentQuery, response=CounsellingOut, status=201, tags=["records: counselling"],
               request_media={t: {"schema": {"type": "string", "format": "binary"}}
                              for t in ("application/pdf", "image/jpeg", "image/png", "application/octet-stream")})
    @require_auth()
    def add_attachment(code, record_id):
        domain.writer(who(), code, "counselling")
        q = read_query(AttachmentQuery)
        record, _ = domain.add_attachment(who(), code, record_id, name=q.name, stream=request.stream,
                                          content_length=request.content_length, store=store)
        return json_response(counselling_out(record), 201)

    @api.route("GET", f"{P}/counselling/<record_id>/attachments/<file_id>", summary="Download an attachment",
               tags=["records: counselling"])
    @require_auth()
    def get_attachment(code, record_id, file_id):
        attachment = domain.attachment_of(who(), code, record_id, file_id)
        try:
            body = store.open(attachment.key)
        except StorageError as exc:
            raise DomainError("storage_unavailable") from exc
        # checked against the recorded size and sha256 on the way out: a damaged file is cut short, never served
        body = verified_read(body, attachment.size, attachment.sha256,
                             lambda problem: log.error("attachment %s: %s", attachment.file_id, problem))
        return Response(body, content_type=attachment.media_type, direct_passthrough=True, headers={
            "Content-Length": str(attachment.size), "Content-Disposition": _content_disposition(attachment.name),
            "X-Content-SHA256": attachment.sha256, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store"})

    @api.route("DELETE", f"{P}/counselling/<record_id>/attachments/<file_id>",
               summary="Remove an attachment from one's counselling record", status=204, tags=["records: counselling"])
    @require_auth()
    def delete_attachment(code, record_id, file_id):
        domain.delete_attachment(who(), code, record_id, file_id, store)
        return "", 204

    @api.route("GET", f"{P}/career-notes", summary="學群探索與就業規劃 notes the caller may read", query=StudentOnlyQuery,
               response=CareerNoteList, tags=["records: counselling"])
    @require_auth()
    def list_career_notes(code):
        domain.member(who(), code)
        q = read_query(StudentOnlyQuery)
        total, items = domain.list_career_notes(who(), code, student_id=q.student_id, offset=q.offset, limit=q.limit)
        return json_response(page(total, [career_note_out(n) for n in items]))

    @api.route("POST", f"{P}/career-notes", summary="Write a career-planning note (counselling office)",
               body=CareerNoteIn, response=CareerNoteOut, status=201, tags=["records: counselling"])
    @require_auth()
    def create_career_note(code):
        domain.writer(who(), code, "career_notes")
        body = read_json(CareerNoteIn)
        return json_response(career_note_out(domain.create_career_note(who(), code, **body.model_dump())), 201)

    # -- bulk import -------------------------------------------------------------------------------------------
    @api.route("POST", f"{P}/imports/<kind>",
               summary="Import sections, enrolments, grades, cadres, clubs or attendance from CSV/XLSX: 202 with a job "
                       "(progress at imports/jobs/<id>), or 200 with the finished job with ?wait=true",
               query=ImportQuery, response=ImportJobOut, status=202, tags=["records: imports"], request_media={
                   "text/csv": {"schema": {"type": "string", "format": "binary"}},
                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                       "schema": {"type": "string", "format": "binary"}}})
    @require_auth()
    def start_import(code, kind):
        principal = who()
        imports.authorise(principal, code, kind)
        q = read_query(ImportQuery)
        if q.term is not None:
            domain.parse_term(q.term)
        spool, size = spool_upload(request.stream, request.content_length, MAX_IMPORT_BYTES)
        try:
            imports.check_header(kind, spool, q.term)
            job = ImportJob(school=code, kind=kind, dry_run=q.dry_run, size=size, created_by=principal.user_id,
                            file_name=_display_name(request.headers.get("X-File-Name"))).save(force_insert=True)
            if q.wait:
                job, failure = imports.run_job(job.id, spool, principal, default_term=q.term, trace=current_carrier())
                spool.close()
                if failure is not None:
                    raise failure
                return json_response(job_out(job))
        except BaseException:
            spool.close()
            raise
        runner.submit(job.id, spool, principal, default_term=q.term, trace=current_carrier())
        return json_response(job_out(job), 202, headers={"Location": f"/api/v1/records/schools/{code}/imports/jobs/{job.id}"})

    @api.route("GET", f"{P}/imports/jobs/<job_id>", summary="An import job's progress and report",
               response=ImportJobOut, tags=["records: imports"])
    @require_auth()
    def get_import_job(code, job_id):
        return json_response(job_out(imports.get_job(who(), code, job_id)))

    api.install(app)
