"""The exchange in-process for its tests: a runtime on the suite's document store + memory://, files under a
temporary directory, the central database sandbox on a thread, test tokens, a clock the tests set, and events fed
through the service's own consumer handlers. The job (build, send) is run by the tests, one round at a time.

Imported by the test_exchange_* modules (pytest finds no tests here)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from shared.config import Settings
from shared.events import (CadreRecorded, EnrolmentCreated, GradeRecorded, SectionCreated, SelectionChanged,
                           SelectionLocked, WindowSet, make_event, parse_event)
from tests.conftest import test_documents
from tests.service.test_scheduling_support import problem_of  # noqa: F401 (one problem check for the suites)
from tests.tokens import TestTokens

A, B = "999001", "999002"
TERM = "11201"
YEAR = "112"
PREFIX = "/api/v1/exchange"
CODE = "A" * 23

USERS = {  # user id -> (school, roles)
    "adm": (A, ["school_admin"]),
    "reg": (A, ["registrar"]),
    "t1": (A, ["subject_teacher"]),
    "s1": (A, ["student"]),
    "s2": (A, ["student"]),
    "admb": (B, ["school_admin"]),
    "sb": (B, ["student"]),
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class World:
    def __init__(self, runtime, client, tokens: TestTokens, clock: Clock, sandbox):
        self.runtime, self.client, self.tokens, self.clock, self.sandbox = runtime, client, tokens, clock, sandbox
        self.handlers = {sub.queue: sub.handler for sub in runtime.spec.subscriptions(runtime)}
        self.revisions: dict[str, int] = {}

    @property
    def exchange(self):
        return self.runtime.state["exchange"]

    def h(self, user: str) -> dict:
        school, roles = USERS[user]
        return self.tokens.headers(user, school, roles)

    def deliver(self, queue: str, payload, *, school: str | None = A) -> dict:
        event = make_event(payload, school=school, producer=payload.event_type.split(".")[0])
        self.handlers[queue](*parse_event(event))
        return event

    # -- facts of other services --
    def section(self, section_id: str = "SEC1", *, name: str = "國語文", credits: int = 4, school: str = A,
                term: str = TERM) -> None:
        self.deliver("exchange.course-records", SectionCreated(
            section_id=section_id, school=school, term=term, course_code=CODE, subject_name=name, credits=credits,
            category="部定必修", section_name="101", teacher_ids=["t1"]), school=school)

    def enrol(self, student: str, section_id: str = "SEC1", *, school: str = A, term: str = TERM) -> str:
        enrolment_id = f"E-{student}-{section_id}"
        self.deliver("exchange.course-records", EnrolmentCreated(
            enrolment_id=enrolment_id, school=school, term=term, section_id=section_id, course_code=CODE,
            student_id=student, student_no=f"N{student}"), school=school)
        return enrolment_id

    def grade(self, student: str, score: float, section_id: str = "SEC1", *, school: str = A) -> None:
        self.deliver("exchange.course-records", GradeRecorded(
            enrolment_id=f"E-{student}-{section_id}", school=school, term=TERM, section_id=section_id,
            student_id=student, score=score, passed=score >= 60, credits_earned=4 if score >= 60 else 0),
            school=school)

    def cadre(self, student: str, title: str = "班長", *, school: str = A) -> str:
        cadre_id = f"C-{student}-{title}"
        self.deliver("exchange.cadres", CadreRecorded(cadre_id=cadre_id, school=school, term=TERM, student_id=student,
                                                      level="class", unit="101", title=title), school=school)
        return cadre_id

    def select(self, student: str, outcomes: int = 2, performances: int = 1, *, school: str = A,
               content: str = "v1") -> SelectionChanged:
        revision = self.revisions[student] = self.revisions.get(student, 0) + 1
        files = lambda item: [{"file_id": f"F-{item}", "name": f"{item}.pdf", "kind": "document",  # noqa: E731
                               "media_type": "application/pdf", "size": 1000, "sha256": sha(f"{item}:{content}")}]
        payload = SelectionChanged(
            selection_id=f"{school}:{student}:{YEAR}", school=school, student_id=student, year=YEAR, revision=revision,
            outcomes=[{"outcome_id": f"O-{student}-{i}", "term": TERM, "section_id": "SEC1", "course_code": CODE,
                       "subject_name": "國語文", "brief": "成果", "files": files(f"O-{student}-{i}")}
                      for i in range(outcomes)],
            performances=[{"performance_id": f"P-{student}-{i}", "term": TERM, "category": "競賽", "name": "科展",
                           "start_date": "2023-09-01", "end_date": "2023-09-02", "brief": "表現",
                           "files": files(f"P-{student}-{i}")} for i in range(performances)],
            changed_by=student)
        self.deliver("exchange.selections", payload, school=school)
        return payload

    def lock(self, students: int, revisions: int | None, *, school: str = A) -> None:
        self.deliver("exchange.selections", SelectionLocked(school=school, year=YEAR, students=students,
                                                            revisions=revisions, locked_by="adm"), school=school)

    def window(self, kind: str, starts: datetime, ends: datetime, *, school: str = A) -> None:
        self.deliver("exchange.windows", WindowSet(window_id=f"{school}:{TERM}:{kind}", school=school, term=TERM,
                                                   kind=kind, starts_at=starts, ends_at=ends, revision=1,
                                                   set_by="adm"), school=school)

    # -- the API --
    def get(self, path: str, user: str = "adm", **params):
        return self.client.get(f"{PREFIX}{path}", headers=self.h(user), query_string=params)

    def post(self, path: str, body: dict | None = None, user: str = "adm"):
        return self.client.post(f"{PREFIX}{path}", headers=self.h(user), json=body if body is not None else {})

    def submit(self, scope: str = "term", user: str = "adm", school: str = A):
        return self.post(f"/schools/{school}/submissions", {"scope": scope, "term": TERM}, user)

    def job(self) -> dict:
        from services.exchange.send import run_once

        return run_once(self.exchange)

    def submission(self, sid: str, user: str = "adm") -> dict:
        response = self.get(f"/schools/{A}/submissions/{sid}", user)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def receipts(self, sid: str, user: str = "adm", **params) -> dict:
        response = self.get(f"/schools/{A}/submissions/{sid}/receipts", user, **params)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


def outbox_events(model) -> list[dict]:
    return [item["event"] for doc in model._get_collection().find({}, {"outbox": 1}) for item in doc.get("outbox", [])]


@pytest.fixture
def sandbox():
    from deploy.central_sandbox import SandboxThread

    thread = SandboxThread().start()
    yield thread
    thread.stop()


@pytest.fixture
def world(tmp_path, sandbox, monkeypatch):
    from services.exchange.app import create_runtime

    monkeypatch.setenv("EXCHANGE_JOB_SECONDS", "0")  # the tests run the job themselves, round by round
    monkeypatch.setenv("CENTRAL_URL", sandbox.url)
    monkeypatch.setenv("EXCHANGE_SEND_TIMEOUT", "1")
    monkeypatch.setenv("EXCHANGE_RETRY_SECONDS", "0.5")
    settings = Settings(service="exchange", bus_url="memory://", **test_documents(), var_dir=tmp_path,
                        media_url=f"file://{tmp_path}/media", relay_poll_seconds=0.05, consumer_backoff_ms=10,
                        consumer_max_retries=2)
    runtime = create_runtime(settings)
    tokens = TestTokens()
    runtime.verifier = tokens.verifier
    clock = Clock(datetime(2024, 2, 20, 2, 0, tzinfo=timezone.utc))
    runtime.state["exchange"].clock = clock
    world = World(runtime, runtime.create_app().test_client(), tokens, clock, sandbox)
    yield world
    runtime.stop_workers()
