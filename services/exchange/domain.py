"""The exchange's rules: submissions, corrections, receipts as each role sees them, disputes (疑義), final (定案).

- A submission is one per school and scope and period: ``term`` (basic data and course records of a term) or
  ``year`` (the selected outcomes and performances of an academic year, the year of the term given). Asking for
  it (school admin or registrar; inside the term's 提交 window once the school set one) writes its first package header (``waiting`` for a year until intake's lock
  and the selections it counted are in the projection, else ``building``) and then the submission with
  ``exchange.submission.requested.v1``, on which intake locks the year's selections. Asking again is
  ``submission_exists``; a retried request whose first attempt died between the two writes completes it.
- The worker job (send.py) builds, sends and keeps the receipt. Staff (school admin, registrar, curriculum,
  student affairs) see every receipt row; a student sees only their own (another student's are not found).
- A dispute is raised on one receipt row with a reason, by the row's student or staff, while the submission is
  open and — once the school set a 收訖明細確認 window for the submission's term — only inside it (no window
  set: any time until final). The platform raises its own when a received file's sha256 differs from the
  manifest. Staff reject a dispute with a reason, or answer it with a correction.
- A correction (school admin, registrar) is the next version with ``corrects_version`` = the latest received
  one and only the rows that changed since they were sent (plus rows the platform disputed: the central side
  holds them wrong although ours did not change). It is built in the request, from the projection as it is now:
  a person's dispute whose row did not change yet is ``nothing_changed`` (fix the data in its owning service
  first, and let the projection catch up). Its disputes are ``correcting`` until its receipt resolves them.
  When the central side refused every version so far (a 4xx), the same request builds the whole package again
  as the next version (nothing received: nothing to correct).
- Final (school admin): only with the latest version received, nothing in flight and no open dispute; it
  announces ``exchange.submission.finalized.v1`` with the change. After that every change is ``submission_final``.
- Confirmation (收訖明細確認), under the same window rule as disputes: a student confirms their latest receipt (the
  highest version holding rows of theirs; a correction carries only changed rows, so a student's latest may be older
  than the submission's); staff (school admin, registrar) confirm one student's on their behalf (recorded as such)
  or the school's as a whole (the latest received version, with nothing in flight). Refused while a dispute on the
  student's rows (for the school: any dispute) is open or correcting (``disputes_open``): settle it first — its
  correction is a newer version that needs a confirmation of its own. Confirming what is confirmed answers the
  same confirmation (one per student, or the school, and version — even once the window closed); a confirmation
  does not stop a later dispute (the correction it leads to needs a new confirmation).
- Another school's submission is 404, never 403. Every action is in the submission's audit trail: who, when,
  from which address.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from shared.auth import Principal
from shared.central import package_id
from shared.documents import by_id
from shared.errors import DomainError
from shared.outbox import save_with_events
from shared.tracing import current_carrier

from . import build, events
from .models import AuditEntry, Confirmation, Dispute, Package, ReceiptStudent, Resolution, Submission, Window
from .send import EPOCH, Exchange, audit

VIEWERS = ("school_admin", "registrar", "curriculum", "student_affairs")
SUBMITTERS = ("school_admin", "registrar")
FINALISERS = ("school_admin",)
CONFIRMERS = SUBMITTERS  # who confirm for the school or on a student's behalf: those who answer disputes
UNSETTLED = ("open", "correcting")
RECEIPT_KINDS = ("cadres", "course_records", "outcomes", "performances")
IN_FLIGHT = ("waiting", "building", "ready")


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def check_term(term: str) -> str:
    if not isinstance(term, str) or len(term) != 5 or not term.isdigit() or term[3:] not in ("01", "02"):
        raise DomainError("invalid_term", f"{term!r} is not a term code like 11201")
    return term


def submission_id(school: str, scope: str, term: str) -> str:
    return f"{school}-{scope}-{term if scope == 'term' else term[:3]}"


# ---- tenancy and roles ---------------------------------------------------------------------------------------

def school_of(principal: Principal, school: str) -> str:
    if principal.school is None or principal.school != school:
        raise DomainError("not_found", "no such submission")
    return school


def _require(principal: Principal, roles: tuple[str, ...]) -> None:
    if not principal.has(*roles):
        raise DomainError("forbidden")


def get_submission(principal: Principal, school: str, sid: str) -> Submission:
    school_of(principal, school)
    submission = by_id(Submission, sid, school=school)
    if submission is None:
        raise DomainError("not_found", "no such submission")
    return submission


def _open(submission: Submission) -> Submission:
    if submission.state == "final":
        raise DomainError("submission_final")
    return submission


def packages_of(submission: Submission) -> list[Package]:
    return list(Package.objects(submission_id=submission.id).order_by("version"))


# ---- submissions -----------------------------------------------------------------------------------------------

def request_submission(exchange: Exchange, principal: Principal, school: str, scope: str, term: str,
                       source: str) -> Submission:
    school_of(principal, school)
    _require(principal, SUBMITTERS)
    check_term(term)
    sid = submission_id(school, scope, term)
    existing = Submission.objects(id=sid).first()
    if existing is not None:
        raise DomainError("submission_final" if existing.state == "final" else "submission_exists")
    if not window_open(exchange, school, term, "submission"):
        raise DomainError("submission_window_closed")
    at = exchange.clock()
    year = term[:3]
    # The first package header before the submission: the submission's write (with its event) is what makes the
    # request happen, and a retry after a crash in between finds the header there and writes the submission.
    Package._get_collection().update_one({"_id": package_id(school, term, scope, 1)}, {"$setOnInsert": {
        "submission_id": sid, "school": school, "scope": scope, "term": term, "year": year, "version": 1,
        "corrects_version": None, "answers_disputes": [], "state": "waiting" if scope == "year" else "building",
        "requested_at": at, "requested_by": principal.user_id, "trace": current_carrier(), "attempts": 0,
        "next_attempt_at": at, "claimed_by": None, "claimed_until": EPOCH, "rows": {}, "students": 0}}, upsert=True)
    submission = Submission(id=sid, school=school, scope=scope, term=term, year=year, created_at=at,
                            created_by=principal.user_id,
                            audit=[AuditEntry(at=at, by=principal.user_id, source=source, action="requested",
                                              detail={"scope": scope, "term": term})])
    try:
        save_with_events(submission, [events.submission_requested(submission)])
    except NotUniqueError as exc:
        raise DomainError("submission_exists") from exc
    return submission


def list_submissions(principal: Principal, school: str) -> list[Submission]:
    school_of(principal, school)
    return list(Submission.objects(school=school).order_by("-created_at").exclude("audit"))


def request_correction(exchange: Exchange, principal: Principal, school: str, sid: str, dispute_ids: list[str],
                       source: str) -> Package:
    """The next version with only the rows that changed since they were sent (and the platform-disputed ones)."""
    submission = _open(get_submission(principal, school, sid))
    _require(principal, SUBMITTERS)
    packages = packages_of(submission)
    if any(p.state in IN_FLIGHT for p in packages):
        raise DomainError("submission_busy")
    received = [p for p in packages if p.state == "received"]
    if not received:
        if packages and packages[-1].state == "failed":
            return _rebuild(exchange, principal, submission, packages[-1], source)
        raise DomainError("invalid_transition", "nothing was received yet: there is nothing to correct")
    disputes = list(Dispute.objects(id__in=dispute_ids, submission_id=sid)) if dispute_ids else []
    if len(disputes) != len(set(dispute_ids)):
        raise DomainError("not_found", "no such dispute on this submission")
    if any(d.state != "open" for d in disputes):
        raise DomainError("invalid_transition", "only open disputes can be answered with a correction")
    latest = max(packages, key=lambda p: p.version)
    package = Package(id=package_id(school, submission.term, submission.scope, latest.version + 1),
                      submission_id=sid, school=school, scope=submission.scope, term=submission.term,
                      year=submission.year, version=latest.version + 1, corrects_version=received[-1].version,
                      answers_disputes=[d.id for d in disputes], state="ready", requested_at=exchange.clock(),
                      requested_by=principal.user_id, trace=current_carrier(), claimed_until=EPOCH)
    current = build.student_rows(submission.scope, build.snapshot(submission.scope, school, submission.term,
                                                                  submission.year))
    sent = build.sent_rows(exchange.store, received)
    always = {(d.student_id, d.kind, d.row_key) for d in disputes if d.by_platform}
    rows = build.changed_rows(current, sent, always)
    changed = {(s, k, r["key"]) for s, kinds in rows.items() for k, found in kinds.items() for r in found.rows()}
    unchanged = [d for d in disputes if not d.by_platform and (d.student_id, d.kind, d.row_key) not in changed]
    if unchanged or not rows:
        raise DomainError("nothing_changed", errors=[{"field": "dispute_ids", "code": "unchanged",
                                                      "dispute_id": d.id, "row_key": d.row_key} for d in unchanged])
    at = exchange.clock()
    for name, value in build.store_body(exchange.store, package, rows, at).items():
        setattr(package, name, value)
    package.next_attempt_at = at
    try:
        package.save(force_insert=True)
    except (NotUniqueError, DuplicateKeyError) as exc:  # another correction of the same version at the same moment
        raise DomainError("submission_busy") from exc
    if disputes:
        Dispute.objects(id__in=[d.id for d in disputes], state="open").update(set__state="correcting",
                                                                             set__correction_version=package.version)
    audit(sid, at, principal.user_id, "correction_requested", {
        "version": package.version, "corrects_version": package.corrects_version, "disputes": package.answers_disputes,
        "rows": package.rows}, source)
    return package


def _rebuild(exchange: Exchange, principal: Principal, submission: Submission, failed: Package,
             source: str) -> Package:
    """The central side refused every version so far (a 4xx, in the package's ``last_error``): once the data is
    fixed, the whole package again as the next version, built by the job (no receipt to correct: not a correction)."""
    at = exchange.clock()
    package = Package(id=package_id(submission.school, submission.term, submission.scope, failed.version + 1),
                      submission_id=submission.id, school=submission.school, scope=submission.scope,
                      term=submission.term, year=submission.year, version=failed.version + 1, state="building",
                      requested_at=at, requested_by=principal.user_id, trace=current_carrier(), next_attempt_at=at,
                      claimed_until=EPOCH)
    try:
        package.save(force_insert=True)
    except (NotUniqueError, DuplicateKeyError) as exc:
        raise DomainError("submission_busy") from exc
    audit(submission.id, at, principal.user_id, "rebuild_requested",
          {"version": package.version, "refused_version": failed.version}, source)
    return package


def finalise(exchange: Exchange, principal: Principal, school: str, sid: str, source: str) -> Submission:
    submission = _open(get_submission(principal, school, sid))
    _require(principal, FINALISERS)
    packages = packages_of(submission)
    if not packages or any(p.state in IN_FLIGHT for p in packages):
        raise DomainError("submission_busy")
    latest = packages[-1]
    if latest.state != "received":
        raise DomainError("invalid_transition", f"version {latest.version} was not received (it {latest.state})")
    if Dispute.objects(submission_id=sid, state__in=["open", "correcting"]).count():
        raise DomainError("disputes_open")
    at = exchange.clock()
    submission.state, submission.finalized_at, submission.finalized_by = "final", at, principal.user_id
    submission.latest_version = latest.version
    submission.audit.append(AuditEntry(at=at, by=principal.user_id, source=source, action="finalized",
                                       detail={"version": latest.version}))
    save_with_events(submission, [events.submission_finalized(submission)])
    return submission


# ---- receipts ----------------------------------------------------------------------------------------------

def _student_scope(principal: Principal, student_id: str | None) -> str | None:
    """Staff may ask for any student (or all); a student only for themself; others are forbidden."""
    if principal.has(*VIEWERS):
        return student_id
    if principal.has("student"):
        if student_id not in (None, principal.user_id):
            raise DomainError("not_found", "no such receipt")
        return principal.user_id
    raise DomainError("forbidden")


def receipts(principal: Principal, school: str, sid: str, *, version: int | None, student_id: str | None,
             offset: int, limit: int) -> tuple[int, list[ReceiptStudent]]:
    submission = get_submission(principal, school, sid)
    student = _student_scope(principal, student_id)
    query = ReceiptStudent.objects(submission_id=submission.id)
    if student is not None:
        query = query.filter(student_id=student)
    if version is not None:
        query = query.filter(version=version)
    return query.count(), list(query.order_by("student_id", "version").skip(offset).limit(limit))


# ---- disputes ----------------------------------------------------------------------------------------------

def window_open(exchange: Exchange, school: str, term: str, kind: str) -> bool:
    """Inside the school's window of that kind for the term; True when the school set none (nothing to enforce)."""
    window = Window.objects(school=school, term=term, kind=kind).first()
    if window is None:
        return True
    return utc(window.starts_at) <= exchange.clock() < utc(window.ends_at)


def raise_dispute(exchange: Exchange, principal: Principal, school: str, sid: str, *, student_id: str, kind: str,
                  row_key: str, reason: str, version: int | None, source: str) -> Dispute:
    submission = _open(get_submission(principal, school, sid))
    student = _student_scope(principal, student_id)
    if student != student_id:
        raise DomainError("not_found", "no such receipt")
    if not window_open(exchange, school, submission.term, "receipt_confirmation"):
        raise DomainError("dispute_window_closed")
    query = ReceiptStudent.objects(submission_id=sid, student_id=student_id)
    if version is not None:
        query = query.filter(version=version)
    found = None
    for receipt in query.order_by("-version"):
        if any(row["key"] == row_key for row in (receipt.kinds().get(kind) or {}).get("rows", [])):
            found = receipt
            break
    if found is None:
        raise DomainError("not_found", "no such receipt row")
    at = exchange.clock()
    dispute = Dispute(id=uuid.uuid4().hex, school=school, submission_id=sid, version=found.version,
                      student_id=student_id, kind=kind, row_key=row_key, reason=reason, raised_by=principal.user_id,
                      raised_from=source, raised_at=at).save(force_insert=True)
    audit(sid, at, principal.user_id, "dispute_raised", {"dispute_id": dispute.id, "student_id": student_id,
                                                         "kind": kind, "row_key": row_key}, source)
    return dispute


def list_disputes(principal: Principal, school: str, sid: str, *, state: str | None) -> list[Dispute]:
    submission = get_submission(principal, school, sid)
    student = _student_scope(principal, None)
    query = Dispute.objects(submission_id=submission.id)
    if student is not None:
        query = query.filter(student_id=student)
    if state is not None:
        query = query.filter(state=state)
    return list(query.order_by("raised_at", "id"))


def reject_dispute(exchange: Exchange, principal: Principal, school: str, sid: str, dispute_id: str, reason: str,
                   source: str) -> Dispute:
    _open(get_submission(principal, school, sid))
    _require(principal, SUBMITTERS)
    at = exchange.clock()
    resolution = Resolution(at=at, by=principal.user_id, source=source, reason=reason)
    updated = Dispute.objects(id=dispute_id, submission_id=sid, state="open").update_one(
        set__state="rejected", set__resolution=resolution)
    dispute = by_id(Dispute, dispute_id, submission_id=sid)
    if dispute is None:
        raise DomainError("not_found", "no such dispute")
    if not updated:
        raise DomainError("invalid_transition", f"the dispute is {dispute.state}")
    audit(sid, at, principal.user_id, "dispute_rejected", {"dispute_id": dispute_id, "reason": reason}, source)
    return dispute


# ---- confirmations (收訖明細確認) ---------------------------------------------------------------------------

def confirmation_id(sid: str, student_id: str | None, version: int) -> str:
    return f"{sid}:school:{version}" if student_id is None else f"{sid}:student:{student_id}:{version}"


def confirm(exchange: Exchange, principal: Principal, school: str, sid: str, *, student_id: str | None,
            source: str) -> tuple[Confirmation, bool]:
    """A student's confirmation of their latest receipt, staff's on a student's behalf (``student_id``) or the
    school's (staff, no ``student_id``). Returns it and whether it is new (False: it was confirmed already)."""
    submission = _open(get_submission(principal, school, sid))
    if principal.has(*CONFIRMERS):
        student, on_behalf = student_id, student_id is not None
    elif principal.has("student"):
        if student_id not in (None, principal.user_id):
            raise DomainError("not_found", "no such receipt")
        student, on_behalf = principal.user_id, False
    else:
        raise DomainError("forbidden")
    if student is not None:
        latest = ReceiptStudent.objects(submission_id=sid, student_id=student).order_by("-version").only(
            "version").first()
        if latest is None:
            raise DomainError("not_found", "no receipt for this student")
        version = latest.version
        unsettled = Dispute.objects(submission_id=sid, student_id=student, state__in=UNSETTLED)
    else:
        packages = packages_of(submission)
        if any(p.state in IN_FLIGHT for p in packages):
            raise DomainError("submission_busy")
        received = [p for p in packages if p.state == "received"]
        if not received:
            raise DomainError("invalid_transition", "nothing was received yet: there is nothing to confirm")
        version = received[-1].version
        unsettled = Dispute.objects(submission_id=sid, state__in=UNSETTLED)
    cid = confirmation_id(sid, student, version)
    existing = Confirmation.objects(id=cid).first()
    if existing is not None:
        return existing, False
    if not window_open(exchange, school, submission.term, "receipt_confirmation"):
        raise DomainError("confirmation_window_closed")
    if unsettled.count():
        raise DomainError("disputes_open", "settle the open disputes first (rejected, or resolved by a correction)")
    at = exchange.clock()
    confirmation = Confirmation(id=cid, school=school, submission_id=sid, version=version, student_id=student,
                                by=principal.user_id, on_behalf=on_behalf, at=at, source=source)
    try:
        confirmation.save(force_insert=True)
    except (NotUniqueError, DuplicateKeyError):  # the same confirmation at the same moment: answer the first
        return Confirmation.objects(id=cid).first(), False
    audit(sid, at, principal.user_id, "confirmed", {"version": version, "student_id": student,
                                                    "on_behalf": on_behalf}, source)
    return confirmation, True


def confirmations_of(sid: str, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], Confirmation]:
    """The confirmations of these (student, version) receipts."""
    if not pairs:
        return {}
    found = Confirmation.objects(id__in=[confirmation_id(sid, s, v) for s, v in pairs])
    return {(c.student_id, c.version): c for c in found}


@dataclass
class ConfirmationCounts:
    students: int  # students with a receipt
    confirmed: int  # of them, those whose latest receipt is confirmed
    school: Confirmation | None  # the school's confirmation of the latest received version


def confirmation_counts(submission: Submission, packages: list[Package]) -> ConfirmationCounts:
    latest = {row["_id"]: row["version"] for row in ReceiptStudent._get_collection().aggregate([
        {"$match": {"submission_id": submission.id}},
        {"$group": {"_id": "$student_id", "version": {"$max": "$version"}}}])}
    confirmed = sum(1 for c in Confirmation._get_collection().find(
        {"submission_id": submission.id, "student_id": {"$ne": None}}, {"student_id": 1, "version": 1})
        if latest.get(c["student_id"]) == c["version"])
    received = [p.version for p in packages if p.state == "received"]
    school = Confirmation.objects(id=confirmation_id(submission.id, None, received[-1])).first() if received else None
    return ConfirmationCounts(len(latest), confirmed, school)


@dataclass
class SubmissionView:
    submission: Submission
    packages: list[Package]
    open_disputes: int
    confirmations: ConfirmationCounts


def view(submission: Submission) -> SubmissionView:
    packages = packages_of(submission)
    return SubmissionView(submission, packages,
                          Dispute.objects(submission_id=submission.id, state__in=UNSETTLED).count(),
                          confirmation_counts(submission, packages))
