"""Kit for the intake tests (no tests here): a school world fed by events, tokens, small valid files, streamed
bodies that count what the service consumed, and looks into the media store.

The intake service runs in-process on the memory:// bus, the suite's document store and a media store on disk; projections are
fed through the real consumer handlers with catalogue-validated events.
"""
from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shared.config import Settings
from pydantic import ValidationError

from shared.events import (EnrolmentCreated, EnrolmentWithdrawn, OutcomeCertified, OutcomeReturned, SectionCreated,
                           SectionFacts, StudentFacts, UserCreated, make_event, parse_event)
from tests.files import jpeg, mp3, mp4, mp4_chunks, pdf, png  # noqa: F401 (the intake tests import them from here)
from tests.conftest import free_port, test_documents
from tests.tokens import TestTokens

A, B = "999001", "999002"


def term(year: int, semester: int) -> str:
    """A term code the event catalogue accepts: "11201" as documented, or "1121" while SectionFacts' pattern
    (^\\d{3}[12]$) still says so. Intake takes either; the school year is the first 3 digits of both."""
    for candidate in (f"{year}0{semester}", f"{year}{semester}"):
        try:
            SectionFacts.model_validate({"section_id": "x", "school": "999001", "term": candidate, "course_code": "x" * 23,
                                         "subject_name": "x", "credits": 1, "category": "x", "section_name": "x",
                                         "teacher_ids": []})
            return candidate
        except ValidationError:
            continue
    raise AssertionError("the catalogue accepts no term format")


TERM, TERM2 = term(112, 1), term(112, 2)
COURSE = "112999001A1011110001AB1"  # 23 characters, like a real 課程代碼
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- streamed request bodies --------------------------------------------------------------------------------

class StreamBody(io.RawIOBase):
    """A request body read from a generator, counting what the server pulled; the generator may raise."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._buffer = b""
        self.consumed = 0
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self.exhausted = True
                break
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.consumed += len(data)
        return data

    def readinto(self, target) -> int:
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)


# ---- the world --------------------------------------------------------------------------------------------

@dataclass
class User:
    id: str
    school: str | None
    roles: tuple[str, ...]
    class_name: str | None = None      # students
    homeroom_class: str | None = None  # homeroom teachers


USERS = {
    # school A
    "s1": User("s1", A, ("student",), class_name="101"),
    "s2": User("s2", A, ("student",), class_name="101"),
    "s3": User("s3", A, ("student",), class_name="102"),
    "t_math": User("t_math", A, ("subject_teacher",)),                                     # teaches SEC-A1
    "t_home": User("t_home", A, ("subject_teacher", "homeroom_teacher"), homeroom_class="101"),
    "t_home2": User("t_home2", A, ("homeroom_teacher",), homeroom_class="102"),
    "t_other": User("t_other", A, ("subject_teacher",)),                                   # no relation to s1
    "admin": User("admin", A, ("school_admin",)),
    "registrar": User("registrar", A, ("registrar",)),
    "curriculum": User("curriculum", A, ("curriculum",)),
    "affairs": User("affairs", A, ("student_affairs",)),
    "counsellor": User("counsellor", A, ("course_counsellor",)),
    # school B
    "b1": User("b1", B, ("student",), class_name="101"),
    "b_teacher": User("b_teacher", B, ("subject_teacher", "homeroom_teacher"), homeroom_class="101"),
    "b_admin": User("b_admin", B, ("school_admin", "registrar", "curriculum")),
    # the city
    "city": User("city", None, ("city_admin",)),
}

SECTIONS = [  # (section_id, school, term, subject, teachers)
    ("SEC-A1", A, TERM, "數學", ["t_math"]),
    ("SEC-A2", A, TERM, "英文", ["t_other"]),
    ("SEC-A3", A, TERM2, "數學", ["t_math"]),
    ("SEC-B1", B, TERM, "數學", ["b_teacher"]),
]
ENROLMENTS = [  # (enrolment_id, school, term, section_id, student)
    ("E-s1-A1", A, TERM, "SEC-A1", "s1"), ("E-s1-A3", A, TERM2, "SEC-A3", "s1"), ("E-s2-A1", A, TERM, "SEC-A1", "s2"),
    ("E-s3-A2", A, TERM, "SEC-A2", "s3"), ("E-b1-B1", B, TERM, "SEC-B1", "b1"),
]


def event(payload, *, school: str | None, producer: str, at: datetime | None = None) -> dict:
    body = make_event(payload, school=school, producer=producer)
    if at is not None:
        body["occurred_at"] = at.isoformat()
    return body


def user_event(user: User) -> dict:
    student = None
    if "student" in user.roles:
        student = StudentFacts(student_no=f"N{user.id}", class_name=user.class_name, grade=10, status="enrolled")
    return event(UserCreated(user_id=user.id, school=user.school, city="TPE", username=user.id, display_name=user.id,
                             roles=list(user.roles), homeroom_class=user.homeroom_class, student=student),
                 school=user.school, producer="identity")


def section_event(section_id, school, term, subject, teachers, *, at=None, cls=SectionCreated) -> dict:
    return event(cls(section_id=section_id, school=school, term=term, course_code=COURSE, subject_name=subject,
                     credits=2, category="部定必修", section_name="101", teacher_ids=teachers),
                 school=school, producer="records", at=at)


def enrolment_event(enrolment_id, school, term, section_id, student, *, at=None) -> dict:
    return event(EnrolmentCreated(enrolment_id=enrolment_id, school=school, term=term, section_id=section_id,
                                  course_code=COURSE, student_id=student, student_no=f"N{student}"),
                 school=school, producer="records", at=at)


def withdrawal_event(enrolment_id, school, term, section_id, student, *, at=None) -> dict:
    return event(EnrolmentWithdrawn(enrolment_id=enrolment_id, school=school, term=term, section_id=section_id,
                                    student_id=student), school=school, producer="records", at=at)


@dataclass
class World:
    runtime: object
    app: object
    client: object
    tokens: TestTokens
    media: Path
    handlers: dict = field(default_factory=dict)

    # -- events into the projections (through the real handlers) -----------------------------------------
    def deliver(self, body: dict) -> None:
        envelope, payload = parse_event(body)
        for sub in self.runtime.spec.subscriptions(self.runtime):
            if envelope.type in sub.event_types:
                sub.handler(envelope, payload)

    def certify(self, outcome: dict, submission: int, *, at: datetime | None = None) -> dict:
        body = event(OutcomeCertified(outcome_id=outcome["id"], school=outcome["school"], student_id=outcome["student_id"],
                                      section_id=outcome["section_id"], submission=submission, certified_by="t_math",
                                      certified_at=at or datetime.now(timezone.utc)),
                     school=outcome["school"], producer="certification")
        self.deliver(body)
        return body

    def send_back(self, outcome: dict, submission: int, reason: str = "請補上心得") -> dict:
        body = event(OutcomeReturned(outcome_id=outcome["id"], school=outcome["school"], student_id=outcome["student_id"],
                                     section_id=outcome["section_id"], submission=submission, returned_by="t_math",
                                     reason=reason, returned_at=datetime.now(timezone.utc)),
                     school=outcome["school"], producer="certification")
        self.deliver(body)
        return body

    # -- HTTP -------------------------------------------------------------------------------------------
    def h(self, user: str, **extra) -> dict:
        u = USERS[user]
        return {**self.tokens.headers(u.id, u.school, u.roles), **extra}

    def outcome(self, user: str = "s1", section: str = "SEC-A1", brief: str = "我的數學小論文") -> dict:
        response = self.client.post("/api/v1/intake/outcomes", headers=self.h(user),
                                    json={"section_id": section, "brief": brief})
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    def performance(self, user: str = "s1", **fields) -> dict:
        body = {"category": "competition", "name": "全國科展", "organiser": "教育部", "start_date": "2023-09-01",
                "end_date": "2023-09-03", "hours": 12, "brief": "科展佳作", "result": "佳作", "term": TERM, **fields}
        response = self.client.post("/api/v1/intake/performances", headers=self.h(user), json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    def upload(self, item: dict, data: bytes, name: str = "成果.pdf", *, key: str | None = None, user: str = "s1",
               kind: str = "outcomes", checksum: str | None = None, headers: dict | None = None):
        key = key or hashlib.sha1(data + (name or "").encode()).hexdigest()[:16]
        extra = {"X-File-Name": quote(name, safe="")} if name is not None else {}
        if checksum:
            extra["X-Content-SHA256"] = checksum
        return self.client.put(f"/api/v1/intake/{kind}/{item['id']}/files/{key}", data=data,
                               headers=self.h(user, **extra, **(headers or {})),
                               content_type="application/octet-stream")

    def put_stream(self, path: str, body: StreamBody, *, length: int | None, user: str = "s1",
                   name: str = "big.pdf", headers: dict | None = None):
        """PUT with a body the server pulls from ``body`` (chunked when ``length`` is None)."""
        environ = EnvironBuilder(path=path, method="PUT",
                                 headers=self.h(user, **{"X-File-Name": quote(name)}, **(headers or {})),
                                 content_type="application/octet-stream").get_environ()
        environ["wsgi.input"] = body
        if length is None:
            environ.pop("CONTENT_LENGTH", None)
            environ["wsgi.input_terminated"] = True
            environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        else:
            environ["CONTENT_LENGTH"] = str(length)
        return self.client.open(Request(environ))

    def get(self, path: str, user: str = "s1", **kwargs):
        return self.client.get(path, headers=self.h(user), **kwargs)

    def set_policy(self, **values) -> dict:
        response = self.client.put(f"/api/v1/intake/schools/{A}/policy", headers=self.h("admin"), json=values)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    # -- the media store on disk ----------------------------------------------------------------------------
    def objects(self) -> list[Path]:
        return sorted(p for p in self.media.rglob("*") if p.is_file() and ".partial" not in p.parts)

    def partials(self) -> list[Path]:
        partial = self.media / ".partial"
        return list(partial.iterdir()) if partial.exists() else []

    def raw(self, model, item_id: str) -> dict:
        return model._get_collection().find_one({"_id": item_id})


def problem_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["message"]["zh-TW"] and body["message"]["en"], body
    return body


def make_world(tmp_path, media_url: str | None = None) -> World:
    from services.intake.app import create_runtime

    media = tmp_path / "media"
    settings = Settings(service="intake", bus_url="memory://", **test_documents(), var_dir=tmp_path,
                        media_url=media_url or f"file://{media}", relay_poll_seconds=0.05, consumer_backoff_ms=10,
                        consumer_max_retries=2)
    runtime = create_runtime(settings)
    tokens = TestTokens()
    runtime.verifier = tokens.verifier
    app = runtime.create_app()
    world = World(runtime=runtime, app=app, client=app.test_client(), tokens=tokens, media=media)
    base = datetime.now(timezone.utc) - timedelta(hours=1)
    for user in USERS.values():
        world.deliver(user_event(user))
    for section in SECTIONS:
        world.deliver(section_event(*section, at=base))
    for enrolment in ENROLMENTS:
        world.deliver(enrolment_event(*enrolment, at=base))
    return world


@pytest.fixture
def world(tmp_path):
    world = make_world(tmp_path)
    yield world
    world.runtime.stop_workers()


# ---- an S3 media store over real HTTP (moto), for the tests of the S3 paths -------------------------------
@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"testing:testing@127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_world(tmp_path, s3_endpoint):
    world = make_world(tmp_path, media_url=f"s3://{s3_endpoint}/intake-{uuid.uuid4().hex[:12]}")
    yield world
    world.runtime.stop_workers()
