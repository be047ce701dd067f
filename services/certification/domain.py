"""Certification's rules: the state machine of a course outcome, who may decide it, queues and substitutes.

State machine (enforced here, the service that owns it; intake only mirrors it):

    (draft, in intake) ──submitted──▶ submitted ──certify──▶ certified        (final; intake locks the item)
                                          │
                                          └──return(reason)──▶ returned ──submitted (n+1)──▶ submitted …

- certify/return only from ``submitted`` (else 409 invalid_transition);
- a submitted event for an older or the same submission number as stored changes nothing (idempotent, order-safe);
- a new submission of a certified outcome is refused (logged, ignored) unless its content is identical, see below;
- IDENTICAL CONTENT: when a certified submission of the same student and section (this outcome's earlier
  submission or another outcome) has exactly the same set of file sha256s, the new submission is certified at
  once ("kept", ``kept_from_identical_content``), with the original certifier as ``certified_by``.

Who decides: the section's teachers (records' projection, read at decision time) or an active substitute
(代理人, period includes today in Taiwan time) of one of them; the substitute's decision records
``on_behalf_of``. Another school's record is 404, never 403 (tenants cannot probe each other).
"""
from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timedelta, timezone

from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from shared.auth import Principal
from shared.documents import by_id
from shared.errors import DomainError, field_error
from shared.events import Envelope, OutcomeSubmitted, SectionFacts
from shared.finality import refuse_if_year_final
from shared.outbox import save_with_events
from shared.projections import unless_newer

from . import events
from .models import AuditEntry, Certification, DirectoryUser, FinalPeriod, OutcomeFile, Section, Substitute, now

log = logging.getLogger("footprint.certification")

TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")  # Taiwan keeps no daylight saving time
TEACHER_ROLES = ("subject_teacher", "course_counsellor", "homeroom_teacher")
STAFF_ROLES = ("curriculum", "school_admin")  # read every outcome of the school, assign substitutes


def today() -> str:
    """The school day (Taiwan time) as ISO date: substitutes' periods are in school days."""
    return datetime.now(TAIPEI).date().isoformat()


def content_key(sha256s) -> str:
    """One key for a SET of file digests: order and duplicates do not matter."""
    return hashlib.sha256("\n".join(sorted(set(sha256s))).encode()).hexdigest()


def utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


# ---- projections (fed by consumers) ---------------------------------------------------------------------

def apply_section_event(envelope: Envelope, payload: SectionFacts) -> None:
    """Upsert a course section; an older event never overwrites a newer one, a section never changes school."""
    if envelope.school is not None and envelope.school != payload.school:
        log.warning("section event %s: envelope school %s differs from payload school %s; ignored",
                    envelope.id, envelope.school, payload.school)
        return
    values = {"school": payload.school, "term": payload.term, "course_code": payload.course_code,
              "subject_name": payload.subject_name, "section_name": payload.section_name,
              "teacher_ids": list(payload.teacher_ids), "event_at": envelope.occurred_at}
    try:
        Section._get_collection().update_one(unless_newer(payload.section_id, envelope.occurred_at, school=payload.school),
                                             {"$set": values}, upsert=True)
    except DuplicateKeyError:
        pass  # the stored section is newer (or of another school): nothing to do


# ---- submissions (fed by intake.outcome.submitted.v1) ---------------------------------------------------

def on_submitted(envelope: Envelope, payload: OutcomeSubmitted) -> str:
    """Apply a submission; returns what happened: submitted, kept, ignored or refused. Repeatable."""
    if envelope.school is not None and envelope.school != payload.school:
        log.warning("submission event %s: envelope school %s differs from payload school %s; ignored",
                    envelope.id, envelope.school, payload.school)
        return "ignored"
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            return _apply_submission(payload)
        except (NotUniqueError, DomainError) as exc:
            # A competing replica inserted the record first, or a teacher decided meanwhile (version check):
            # re-read and apply against what is stored now. Anything else goes to the bus's retry.
            if isinstance(exc, DomainError) and exc.code != "conflict" or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def _apply_submission(payload: OutcomeSubmitted) -> str:
    at = now()
    files = [OutcomeFile(file_id=f.file_id, name=f.name, sha256=f.sha256, size=f.size, kind=f.kind,
                         media_type=f.media_type) for f in payload.files]
    key = content_key(f.sha256 for f in payload.files)
    entry = AuditEntry(action="submitted", actor=payload.submitted_by, at=at, from_address=payload.submitted_from,
                       submission=payload.submission)
    record = Certification.objects(id=payload.outcome_id).first()
    if record is None:
        record = Certification(id=payload.outcome_id, school=payload.school, term=payload.term,
                               section_id=payload.section_id, course_code=payload.course_code,
                               student_id=payload.student_id, brief=payload.brief, files=files, content_key=key,
                               submission=payload.submission, submitted_by=payload.submitted_by, submitted_at=at,
                               state="submitted", audit=[entry])
        emitted = _keep_if_identical(record, at)
        save_with_events(record, emitted)
        return record.state if not emitted else "kept"
    if record.school != payload.school:
        log.error("submission of outcome %s for school %s, but it belongs to %s; ignored",
                  payload.outcome_id, payload.school, record.school)
        return "ignored"
    if payload.submission <= record.submission:
        if payload.submission < record.submission:
            log.info("outcome %s: submission %d is older than the stored %d; ignored",
                     record.id, payload.submission, record.submission)
        return "ignored"
    if record.state == "certified":
        if not (files and key == record.content_key):
            log.warning("outcome %s is certified (submission %d); new submission %d with other content refused",
                        record.id, record.submission, payload.submission)
            return "refused"
        source = (record.id, record.submission, record.decided_by, record.on_behalf_of)
    else:
        if record.state == "submitted":
            # Intake counts submissions and only resubmits after a return; a newer number while we still hold
            # an undecided one means we missed nothing we could decide on: the newest content wins.
            log.warning("outcome %s: submission %d supersedes the undecided submission %d",
                        record.id, payload.submission, record.submission)
        source = None
    record.brief, record.files, record.content_key = payload.brief, files, key
    record.submission, record.submitted_by, record.submitted_at = payload.submission, payload.submitted_by, at
    record.state, record.reason, record.decided_by, record.on_behalf_of, record.decided_at = "submitted", None, None, None, None
    record.kept_from_identical_content = False
    record.audit.append(entry)
    emitted = _keep(record, *source, at) if source else _keep_if_identical(record, at)
    save_with_events(record, emitted)
    return "kept" if emitted else "submitted"


def _keep_if_identical(record: Certification, at: datetime) -> list[dict]:
    """Certify at once when another outcome of the same student and section was certified with the same files."""
    if not record.files:
        return []  # no files, nothing to compare: a teacher must look at it
    source = (Certification.objects(school=record.school, student_id=record.student_id, section_id=record.section_id,
                                    state="certified", content_key=record.content_key, id__ne=record.id)
              .order_by("decided_at").first())
    if source is None:
        return []
    return _keep(record, source.id, source.submission, source.decided_by, source.on_behalf_of, at)


def _keep(record: Certification, source_id: str, source_submission: int, certified_by: str,
          on_behalf_of: str | None, at: datetime) -> list[dict]:
    record.state, record.reason, record.decided_at = "certified", None, at
    record.decided_by, record.on_behalf_of = certified_by, on_behalf_of
    record.kept_from_identical_content = True
    record.audit.append(AuditEntry(action="kept", actor=certified_by, on_behalf_of=on_behalf_of, at=at,
                                   submission=record.submission, kept_from_outcome_id=source_id,
                                   kept_from_submission=source_submission))
    return [events.outcome_certified(record)]


# ---- tenancy and who may act ----------------------------------------------------------------------------

def school_of(principal: Principal) -> str:
    """Certification happens inside a school; a city admin has none here."""
    if principal.school is None:
        raise DomainError("forbidden", "certification is done within a school")
    return principal.school


def record_in_school(principal: Principal, outcome_id: str) -> Certification:
    record = Certification.objects(id=outcome_id).first()
    if record is None or principal.school is None or record.school != principal.school:
        raise DomainError("not_found", "no such outcome")
    return record


def section_in_school(school: str, section_id: str) -> Section | None:
    return by_id(Section, section_id, school=school)


def active_substitutions(school: str, substitute_id: str, day: str | None = None) -> list[Substitute]:
    day = day or today()
    return list(Substitute.objects(school=school, substitute_id=substitute_id, deleted_at=None,
                                   starts_on__lte=day, ends_on__gte=day))


def acting_as(principal: Principal, section: Section | None) -> tuple[bool, str | None]:
    """(may decide, on behalf of whom): a teacher of the section, or an active substitute of one of them."""
    if section is None or principal.school != section.school:
        return False, None
    if principal.user_id in section.teacher_ids:
        return True, None
    absent = {s.teacher_id for s in active_substitutions(section.school, principal.user_id)}
    for teacher in section.teacher_ids:
        if teacher in absent:
            return True, teacher
    return False, None


# ---- decisions -------------------------------------------------------------------------------------------

def _decide(principal: Principal, outcome_id: str, action: str, client: str | None, reason: str | None = None):
    record = record_in_school(principal, outcome_id)
    allowed, on_behalf_of = acting_as(principal, section_in_school(record.school, record.section_id))
    if not allowed:
        raise DomainError("forbidden", "only the section's teachers or their substitutes decide on it")
    if record.state != "submitted":
        raise DomainError("invalid_transition", f"the outcome is {record.state}; only a submitted one can be {action}")
    refuse_if_year_final(FinalPeriod, record.school, record.term)
    at = now()
    record.state, record.decided_by, record.on_behalf_of, record.decided_at = action, principal.user_id, on_behalf_of, at
    record.reason = reason
    record.kept_from_identical_content = False
    record.audit.append(AuditEntry(action=action, actor=principal.user_id, on_behalf_of=on_behalf_of, at=at,
                                   from_address=client, submission=record.submission, reason=reason))
    event = events.outcome_certified(record) if action == "certified" else events.outcome_returned(record)
    return save_with_events(record, [event])


def certify(principal: Principal, outcome_id: str, client: str | None) -> Certification:
    """認證: the outcome is the student's own authentic work (never a judgement of quality or a grade)."""
    return _decide(principal, outcome_id, "certified", client)


def return_outcome(principal: Principal, outcome_id: str, reason: str, client: str | None) -> Certification:
    """退回 with a reason: the student may change it and submit again."""
    return _decide(principal, outcome_id, "returned", client, reason)


def bulk_certify(principal: Principal, *, outcome_ids: list[str] | None, section_id: str | None,
                 client: str | None) -> list[dict]:
    """Certify many; each item is certified whole (state + event in one write) or skipped with its error code."""
    school = school_of(principal)
    if section_id is not None:
        section = section_in_school(school, section_id)
        if section is None:
            raise DomainError("not_found", "no such section")
        if not acting_as(principal, section)[0]:
            raise DomainError("forbidden", "not a teacher (or substitute) of this section")
        outcome_ids = [r.id for r in Certification.objects(school=school, section_id=section_id, state="submitted")
                       .only("id").order_by("submitted_at", "id")]
    results = []
    for outcome_id in dict.fromkeys(outcome_ids or []):
        try:
            certify(principal, outcome_id, client)
            results.append({"outcome_id": outcome_id, "result": "certified", "code": None})
        except DomainError as exc:
            results.append({"outcome_id": outcome_id, "result": "skipped", "code": exc.code})
    return results


# ---- reads -----------------------------------------------------------------------------------------------

def readable(principal: Principal, outcome_id: str) -> tuple[Certification, Section | None, str]:
    """The record and how the caller sees it (student, teacher, staff); anyone else in the school: 404."""
    record = record_in_school(principal, outcome_id)
    section = section_in_school(record.school, record.section_id)
    if principal.user_id == record.student_id:
        return record, section, "student"
    if acting_as(principal, section)[0]:
        return record, section, "teacher"
    if principal.has(*STAFF_ROLES):
        return record, section, "staff"
    raise DomainError("not_found", "no such outcome")


def scope_sections(school: str, user_id: str, term: str | None = None) -> list[tuple[Section, str | None]]:
    """The sections a user decides on: their own, and those of teachers they substitute for today."""
    own = Section.objects(school=school, teacher_ids=user_id)
    scope: dict[str, tuple[Section, str | None]] = {s.id: (s, None) for s in own}
    absent = sorted({s.teacher_id for s in active_substitutions(school, user_id)})
    if absent:
        for section in Section.objects(school=school, teacher_ids__in=absent):
            if section.id not in scope:
                scope[section.id] = (section, next(t for t in section.teacher_ids if t in absent))
    items = [item for item in scope.values() if term is None or item[0].term == term]
    return sorted(items, key=lambda item: (item[0].term, item[0].course_code, item[0].section_name, item[0].id))


def queue(principal: Principal, *, state: str, section_id: str | None, term: str | None, offset: int,
          limit: int) -> tuple[int, list[tuple[Certification, Section, str | None]]]:
    school = school_of(principal)
    scope = scope_sections(school, principal.user_id, term)
    if section_id is not None:
        if section_in_school(school, section_id) is None:
            raise DomainError("not_found", "no such section")
        scope = [item for item in scope if item[0].id == section_id]
        if not scope:
            raise DomainError("forbidden", "not a teacher (or substitute) of this section")
    by_id = {section.id: (section, via) for section, via in scope}
    query = Certification.objects(school=school, section_id__in=list(by_id), state=state)
    if term is not None:
        query = query.filter(term=term)
    total = query.count()
    records = list(query.order_by("submitted_at", "id").skip(offset).limit(limit))
    return total, [(r, *by_id[r.section_id]) for r in records]


def directory(school: str, user_ids) -> dict:
    ids = list(set(user_ids))
    return {u.id: u for u in DirectoryUser.objects(id__in=ids, school=school)} if ids else {}


def _known_teacher(school: str, teacher_id: str) -> None:
    """404 unless the user is a member of this school (per the directory) or teaches one of its sections."""
    if by_id(DirectoryUser, teacher_id, school=school) is None and \
            Section.objects(school=school, teacher_ids=teacher_id).first() is None:
        raise DomainError("not_found", "no such teacher in this school")


def counts(principal: Principal, *, term: str | None, teacher_id: str | None) -> tuple[str, list[dict]]:
    """Per section of a teacher (own and substituted-for): pending (submitted), certified, returned."""
    school = school_of(principal)
    target = principal.user_id
    if teacher_id is not None and teacher_id != principal.user_id:
        if not principal.has(*STAFF_ROLES):
            raise DomainError("forbidden", "only curriculum staff see other teachers' counts")
        _known_teacher(school, teacher_id)
        target = teacher_id
    scope = scope_sections(school, target, term)
    tally: dict[str, dict[str, int]] = {section.id: {"submitted": 0, "certified": 0, "returned": 0} for section, _ in scope}
    if tally:
        pipeline = [{"$match": {"school": school, "section_id": {"$in": list(tally)}}},
                    {"$group": {"_id": {"section_id": "$section_id", "state": "$state"}, "n": {"$sum": 1}}}]
        for row in Certification._get_collection().aggregate(pipeline):
            tally[row["_id"]["section_id"]][row["_id"]["state"]] = row["n"]
    rows = [{"section_id": s.id, "term": s.term, "course_code": s.course_code, "subject_name": s.subject_name,
             "section_name": s.section_name, "on_behalf_of": via, "pending": tally[s.id]["submitted"],
             "certified": tally[s.id]["certified"], "returned": tally[s.id]["returned"]} for s, via in scope]
    return target, rows


# ---- substitutes (代理人) ---------------------------------------------------------------------------------

def _school_teacher(school: str, user_id: str, field: str):
    user = DirectoryUser.objects(id=user_id).first()
    if user is None or user.school != school:
        raise DomainError("not_found", f"{field}: no such user in this school")
    if not user.active or not set(user.roles or []) & set(TEACHER_ROLES):
        raise DomainError("validation_failed", errors=[field_error(field, "not_a_teacher", "not an active teacher",
                                                                   "不是在職教師")])
    return user


def assign_substitute(principal: Principal, *, teacher_id: str, substitute_id: str, starts_on: date,
                      ends_on: date) -> Substitute:
    school = school_of(principal)
    if not principal.has(*STAFF_ROLES):
        raise DomainError("forbidden")
    if ends_on < starts_on:
        raise DomainError("validation_failed", errors=[field_error("ends_on", "before_start", "ends before it starts",
                                                                   "結束日早於開始日")])
    if teacher_id == substitute_id:
        raise DomainError("validation_failed", errors=[field_error("substitute_id", "same_person",
                                                                   "a teacher cannot substitute for themself",
                                                                   "代理人不可為本人")])
    _school_teacher(school, teacher_id, "teacher_id")
    _school_teacher(school, substitute_id, "substitute_id")
    starts, ends = starts_on.isoformat(), ends_on.isoformat()
    if Substitute.objects(school=school, teacher_id=teacher_id, substitute_id=substitute_id, deleted_at=None,
                          starts_on__lte=ends, ends_on__gte=starts).first() is not None:
        raise DomainError("conflict", "an overlapping assignment of this substitute for this teacher exists")
    assignment = Substitute(school=school, teacher_id=teacher_id, substitute_id=substitute_id, starts_on=starts,
                            ends_on=ends, created_by=principal.user_id)
    # announced so intake lets the substitute open the outcomes and files they are to judge
    return save_with_events(assignment, [events.substitute_assigned(assignment)])


def list_substitutes(principal: Principal, *, teacher_id: str | None, current: bool) -> list[Substitute]:
    """Staff see the school's assignments; a teacher those they are part of (absent teacher or substitute)."""
    school = school_of(principal)
    query = Substitute.objects(school=school, deleted_at=None)
    if teacher_id is not None:
        _known_teacher(school, teacher_id)
        query = query.filter(teacher_id=teacher_id)
    if not principal.has(*STAFF_ROLES):
        query = query.filter(__raw__={"$or": [{"teacher_id": principal.user_id}, {"substitute_id": principal.user_id}]})
    if current:
        query = query.filter(ends_on__gte=today())
    return list(query.order_by("starts_on", "teacher_id", "id"))


def delete_substitute(principal: Principal, substitute_id: str) -> None:
    school = school_of(principal)
    if not principal.has(*STAFF_ROLES):
        raise DomainError("forbidden")
    assignment = by_id(Substitute, substitute_id, school=school, deleted_at=None)
    if assignment is None:
        raise DomainError("not_found", "no such substitute assignment")
    assignment.deleted_at, assignment.deleted_by = now(), principal.user_id
    save_with_events(assignment, [events.substitute_removed(assignment)])
