"""The certification service in-process for its tests: a runtime on the suite's document store + memory://, test tokens, and a
small world of two schools fed through the service's own consumer handlers (no identity/records/intake needed).

Imported by the test_certification_* modules (pytest finds no tests here)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from shared.config import Settings
from shared.events import (OutcomeSubmitted, SectionCreated, SectionUpdated, StoredFile, StudentFacts, UserCreated,
                           make_event, parse_event)
from tests.conftest import test_documents
from tests.tokens import TestTokens

A, B = "999001", "999002"
TERM = "11301"  # 學年度 113, 第 1 學期
COURSE = "113" + "0" * 5 + "ABCDEFGHIJKLMNO"  # 23 characters
PREFIX = "/api/v1/certification"
TAIPEI = timezone(timedelta(hours=8))

# user id -> (school, roles, display name)
USERS = {
    "t1": (A, ["subject_teacher"], "王老師"),            # teaches S1
    "t2": (A, ["subject_teacher"], "李老師"),            # teaches S2
    "t3": (A, ["subject_teacher", "homeroom_teacher"], "陳老師"),  # becomes t1's substitute (代理人)
    "h1": (A, ["homeroom_teacher"], "張導師"),           # a teacher of the school, of no section here
    "cur": (A, ["curriculum"], "教務處"),
    "adm": (A, ["school_admin"], "管理者"),
    "s1": (A, ["student"], "林同學"),
    "s2": (A, ["student"], "黃同學"),
    "tb": (B, ["subject_teacher"], "乙校老師"),          # teaches SB
    "tb2": (B, ["subject_teacher"], "乙校代理"),
    "curb": (B, ["curriculum"], "乙校教務"),
    "sb": (B, ["student"], "乙校同學"),
}
SECTIONS = {"S1": (A, ["t1"]), "S2": (A, ["t2"]), "SB": (B, ["tb"])}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stored(name: str, content: str | None = None) -> StoredFile:
    return StoredFile(file_id=f"f-{name}", name=name, kind="document", media_type="application/pdf", size=1234,
                      sha256=digest(content or name))


def taipei_day(offset: int = 0) -> str:
    return (datetime.now(TAIPEI).date() + timedelta(days=offset)).isoformat()


def problem_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["message"]["zh-TW"] and body["message"]["en"]
    return body


class World:
    def __init__(self, runtime, client, tokens: TestTokens):
        self.runtime = runtime
        self.client = client
        self.tokens = tokens
        self.handlers = {sub.queue: sub.handler for sub in runtime.spec.subscriptions(runtime)}

    # -- events through the service's own handlers (as the consumer workers call them) ------------------
    def deliver(self, queue: str, payload, *, school: str | None, at: datetime | None = None) -> dict:
        event = make_event(payload, school=school, producer=payload.event_type.split(".")[0])
        if at is not None:
            event["occurred_at"] = at.isoformat()
        envelope, parsed = parse_event(event)
        self.handlers[queue](envelope, parsed)
        return event

    def replay(self, queue: str, event: dict) -> None:
        self.handlers[queue](*parse_event(event))

    def user(self, user_id: str) -> None:
        school, roles, name = USERS[user_id]
        student = StudentFacts(student_no=f"no-{user_id}", class_name="101", grade=10, status="enrolled") \
            if "student" in roles else None
        self.deliver("certification.user-directory", UserCreated(
            user_id=user_id, school=school, city="TPE", username=user_id, display_name=name, roles=roles,
            student=student), school=school)

    def section(self, section_id: str, school: str, teacher_ids: list[str], *, term: str = TERM, updated: bool = False,
                at: datetime | None = None) -> dict:
        model = SectionUpdated if updated else SectionCreated
        return self.deliver("certification.course-catalogue", model(
            section_id=section_id, school=school, term=term, course_code=COURSE, subject_name=f"科目{section_id}",
            credits=2, category="部定必修", section_name=f"班{section_id}", teacher_ids=teacher_ids), school=school, at=at)

    def submit(self, outcome_id: str, student: str = "s1", section_id: str = "S1", *, files=None, submission: int = 1,
               school: str | None = None, term: str = TERM, address: str = "198.51.100.20") -> dict:
        school = school or USERS[student][0]
        files = [stored("report.pdf")] if files is None else files
        return self.deliver("certification.submissions", OutcomeSubmitted(
            outcome_id=outcome_id, school=school, term=term, section_id=section_id, course_code=COURSE,
            student_id=student, brief=f"brief of {outcome_id} #{submission}", files=files, submitted_by=student,
            submitted_from=address, submission=submission), school=school)

    def seed(self) -> "World":
        for user_id in USERS:
            self.user(user_id)
        for section_id, (school, teachers) in SECTIONS.items():
            self.section(section_id, school, teachers)
        return self

    # -- HTTP ----------------------------------------------------------------------------------------
    def headers(self, user_id: str, *, forwarded: str | None = None, school: str | None = "unset",
                roles: list[str] | None = None) -> dict:
        default_school, default_roles, _ = USERS.get(user_id, (A, ["subject_teacher"], ""))
        headers = self.tokens.headers(user_id, default_school if school == "unset" else school,
                                      roles or default_roles)
        if forwarded:
            headers["X-Forwarded-For"] = forwarded
        return headers

    def get(self, path: str, user_id: str, **kwargs):
        return self.client.get(f"{PREFIX}{path}", headers=self.headers(user_id, **kwargs))

    def certify(self, outcome_id: str, user_id: str, **kwargs):
        return self.client.post(f"{PREFIX}/outcomes/{outcome_id}/certify", headers=self.headers(user_id, **kwargs))

    def return_(self, outcome_id: str, user_id: str, reason: str | None = "請補上反思", **kwargs):
        body = {} if reason is None else {"reason": reason}
        return self.client.post(f"{PREFIX}/outcomes/{outcome_id}/return", json=body,
                                headers=self.headers(user_id, **kwargs))

    def bulk(self, user_id: str, body: dict, **kwargs):
        return self.client.post(f"{PREFIX}/bulk-certify", json=body, headers=self.headers(user_id, **kwargs))

    def assign(self, user_id: str, teacher_id: str, substitute_id: str, starts_on: str, ends_on: str, **kwargs):
        return self.client.post(f"{PREFIX}/substitutes", headers=self.headers(user_id, **kwargs), json={
            "teacher_id": teacher_id, "substitute_id": substitute_id, "starts_on": starts_on, "ends_on": ends_on})

    # -- the stored documents ------------------------------------------------------------------------
    def stored(self, outcome_id: str) -> dict:
        from services.certification.models import Certification

        return Certification._get_collection().find_one({"_id": outcome_id})

    def outbox(self, outcome_id: str) -> list[dict]:
        return [item["event"] for item in (self.stored(outcome_id) or {}).get("outbox", [])]


@pytest.fixture
def world(tmp_path):
    from services.certification.app import create_runtime

    tokens = TestTokens()
    runtime = create_runtime(Settings(service="certification", bus_url="memory://", **test_documents(),
                                      var_dir=tmp_path, relay_poll_seconds=0.05, consumer_backoff_ms=10,
                                      consumer_max_retries=2))
    runtime.verifier = tokens.verifier
    world = World(runtime, runtime.create_app().test_client(), tokens).seed()
    yield world
    runtime.stop_workers()
