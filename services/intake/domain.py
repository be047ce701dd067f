"""Intake's rules: school policy, outcomes and performances, who may see what, and the file pipeline.

Tenancy: every read and write is scoped to the caller's school; another school's item is "not found"
(never "forbidden") so tenants cannot probe each other. Inside the school, a user without a relationship
to an item (owner, the section's teachers, the student's homeroom teacher, school staff) gets 403.

Files: bytes stream from the request through ``shared.filecheck.Inspector`` into the media store under a
random key. Only a complete, inspected and checksum-verified object is recorded on its item (one document
write); whatever fails on the way, the object is deleted, so a failed upload is never visible.

Direct uploads (S3 stores): the same checks up front, then a presigned, create-only PUT of exactly the
declared size and sha256 to a random key, then ``complete``: intake streams the object back through the same
Inspector, compares size and sha256 with what was declared and only then writes the same FileRecord. Until
then nothing is visible; a failed check deletes the object; uploads never completed are swept.
"""
from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import unquote

from mongoengine import NotUniqueError, Q

from shared.auth import Principal
from shared.documents import by_id
from shared.errors import ERRORS, DomainError, field_error
from shared.events import WINDOW_NAMES
from shared.filecheck import DOCUMENT, MEDIA, Inspector, Verdict, clean_file_name, display_name
from shared.finality import refuse_if_year_final
from shared.outbox import save_with_events
from shared.storage import MissingObject, verified_read

from . import events
from .models import FinalPeriod
from .models import (MAX_FILES, DirectUpload, Directory, Enrolment, FileRecord, Item, Outcome, Performance, Policy,
                     Section, Selection, Substitution, Window, YearLock, new_id, now)

log = logging.getLogger("footprint.intake")

# Intake's problem codes beyond the shared table (code: status, zh-TW, English); the response's ``message`` names
# the window and its dates.
ERRORS.update({
    "window_closed": (409, "目前不在此項目的上傳期間。", "This item's upload window is not open now."),
    "selection_locked": (409, "本學年度的勾選已提交並鎖定，不能再修改。",
                         "This school year's selection was submitted and is locked."),
    "selection_cap_exceeded": (422, "勾選的項目超過上限。", "More items are selected than the cap allows."),
    "not_selectable": (422, "只能勾選自己該學年度已認證的課程學習成果，以及自己該學年度的多元表現。",
                       "Only your own certified course outcomes and your own diverse performances of that school "
                       "year can be selected."),
    "item_selected": (409, "此項目已勾選，請先取消勾選再修改。", "This item is selected: unselect it before changing it."),
})

CHUNK = 256 * 1024
LINK_SECONDS = 300                                     # presigned links live at most 5 minutes
STAFF_VIEWERS = ("school_admin", "registrar", "curriculum")
UPLOAD_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
RECORD_ATTEMPTS = 5


@dataclass
class Intake:
    """What intake's rules need besides the documents: the media store."""

    store: Any


# ---- tenancy and relationships ---------------------------------------------------------------------------

def _school_of(principal: Principal, school: str) -> str:
    if principal.school is None or principal.school != school:
        raise DomainError("not_found")
    return school


def _directory_entry(school: str, user_id: str):
    return by_id(Directory, user_id, school=school)


def _homeroom_class(principal: Principal) -> str | None:
    """The class the caller is homeroom teacher (導師) of, as identity announced it."""
    if not principal.has("homeroom_teacher") or principal.school is None:
        return None
    entry = _directory_entry(principal.school, principal.user_id)
    return entry.homeroom_class if entry is not None and entry.active and entry.homeroom_class else None


def _homeroom_students(principal: Principal) -> list[str]:
    class_name = _homeroom_class(principal)
    if class_name is None:
        return []
    return [u.id for u in Directory.objects(school=principal.school, class_name=class_name, roles="student").only("id")]


TAIPEI = timezone(timedelta(hours=8))  # substitution dates are Taiwan dates (no daylight saving)


def acting_for(principal: Principal) -> list[str]:
    """The teachers whose sections the caller may open: themself, and whom they substitute for today (代理人)."""
    day = datetime.now(TAIPEI).date().isoformat()
    absent = [s.teacher_id for s in Substitution.objects(school=principal.school, substitute_id=principal.user_id,
                                                        removed=False, starts_on__lte=day, ends_on__gte=day)]
    return [principal.user_id, *absent]


def _teaches(principal: Principal, section_id: str) -> bool:
    return Section.objects(section_id=section_id, school=principal.school,
                           teacher_ids__in=acting_for(principal)).count() > 0


def relation(principal: Principal, item: Item) -> str | None:
    """How the caller relates to an item of their own school: owner, staff, section_teacher, homeroom or None."""
    if principal.user_id == item.student_id:
        return "owner"
    if principal.has(*STAFF_VIEWERS):
        return "staff"
    if isinstance(item, Outcome) and _teaches(principal, item.section_id):
        return "section_teacher"
    class_name = _homeroom_class(principal)
    if class_name is not None:
        student = _directory_entry(item.school, item.student_id)
        if student is not None and student.class_name == class_name:
            return "homeroom"
    return None


def visible_item(principal: Principal, model: type[Item], item_id: str) -> Item:
    item = by_id(model, item_id, deleted_at=None)
    if item is None:
        raise DomainError("not_found")
    _school_of(principal, item.school)
    if relation(principal, item) is None:
        raise DomainError("forbidden")
    return item


def owned_item(principal: Principal, model: type[Item], item_id: str) -> Item:
    """An item the caller may change: their own (others who may see it get 403)."""
    item = visible_item(principal, model, item_id)
    if item.student_id != principal.user_id:
        raise DomainError("forbidden", "only the student who owns the item may change it")
    return item


def _student_school(principal: Principal) -> str:
    if not principal.has("student") or principal.school is None:
        raise DomainError("forbidden", "only students keep outcomes and performances")
    return principal.school


# ---- policy ----------------------------------------------------------------------------------------------

def get_policy(principal: Principal, school: str) -> Policy:
    return Policy.of(_school_of(principal, school))


def put_policy(principal: Principal, school: str, values: dict) -> Policy:
    _school_of(principal, school)
    if not principal.has("school_admin"):
        raise DomainError("forbidden")
    policy = Policy.of(school)
    for field, value in values.items():
        setattr(policy, field, value)
    policy.updated_at = now()
    policy.updated_by = principal.user_id
    policy.save()
    return policy


def _check_open(policy: Policy, item: Item | None = None) -> None:
    """The school's own switch, then (for an item) the scheduled window of its kind and term."""
    if not policy.uploads_open:
        raise DomainError("uploads_closed")
    if item is not None:
        check_window(item)


# ---- upload windows (scheduling.window.scheduled.v1, projected into Window) -----------------------------------------

WINDOW_OF: dict[type, str] = {Outcome: "outcome_upload", Performance: "performance_upload"}


def _term_code(term: str) -> str:
    """"11201", also from the older "1121" form intake still accepts."""
    return f"{term[:3]}0{term[-1]}"


def item_terms(item: Item) -> list[str]:
    """The terms whose window governs an item: an outcome's term; a performance's term, else its year's two."""
    if getattr(item, "term", None):
        return [_term_code(item.term)]
    return [f"{item.year}01", f"{item.year}02"]


def check_window(item: Item, at: datetime | None = None) -> None:
    """409 window_closed outside the item's upload window. A school and term without a window of that kind
    (scheduling never announced one) is not restricted: windows apply once they are set."""
    check_windows(item.school, item_terms(item), WINDOW_OF[type(item)], at)


def check_windows(school: str, terms: list[str], kind: str, at: datetime | None = None) -> None:
    """409 window_closed unless one of the school's ``kind`` windows of ``terms`` is open (none known: open)."""
    windows = list(Window.objects(window_id__in=[f"{school}:{term}:{kind}" for term in terms]))
    if not windows:
        return
    at = at or now()
    if any(_utc(w.starts_at) <= at < _utc(w.ends_at) for w in windows):
        return
    upcoming = sorted((w for w in windows if at < _utc(w.starts_at)), key=lambda w: w.starts_at)
    window = upcoming[0] if upcoming else max(windows, key=lambda w: w.ends_at)
    name_zh, name_en = WINDOW_NAMES[kind]
    starts, ends = (_utc(window.starts_at).astimezone(TAIPEI), _utc(window.ends_at).astimezone(TAIPEI))
    shown = [f"{moment:%Y-%m-%d %H:%M}" for moment in (starts, ends)]
    state_zh, state_en = ("尚未開始", "has not opened yet") if upcoming else ("已經截止", "is closed")
    raise DomainError(
        "window_closed", f"{kind} of {window.term}: {starts.isoformat()} to {ends.isoformat()}",
        message={"zh-TW": f"{name_zh}期間為 {shown[0]} 至 {shown[1]}（臺灣時間），目前{state_zh}。",
                 "en": f"The {name_en} window runs from {shown[0]} to {shown[1]} (Taiwan time) and {state_en}."},
        window={"kind": kind, "term": window.term, "starts_at": starts.isoformat(), "ends_at": ends.isoformat()})


def _refuse_if_final(item: Item) -> None:
    """409 year_final once the school made the item's school year final (shared/finality.py)."""
    refuse_if_year_final(FinalPeriod, item.school, item_terms(item)[0])


def _check_editable(item: Item) -> None:
    _refuse_if_final(item)
    if not item.editable:
        raise DomainError("item_locked")
    if isinstance(item, Performance) and Selection.objects(school=item.school, performance_ids=item.id).count():
        # A selection carries its items whole (intake.selection.changed.v1): a selected one stays as selected.
        raise DomainError("item_selected")


def _enforce_cap(model: type[Item], item: Item, scope: dict, cap: int) -> Item:
    """Insert ``item`` unless the student already has ``cap`` live items in ``scope``.

    Checked before and verified after the insert: of items created concurrently, only the first ``cap`` (by
    creation time, then id) survive; the others are removed again and answered upload_cap_reached."""
    live = model.objects(deleted_at=None, **scope)
    if live.count() >= cap:
        raise DomainError("upload_cap_reached", f"at most {cap}")
    save_with_events(item)  # created_at has millisecond precision (models.now), as MongoDB keeps it
    earlier = live.filter(id__ne=item.id).filter(
        Q(created_at__lt=item.created_at) | Q(created_at=item.created_at, id__lt=item.id)).count()
    if earlier >= cap:
        model.objects(id=item.id).delete()
        raise DomainError("upload_cap_reached", f"at most {cap}")
    return item


# ---- outcomes --------------------------------------------------------------------------------------------

def create_outcome(principal: Principal, section_id: str, brief: str) -> Outcome:
    school = _student_school(principal)
    policy = Policy.of(school)
    _check_open(policy)
    enrolment = Enrolment.objects(school=school, student_id=principal.user_id, section_id=section_id,
                                  active=True).first()
    if enrolment is None:
        raise DomainError("not_enrolled")
    section = by_id(Section, section_id, school=school)
    # The section's current code wins: records may have corrected it after the enrolment was announced.
    course_code = (section.course_code if section else None) or enrolment.course_code
    if course_code is None:
        raise DomainError("not_enrolled", "the course section is not known yet; retry in a moment")
    outcome = Outcome(school=school, student_id=principal.user_id, term=enrolment.term, section_id=section_id,
                      enrolment_id=enrolment.enrolment_id, course_code=course_code,
                      subject_name=section.subject_name if section else "", brief=brief)
    _refuse_if_final(outcome)
    check_window(outcome)
    return _enforce_cap(Outcome, outcome, {"school": school, "student_id": principal.user_id, "term": enrolment.term},
                        policy.outcome_cap_per_term)


def update_outcome(principal: Principal, outcome_id: str, brief: str) -> Outcome:
    outcome = owned_item(principal, Outcome, outcome_id)
    _check_open(Policy.of(outcome.school), outcome)
    _check_editable(outcome)
    outcome.brief = brief
    outcome.updated_at = now()
    return save_with_events(outcome)


def submit_outcome(principal: Principal, outcome_id: str, submitted_from: str) -> Outcome:
    """送出認證: lock the outcome and announce it with its files, in one document write."""
    outcome = owned_item(principal, Outcome, outcome_id)
    if outcome.status not in ("draft", "returned"):
        raise DomainError("invalid_transition", f"an outcome that is {outcome.status} cannot be submitted")
    _refuse_if_final(outcome)
    _check_open(Policy.of(outcome.school), outcome)
    errors = []
    if not outcome.files:
        errors.append(field_error("files", "missing", "Upload at least one file.", "請至少上傳一個檔案。"))
    if not (outcome.brief or "").strip():
        errors.append(field_error("brief", "missing", "Write a brief.", "請填寫成果簡述。"))
    if errors:
        raise DomainError("validation_failed", "an outcome needs a file and a brief", errors=errors)
    enrolment = Enrolment.objects(enrolment_id=outcome.enrolment_id).only("active").first()  # by _id alone
    if enrolment is None or not enrolment.active:
        raise DomainError("not_enrolled", "the enrolment was withdrawn")
    outcome.submission += 1
    outcome.status = "submitted"
    outcome.submitted_at = outcome.updated_at = now()
    outcome.submitted_by = principal.user_id
    outcome.submitted_from = submitted_from[:100]
    outcome.return_reason = None
    for record in outcome.files:
        if record.submitted_in is None:
            record.submitted_in = outcome.submission
    return save_with_events(outcome, [events.outcome_submitted(outcome)])


def list_outcomes(principal: Principal, *, term: str | None, section_id: str | None, student_id: str | None,
                  status: str | None, offset: int, limit: int) -> tuple[int, list[Outcome]]:
    query = _visible_query(principal, outcomes=True)
    filters = {"deleted_at": None}
    for name, value in (("term", term), ("section_id", section_id), ("student_id", student_id), ("status", status)):
        if value is not None:
            filters[name] = value
    items = Outcome.objects(query, **filters)
    return items.count(), list(items.order_by("-created_at", "id").skip(offset).limit(limit))


def _visible_query(principal: Principal, *, outcomes: bool) -> Q:
    if principal.school is None:
        raise DomainError("forbidden", "intake items belong to a school")
    school = Q(school=principal.school)
    if principal.has(*STAFF_VIEWERS):
        return school
    seen = Q(student_id=principal.user_id)
    if outcomes:
        sections = [s.section_id for s in Section.objects(school=principal.school, teacher_ids__in=acting_for(principal))
                    .only("section_id")]
        if sections:
            seen |= Q(section_id__in=sections)
    students = _homeroom_students(principal)
    if students:
        seen |= Q(student_id__in=students)
    return school & seen


# ---- performances ----------------------------------------------------------------------------------------

def _check_dates(performance: Performance) -> None:
    if performance.end_date < performance.start_date:
        raise DomainError("validation_failed", "the end date is before the start date", errors=[
            field_error("end_date", "before_start", "The end date is before the start date.", "結束日期早於開始日期。")])


def create_performance(principal: Principal, values: dict) -> Performance:
    school = _student_school(principal)
    policy = Policy.of(school)
    _check_open(policy)
    performance = Performance(school=school, student_id=principal.user_id, **values)
    _check_dates(performance)
    _refuse_if_final(performance)
    check_window(performance)
    return _enforce_cap(Performance, performance,
                        {"school": school, "student_id": principal.user_id, "year": performance.year},
                        policy.performance_cap_per_year)


def update_performance(principal: Principal, performance_id: str, changes: dict) -> Performance:
    performance = owned_item(principal, Performance, performance_id)
    _check_open(Policy.of(performance.school), performance)
    _check_editable(performance)
    for field, value in changes.items():
        setattr(performance, field, value)
    _check_dates(performance)
    performance.updated_at = now()
    return save_with_events(performance)


def list_performances(principal: Principal, *, year: str | None, student_id: str | None, category: str | None,
                      offset: int, limit: int) -> tuple[int, list[Performance]]:
    query = _visible_query(principal, outcomes=False)
    filters = {"deleted_at": None}
    for name, value in (("year", year), ("student_id", student_id), ("category", category)):
        if value is not None:
            filters[name] = value
    items = Performance.objects(query, **filters)
    return items.count(), list(items.order_by("-created_at", "id").skip(offset).limit(limit))


# ---- both kinds ------------------------------------------------------------------------------------------

def delete_item(intake: Intake, principal: Principal, model: type[Item], item_id: str) -> None:
    """Delete an editable item: it disappears (soft-deleted, out of caps and lists); its files that were never
    part of a submission are removed from the store, submitted ones are kept as evidence."""
    item = owned_item(principal, model, item_id)
    _check_open(Policy.of(item.school), item)
    _check_editable(item)
    unsubmitted = [f.storage_key for f in item.files if f.submitted_in is None]
    item.deleted_at = item.updated_at = now()
    save_with_events(item)
    _discard(intake, unsubmitted)


def remove_file(intake: Intake, principal: Principal, model: type[Item], item_id: str, file_id: str) -> Item:
    item = owned_item(principal, model, item_id)
    _check_open(Policy.of(item.school), item)
    _check_editable(item)
    record = item.file(file_id, retired=False)
    if record is None:
        raise DomainError("not_found", "no such file on this item")
    item.files = [f for f in item.files if f.file_id != file_id]
    if record.submitted_in is not None:
        record.removed_at = now()
        item.retired_files = list(item.retired_files) + [record]
    item.updated_at = now()
    save_with_events(item)
    if record.submitted_in is None:
        _discard(intake, [record.storage_key])
    return item


def _discard(intake: Intake, keys: list[str]) -> None:
    for key in keys:
        try:
            intake.store.delete(key)
        except Exception as exc:  # an orphan object is harmless (no record points at it); never fail the request
            log.warning("could not delete media object %s: %s", key, exc)


# ---- the upload pipeline ---------------------------------------------------------------------------------

def file_name_from_header(value: str | None) -> str:
    """``X-File-Name``: percent-encoded UTF-8; decoded, then held to clean_file_name's rules."""
    if value is None or not value.strip():
        raise DomainError("invalid_file_name", "send the file name in X-File-Name (percent-encoded UTF-8)")
    try:
        decoded = unquote(value.strip(), encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise DomainError("invalid_file_name", "X-File-Name is not percent-encoded UTF-8") from exc
    return clean_file_name(decoded)


def checksum_from_header(value: str | None) -> str | None:
    if value is None or value.strip() == "":
        return None
    if not SHA256.match(value.strip()):
        raise DomainError("validation_failed", "X-Content-SHA256 must be 64 hexadecimal digits", errors=[
            field_error("X-Content-SHA256", "pattern", "64 hexadecimal digits", "須為 64 位十六進位數字")])
    return value.strip().lower()


class BodyError(Exception):
    """Reading the request body failed (client went away, broken transfer)."""


class _Pipeline:
    """Request body → Inspector → media store, as a chunk iterator the store pulls from.

    The verdict and the checksum check happen inside the iterator, before it is exhausted, so a store that
    commits only at the end of its input (the disk store renames a partial file) never commits a bad file."""

    def __init__(self, stream: BinaryIO, inspector: Inspector, expected_sha256: str | None):
        self.stream = stream
        self.inspector = inspector
        self.expected = expected_sha256
        self.verdict: Verdict | None = None
        self.failure: BaseException | None = None
        self.consumed = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                try:
                    chunk = self.stream.read(CHUNK)
                except Exception as exc:
                    raise BodyError(f"{type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                self.consumed += len(chunk)
                self.inspector.feed(chunk)
                yield chunk
            verdict = self.inspector.finish()
            if self.expected is not None and verdict.sha256 != self.expected:
                raise DomainError("checksum_mismatch", f"received sha256 {verdict.sha256}")
            self.verdict = verdict
        except BaseException as exc:
            self.failure = exc
            raise


def _limits(policy: Policy) -> dict[str, int]:
    return {DOCUMENT: policy.document_limit, MEDIA: policy.media_limit}


def _drain_hash(stream: BinaryIO, limit: int) -> str:
    """sha256 of a retried body (to compare with the stored file), stopping at the size limit."""
    digest, size = hashlib.sha256(), 0
    while True:
        try:
            chunk = stream.read(CHUNK)
        except Exception as exc:
            raise DomainError("file_corrupt", "the upload ended before the file was complete") from exc
        if not chunk:
            return digest.hexdigest()
        size += len(chunk)
        if size > limit:
            raise DomainError("file_too_large", f"at most {limit} bytes")
        digest.update(chunk)


def _retry(record: FileRecord, stream: BinaryIO, policy: Policy, expected: str | None) -> FileRecord:
    received = _drain_hash(stream, max(_limits(policy).values()))
    if expected is not None and received != expected:
        raise DomainError("checksum_mismatch", f"received sha256 {received}")
    if received != record.sha256:
        raise DomainError("conflict", "this upload key already holds a different file; use a new key")
    return record


def receive_file(intake: Intake, principal: Principal, model: type[Item], item_id: str, upload_key: str, *,
                 stream: BinaryIO, length: int | None, name_header: str | None,
                 checksum_header: str | None) -> tuple[FileRecord, bool]:
    """Stream one file into an item. Returns (record, created); a retry of a recorded upload is (record, False)."""
    item = owned_item(principal, model, item_id)
    if not UPLOAD_KEY.match(upload_key or ""):
        raise DomainError("validation_failed", "the upload key has 8-64 letters, digits, '-' or '_'")
    policy = Policy.of(item.school)
    expected = checksum_from_header(checksum_header)
    existing = item.file_by_upload_key(upload_key)
    if existing is not None:
        return _retry(existing, stream, policy, expected), False
    _check_open(policy, item)
    _check_editable(item)
    if len(item.files) >= MAX_FILES:
        raise DomainError("validation_failed", f"at most {MAX_FILES} files per item")
    name = file_name_from_header(name_header)
    limit = max(_limits(policy).values())
    if length is not None and length > limit:
        raise DomainError("file_too_large", f"at most {limit} bytes")  # refused before a byte is read
    if length == 0:
        raise DomainError("file_empty")
    storage_key = f"{item.school}/{item.student_id}/{uuid.uuid4().hex}"
    pipeline = _Pipeline(stream, Inspector(_limits(policy), allowed={DOCUMENT, MEDIA}), expected)
    try:
        verdict = _store(intake, storage_key, pipeline, length)
        record = FileRecord(file_id=new_id(), upload_key=upload_key, storage_key=storage_key,
                            name=display_name(name, verdict), kind=verdict.kind, media_type=verdict.media_type,
                            size=verdict.size, sha256=verdict.sha256, uploaded_at=now(), uploaded_by=principal.user_id)
        kept, created = _record(model, item_id, record)
    except BaseException:
        _discard(intake, [storage_key])
        raise
    if not created:
        _discard(intake, [storage_key])  # a concurrent retry with the same key recorded the same file first
    return kept, created


def _store(intake: Intake, storage_key: str, pipeline: "_Pipeline", length: int | None) -> Verdict:
    """Run the pipeline into the store; the verified verdict, or the DomainError that explains the failure."""
    try:
        written = intake.store.put(storage_key, pipeline, length=length, content_type="application/octet-stream")
        if pipeline.verdict is None and pipeline.failure is None:
            for _ in pipeline:  # the store stopped pulling at the last byte: finish the inspection
                written = -1  # …and any byte found now never reached the store
    except Exception as exc:
        failure = pipeline.failure
        if isinstance(failure, DomainError):
            raise failure from None
        if isinstance(failure, BodyError):
            raise DomainError("file_corrupt", "the upload ended before the file was complete") from failure
        if failure is not None and not isinstance(failure, GeneratorExit):
            raise failure from exc
        log.warning("media store failed on %s: %s: %s", storage_key, type(exc).__name__, exc)
        raise DomainError("storage_unavailable") from exc
    verdict = pipeline.verdict
    if verdict is None or written != verdict.size:
        log.error("media store took %s bytes of %s for %s", written, verdict and verdict.size, storage_key)
        raise DomainError("storage_unavailable", "the store did not take the whole file")
    # The store's put already proved it holds exactly these bytes (S3: ETag = MD5 of what it stored).
    return verdict


def _record(model: type[Item], item_id: str, record: FileRecord, *, item: Item | None = None) -> tuple[FileRecord, bool]:
    """Put a verified file on its item: reload, re-check, one versioned write; retried on concurrent writes.
    ``item``: the item as loaded just before (its version makes the first write fail if anything changed since)."""
    for attempt in range(RECORD_ATTEMPTS):
        if item is None or attempt > 0:
            item = by_id(model, item_id, deleted_at=None)
        if item is None:
            raise DomainError("not_found", "the item was deleted meanwhile")
        existing = item.file_by_upload_key(record.upload_key)
        if existing is not None:
            if existing.sha256 != record.sha256:
                raise DomainError("conflict", "this upload key already holds a different file; use a new key")
            return existing, False
        _check_editable(item)
        if len(item.files) >= MAX_FILES:
            raise DomainError("validation_failed", f"at most {MAX_FILES} files per item")
        item.files = list(item.files) + [record]
        item.updated_at = now()
        try:
            save_with_events(item)
            return record, True
        except DomainError as exc:
            if exc.code != "conflict" or attempt == RECORD_ATTEMPTS - 1:
                raise
    raise DomainError("conflict")  # pragma: no cover - the loop returns or raises


# ---- direct uploads (presigned PUT to the store, verified by intake before the file is recorded) -------------

DIRECT_URL_SECONDS = 600                    # the presigned PUT must start within 10 minutes
COMPLETE_GRACE = timedelta(minutes=10)      # complete is taken until 10 minutes after the link expired
SWEEP_AFTER = timedelta(minutes=20)         # then (well after the last complete could start) the sweep cleans up
KEEP_SWEPT = timedelta(days=7)              # and forgets the upload a week later (complete is then 404)
ITEM_TYPES: dict[type, str] = {Outcome: "outcome", Performance: "performance"}
MODELS = {name: model for model, name in ITEM_TYPES.items()}
ROUTE_OF = {"outcome": "outcomes", "performance": "performances"}
# Complete may be called again after these (the bytes may still arrive, the store may come back).
RETRYABLE = {"upload_not_received", "storage_unavailable", "conflict"}


@dataclass
class DirectStart:
    """What an init answers: a pending upload with its URL and headers, or the file already recorded under
    the same upload key (then nothing is to be sent)."""

    upload: DirectUpload | None = None
    url: str | None = None
    headers: dict | None = None
    file: FileRecord | None = None


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def start_direct_upload(intake: Intake, principal: Principal, model: type[Item], item_id: str, *, name: str,
                        size: int, sha256: str, kind: str, upload_key: str | None = None) -> DirectStart:
    """Check everything the streamed path checks before its first byte, then hand out a presigned PUT."""
    item = owned_item(principal, model, item_id)
    upload_id = new_id()
    upload_key = upload_key or upload_id
    if not UPLOAD_KEY.match(upload_key):
        raise DomainError("validation_failed", "the upload key has 8-64 letters, digits, '-' or '_'")
    if not SHA256.match(sha256 or ""):
        raise DomainError("validation_failed", "sha256 must be 64 hexadecimal digits")
    sha256 = sha256.lower()
    policy = Policy.of(item.school)
    existing = item.file_by_upload_key(upload_key)
    if existing is not None:  # a retry of an upload already recorded: nothing to send again
        if existing.sha256 != sha256:
            raise DomainError("conflict", "this upload key already holds a different file; use a new key")
        return DirectStart(file=existing)
    _check_open(policy, item)
    _check_editable(item)
    name = clean_file_name(name)
    limits = _limits(policy)
    if kind not in limits:
        raise DomainError("file_type_not_allowed")
    if size == 0:
        raise DomainError("file_empty")
    if size > limits[kind]:
        raise DomainError("file_too_large", f"at most {limits[kind]} bytes")
    moment = now()
    live = list(DirectUpload.objects(item_id=item.id, state="pending", expires_at__gt=moment))  # one query: ≤ 5
    again = next((u for u in live if u.upload_key == upload_key), None)
    if again is not None and (again.size, again.sha256, again.kind) != (size, sha256, kind):
        raise DomainError("conflict", "this upload key is pending with another file; use a new key")
    if again is None and len(item.files) + len(live) >= MAX_FILES:
        raise DomainError("validation_failed", f"at most {MAX_FILES} files per item (pending uploads included)")
    upload = again or DirectUpload(id=upload_id, school=item.school, student_id=item.student_id, item_type=ITEM_TYPES[model],
                                   item_id=item.id, upload_key=upload_key, name=name, kind=kind, size=size,
                                   sha256=sha256, storage_key=f"{item.school}/{item.student_id}/{uuid.uuid4().hex}")
    try:
        signed = intake.store.presign_put(upload.storage_key, length=size, sha256=sha256, expires=DIRECT_URL_SECONDS)
    except Exception as exc:
        log.warning("media store cannot presign %s: %s: %s", upload.storage_key, type(exc).__name__, exc)
        raise DomainError("storage_unavailable") from exc
    if signed is None:
        raise DomainError("direct_upload_unavailable", "this deployment stores files on disk",
                          stream_url=f"/api/v1/intake/{ROUTE_OF[ITEM_TYPES[model]]}/{item.id}/files/{upload_key}")
    url, headers = signed
    upload.expires_at = moment + timedelta(seconds=DIRECT_URL_SECONDS)  # a repeated init signs a fresh link
    upload.save(force_insert=again is None)  # (a new id: one insert, not a replace that misses, then an insert)
    return DirectStart(upload=upload, url=url, headers=headers)


def complete_direct_upload(intake: Intake, principal: Principal, upload_id: str) -> tuple[FileRecord, bool]:
    """Verify a directly uploaded object and record it. (record, True) the first time, (record, False) again."""
    upload = DirectUpload.objects(id=upload_id).first()
    if (upload is None or principal.school is None or upload.school != principal.school
            or upload.student_id != principal.user_id):
        raise DomainError("not_found")  # someone else's upload does not exist for the caller
    model = MODELS[upload.item_type]
    if upload.state == "completed":
        return _completed_file(model, upload), False
    if upload.state == "failed":
        raise DomainError(upload.failure_code, upload.failure_detail)
    if upload.state == "expired" or now() > _utc(upload.expires_at) + COMPLETE_GRACE:
        raise DomainError("upload_expired")
    try:
        item = owned_item(principal, model, upload.item_id)
        existing = item.file_by_upload_key(upload.upload_key)
        if existing is not None:
            if existing.storage_key == upload.storage_key:  # a concurrent complete of this upload recorded it
                _mark_completed(upload, existing)
                return existing, False
            if existing.sha256 != upload.sha256:
                raise DomainError("conflict", "this upload key already holds a different file; use a new key")
            _mark_completed(upload, existing)  # another upload with the same key recorded the same file first
            _discard(intake, [upload.storage_key])
            return existing, False
        policy = Policy.of(item.school)
        _check_open(policy)
        _check_editable(item)
        verdict = _verify_stored(intake, upload, policy)
        record = FileRecord(file_id=new_id(), upload_key=upload.upload_key, storage_key=upload.storage_key,
                            name=display_name(upload.name, verdict), kind=verdict.kind, media_type=verdict.media_type,
                            size=verdict.size, sha256=verdict.sha256, uploaded_at=now(), uploaded_by=principal.user_id)
        kept, created = _record(model, item.id, record, item=item)
    except DomainError as exc:
        if exc.code not in RETRYABLE:
            _fail(intake, upload, exc)
        raise
    _mark_completed(upload, kept)
    if kept.storage_key != upload.storage_key:
        _discard(intake, [upload.storage_key])
    return kept, created


def _verify_stored(intake: Intake, upload: DirectUpload, policy: Policy) -> Verdict:
    """Stream the stored object through the Inspector (type by bytes, structure, size limit, sha256)."""
    limits = _limits(policy)
    inspector = Inspector(limits, allowed={upload.kind})
    try:
        fetched = intake.store.fetch(upload.storage_key)
    except MissingObject:
        raise DomainError("upload_not_received") from None
    except Exception as exc:
        log.warning("media store failed reading %s: %s: %s", upload.storage_key, type(exc).__name__, exc)
        raise DomainError("storage_unavailable") from exc
    with fetched:
        if fetched.size > limits[upload.kind]:
            raise DomainError("file_too_large", f"at most {limits[upload.kind]} bytes")
        if fetched.size >= 0 and fetched.size != upload.size:
            raise DomainError("checksum_mismatch", f"the store holds {fetched.size} bytes, {upload.size} were declared")
        try:
            for chunk in fetched:
                inspector.feed(chunk)
        except DomainError:
            raise
        except Exception as exc:
            log.warning("media store failed reading %s: %s: %s", upload.storage_key, type(exc).__name__, exc)
            raise DomainError("storage_unavailable") from exc
    verdict = inspector.finish()
    if verdict.size != upload.size or verdict.sha256 != upload.sha256:
        raise DomainError("checksum_mismatch", f"received sha256 {verdict.sha256} ({verdict.size} bytes)")
    return verdict


def _completed_file(model: type[Item], upload: DirectUpload) -> FileRecord:
    item = model.objects(id=upload.item_id, deleted_at=None).first()
    record = item.file(upload.file_id) if item is not None else None
    if record is None:
        raise DomainError("not_found", "the file was removed since")
    return record


def _mark_completed(upload: DirectUpload, record: FileRecord) -> None:
    DirectUpload.objects(id=upload.id, state__in=("pending", "completed")).update_one(
        set__state="completed", set__file_id=record.file_id, set__completed_at=now())


def _fail(intake: Intake, upload: DirectUpload, exc: DomainError) -> None:
    """A definitive refusal: remember it (a repeated complete answers the same) and delete the stored bytes."""
    claimed = DirectUpload.objects(id=upload.id, state="pending").update_one(
        set__state="failed", set__failure_code=exc.code, set__failure_detail=(exc.detail or "")[:500] or None)
    if claimed:
        _discard(intake, [upload.storage_key])


def sweep_direct_uploads(intake: Intake, *, at: datetime | None = None, limit: int = 500) -> int:
    """Clean up after uploads whose link can no longer be used (and no complete can still be running): a pending
    upload expires and whatever was stored for it is deleted; so is anything PUT again under a failed upload's
    key, or under a completed one's whose file is no longer kept. Safe to run in several processes at once."""
    moment = at or now()
    cleaned = 0
    due = DirectUpload.objects(swept_at=None, expires_at__lt=moment - SWEEP_AFTER).order_by("expires_at").limit(limit)
    for upload in due:
        changes = {"set__swept_at": now()}
        if upload.state == "pending":
            changes["set__state"] = "expired"
        if not DirectUpload.objects(id=upload.id, swept_at=None, state=upload.state).update_one(**changes):
            continue  # another process took it
        if upload.state == "completed" and _still_kept(upload):
            continue
        _discard(intake, [upload.storage_key])
        cleaned += 1
    DirectUpload.objects(swept_at__lt=moment - KEEP_SWEPT).delete()
    return cleaned


def _still_kept(upload: DirectUpload) -> bool:
    item = MODELS[upload.item_type].objects(id=upload.item_id).first()
    if item is None:
        return False
    if any(f.storage_key == upload.storage_key for f in item.retired_files):
        return True
    return any(f.storage_key == upload.storage_key and (item.deleted_at is None or f.submitted_in is not None)
               for f in item.files)


# ---- downloads -------------------------------------------------------------------------------------------

def find_file(principal: Principal, file_id: str) -> tuple[Item, FileRecord]:
    """A file by id, for those who may see its item (another school's: not found)."""
    for model in (Outcome, Performance):
        item = model.objects(Q(files__file_id=file_id) | Q(retired_files__file_id=file_id), deleted_at=None).first()
        if item is not None:
            _school_of(principal, item.school)
            if relation(principal, item) is None:
                raise DomainError("forbidden")
            return item, item.file(file_id)
    raise DomainError("not_found")


def open_file(intake: Intake, record: FileRecord) -> Iterator[bytes]:
    try:
        return intake.store.open(record.storage_key)
    except Exception as exc:
        log.error("media object %s of file %s cannot be opened: %s", record.storage_key, record.file_id, exc)
        raise DomainError("storage_unavailable") from exc


def verified_stream(chunks: Iterator[bytes], record: FileRecord, on_error: Callable[[str], None]) -> Iterator[bytes]:
    """The stored bytes, checked against the file's recorded size and sha256 on the way out."""
    return verified_read(chunks, record.size, record.sha256, lambda problem: on_error(f"file {record.file_id}: {problem}"))


def file_link(intake: Intake, record: FileRecord, expires: int) -> str | None:
    try:
        return intake.store.link(record.storage_key, min(expires, LINK_SECONDS), record.name)
    except Exception as exc:
        raise DomainError("storage_unavailable") from exc


# ---- selection (勾選) ------------------------------------------------------------------------------------------
# Intake owns selection because it owns what is selected: the certified state of outcomes (projected from
# certification) and the performances themselves. A selection is saved whole with the snapshot of its items in
# one event, so the exchange never has to ask intake for anything while it builds a package.

YEAR = re.compile(r"^[0-9]{3}$")


@dataclass
class SelectionView:
    selection: Selection
    outcomes: list[Outcome]
    performances: list[Performance]
    caps: dict[str, int]
    locked: bool


def _year(year: str) -> str:
    if not YEAR.match(year or ""):
        raise DomainError("validation_failed", "the school year is 3 digits (學年度, e.g. 112)",
                          errors=[field_error("year", "pattern", "3 digits, e.g. 112", "學年度為 3 位數字，例如 112")])
    return year


def selection_caps(policy: Policy) -> dict[str, int]:
    return {"outcomes": policy.outcome_selection_cap, "performances": policy.performance_selection_cap}


def _year_locked(school: str, year: str) -> bool:
    return YearLock.objects(id=f"{school}:{year}").count() > 0


def _view(selection: Selection) -> SelectionView:
    outcomes = {o.id: o for o in Outcome.objects(id__in=selection.outcome_ids)}
    performances = {p.id: p for p in Performance.objects(id__in=selection.performance_ids)}
    return SelectionView(selection=selection, outcomes=[outcomes[i] for i in selection.outcome_ids if i in outcomes],
                         performances=[performances[i] for i in selection.performance_ids if i in performances],
                         caps=selection_caps(Policy.of(selection.school)),
                         locked=selection.locked_at is not None or _year_locked(selection.school, selection.year))


def _selection_of(school: str, student_id: str, year: str) -> Selection:
    key = Selection.key(school, student_id, year)
    return Selection.objects(id=key).first() or Selection(id=key, school=school, student_id=student_id, year=year)


def get_selection(principal: Principal, year: str, student_id: str | None = None) -> SelectionView:
    """The caller's own selection, or (staff, the student's homeroom teacher) a student's of the same school."""
    year = _year(year)
    if student_id is None or student_id == principal.user_id:
        school = _student_school(principal)
        return _view(_selection_of(school, principal.user_id, year))
    if principal.school is None:
        raise DomainError("not_found")
    student = _directory_entry(principal.school, student_id)
    if student is None:
        raise DomainError("not_found")
    homeroom = _homeroom_class(principal)
    if not principal.has(*STAFF_VIEWERS) and not (homeroom and student.class_name == homeroom):
        raise DomainError("forbidden")
    return _view(_selection_of(principal.school, student_id, year))


def list_selections(principal: Principal, school: str, year: str, *, offset: int, limit: int
                    ) -> tuple[int, list[SelectionView]]:
    _school_of(principal, school)
    if not principal.has(*STAFF_VIEWERS):
        raise DomainError("forbidden")
    found = Selection.saved(school=school, year=_year(year)).order_by("student_id")
    return found.count(), [_view(s) for s in found.skip(offset).limit(limit)]


def _selectable(principal: Principal, year: str, outcome_ids: list[str], performance_ids: list[str]
                ) -> tuple[list[Outcome], list[Performance]]:
    errors = []
    outcomes = {o.id: o for o in Outcome.objects(id__in=outcome_ids, school=principal.school,
                                                 student_id=principal.user_id, deleted_at=None)}
    for index, outcome_id in enumerate(outcome_ids):
        outcome = outcomes.get(outcome_id)
        if outcome is None or _term_code(outcome.term)[:3] != year:
            errors.append(field_error(f"outcome_ids[{index}]", "not_yours_or_other_year",
                                      f"{outcome_id}: not your course outcome of {year}",
                                      f"{outcome_id}：不是你 {year} 學年度的課程學習成果"))
        elif outcome.status != "certified":
            errors.append(field_error(f"outcome_ids[{index}]", "not_certified",
                                      f"{outcome_id}: not certified (it is {outcome.status})",
                                      f"{outcome_id}：尚未通過教師認證"))
    performances = {p.id: p for p in Performance.objects(id__in=performance_ids, school=principal.school,
                                                         student_id=principal.user_id, deleted_at=None)}
    for index, performance_id in enumerate(performance_ids):
        item = performances.get(performance_id)
        if item is None or item.year != year:
            errors.append(field_error(f"performance_ids[{index}]", "not_yours_or_other_year",
                                      f"{performance_id}: not your diverse performance of {year}",
                                      f"{performance_id}：不是你 {year} 學年度的多元表現"))
    if errors:
        raise DomainError("not_selectable", errors=errors)
    return [outcomes[i] for i in outcome_ids], [performances[i] for i in performance_ids]


def put_selection(principal: Principal, year: str, outcome_ids: list[str], performance_ids: list[str]
                  ) -> SelectionView:
    """Replace the caller's selection of ``year``: within the school's caps, only certified outcomes of the
    year, inside the 勾選 window (once scheduling set one), never after the year was locked. Saving the same
    lists again changes nothing and announces nothing."""
    school = _student_school(principal)
    year = _year(year)
    duplicates = sorted({i for i in outcome_ids if outcome_ids.count(i) > 1} |
                        {i for i in performance_ids if performance_ids.count(i) > 1})
    if duplicates:
        raise DomainError("validation_failed", f"selected more than once: {', '.join(duplicates)}")
    caps = selection_caps(Policy.of(school))
    over = [field_error(name, "cap", f"at most {caps[name]} (selected {len(ids)})",
                        f"最多勾選 {caps[name]} 項（目前 {len(ids)} 項）")
            for name, ids in (("outcomes", outcome_ids), ("performances", performance_ids)) if len(ids) > caps[name]]
    if over:
        raise DomainError("selection_cap_exceeded", errors=over, caps=caps)
    selection = _selection_of(school, principal.user_id, year)
    refuse_if_year_final(FinalPeriod, school, year)
    if selection.locked_at is not None or _year_locked(school, year):
        raise DomainError("selection_locked")
    check_windows(school, [f"{year}01", f"{year}02"], "selection")
    outcomes, performances = _selectable(principal, year, outcome_ids, performance_ids)
    if selection.pk is not None and selection.revision and list(selection.outcome_ids) == outcome_ids \
            and list(selection.performance_ids) == performance_ids:
        return _view(selection)
    if selection._created:
        # A first selection is reserved as an empty document before it is saved, so that the year lock's fence
        # (lock_selections) covers it: either the lock marks the reservation (the save below then fails its
        # version check) or the lock was inserted before the reservation and is seen here.
        selection = _reserve_selection(selection)
        if selection.locked_at is not None or _year_locked(school, year):
            raise DomainError("selection_locked")
    selection.outcome_ids, selection.performance_ids = outcome_ids, performance_ids
    selection.revision = (selection.revision or 0) + 1
    selection.updated_at, selection.updated_by = now(), principal.user_id
    try:
        save_with_events(selection, [events.selection_changed(selection, outcomes, performances)])
    except DomainError as exc:
        if exc.code == "conflict" and _year_locked(school, year):
            raise DomainError("selection_locked")  # the lock marked it after we read it: it counted the old one
        raise
    return _view(selection)


def _reserve_selection(selection: Selection) -> Selection:
    """Insert the empty selection (revision 0, nothing announced), or read the one a concurrent save reserved."""
    try:
        save_with_events(selection)
    except NotUniqueError:
        pass
    return Selection.objects(id=selection.id).first()


def lock_year(principal: Principal, school: str, year: str) -> tuple[YearLock, int]:
    _school_of(principal, school)
    if not principal.has("school_admin"):
        raise DomainError("forbidden")
    return lock_selections(school, _year(year), principal.user_id)


def lock_selections(school: str, year: str, locked_by: str, *, announce_again: bool = False) -> tuple[YearLock, int]:
    """Lock every selection of the school year (by the school admin, or on the exchange's year submission,
    exchange.submission.requested.v1) and announce the count of the year's selections and the sum of their
    revisions: the exchange builds the year's package only when its projection holds every one of them at that
    revision, so a selection saved after the count and before the lock would be lost to the package. Hence a fence:

    1. the lock document is inserted (from now on put_selection refuses);
    2. every selection of the year is marked locked, its version raised (a save that read it before fails its
       version check and is refused; a first selection is reserved before it is saved, so it is marked here or
       sees the lock);
    3. only then are the revisions counted and announced on the lock document.

    Locking again is the same lock; it is announced again when ``announce_again`` (the exchange waits for it) or
    when an earlier lock stopped before announcing."""
    lock = YearLock(id=f"{school}:{year}", school=school, year=year, locked_at=now(), locked_by=locked_by)
    try:
        save_with_events(lock)
    except NotUniqueError:
        lock = YearLock.objects(id=f"{school}:{year}").first()
    mark = {"$set": {"locked_at": lock.locked_at, "locked_by": lock.locked_by}, "$inc": {"version": 1}}
    selections = Selection._get_collection()
    newly = selections.update_many({"school": school, "year": year, "locked_at": None, "revision": {"$gte": 1}},
                                   mark).modified_count
    selections.update_many({"school": school, "year": year, "locked_at": None}, mark)  # empty reservations
    if announce_again or lock.announced_at is None:
        _announce_lock(lock, locked_by, again=announce_again)
    return lock, newly


def _announce_lock(lock: YearLock, locked_by: str, *, again: bool) -> None:
    for _ in range(5):
        revisions = [s.revision for s in Selection.saved(school=lock.school, year=lock.year).only("revision")]
        lock.announced_at = now()
        try:
            save_with_events(lock, [events.selection_locked(lock.school, lock.year, revisions, locked_by)])
            return
        except DomainError as exc:  # another lock call announced at the same moment: count again
            if exc.code != "conflict":
                raise
            lock.reload()
            if lock.announced_at is not None and not again:
                return
    raise DomainError("conflict", "the year's lock was being announced by another request; try again")
