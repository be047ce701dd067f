"""Certification's HTTP API (behind the gateway at /api/v1/certification/…)."""
from __future__ import annotations

import ipaddress
from datetime import date, datetime
from typing import Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.auth import current_principal, require_auth
from shared.http import Api, json_response, read_json, read_query

from . import domain
from .models import Certification, Section, Substitute

PREFIX = "/api/v1/certification"
ID = r"^[A-Za-z0-9._:-]{1,64}$"
TERM = r"^[0-9]{3}0[12]$"
State = Literal["submitted", "certified", "returned"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- models ----------------------------------------------------------------------------------------------

class ReturnIn(Body):
    reason: str = Field(min_length=1, max_length=200, description="why it is returned (shown to the student)")


class BulkCertifyIn(Body):
    outcome_ids: list[str] | None = Field(default=None, min_length=1, max_length=500)
    section_id: str | None = Field(default=None, pattern=ID, description="every submitted outcome of the section")

    @model_validator(mode="after")
    def exactly_one(self):
        if (self.outcome_ids is None) == (self.section_id is None):
            raise ValueError("give either outcome_ids or section_id")
        for outcome_id in self.outcome_ids or []:
            if not outcome_id or len(outcome_id) > 64:
                raise ValueError("outcome ids have 1 to 64 characters")
        return self


class BulkItemOut(BaseModel):
    outcome_id: str
    result: Literal["certified", "skipped"]
    code: str | None = Field(description="the error code why it was skipped (e.g. invalid_transition)")


class BulkCertifyOut(BaseModel):
    certified: int
    skipped: int
    results: list[BulkItemOut]


class FileOut(BaseModel):
    file_id: str
    name: str
    sha256: str
    size: int
    kind: Literal["document", "media"]
    media_type: str | None


class AuditOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    action: Literal["submitted", "certified", "returned", "kept"]
    actor: str = Field(description="user id")
    on_behalf_of: str | None = Field(description="the absent teacher, when a substitute acted")
    at: datetime
    from_: str | None = Field(alias="from", description="client address (not shown to students)")
    submission: int
    reason: str | None
    kept_from_outcome_id: str | None
    kept_from_submission: int | None


class OutcomeOut(BaseModel):
    outcome_id: str
    school: str
    term: str
    section_id: str
    course_code: str
    subject_name: str | None
    section_name: str | None
    student_id: str
    student_name: str | None
    brief: str
    files: list[FileOut]
    submission: int
    state: State
    reason: str | None
    decided_by: str | None
    on_behalf_of: str | None
    decided_at: datetime | None
    kept_from_identical_content: bool
    submitted_at: datetime
    audit: list[AuditOut]


class QueueQuery(Query):
    state: State = "submitted"
    section_id: str | None = Field(default=None, pattern=ID)
    term: str | None = Field(default=None, pattern=TERM, description="學年度+學期, e.g. 11201")
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=100, ge=1, le=500)


class QueueItemOut(BaseModel):
    outcome_id: str
    term: str
    section_id: str
    course_code: str
    subject_name: str
    section_name: str
    student_id: str
    student_name: str | None
    student_no: str | None
    class_name: str | None
    brief: str
    files: list[FileOut]
    submission: int
    state: State
    reason: str | None
    submitted_at: datetime
    decided_at: datetime | None
    on_behalf_of: str | None = Field(description="the absent teacher whose section this is, for a substitute")


class QueueOut(BaseModel):
    total: int
    items: list[QueueItemOut]


class CountsQuery(Query):
    term: str | None = Field(default=None, pattern=TERM)
    teacher_id: str | None = Field(default=None, pattern=ID, description="staff only: another teacher's counts")


class SectionCountsOut(BaseModel):
    section_id: str
    term: str
    course_code: str
    subject_name: str
    section_name: str
    on_behalf_of: str | None
    pending: int
    certified: int
    returned: int


class CountsOut(BaseModel):
    teacher_id: str
    sections: list[SectionCountsOut]
    totals: dict[str, int]


class SubstituteIn(Body):
    teacher_id: str = Field(pattern=ID, description="the absent teacher")
    substitute_id: str = Field(pattern=ID, description="who certifies in their place (代理人)")
    starts_on: date
    ends_on: date


class SubstituteOut(BaseModel):
    id: str
    teacher_id: str
    teacher_name: str | None
    substitute_id: str
    substitute_name: str | None
    starts_on: date
    ends_on: date
    active: bool = Field(description="the period includes today (Taiwan time)")
    created_by: str
    created_at: datetime


class SubstituteQuery(Query):
    teacher_id: str | None = Field(default=None, pattern=ID)
    current: bool = Field(default=False, description="only assignments that have not ended")


class SubstituteList(BaseModel):
    items: list[SubstituteOut]


# ---- rendering -------------------------------------------------------------------------------------------

def client_address() -> str | None:
    """The client as the gateway saw it: first hop of X-Forwarded-For, else the peer address."""
    first = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(first))
    except ValueError:
        return request.remote_addr or None


def files_out(record: Certification) -> list[dict]:
    return [{"file_id": f.file_id, "name": f.name, "sha256": f.sha256, "size": f.size, "kind": f.kind,
             "media_type": f.media_type} for f in record.files]


def outcome_out(record: Certification, section: Section | None, viewer: str) -> dict:
    student = domain.directory(record.school, [record.student_id]).get(record.student_id)
    audit = [{"action": e.action, "actor": e.actor, "on_behalf_of": e.on_behalf_of, "at": domain.utc(e.at),
              "from": e.from_address if viewer != "student" else None, "submission": e.submission, "reason": e.reason,
              "kept_from_outcome_id": e.kept_from_outcome_id, "kept_from_submission": e.kept_from_submission}
             for e in record.audit]
    return OutcomeOut(
        outcome_id=record.id, school=record.school, term=record.term, section_id=record.section_id,
        course_code=record.course_code, subject_name=section.subject_name if section else None,
        section_name=section.section_name if section else None, student_id=record.student_id,
        student_name=student.display_name if student else None, brief=record.brief, files=files_out(record),
        submission=record.submission, state=record.state, reason=record.reason, decided_by=record.decided_by,
        on_behalf_of=record.on_behalf_of, decided_at=domain.utc(record.decided_at),
        kept_from_identical_content=bool(record.kept_from_identical_content),
        submitted_at=domain.utc(record.submitted_at), audit=audit).model_dump(mode="json", by_alias=True)


def queue_item_out(record: Certification, section: Section, via: str | None, student) -> dict:
    return {"outcome_id": record.id, "term": record.term, "section_id": record.section_id,
            "course_code": record.course_code, "subject_name": section.subject_name,
            "section_name": section.section_name, "student_id": record.student_id,
            "student_name": student.display_name if student else None,
            "student_no": student.student_no if student else None, "class_name": student.class_name if student else None,
            "brief": record.brief, "files": files_out(record), "submission": record.submission, "state": record.state,
            "reason": record.reason, "submitted_at": domain.utc(record.submitted_at),
            "decided_at": domain.utc(record.decided_at), "on_behalf_of": via}


def substitute_out(assignment: Substitute, names: dict) -> dict:
    day = domain.today()
    teacher, substitute = names.get(assignment.teacher_id), names.get(assignment.substitute_id)
    return {"id": assignment.id, "teacher_id": assignment.teacher_id,
            "teacher_name": teacher.display_name if teacher else None, "substitute_id": assignment.substitute_id,
            "substitute_name": substitute.display_name if substitute else None, "starts_on": assignment.starts_on,
            "ends_on": assignment.ends_on, "active": assignment.starts_on <= day <= assignment.ends_on,
            "created_by": assignment.created_by, "created_at": domain.utc(assignment.created_at)}


# ---- routes ----------------------------------------------------------------------------------------------

def install(app, runtime) -> None:
    api = Api("certification", "Certification")

    @api.route("GET", f"{PREFIX}/outcomes/<outcome_id>", summary="An outcome's state, reason and audit trail",
               response=OutcomeOut)
    @require_auth()
    def get_outcome(outcome_id):
        record, section, viewer = domain.readable(current_principal(), outcome_id)
        return json_response(outcome_out(record, section, viewer))

    @api.route("POST", f"{PREFIX}/outcomes/<outcome_id>/certify",
               summary="Certify (認證) a submitted outcome as the student's authentic work", response=OutcomeOut)
    @require_auth()
    def certify(outcome_id):
        principal = current_principal()
        record = domain.certify(principal, outcome_id, client_address())
        return json_response(outcome_out(record, domain.section_in_school(record.school, record.section_id), "teacher"))

    @api.route("POST", f"{PREFIX}/outcomes/<outcome_id>/return",
               summary="Return (退回) a submitted outcome to the student with a reason", body=ReturnIn,
               response=OutcomeOut)
    @require_auth()
    def return_outcome(outcome_id):
        principal = current_principal()
        body = read_json(ReturnIn)
        record = domain.return_outcome(principal, outcome_id, body.reason, client_address())
        return json_response(outcome_out(record, domain.section_in_school(record.school, record.section_id), "teacher"))

    @api.route("POST", f"{PREFIX}/bulk-certify",
               summary="Certify many outcomes (listed, or all submitted of a section); per-item results",
               body=BulkCertifyIn, response=BulkCertifyOut)
    @require_auth()
    def bulk_certify():
        body = read_json(BulkCertifyIn)
        results = domain.bulk_certify(current_principal(), outcome_ids=body.outcome_ids, section_id=body.section_id,
                                      client=client_address())
        certified = sum(1 for r in results if r["result"] == "certified")
        return json_response({"certified": certified, "skipped": len(results) - certified, "results": results})

    @api.route("GET", f"{PREFIX}/queue",
               summary="The caller's outcomes to decide (own sections and those of teachers they substitute for)",
               query=QueueQuery, response=QueueOut)
    @require_auth()
    def queue():
        query = read_query(QueueQuery)
        principal = current_principal()
        total, rows = domain.queue(principal, state=query.state, section_id=query.section_id, term=query.term,
                                   offset=query.offset, limit=query.limit)
        students = domain.directory(principal.school, [record.student_id for record, _, _ in rows])
        items = [queue_item_out(record, section, via, students.get(record.student_id)) for record, section, via in rows]
        return json_response({"total": total, "items": items})

    @api.route("GET", f"{PREFIX}/counts",
               summary="Per section: pending, certified and returned (a teacher's own; staff may name a teacher)",
               query=CountsQuery, response=CountsOut)
    @require_auth()
    def counts():
        query = read_query(CountsQuery)
        teacher_id, rows = domain.counts(current_principal(), term=query.term, teacher_id=query.teacher_id)
        totals = {key: sum(r[key] for r in rows) for key in ("pending", "certified", "returned")}
        return json_response({"teacher_id": teacher_id, "sections": rows, "totals": totals})

    @api.route("POST", f"{PREFIX}/substitutes", summary="Assign a substitute certifier (代理人) for a period",
               body=SubstituteIn, response=SubstituteOut, status=201)
    @require_auth(*domain.STAFF_ROLES)
    def assign_substitute():
        principal = current_principal()
        body = read_json(SubstituteIn)
        assignment = domain.assign_substitute(principal, teacher_id=body.teacher_id, substitute_id=body.substitute_id,
                                              starts_on=body.starts_on, ends_on=body.ends_on)
        names = domain.directory(principal.school, [assignment.teacher_id, assignment.substitute_id])
        return json_response(substitute_out(assignment, names), 201)

    @api.route("GET", f"{PREFIX}/substitutes",
               summary="Substitute assignments (staff: the school's; teachers: their own)", query=SubstituteQuery,
               response=SubstituteList)
    @require_auth()
    def list_substitutes():
        principal = current_principal()
        query = read_query(SubstituteQuery)
        assignments = domain.list_substitutes(principal, teacher_id=query.teacher_id, current=query.current)
        names = domain.directory(principal.school, [u for a in assignments for u in (a.teacher_id, a.substitute_id)])
        return json_response({"items": [substitute_out(a, names) for a in assignments]})

    @api.route("DELETE", f"{PREFIX}/substitutes/<assignment_id>", summary="End a substitute assignment", status=204)
    @require_auth(*domain.STAFF_ROLES)
    def delete_substitute(assignment_id):
        domain.delete_substitute(current_principal(), assignment_id)
        return "", 204

    api.install(app)
