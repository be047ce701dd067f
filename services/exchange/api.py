"""The exchange's HTTP API (behind the gateway at /api/v1/exchange/…)."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from shared.auth import current_principal, require_auth
from shared.http import Api, json_response, read_json, read_query

from . import domain
from .models import Confirmation, Dispute, Package, ReceiptStudent, Submission

PREFIX = "/api/v1/exchange"
S = f"{PREFIX}/schools/<school>/submissions"
Kind = Literal["cadres", "course_records", "outcomes", "performances"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubmissionIn(Body):
    scope: Literal["term", "year"] = Field(description="term: basic data and course records of the term; year: the "
                                                       "selected outcomes and performances of the term's school year")
    term: str = Field(pattern=r"^[0-9]{3}0[12]$", description="e.g. 11201; scope year takes its school year (112)")


class CorrectionIn(Body):
    dispute_ids: list[str] = Field(default_factory=list, max_length=1000,
                                   description="the disputes this correction answers (resolved when it is received)")


class DisputeIn(Body):
    student_id: str = Field(min_length=1, max_length=64)
    kind: Kind
    row_key: str = Field(min_length=1, max_length=80)
    reason: str = Field(min_length=1, max_length=500)
    version: int | None = Field(default=None, ge=1, description="the receipt's version (default: the latest with the row)")


class ConfirmIn(Body):
    student_id: str | None = Field(default=None, min_length=1, max_length=64,
                                   description="staff: confirm this student's receipt on their behalf (absent: the "
                                               "school's confirmation); a student: absent or their own id")


class RejectIn(Body):
    reason: str = Field(min_length=1, max_length=500)


class ReceiptQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(default=None, ge=1)
    student_id: str | None = Field(default=None, max_length=64)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    limit: int = Field(default=100, ge=1, le=500)


class DisputeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["open", "correcting", "resolved", "rejected"] | None = None


class PackageOut(BaseModel):
    package_id: str
    version: int
    corrects_version: int | None
    state: Literal["waiting", "building", "ready", "received", "failed"]
    requested_at: str
    requested_by: str
    built_at: str | None
    package_sha256: str | None
    body_sha256: str | None
    students: int
    rows: dict[str, int]
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    received_at: str | None
    receipt_id: str | None
    rejected_rows: int
    sha256_mismatches: int
    answers_disputes: list[str]


class AuditOut(BaseModel):
    at: str
    by: str
    source: str
    action: str
    detail: dict


class ConfirmedOut(BaseModel):
    at: str
    by: str
    on_behalf: bool
    version: int


class SchoolConfirmationOut(BaseModel):
    at: str
    by: str
    version: int


class ConfirmationsOut(BaseModel):
    students: int = Field(description="students with a receipt")
    confirmed: int = Field(description="of them, those whose latest receipt is confirmed")
    school: SchoolConfirmationOut | None = Field(description="the school's confirmation of the latest received version")


class ConfirmationOut(BaseModel):
    confirmation_id: str
    submission_id: str
    version: int
    student_id: str | None = Field(description="null: the school's confirmation")
    by: str
    on_behalf: bool
    at: str
    source: str


class SubmissionOut(BaseModel):
    submission_id: str
    school: str
    scope: Literal["term", "year"]
    term: str
    year: str
    state: Literal["open", "final"]
    created_at: str
    created_by: str
    finalized_at: str | None
    finalized_by: str | None
    final_version: int | None
    open_disputes: int | None = None
    confirmations: ConfirmationsOut | None = None
    packages: list[PackageOut] | None = None
    audit: list[AuditOut] | None = Field(default=None, description="staff only")


class SubmissionList(BaseModel):
    items: list[SubmissionOut]


class ReceiptRowOut(BaseModel):
    key: str
    status: Literal["received", "rejected"]
    reason: str | None
    sha256: list[str]


class ReceiptKindOut(BaseModel):
    received: int
    rejected: int
    rows: list[ReceiptRowOut]


class ReceiptOut(BaseModel):
    student_id: str
    version: int
    package_id: str
    cadres: ReceiptKindOut | None
    course_records: ReceiptKindOut | None
    outcomes: ReceiptKindOut | None
    performances: ReceiptKindOut | None
    confirmed: ConfirmedOut | None = Field(description="this receipt's confirmation (收訖明細確認), if any")


class ReceiptList(BaseModel):
    total: int
    items: list[ReceiptOut]


class ResolutionOut(BaseModel):
    at: str
    by: str
    source: str
    reason: str
    corrected_in_version: int | None


class DisputeOut(BaseModel):
    dispute_id: str
    submission_id: str
    version: int
    student_id: str
    kind: Kind
    row_key: str
    reason: str
    raised_by: str
    raised_from: str
    raised_at: str
    by_platform: bool
    detail: dict
    state: Literal["open", "correcting", "resolved", "rejected"]
    correction_version: int | None
    resolution: ResolutionOut | None


class DisputeList(BaseModel):
    items: list[DisputeOut]


# ---- rendering -----------------------------------------------------------------------------------------------

def iso(value: datetime | None) -> str | None:
    return domain.utc(value).isoformat() if value is not None else None


def client_address() -> str:
    """The first hop of X-Forwarded-For (the client as the gateway saw it), else the peer address."""
    first = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
    return first or request.remote_addr or "unknown"


def package_out(p: Package) -> dict:
    return {"package_id": p.id, "version": p.version, "corrects_version": p.corrects_version, "state": p.state,
            "requested_at": iso(p.requested_at), "requested_by": p.requested_by, "built_at": iso(p.built_at),
            "package_sha256": p.package_sha256, "body_sha256": p.body_sha256, "students": p.students or 0,
            "rows": dict(p.rows or {}), "attempts": p.attempts, "next_attempt_at": iso(p.next_attempt_at),
            "last_error": p.last_error, "received_at": iso(p.received_at), "receipt_id": p.receipt_id,
            "rejected_rows": p.rejected_rows, "sha256_mismatches": p.mismatches,
            "answers_disputes": list(p.answers_disputes)}


def submission_out(s: Submission, view: domain.SubmissionView | None = None, *, staff: bool = False) -> dict:
    out = {"submission_id": s.id, "school": s.school, "scope": s.scope, "term": s.term, "year": s.year,
           "state": s.state, "created_at": iso(s.created_at), "created_by": s.created_by,
           "finalized_at": iso(s.finalized_at), "finalized_by": s.finalized_by,
           "final_version": s.latest_version if s.state == "final" else None}
    if view is not None:
        out["open_disputes"] = view.open_disputes
        counts, school = view.confirmations, view.confirmations.school
        out["confirmations"] = {"students": counts.students, "confirmed": counts.confirmed, "school": None if school is None
                                else {"at": iso(school.at), "by": school.by, "version": school.version}}
        out["packages"] = [package_out(p) for p in view.packages]
        if staff:
            out["audit"] = [{"at": iso(a.at), "by": a.by, "source": a.source, "action": a.action,
                             "detail": dict(a.detail or {})} for a in s.audit]
    return out


def receipt_out(r: ReceiptStudent, confirmed: Confirmation | None = None) -> dict:
    return {"student_id": r.student_id, "version": r.version, "package_id": r.package_id,
            **{kind: r.kinds().get(kind) for kind in domain.RECEIPT_KINDS},
            "confirmed": None if confirmed is None else {"at": iso(confirmed.at), "by": confirmed.by,
                                                         "on_behalf": confirmed.on_behalf, "version": confirmed.version}}


def confirmation_out(c: Confirmation) -> dict:
    return {"confirmation_id": c.id, "submission_id": c.submission_id, "version": c.version,
            "student_id": c.student_id, "by": c.by, "on_behalf": c.on_behalf, "at": iso(c.at), "source": c.source}


def dispute_out(d: Dispute) -> dict:
    resolution = None
    if d.resolution is not None:
        resolution = {"at": iso(d.resolution.at), "by": d.resolution.by, "source": d.resolution.source,
                      "reason": d.resolution.reason, "corrected_in_version": d.resolution.corrected_in_version}
    return {"dispute_id": d.id, "submission_id": d.submission_id, "version": d.version, "student_id": d.student_id,
            "kind": d.kind, "row_key": d.row_key, "reason": d.reason, "raised_by": d.raised_by,
            "raised_from": d.raised_from, "raised_at": iso(d.raised_at), "by_platform": d.by_platform,
            "detail": dict(d.detail or {}), "state": d.state, "correction_version": d.correction_version,
            "resolution": resolution}


# ---- routes --------------------------------------------------------------------------------------------------

def install(app, runtime) -> None:
    api = Api("exchange", "Central submission exchange")

    def exchange() -> domain.Exchange:
        return runtime.state["exchange"]

    def full(submission: Submission, status: int = 200):
        staff = current_principal().has(*domain.VIEWERS)
        return json_response(submission_out(submission, domain.view(submission), staff=staff), status)

    @api.route("POST", S, summary="Submit a term's basic data and course records, or a school year's selected outcomes "
               "and performances, to the central database (school admin, registrar): the package is built and sent "
               "in the background", body=SubmissionIn, response=SubmissionOut, status=201)
    @require_auth(*domain.SUBMITTERS)
    def request_submission(school):
        body = read_json(SubmissionIn)
        submission = domain.request_submission(exchange(), current_principal(), school, body.scope, body.term,
                                               client_address())
        return full(submission, 201)

    @api.route("GET", S, summary="The school's submissions", response=SubmissionList)
    @require_auth(allow_receipts_only=True)
    def list_submissions(school):
        return json_response({"items": [submission_out(s) for s in domain.list_submissions(current_principal(), school)]})

    @api.route("GET", f"{S}/<sid>", summary="A submission with its package versions (and, for staff, its audit trail)",
               response=SubmissionOut)
    @require_auth(allow_receipts_only=True)
    def get_submission(school, sid):
        return full(domain.get_submission(current_principal(), school, sid))

    @api.route("GET", f"{S}/<sid>/receipts", summary="收訖明細: staff see every student's, a student only their own",
               query=ReceiptQuery, response=ReceiptList)
    @require_auth(allow_receipts_only=True)
    def list_receipts(school, sid):
        q = read_query(ReceiptQuery)
        total, items = domain.receipts(current_principal(), school, sid, version=q.version, student_id=q.student_id,
                                       offset=q.offset, limit=q.limit)
        confirmed = domain.confirmations_of(sid, [(r.student_id, r.version) for r in items])
        return json_response({"total": total, "items": [receipt_out(r, confirmed.get((r.student_id, r.version)))
                                                        for r in items]})

    @api.route("POST", f"{S}/<sid>/confirmations", summary="Confirm receipts (收訖明細確認): a student their latest "
               "receipt; school admin or registrar a student's on their behalf ({student_id}) or the school's (the "
               "latest received version); inside the receipt confirmation window once one is set, not while a "
               "dispute on those rows is open. 201 new, 200 confirmed already", body=ConfirmIn,
               response=ConfirmationOut, status=201)
    @require_auth(allow_receipts_only=True)
    def confirm(school, sid):
        body = read_json(ConfirmIn)
        confirmation, created = domain.confirm(exchange(), current_principal(), school, sid,
                                               student_id=body.student_id, source=client_address())
        return json_response(confirmation_out(confirmation), 201 if created else 200)

    @api.route("POST", f"{S}/<sid>/disputes", summary="Raise a dispute (疑義) on a receipt row (its student or staff, "
               "inside the receipt confirmation window once one is set)", body=DisputeIn, response=DisputeOut,
               status=201)
    @require_auth(allow_receipts_only=True)
    def raise_dispute(school, sid):
        body = read_json(DisputeIn)
        dispute = domain.raise_dispute(exchange(), current_principal(), school, sid, student_id=body.student_id,
                                       kind=body.kind, row_key=body.row_key, reason=body.reason, version=body.version,
                                       source=client_address())
        return json_response(dispute_out(dispute), 201)

    @api.route("GET", f"{S}/<sid>/disputes", summary="Disputes: staff see all, a student their own", query=DisputeQuery,
               response=DisputeList)
    @require_auth(allow_receipts_only=True)
    def list_disputes(school, sid):
        q = read_query(DisputeQuery)
        items = domain.list_disputes(current_principal(), school, sid, state=q.state)
        return json_response({"items": [dispute_out(d) for d in items]})

    @api.route("POST", f"{S}/<sid>/disputes/<dispute_id>/reject", summary="Reject a dispute with a reason "
               "(school admin, registrar)", body=RejectIn, response=DisputeOut)
    @require_auth(*domain.SUBMITTERS)
    def reject_dispute(school, sid, dispute_id):
        body = read_json(RejectIn)
        return json_response(dispute_out(domain.reject_dispute(exchange(), current_principal(), school, sid, dispute_id,
                                                               body.reason, client_address())))

    @api.route("POST", f"{S}/<sid>/corrections", summary="Send a correction: the next version with only the rows "
               "that changed since they were sent (school admin, registrar)", body=CorrectionIn, response=PackageOut,
               status=201)
    @require_auth(*domain.SUBMITTERS)
    def request_correction(school, sid):
        body = read_json(CorrectionIn)
        package = domain.request_correction(exchange(), current_principal(), school, sid, body.dispute_ids,
                                            client_address())
        return json_response(package_out(package), 201)

    @api.route("POST", f"{S}/<sid>/final", summary="Mark the submission final (定案; school admin): nothing it covers "
               "changes again", response=SubmissionOut)
    @require_auth(*domain.FINALISERS)
    def finalise(school, sid):
        return full(domain.finalise(exchange(), current_principal(), school, sid, client_address()))

    api.install(app)
