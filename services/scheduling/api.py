"""Scheduling's HTTP API (behind the gateway at /api/v1/scheduling/…)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from flask import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.auth import current_principal, require_auth
from shared.errors import DomainError
from shared.events import WindowKind
from shared.http import Api, json_response, read_json, read_query

from . import calendar, domain

PREFIX = "/api/v1/scheduling"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class WindowIn(Body):
    starts_at: AwareDatetime = Field(description="ISO-8601 with offset, e.g. 2023-08-01T08:00:00+08:00")
    ends_at: AwareDatetime = Field(description="exclusive: the window is closed from this moment")


class KindWindowIn(WindowIn):
    kind: WindowKind


class ScheduleIn(Body):
    """The windows to set; those left out keep their dates (or, for a new schedule, the city template's)."""

    windows: list[KindWindowIn] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def once_each(self):
        kinds = [w.kind for w in self.windows]
        if len(kinds) != len(set(kinds)):
            raise ValueError("each kind at most once")
        return self


class NameOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    zh_TW: str = Field(alias="zh-TW")
    en: str


class WindowOut(BaseModel):
    kind: WindowKind
    name: NameOut
    starts_at: str = Field(description="ISO-8601, Taiwan time (+08:00)")
    ends_at: str
    state: Literal["upcoming", "open", "closed"]
    min_days: int
    revision: int = Field(description="0 for a template default that was never set")
    updated_at: str | None
    updated_by: str | None


class ScheduleOut(BaseModel):
    school: str
    term: str
    term_name: NameOut
    city: str
    configured: bool = Field(description="false: the city template's defaults, shown but not enforced")
    term_starts_on: str
    term_ends_on: str
    version: int
    updated_at: str | None
    windows: list[WindowOut]


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


class NotificationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unread: bool = False
    limit: int = Field(default=50, ge=1, le=200)


class NotificationOut(BaseModel):
    id: str
    topic: str
    term: str
    window_kind: WindowKind
    starts_at: str
    ends_at: str
    title: NameOut
    message: NameOut
    created_at: str
    read_at: str | None


class NotificationList(BaseModel):
    unread: int
    items: list[NotificationOut]


# ---- rendering -----------------------------------------------------------------------------------------------

def iso(value: datetime | None) -> str | None:
    return domain.taipei(value).isoformat() if value is not None else None


def names(pair: tuple[str, str]) -> dict:
    return {"zh-TW": pair[0], "en": pair[1]}


def schedule_out(view: domain.ScheduleView, at: datetime) -> dict:
    rules = domain.rules_for(view.city)
    term_start, term_end = domain.term_bounds(view.term)
    windows = []
    for w in view.windows:
        state = "upcoming" if at < w.starts_at else "open" if at < w.ends_at else "closed"
        windows.append({"kind": w.kind, "name": names(domain.window_name(w.kind)), "starts_at": iso(w.starts_at),
                        "ends_at": iso(w.ends_at), "state": state, "min_days": rules.min_length[w.kind].days,
                        "revision": w.revision, "updated_at": iso(w.updated_at), "updated_by": w.updated_by})
    return {"school": view.school, "term": view.term, "term_name": names(domain.term_label(view.term)),
            "city": view.city, "configured": view.configured, "term_starts_on": term_start.date().isoformat(),
            "term_ends_on": (term_end - timedelta(days=1)).date().isoformat(),
            "version": view.version, "updated_at": iso(view.updated_at), "windows": windows}


def notification_out(n) -> dict:
    return {"id": n.id, "topic": n.topic, "term": n.term, "window_kind": n.window_kind, "starts_at": iso(n.starts_at),
            "ends_at": iso(n.ends_at), "title": n.title, "message": n.message, "created_at": iso(n.created_at),
            "read_at": iso(n.read_at)}


# ---- routes --------------------------------------------------------------------------------------------------

def install(app, runtime) -> None:
    api = Api("scheduling", "Scheduling")

    def scheduling() -> domain.Scheduling:
        return runtime.state["scheduling"]

    def respond(view: domain.ScheduleView, status: int = 200) -> Response:
        return json_response(schedule_out(view, scheduling().clock()), status)

    @api.route("GET", f"{PREFIX}/schools/<school>/terms", summary="The terms the school has set windows for",
               response=ScheduleList)
    @require_auth(allow_receipts_only=True)
    def list_schedules(school):
        at = scheduling().clock()
        return json_response({"items": [schedule_out(v, at) for v in domain.list_schedules(current_principal(), school)]})

    @api.route("GET", f"{PREFIX}/schools/<school>/terms/<term>",
               summary="A term's windows (the city template's defaults until the school sets them)", response=ScheduleOut)
    @require_auth(allow_receipts_only=True)
    def get_schedule(school, term):
        return respond(domain.get_schedule(current_principal(), school, term))

    @api.route("PUT", f"{PREFIX}/schools/<school>/terms/<term>",
               summary="Set the term's windows (school admin; omitted ones keep their dates or take the template's)",
               body=ScheduleIn, response=ScheduleOut)
    @require_auth(*domain.WRITERS)
    def put_schedule(school, term):
        body = read_json(ScheduleIn)
        changes = {w.kind: (w.starts_at, w.ends_at) for w in body.windows}
        view, created = domain.set_windows(scheduling(), current_principal(), school, term, changes)
        return respond(view, 201 if created else 200)

    @api.route("PUT", f"{PREFIX}/schools/<school>/terms/<term>/windows/<kind>",
               summary="Set one window of the term (school admin)", body=WindowIn, response=ScheduleOut)
    @require_auth(*domain.WRITERS)
    def put_window(school, term, kind):
        body = read_json(WindowIn)
        if kind not in domain.KINDS:
            raise DomainError("not_found", f"no window kind {kind!r}")
        view, created = domain.set_windows(scheduling(), current_principal(), school, term,
                                           {kind: (body.starts_at, body.ends_at)})
        return respond(view, 201 if created else 200)

    @api.route("GET", f"{PREFIX}/schools/<school>/terms/<term>/calendar.ics",
               summary="The term's windows as an iCalendar (RFC 5545) feed")
    @require_auth(allow_receipts_only=True)
    def calendar_feed(school, term):
        view = domain.configured_schedule(current_principal(), school, term)
        return Response(calendar.calendar(view), content_type="text/calendar; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{school}-{term}.ics"'})

    @api.route("GET", f"{PREFIX}/me/notifications", summary="The caller's reminders, newest first",
               query=NotificationQuery, response=NotificationList)
    @require_auth(allow_receipts_only=True)
    def my_notifications():
        query = read_query(NotificationQuery)
        unread, items = domain.list_notifications(current_principal(), unread=query.unread, limit=query.limit)
        return json_response({"unread": unread, "items": [notification_out(n) for n in items]})

    @api.route("POST", f"{PREFIX}/me/notifications/<notification_id>/read", summary="Mark a reminder read",
               response=NotificationOut)
    @require_auth(allow_receipts_only=True)
    def read_notification(notification_id):
        return json_response(notification_out(domain.mark_read(current_principal(), notification_id)))

    api.install(app)
