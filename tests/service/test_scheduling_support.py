"""The scheduling service in-process for its tests: a runtime on the suite's document store + memory://, test
tokens, a clock the tests set, and events fed through the service's own consumer handlers.

Imported by the test_scheduling_* modules (pytest finds no tests here)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.config import Settings
from shared.events import EnrolmentCreated, OutcomeSubmitted, StudentFacts, UserCreated, make_event, parse_event
from tests.conftest import test_documents
from tests.tokens import TestTokens

A, B = "999001", "999002"
TERM = "11201"
PREFIX = "/api/v1/scheduling"
TAIPEI = timezone(timedelta(hours=8))

USERS = {  # user id -> (school, roles)
    "adm": (A, ["school_admin"]),
    "cur": (A, ["curriculum"]),
    "t1": (A, ["subject_teacher"]),
    "s1": (A, ["student"]),
    "s2": (A, ["student"]),
    "s3": (A, ["student"]),
    "admb": (B, ["school_admin"]),
    "sb": (B, ["student"]),
    "city": (None, ["city_admin"]),
}


def taipei(*args) -> datetime:
    return datetime(*args, tzinfo=TAIPEI)


def problem_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["message"]["zh-TW"] and body["message"]["en"], body
    return body


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at.astimezone(timezone.utc)


class World:
    def __init__(self, runtime, client, tokens: TestTokens, clock: Clock):
        self.runtime, self.client, self.tokens, self.clock = runtime, client, tokens, clock
        self.handlers = {sub.queue: sub.handler for sub in runtime.spec.subscriptions(runtime)}

    @property
    def scheduling(self):
        return self.runtime.state["scheduling"]

    def h(self, user: str, **kwargs) -> dict:
        school, roles = USERS[user]
        return self.tokens.headers(user, school, roles, **kwargs)

    def deliver(self, queue: str, payload, *, school: str | None) -> dict:
        event = make_event(payload, school=school, producer=payload.event_type.split(".")[0])
        self.handlers[queue](*parse_event(event))
        return event

    def get(self, path: str, user: str = "adm"):
        return self.client.get(f"{PREFIX}{path}", headers=self.h(user))

    def put(self, path: str, body: dict, user: str = "adm"):
        return self.client.put(f"{PREFIX}{path}", headers=self.h(user), json=body)

    def set_window(self, kind: str, starts: datetime, ends: datetime, *, school: str = A, term: str = TERM,
                   user: str = "adm"):
        return self.put(f"/schools/{school}/terms/{term}/windows/{kind}",
                        {"starts_at": starts.isoformat(), "ends_at": ends.isoformat()}, user)

    def enrol(self, student: str, school: str = A, term: str = TERM) -> None:
        self.deliver("scheduling.enrolments", EnrolmentCreated(
            enrolment_id=f"E-{student}-{term}", school=school, term=term, section_id="SEC", course_code="C" * 23,
            student_id=student, student_no=f"N{student}"), school=school)

    def submitted(self, student: str, school: str = A, term: str = TERM) -> None:
        self.deliver("scheduling.submissions", OutcomeSubmitted(
            outcome_id=f"O-{student}-{term}", school=school, term=term, section_id="SEC", course_code="C" * 23,
            student_id=student, brief="成果", files=[], submitted_by=student, submitted_from="203.0.113.5",
            submission=1), school=school)

    def user(self, user_id: str) -> None:
        school, roles = USERS[user_id]
        student = StudentFacts(student_no=f"N{user_id}", class_name="101", grade=10, status="enrolled") \
            if "student" in roles else None
        self.deliver("scheduling.user-directory", UserCreated(
            user_id=user_id, school=school, city="TPE", username=user_id, display_name=user_id, roles=roles,
            student=student), school=school)


def outbox_events(model) -> list[dict]:
    return [item["event"] for doc in model._get_collection().find({}, {"outbox": 1}) for item in doc.get("outbox", [])]


@pytest.fixture
def world(tmp_path):
    from services.scheduling.app import create_runtime

    settings = Settings(service="scheduling", bus_url="memory://", **test_documents(), var_dir=tmp_path,
                        relay_poll_seconds=0.05, consumer_backoff_ms=10, consumer_max_retries=2)
    runtime = create_runtime(settings)
    tokens = TestTokens()
    runtime.verifier = tokens.verifier
    clock = Clock(taipei(2023, 9, 1, 10, 0))
    runtime.state["scheduling"].clock = clock
    world = World(runtime, runtime.create_app().test_client(), tokens, clock)
    yield world
    runtime.stop_workers()
