"""Scheduling's rules: the city template and its rules, a school's windows per term, the edge job, reminders.

Windows (Taiwan time, which keeps no daylight saving): 預檢, 成果上傳, 教師認證, 多元表現上傳, 勾選, 提交,
收訖明細確認, 疑義處理. A window is open from ``starts_at`` (inclusive) to ``ends_at`` (exclusive).

- A term's schedule does not exist until the school admin sets it: until then GET shows the city template's
  defaults (``configured: false``) and no service enforces anything. Setting it (all at once or one window)
  stores all eight windows — template defaults for those not given — and announces every window that is new
  or changed (``scheduling.window.scheduled.v1``) in the same document write.
- The city's rules (``CityRules``): a window ends after it starts, lasts at least the kind's minimum, lies near
  its term; 成果上傳 ends at least two weeks after the term ends; 勾選 → 提交 → 收訖明細確認 → 疑義處理 do not
  overlap. The first broken rule is the problem's code; ``errors`` lists every one.
- The edge job (``run_edges``) announces each window's opening, its closing in N days (``closing_days``) and its
  close, once each: an edge is an ``Edge`` document whose ``_id`` names the window, the edge and its moment,
  inserted with its event in one write, so of several runners (worker replicas) exactly one inserts it.
  ``opened`` is keyed on the window's start and end (a window that was reopened by moving its end is opened
  again), ``closing`` and ``closed`` on its end. Edges more than ``EDGE_GRACE`` in the past are not announced.
- Reminders: on ``scheduling.closing.announced.v1`` of 成果上傳, each student with an active enrolment in the term
  who has sent no course outcome of that term for certification (intake's only published fact about uploads)
  gets a notification. Idempotent: its id is derived from the window's end and the student.

Tenancy: another school's schedule is 404 (never 403); inside the school everyone may read, the school admin
writes (others 403).
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from mongoengine.errors import NotUniqueError
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.auth import Principal
from shared.documents import by_id
from shared.errors import ERRORS, DomainError, field_error
from shared.events import WINDOW_NAMES, EnrolmentCreated, EnrolmentWithdrawn, Envelope, OutcomeSubmitted, WindowClosing
from shared.outbox import save_with_events
from shared.projections import unless_newer

from . import events
from .models import KINDS, DirectoryUser, Edge, Enrolment, Notification, Schedule, Submission, Window, now

log = logging.getLogger("footprint.scheduling")

# This service's problem codes, added to the one table in shared.errors (code: status, zh-TW, English).
ERRORS.update({
    "window_ends_before_start": (422, "時段的結束時間必須晚於開始時間。", "A window must end after it starts."),
    "window_too_short": (422, "時段短於市府規定的最短期間。", "A window is shorter than the city's minimum."),
    "window_ends_too_early": (422, "成果上傳須於學期結束至少兩週後才截止。",
                              "Course outcome upload must end at least two weeks after the term ends."),
    "window_overlap": (422, "時段與不得重疊的其他時段重疊。", "A window overlaps another it must not overlap."),
    "window_out_of_range": (422, "時段離該學期太遠。", "A window lies too far from its term."),
})

TAIPEI = timezone(timedelta(hours=8), "Asia/Taipei")
EDGE_GRACE = timedelta(days=7)
WRITERS = ("school_admin",)


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def taipei(value: datetime) -> datetime:
    return utc(value).astimezone(TAIPEI)


def shown(value: datetime) -> str:
    """How a moment reads in messages: Taiwan time to the minute."""
    return taipei(value).strftime("%Y-%m-%d %H:%M")


def term_label(term: str) -> tuple[str, str]:
    return f"{int(term[:3])}學年度第{int(term[3:])}學期", f"term {term} (school year {int(term[:3])}, semester {int(term[3:])})"


def window_name(kind: str) -> tuple[str, str]:
    return WINDOW_NAMES[kind]


# ---- terms and the city template ----------------------------------------------------------------------------

def check_term(term: str) -> str:
    if not isinstance(term, str) or len(term) != 5 or not term.isdigit() or term[3:] not in ("01", "02"):
        raise DomainError("invalid_term", f"{term!r} is not a term code like 11201")
    return term


def term_bounds(term: str) -> tuple[datetime, datetime]:
    """(first day, day after the last day) at 00:00 Taiwan time: 第1學期 Aug–Jan, 第2學期 Feb–Jul."""
    year = int(check_term(term)[:3]) + 1911
    start, end = (date(year, 8, 1), date(year + 1, 2, 1)) if term.endswith("1") else (date(year + 1, 2, 1), date(year + 1, 8, 1))
    return (datetime(start.year, start.month, start.day, tzinfo=TAIPEI),
            datetime(end.year, end.month, end.day, tzinfo=TAIPEI))


@dataclass(frozen=True)
class Default:
    """A default window: each end is (anchor, days, hour): that many days and hours after the term's start or end
    (the day after its last day), 00:00 Taiwan time."""

    starts: tuple[str, int, int]
    ends: tuple[str, int, int]


@dataclass(frozen=True)
class CityRules:
    city: str
    defaults: dict[str, Default]
    min_length: dict[str, timedelta]
    outcome_upload_after_term: timedelta = timedelta(days=14)
    no_overlap: tuple[tuple[str, str], ...] = (("selection", "submission"), ("submission", "receipt_confirmation"),
                                              ("receipt_confirmation", "dispute"))
    earliest_before_term: timedelta = timedelta(days=62)
    latest_after_term: timedelta = timedelta(days=366)

    def window_defaults(self, term: str) -> dict[str, tuple[datetime, datetime]]:
        bounds = dict(zip(("start", "end"), term_bounds(term)))

        def moment(anchor: str, days: int, hour: int) -> datetime:
            return utc(bounds[anchor] + timedelta(days=days, hours=hour))

        return {kind: (moment(*self.defaults[kind].starts), moment(*self.defaults[kind].ends)) for kind in KINDS}


# The city template (臺北市). Uploads run through the term and two weeks past its end (until 17:00 on the 15th day),
# certification a week longer; then selection, submission, receipt confirmation and disputes one after another.
TAIPEI_RULES = CityRules(
    city="TPE",
    defaults={
        "precheck": Default(("end", -14, 8), ("end", 7, 17)),
        "outcome_upload": Default(("start", 0, 8), ("end", 14, 17)),
        "certification": Default(("start", 0, 8), ("end", 21, 17)),
        "performance_upload": Default(("start", 0, 8), ("end", 14, 17)),
        "selection": Default(("end", 22, 8), ("end", 28, 17)),
        "submission": Default(("end", 29, 8), ("end", 35, 17)),
        "receipt_confirmation": Default(("end", 36, 8), ("end", 42, 17)),
        "dispute": Default(("end", 43, 8), ("end", 49, 17)),
    },
    min_length={kind: timedelta(days=3 if kind in ("selection", "receipt_confirmation") else 1) for kind in KINDS},
)
TEMPLATES: dict[str, CityRules] = {"TPE": TAIPEI_RULES}


def rules_for(city: str | None) -> CityRules:
    """The city's template; a city without its own takes Taipei's (the first city on the platform)."""
    return TEMPLATES.get(city or "", TAIPEI_RULES)


def violations(rules: CityRules, term: str, windows: dict[str, tuple[datetime, datetime]]) -> list[dict]:
    """Every broken rule, as field errors (``code`` = the problem code)."""
    term_start, term_end = term_bounds(term)
    found = []

    def broken(kind: str, code: str, zh: str, en: str) -> None:
        name_zh, name_en = window_name(kind)
        found.append(field_error(f"windows.{kind}", code, f"{name_en}: {en}", f"{name_zh}：{zh}"))

    for kind in KINDS:
        starts, ends = windows[kind]
        if ends <= starts:
            broken(kind, "window_ends_before_start", "結束時間必須晚於開始時間。", "it must end after it starts.")
        elif ends - starts < rules.min_length[kind]:
            days = rules.min_length[kind].days
            broken(kind, "window_too_short", f"至少須 {days} 天。", f"it must last at least {days} days.")
        if starts < term_start - rules.earliest_before_term or ends > term_end + rules.latest_after_term:
            broken(kind, "window_out_of_range", "時段離學期太遠。", "it lies too far from its term.")
    latest_end = term_end + rules.outcome_upload_after_term
    if windows["outcome_upload"][1] < latest_end:
        broken("outcome_upload", "window_ends_too_early", f"不得早於 {shown(latest_end)} 截止（學期結束後兩週）。",
               f"it must not end before {shown(latest_end)} (two weeks after the term ends).")
    for first, second in rules.no_overlap:
        (a_start, a_end), (b_start, b_end) = windows[first], windows[second]
        if a_start < b_end and b_start < a_end:
            broken(second, "window_overlap", f"不得與{window_name(first)[0]}重疊。",
                   f"it must not overlap {window_name(first)[1]}.")
    return found


# ---- tenancy -------------------------------------------------------------------------------------------------

def school_of(principal: Principal, school: str) -> str:
    """The caller's own school; any other (and a city admin, who belongs to none) is not found."""
    if principal.school is None or principal.school != school:
        raise DomainError("not_found", "no such schedule")
    return school


def _writer(principal: Principal, school: str) -> str:
    school_of(principal, school)
    if not principal.has(*WRITERS):
        raise DomainError("forbidden", "only the school admin sets the school's windows")
    return school


# ---- schedules -----------------------------------------------------------------------------------------------

@dataclass
class WindowView:
    kind: str
    starts_at: datetime
    ends_at: datetime
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass
class ScheduleView:
    school: str
    term: str
    city: str
    configured: bool
    windows: list[WindowView]
    version: int = 0
    updated_at: datetime | None = None


def _view(schedule: Schedule) -> ScheduleView:
    by_kind = {w.kind: w for w in schedule.windows}
    windows = [WindowView(k, utc(by_kind[k].starts_at), utc(by_kind[k].ends_at), by_kind[k].revision,
                          utc(by_kind[k].updated_at), by_kind[k].updated_by) for k in KINDS if k in by_kind]
    return ScheduleView(schedule.school, schedule.term, schedule.city, True, windows, schedule.version,
                        utc(schedule.updated_at))


def schedule_id(school: str, term: str) -> str:
    return f"{school}:{term}"


def get_schedule(principal: Principal, school: str, term: str) -> ScheduleView:
    school_of(principal, school)
    check_term(term)
    schedule = Schedule.objects(id=schedule_id(school, term)).first()
    if schedule is not None:
        return _view(schedule)
    rules = rules_for(principal.city)
    defaults = rules.window_defaults(term)
    return ScheduleView(school, term, rules.city, False, [WindowView(k, *defaults[k]) for k in KINDS])


def configured_schedule(principal: Principal, school: str, term: str) -> ScheduleView:
    view = get_schedule(principal, school, term)
    if not view.configured:
        raise DomainError("not_found", "the school has not set this term's schedule yet")
    return view


def list_schedules(principal: Principal, school: str) -> list[ScheduleView]:
    school_of(principal, school)
    return [_view(s) for s in Schedule.objects(school=school).order_by("-term")]


def _moment(value: datetime) -> datetime:
    return utc(value).replace(microsecond=0)


def set_windows(scheduling: "Scheduling", principal: Principal, school: str, term: str,
                changes: dict[str, tuple[datetime, datetime]]) -> tuple[ScheduleView, bool]:
    """Create the term's schedule (template defaults for what is not given) or change some of its windows.
    Returns (schedule, created). Every new or changed window is announced with the change, in one write."""
    _writer(principal, school)
    check_term(term)
    at = scheduling.clock()
    schedule = Schedule.objects(id=schedule_id(school, term)).first()
    rules = rules_for(schedule.city if schedule is not None else principal.city)
    if schedule is not None:
        current = {w.kind: (utc(w.starts_at), utc(w.ends_at)) for w in schedule.windows}
    else:
        current = rules.window_defaults(term)
    proposed = {**current, **{kind: (_moment(s), _moment(e)) for kind, (s, e) in changes.items()}}
    errors = violations(rules, term, proposed)
    if errors:
        raise DomainError(errors[0]["code"], "the windows break the city's rules", errors=errors)
    created = schedule is None
    if created:
        schedule = Schedule(id=schedule_id(school, term), school=school, term=term, city=rules.city, created_at=at,
                            created_by=principal.user_id)
    old = {w.kind: w for w in schedule.windows}
    windows, changed = [], []
    for kind in KINDS:
        starts, ends = proposed[kind]
        before = old.get(kind)
        if before is not None and (utc(before.starts_at), utc(before.ends_at)) == (starts, ends):
            windows.append(before)
            continue
        window = Window(kind=kind, starts_at=starts, ends_at=ends, revision=(before.revision + 1) if before else 1,
                        updated_at=at, updated_by=principal.user_id)
        windows.append(window)
        changed.append(window)
    if not changed:
        return _view(schedule), False
    schedule.windows = windows
    schedule.updated_at = at
    schedule.active_from = min(s for s, _ in proposed.values())
    schedule.active_until = max(e for _, e in proposed.values())
    try:
        save_with_events(schedule, [events.window_set(schedule, w) for w in changed])
    except NotUniqueError as exc:  # another admin created it at the same moment
        raise DomainError("conflict", "the schedule was created meanwhile; reload and retry") from exc
    return _view(schedule), created


# ---- the edge job ----------------------------------------------------------------------------------------------

@dataclass
class Scheduling:
    """What scheduling's rules need besides the documents: a clock, and how many days before a close to remind."""

    clock: Callable[[], datetime] = now
    closing_days: int = 3
    runner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def _stamp(value: datetime) -> str:
    return utc(value).strftime("%Y%m%dT%H%M%SZ")


def due_edges(schedule: Schedule, at: datetime, closing_days: int) -> list[tuple[str, str, datetime, Window]]:
    """(edge id, edge, when it was due, window) of every edge of the schedule's windows due at ``at``."""
    due = []
    for window in schedule.windows:
        starts, ends = utc(window.starts_at), utc(window.ends_at)
        base = events.window_id(schedule.school, schedule.term, window.kind)
        if starts <= at < ends:
            due.append((f"{base}:opened:{_stamp(starts)}-{_stamp(ends)}", "opened", starts, window))
        closing = max(ends - timedelta(days=closing_days), starts)
        if closing_days > 0 and closing <= at < ends:
            due.append((f"{base}:closing:{_stamp(ends)}", "closing", closing, window))
        if ends <= at < ends + EDGE_GRACE:
            due.append((f"{base}:closed:{_stamp(ends)}", "closed", ends, window))
    return due


def run_edges(scheduling: Scheduling, *, at: datetime | None = None) -> list[Edge]:
    """Announce every edge due now that nobody announced yet; returns those this call announced. Safe in any
    number of processes at once: the insert of the edge (with its event) is the claim."""
    at = utc(at or scheduling.clock())
    claimed = []
    for schedule in Schedule.objects(active_until__gt=at - EDGE_GRACE, active_from__lte=at):
        due = due_edges(schedule, at, scheduling.closing_days)
        if not due:
            continue
        known = {e.id for e in Edge.objects(id__in=[d[0] for d in due]).only("id")}
        for edge_id, edge, moment, window in due:
            if edge_id in known:
                continue
            record = Edge(id=edge_id, school=schedule.school, term=schedule.term, kind=window.kind, edge=edge, at=moment,
                          starts_at=window.starts_at, ends_at=window.ends_at, revision=window.revision,
                          claimed_at=now(), claimed_by=scheduling.runner)
            try:
                save_with_events(record, [events.window_edge(record, closing_days=scheduling.closing_days)])
            except NotUniqueError:
                continue  # another runner announced it first
            claimed.append(record)
    return claimed


# ---- projections (fed by consumers) ----------------------------------------------------------------------------

def apply_enrolment_event(envelope: Envelope, payload) -> None:
    if not isinstance(payload, (EnrolmentCreated, EnrolmentWithdrawn)):
        return
    values = {"school": payload.school, "term": payload.term, "student_id": payload.student_id,
              "active": isinstance(payload, EnrolmentCreated), "event_at": envelope.occurred_at}
    try:
        Enrolment._get_collection().update_one(unless_newer(payload.enrolment_id, envelope.occurred_at),
                                               {"$set": values}, upsert=True)
    except DuplicateKeyError:
        pass  # the stored enrolment is newer than this event


def apply_submission_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, OutcomeSubmitted):
        Submission._get_collection().update_one({"_id": payload.outcome_id}, {"$setOnInsert": {
            "school": payload.school, "term": payload.term, "student_id": payload.student_id}}, upsert=True)


# ---- reminders -----------------------------------------------------------------------------------------------

def students_without_outcomes(school: str, term: str) -> list[str]:
    enrolled = {e.student_id for e in Enrolment.objects(school=school, term=term, active=True).only("student_id")}
    if not enrolled:
        return []
    sent = {s.student_id for s in Submission.objects(school=school, term=term).only("student_id")}
    gone = {u.id for u in DirectoryUser.objects(id__in=list(enrolled), active=False).only("id")}
    return sorted(enrolled - sent - gone)


def remind_on_closing(envelope: Envelope, payload) -> int:
    """成果上傳 closes soon: a notification for each student of the term who has sent no outcome. Repeatable."""
    if not isinstance(payload, WindowClosing) or payload.kind != "outcome_upload":
        return 0
    students = students_without_outcomes(payload.school, payload.term)
    name_zh, name_en = window_name(payload.kind)
    term_zh, term_en = term_label(payload.term)
    closes = shown(payload.ends_at)
    created = now()
    writes = [UpdateOne({"_id": f"{payload.window_id}:closing:{_stamp(payload.ends_at)}:{student}"}, {"$setOnInsert": {
        "school": payload.school, "user_id": student, "topic": "window_closing", "term": payload.term,
        "window_kind": payload.kind, "starts_at": payload.starts_at, "ends_at": payload.ends_at,
        "title": {"zh-TW": f"{name_zh}即將截止", "en": f"The {name_en} window closes soon"},
        "message": {"zh-TW": f"{name_zh}將於 {closes}（臺灣時間）截止，你在{term_zh}還沒有送出任何課程學習成果。",
                    "en": f"The {name_en} window closes at {closes} (Taiwan time); you have not sent any course "
                          f"outcome for {term_en} yet."},
        "created_at": created, "read_at": None}}, upsert=True) for student in students]
    if writes:
        try:
            Notification._get_collection().bulk_write(writes, ordered=False)
        except BulkWriteError as exc:  # a concurrent delivery inserted some first: those exist, which is the point
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise
    return len(students)


def list_notifications(principal: Principal, *, unread: bool, limit: int) -> tuple[int, list[Notification]]:
    if principal.school is None:
        return 0, []
    query = Notification.objects(user_id=principal.user_id, school=principal.school)
    if unread:
        query = query.filter(read_at=None)
    return query.filter(read_at=None).count(), list(query.order_by("-created_at", "id").limit(limit))


def mark_read(principal: Principal, notification_id: str) -> Notification:
    notification = by_id(Notification, notification_id, user_id=principal.user_id, school=principal.school)
    if notification is None:
        raise DomainError("not_found", "no such notification")
    if notification.read_at is None:
        Notification.objects(id=notification.id, read_at=None).update_one(set__read_at=now())
        notification.reload()
    return notification
