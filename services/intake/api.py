"""Intake's HTTP API (behind the gateway at /api/v1/intake/…)."""
from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Literal
from urllib.parse import quote, urlsplit

from flask import Response, request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.auth import current_principal, require_auth
from shared.http import Api, json_response, read_json, read_query

from . import domain, export, reports
from .models import (BRIEF_MAX, DOCUMENT_LIMIT_MAX, MAX_LINKS, MEDIA_LIMIT_MAX, TERM_PATTERN, FileRecord, Item, Outcome,
                     Performance, Policy)

log = logging.getLogger("footprint.intake.api")

PREFIX = "/api/v1/intake"
Category = Literal["competition", "licence", "service_learning", "group_activity", "flexible_learning",
                   "workplace_learning", "other"]
BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- policy ----------------------------------------------------------------------------------------------

class PolicyIn(Body):
    """The whole policy (PUT replaces it; a field left out takes its default)."""

    document_limit_bytes: int = Field(default=DOCUMENT_LIMIT_MAX, ge=1024, le=DOCUMENT_LIMIT_MAX,
                                      description="PDF/JPG/PNG size limit, at most 4 MiB")
    media_limit_bytes: int = Field(default=MEDIA_LIMIT_MAX, ge=1024, le=MEDIA_LIMIT_MAX,
                                   description="MP3/MP4 size limit, at most 10 MiB")
    outcome_cap_per_term: Literal[6, 9] = Field(default=6, description="課程學習成果 per student per term")
    performance_cap_per_year: Literal[10, 20] = Field(default=10, description="多元表現 per student per school year")
    outcome_selection_cap: int = Field(default=6, ge=1, le=6, description="課程學習成果 a student may select (勾選) "
                                                                         "per school year, at most the national 6")
    performance_selection_cap: int = Field(default=10, ge=1, le=10, description="多元表現 a student may select per "
                                                                               "school year, at most the national 10")
    uploads_open: bool = True


class PolicyOut(BaseModel):
    school: str
    document_limit_bytes: int
    media_limit_bytes: int
    outcome_cap_per_term: int
    performance_cap_per_year: int
    outcome_selection_cap: int
    performance_selection_cap: int
    uploads_open: bool
    updated_at: datetime | None
    updated_by: str | None


def policy_out(policy: Policy) -> dict:
    return PolicyOut(school=policy.school, document_limit_bytes=policy.document_limit,
                     media_limit_bytes=policy.media_limit, outcome_cap_per_term=policy.outcome_cap_per_term,
                     performance_cap_per_year=policy.performance_cap_per_year,
                     outcome_selection_cap=policy.outcome_selection_cap,
                     performance_selection_cap=policy.performance_selection_cap, uploads_open=policy.uploads_open,
                     updated_at=policy.updated_at, updated_by=policy.updated_by).model_dump(mode="json")


# ---- files -----------------------------------------------------------------------------------------------

class FileOut(BaseModel):
    file_id: str
    name: str
    kind: Literal["document", "media"]
    media_type: str
    size: int
    sha256: str
    upload_key: str
    uploaded_at: datetime
    submitted_in: int | None = Field(description="the submission that first carried the file")


class FileLinkOut(BaseModel):
    file_id: str
    via: Literal["presigned", "stream"]
    url: str
    expires_in: int | None = Field(description="seconds the link stays valid (presigned links only)")
    name: str
    size: int
    sha256: str


class LinkQuery(Query):
    expires: int = Field(default=domain.LINK_SECONDS, ge=10, le=domain.LINK_SECONDS)


def file_out(record: FileRecord) -> dict:
    return FileOut(file_id=record.file_id, name=record.name, kind=record.kind, media_type=record.media_type,
                   size=record.size, sha256=record.sha256, upload_key=record.upload_key, uploaded_at=record.uploaded_at,
                   submitted_in=record.submitted_in).model_dump(mode="json")


class DirectUploadIn(Body):
    """Start a direct upload: the client then PUTs the bytes to ``url`` with ``headers`` and calls complete."""

    name: str = Field(min_length=1, max_length=255, description="the file's name as the student sees it")
    size: int = Field(ge=0, le=1 << 40, description="exactly the number of bytes that will be PUT")
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$", description="sha256 of those bytes (hex), checked by the store "
                                                                    "and again by intake")
    kind: Literal["document", "media"] = Field(description="document: PDF/JPG/PNG (4 MiB); media: MP3/MP4 (10 MiB)")
    upload_key: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$",
                                   description="idempotency key, as in PUT …/files/<upload_key>; default: a new one")


class DirectUploadOut(BaseModel):
    upload_id: str | None = Field(description="null when the upload key already holds this file (see file)")
    state: Literal["pending", "completed"]
    direct: bool = Field(description="true: PUT the bytes to url; the disk store answers 409 "
                                     "direct_upload_unavailable instead (use PUT …/files/<key>)")
    method: Literal["PUT"] | None
    url: str | None = Field(description="presigned PUT to the media store, create-only")
    headers: dict[str, str] = Field(description="send exactly these headers with the PUT (they are signed)")
    expires_in: int | None = Field(description="seconds until the store refuses the PUT")
    expires_at: datetime | None
    complete_url: str | None = Field(description="POST here (no body) once the PUT succeeded")
    file: FileOut | None = Field(description="the recorded file, when the upload key already holds it")


def direct_upload_out(start: domain.DirectStart) -> dict:
    if start.upload is None:
        return DirectUploadOut(upload_id=None, state="completed", direct=True, method=None, url=None, headers={},
                               expires_in=None, expires_at=None, complete_url=None,
                               file=file_out(start.file)).model_dump(mode="json")
    upload = start.upload
    return DirectUploadOut(upload_id=upload.id, state="pending", direct=True, method="PUT", url=start.url,
                           headers=start.headers, expires_in=domain.DIRECT_URL_SECONDS, expires_at=upload.expires_at,
                           complete_url=f"{PREFIX}/uploads/{upload.id}/complete", file=None).model_dump(mode="json")


# ---- outcomes --------------------------------------------------------------------------------------------

class OutcomeIn(Body):
    section_id: str = Field(min_length=1, max_length=64, description="one of the student's own active enrolments")
    brief: str = Field(default="", max_length=BRIEF_MAX, description="成果簡述 (required before submitting)")


class OutcomePatch(Body):
    brief: str = Field(max_length=BRIEF_MAX)


class OutcomeOut(BaseModel):
    id: str
    school: str
    student_id: str
    term: str
    section_id: str
    course_code: str
    subject_name: str
    brief: str
    files: list[FileOut]
    status: Literal["draft", "submitted", "certified", "returned"]
    editable: bool
    submission: int
    submitted_at: datetime | None
    certified_at: datetime | None
    returned_at: datetime | None
    return_reason: str | None
    created_at: datetime
    updated_at: datetime


class OutcomeList(BaseModel):
    total: int
    items: list[OutcomeOut]


class OutcomeQuery(Query):
    term: str | None = Field(default=None, pattern=TERM_PATTERN)
    section_id: str | None = Field(default=None, max_length=64)
    student_id: str | None = Field(default=None, max_length=64)
    status: Literal["draft", "submitted", "certified", "returned"] | None = None
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=200)


def outcome_out(outcome: Outcome) -> dict:
    return OutcomeOut(id=outcome.id, school=outcome.school, student_id=outcome.student_id, term=outcome.term,
                      section_id=outcome.section_id, course_code=outcome.course_code,
                      subject_name=outcome.subject_name or "", brief=outcome.brief or "",
                      files=[file_out(f) for f in outcome.files], status=outcome.status, editable=outcome.editable,
                      submission=outcome.submission, submitted_at=outcome.submitted_at,
                      certified_at=outcome.certified_at, returned_at=outcome.returned_at,
                      return_reason=outcome.return_reason, created_at=outcome.created_at,
                      updated_at=outcome.updated_at).model_dump(mode="json")


# ---- performances ----------------------------------------------------------------------------------------

def _check_link(url: str) -> str:
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url)
            or any(ord(c) < 32 or ord(c) == 127 for c in url)):
        raise ValueError("links must be http:// or https:// URLs")
    return url


class PerformanceFields(Body):
    name: str = Field(min_length=1, max_length=100)
    organiser: str = Field(default="", max_length=100, description="主辦單位")
    start_date: date
    end_date: date
    hours: float = Field(default=0, ge=0, le=2000)
    brief: str = Field(default="", max_length=BRIEF_MAX, description="內容簡述")
    result: str = Field(default="", max_length=100, description="成果/名次/等級")
    links: list[str] = Field(default_factory=list, max_length=MAX_LINKS, description="external http(s) links")

    @field_validator("links")
    @classmethod
    def http_links(cls, links: list[str]) -> list[str]:
        return [_check_link(link.strip()) for link in links]


class PerformanceIn(PerformanceFields):
    category: Category
    year: str | None = Field(default=None, pattern=r"^[0-9]{3}$", description="學年度, e.g. 112")
    term: str | None = Field(default=None, pattern=TERM_PATTERN, description="or a term; its first 3 digits are the year")

    @model_validator(mode="after")
    def year_of_term(self):
        if self.year is None and self.term is None:
            raise ValueError("give the school year (year) or a term")
        if self.year is not None and self.term is not None and self.term[:3] != self.year:
            raise ValueError("the term is not in the given school year")
        return self


class PerformancePatch(Body):
    category: Category | None = None
    name: str | None = Field(default=None, min_length=1, max_length=100)
    organiser: str | None = Field(default=None, max_length=100)
    start_date: date | None = None
    end_date: date | None = None
    hours: float | None = Field(default=None, ge=0, le=2000)
    brief: str | None = Field(default=None, max_length=BRIEF_MAX)
    result: str | None = Field(default=None, max_length=100)
    links: list[str] | None = Field(default=None, max_length=MAX_LINKS)

    @field_validator("links")
    @classmethod
    def http_links(cls, links: list[str] | None) -> list[str] | None:
        return None if links is None else [_check_link(link.strip()) for link in links]


class PerformanceOut(BaseModel):
    id: str
    school: str
    student_id: str
    year: str
    term: str | None
    category: Category
    name: str
    organiser: str
    start_date: str
    end_date: str
    hours: float
    brief: str
    result: str
    links: list[str]
    files: list[FileOut]
    status: Literal["draft"]
    editable: bool
    created_at: datetime
    updated_at: datetime


class PerformanceList(BaseModel):
    total: int
    items: list[PerformanceOut]


class PerformanceQuery(Query):
    year: str | None = Field(default=None, pattern=r"^[0-9]{3}$")
    student_id: str | None = Field(default=None, max_length=64)
    category: Category | None = None
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=200)


def performance_out(item: Performance) -> dict:
    return PerformanceOut(id=item.id, school=item.school, student_id=item.student_id, year=item.year, term=item.term,
                          category=item.category, name=item.name, organiser=item.organiser or "",
                          start_date=item.start_date, end_date=item.end_date, hours=item.hours, brief=item.brief or "",
                          result=item.result or "", links=list(item.links), files=[file_out(f) for f in item.files],
                          status=item.status, editable=item.editable, created_at=item.created_at,
                          updated_at=item.updated_at).model_dump(mode="json")


def _performance_values(values: dict) -> dict:
    for field in ("start_date", "end_date"):
        if isinstance(values.get(field), date):
            values[field] = values[field].isoformat()
    return values


# ---- helpers ---------------------------------------------------------------------------------------------

# ---- selection (勾選) --------------------------------------------------------------------------------------

class SelectionIn(Body):
    """The whole selection of the school year (PUT replaces it): ids in the order the student wants them."""

    outcome_ids: list[str] = Field(default_factory=list, max_length=50)
    performance_ids: list[str] = Field(default_factory=list, max_length=50)


class SelectedFileOut(BaseModel):
    file_id: str
    name: str
    media_type: str
    size: int
    sha256: str


class SelectedOutcomeOut(BaseModel):
    id: str
    term: str
    course_code: str
    subject_name: str
    brief: str
    certified_at: datetime | None
    files: list[SelectedFileOut]


class SelectedPerformanceOut(BaseModel):
    id: str
    category: str
    name: str
    start_date: str
    end_date: str
    brief: str
    files: list[SelectedFileOut]


class SelectionOut(BaseModel):
    id: str
    school: str
    student_id: str
    year: str
    revision: int = Field(description="0 until the student first selects; +1 for each change")
    locked: bool = Field(description="the year was submitted: the selection can no longer change")
    locked_at: datetime | None
    updated_at: datetime | None
    caps: dict[str, int]
    outcomes: list[SelectedOutcomeOut]
    performances: list[SelectedPerformanceOut]


class SelectionList(BaseModel):
    total: int
    items: list[SelectionOut]


class SelectionQuery(Query):
    student_id: str | None = Field(default=None, max_length=64)


class SchoolSelectionQuery(Query):
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=50, ge=1, le=200)


class YearLockOut(BaseModel):
    school: str
    year: str
    locked_at: datetime
    locked_by: str
    newly_locked: int = Field(description="selections this call locked")


def _selected_files(item: Item) -> list[dict]:
    return [{"file_id": f.file_id, "name": f.name, "media_type": f.media_type, "size": f.size, "sha256": f.sha256}
            for f in item.files]


def selection_out(view: domain.SelectionView) -> dict:
    selection = view.selection
    return SelectionOut(
        id=selection.id, school=selection.school, student_id=selection.student_id, year=selection.year,
        revision=selection.revision or 0, locked=view.locked, locked_at=selection.locked_at,
        updated_at=selection.updated_at, caps=view.caps,
        outcomes=[{"id": o.id, "term": o.term, "course_code": o.course_code, "subject_name": o.subject_name or "",
                   "brief": o.brief or "", "certified_at": o.certified_at, "files": _selected_files(o)}
                  for o in view.outcomes],
        performances=[{"id": p.id, "category": p.category, "name": p.name, "start_date": p.start_date,
                       "end_date": p.end_date, "brief": p.brief or "", "files": _selected_files(p)}
                      for p in view.performances]).model_dump(mode="json")


def client_address() -> str:
    """The first hop of X-Forwarded-For (the client as the gateway saw it), else the peer address."""
    forwarded = request.headers.get("X-Forwarded-For", "")
    first = forwarded.split(",")[0].strip()
    return first or request.remote_addr or "unknown"


def content_disposition(name: str) -> str:
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def install(app, runtime) -> None:
    intake: domain.Intake = runtime.state["intake"]
    app.extensions["footprint.ready"]["media"] = intake.store.ping
    api = Api("intake", "File intake")

    # -- policy ---------------------------------------------------------------------------------------------
    @api.route("GET", f"{PREFIX}/schools/<code>/policy", summary="The school's upload policy (limits, caps, open?)",
               response=PolicyOut, tags=["intake-policy"])
    @require_auth()
    def get_policy(code):
        return json_response(policy_out(domain.get_policy(current_principal(), code)))

    @api.route("PUT", f"{PREFIX}/schools/<code>/policy", summary="Set the school's upload policy (school admin)",
               body=PolicyIn, response=PolicyOut, tags=["intake-policy"])
    @require_auth("school_admin")
    def put_policy(code):
        body = read_json(PolicyIn)
        values = {"document_limit": body.document_limit_bytes, "media_limit": body.media_limit_bytes,
                  "outcome_cap_per_term": body.outcome_cap_per_term,
                  "performance_cap_per_year": body.performance_cap_per_year,
                  "outcome_selection_cap": body.outcome_selection_cap,
                  "performance_selection_cap": body.performance_selection_cap, "uploads_open": body.uploads_open}
        return json_response(policy_out(domain.put_policy(current_principal(), code, values)))

    # -- outcomes -------------------------------------------------------------------------------------------
    @api.route("GET", f"{PREFIX}/outcomes", summary="Course outcomes the caller may see (own, sections, class, school)",
               query=OutcomeQuery, response=OutcomeList, tags=["intake-outcomes"])
    @require_auth()
    def list_outcomes():
        query = read_query(OutcomeQuery)
        total, items = domain.list_outcomes(current_principal(), term=query.term, section_id=query.section_id,
                                            student_id=query.student_id, status=query.status, offset=query.offset,
                                            limit=query.limit)
        return json_response({"total": total, "items": [outcome_out(o) for o in items]})

    @api.route("POST", f"{PREFIX}/outcomes", summary="Start a course outcome (課程學習成果) for an enrolled section",
               body=OutcomeIn, response=OutcomeOut, status=201, tags=["intake-outcomes"])
    @require_auth("student")
    def create_outcome():
        body = read_json(OutcomeIn)
        outcome = domain.create_outcome(current_principal(), body.section_id, body.brief)
        return json_response(outcome_out(outcome), 201, headers={"Location": f"{PREFIX}/outcomes/{outcome.id}"})

    @api.route("GET", f"{PREFIX}/outcomes/<outcome_id>", summary="One course outcome", response=OutcomeOut,
               tags=["intake-outcomes"])
    @require_auth()
    def get_outcome(outcome_id):
        return json_response(outcome_out(domain.visible_item(current_principal(), Outcome, outcome_id)))

    @api.route("PATCH", f"{PREFIX}/outcomes/<outcome_id>", summary="Edit the brief (draft or returned only)",
               body=OutcomePatch, response=OutcomeOut, tags=["intake-outcomes"])
    @require_auth("student")
    def patch_outcome(outcome_id):
        body = read_json(OutcomePatch)
        return json_response(outcome_out(domain.update_outcome(current_principal(), outcome_id, body.brief)))

    @api.route("DELETE", f"{PREFIX}/outcomes/<outcome_id>", summary="Delete a draft or returned outcome", status=204,
               tags=["intake-outcomes"])
    @require_auth("student")
    def delete_outcome(outcome_id):
        domain.delete_item(intake, current_principal(), Outcome, outcome_id)
        return Response(status=204)

    @api.route("POST", f"{PREFIX}/outcomes/<outcome_id>/submit",
               summary="Send for certification (送出認證): locks the outcome until certification returns it",
               response=OutcomeOut, tags=["intake-outcomes"])
    @require_auth("student")
    def submit_outcome(outcome_id):
        outcome = domain.submit_outcome(current_principal(), outcome_id, client_address())
        return json_response(outcome_out(outcome))

    @api.route("PUT", f"{PREFIX}/outcomes/<outcome_id>/files/<upload_key>",
               summary="Upload a file (raw body, streamed; X-File-Name percent-encoded; optional X-Content-SHA256)",
               response=FileOut, status=201, request_media=BINARY, tags=["intake-files"])
    @require_auth("student")
    def upload_outcome_file(outcome_id, upload_key):
        return _upload(Outcome, outcome_id, upload_key)

    @api.route("POST", f"{PREFIX}/outcomes/<outcome_id>/uploads",
               summary="Start a direct upload to the media store (presigned PUT, verified on complete)",
               body=DirectUploadIn, response=DirectUploadOut, status=201, tags=["intake-files"])
    @require_auth("student")
    def start_outcome_upload(outcome_id):
        return _start_direct(Outcome, outcome_id)

    # -- performances ---------------------------------------------------------------------------------------
    @api.route("GET", f"{PREFIX}/performances", summary="Diverse performances the caller may see",
               query=PerformanceQuery, response=PerformanceList, tags=["intake-performances"])
    @require_auth()
    def list_performances():
        query = read_query(PerformanceQuery)
        total, items = domain.list_performances(current_principal(), year=query.year, student_id=query.student_id,
                                                category=query.category, offset=query.offset, limit=query.limit)
        return json_response({"total": total, "items": [performance_out(p) for p in items]})

    @api.route("POST", f"{PREFIX}/performances", summary="Record a diverse performance (多元表現)",
               body=PerformanceIn, response=PerformanceOut, status=201, tags=["intake-performances"])
    @require_auth("student")
    def create_performance():
        body = read_json(PerformanceIn)
        values = _performance_values(body.model_dump())
        values["year"] = body.year or body.term[:3]
        item = domain.create_performance(current_principal(), values)
        return json_response(performance_out(item), 201, headers={"Location": f"{PREFIX}/performances/{item.id}"})

    @api.route("GET", f"{PREFIX}/performances/<performance_id>", summary="One diverse performance",
               response=PerformanceOut, tags=["intake-performances"])
    @require_auth()
    def get_performance(performance_id):
        return json_response(performance_out(domain.visible_item(current_principal(), Performance, performance_id)))

    @api.route("PATCH", f"{PREFIX}/performances/<performance_id>", summary="Edit a diverse performance",
               body=PerformancePatch, response=PerformanceOut, tags=["intake-performances"])
    @require_auth("student")
    def patch_performance(performance_id):
        changes = _performance_values(read_json(PerformancePatch).model_dump(exclude_unset=True))
        changes = {k: v for k, v in changes.items() if v is not None}
        return json_response(performance_out(domain.update_performance(current_principal(), performance_id, changes)))

    @api.route("DELETE", f"{PREFIX}/performances/<performance_id>", summary="Delete a diverse performance",
               status=204, tags=["intake-performances"])
    @require_auth("student")
    def delete_performance(performance_id):
        domain.delete_item(intake, current_principal(), Performance, performance_id)
        return Response(status=204)

    @api.route("PUT", f"{PREFIX}/performances/<performance_id>/files/<upload_key>",
               summary="Upload a proof document or media file (as for outcomes)", response=FileOut, status=201,
               request_media=BINARY, tags=["intake-files"])
    @require_auth("student")
    def upload_performance_file(performance_id, upload_key):
        return _upload(Performance, performance_id, upload_key)

    @api.route("POST", f"{PREFIX}/performances/<performance_id>/uploads",
               summary="Start a direct upload to the media store (as for outcomes)", body=DirectUploadIn,
               response=DirectUploadOut, status=201, tags=["intake-files"])
    @require_auth("student")
    def start_performance_upload(performance_id):
        return _start_direct(Performance, performance_id)

    # -- files ----------------------------------------------------------------------------------------------
    @api.route("POST", f"{PREFIX}/uploads/<upload_id>/complete",
               summary="Finish a direct upload: intake reads the stored bytes back and checks type, size and sha256; "
                       "only then is the file on the item (201; 200 when completed before)",
               response=FileOut, status=201, tags=["intake-files"])
    @require_auth("student")
    def complete_upload(upload_id):
        record, created = domain.complete_direct_upload(intake, current_principal(), upload_id)
        headers = {"Location": f"{PREFIX}/files/{record.file_id}", "X-Content-SHA256": record.sha256}
        return json_response(file_out(record), 201 if created else 200, headers=headers)

    @api.route("GET", f"{PREFIX}/files/<file_id>",
               summary="Download a file (streamed; X-Content-SHA256 carries its checksum)", tags=["intake-files"])
    @require_auth()
    def download_file(file_id):
        _, record = domain.find_file(current_principal(), file_id)
        chunks = domain.open_file(intake, record)
        body = domain.verified_stream(chunks, record, on_error=log.error)
        response = Response(body, status=200, mimetype=record.media_type, direct_passthrough=True)
        response.headers["Content-Length"] = str(record.size)
        response.headers["Content-Disposition"] = content_disposition(record.name)
        response.headers["X-Content-SHA256"] = record.sha256
        response.headers["ETag"] = f"\"{record.sha256}\""
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "private, no-store"
        return response

    @api.route("GET", f"{PREFIX}/files/<file_id>/link",
               summary="A short-lived (≤ 5 min) presigned download link (S3), or the stream path (disk store)",
               query=LinkQuery, response=FileLinkOut, tags=["intake-files"])
    @require_auth()
    def file_link(file_id):
        query = read_query(LinkQuery)
        _, record = domain.find_file(current_principal(), file_id)
        url = domain.file_link(intake, record, query.expires)
        out = FileLinkOut(file_id=record.file_id, via="presigned" if url else "stream",
                          url=url or f"{PREFIX}/files/{record.file_id}", expires_in=query.expires if url else None,
                          name=record.name, size=record.size, sha256=record.sha256)
        return json_response(out, headers={"Cache-Control": "private, no-store"})

    @api.route("DELETE", f"{PREFIX}/files/<file_id>", summary="Remove a file from its item (draft or returned only)",
               status=204, tags=["intake-files"])
    @require_auth("student")
    def delete_file(file_id):
        item, _ = domain.find_file(current_principal(), file_id)
        domain.remove_file(intake, current_principal(), type(item), item.id, file_id)
        return Response(status=204)

    # -- selection (勾選) -------------------------------------------------------------------------------------
    @api.route("GET", f"{PREFIX}/selections/<year>", summary="A school year's selection: the caller's own, or a "
               "student's (staff, homeroom teacher)", query=SelectionQuery, response=SelectionOut,
               tags=["intake-selection"])
    @require_auth()
    def get_selection(year):
        query = read_query(SelectionQuery)
        return json_response(selection_out(domain.get_selection(current_principal(), year, query.student_id)))

    @api.route("PUT", f"{PREFIX}/selections/<year>", summary="Select (勾選) the year's certified outcomes and "
               "performances (replaces the selection)", body=SelectionIn, response=SelectionOut,
               tags=["intake-selection"])
    @require_auth("student")
    def put_selection(year):
        body = read_json(SelectionIn)
        view = domain.put_selection(current_principal(), year, body.outcome_ids, body.performance_ids)
        return json_response(selection_out(view))

    @api.route("GET", f"{PREFIX}/schools/<code>/selections/<year>", summary="Every selection of the school year "
               "(staff)", query=SchoolSelectionQuery, response=SelectionList, tags=["intake-selection"])
    @require_auth()
    def list_selections(code, year):
        query = read_query(SchoolSelectionQuery)
        total, views = domain.list_selections(current_principal(), code, year, offset=query.offset, limit=query.limit)
        return json_response({"total": total, "items": [selection_out(v) for v in views]})

    @api.route("POST", f"{PREFIX}/schools/<code>/selections/<year>/lock", summary="Lock the school year's "
               "selections once the year is submitted (school admin)", response=YearLockOut,
               tags=["intake-selection"])
    @require_auth("school_admin")
    def lock_selections(code, year):
        lock, marked = domain.lock_year(current_principal(), code, year)
        return json_response(YearLockOut(school=lock.school, year=lock.year, locked_at=lock.locked_at,
                                         locked_by=lock.locked_by, newly_locked=marked).model_dump(mode="json"))

    def _start_direct(model: type[Item], item_id: str):
        body = read_json(DirectUploadIn)
        start = domain.start_direct_upload(intake, current_principal(), model, item_id, name=body.name, size=body.size,
                                           sha256=body.sha256, kind=body.kind, upload_key=body.upload_key)
        if start.upload is None:
            return json_response(direct_upload_out(start), 200,
                                 headers={"Location": f"{PREFIX}/files/{start.file.file_id}"})
        return json_response(direct_upload_out(start), 201, headers={"Cache-Control": "private, no-store"})

    def _upload(model: type[Item], item_id: str, upload_key: str):
        record, created = domain.receive_file(
            intake, current_principal(), model, item_id, upload_key, stream=request.stream,
            length=request.content_length, name_header=request.headers.get("X-File-Name"),
            checksum_header=request.headers.get("X-Content-SHA256"))
        headers = {"Location": f"{PREFIX}/files/{record.file_id}", "X-Content-SHA256": record.sha256}
        return json_response(file_out(record), 201 if created else 200, headers=headers)

    reports.install_routes(api)  # progress statistics (reports.py)
    export.install_routes(api)  # portfolio export: PDF, JSON, a class's zip (export.py)
    api.install(app)

