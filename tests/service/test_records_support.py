"""Fixtures and helpers for the records service tests (imported by the other test_records_* modules).

The records service runs in-process without identity: tokens come from tests.tokens.TestTokens and the user
directory is fed by calling the records.user-directory handler with real catalogue events.
"""
from __future__ import annotations

import os

import pytest

from shared.config import Settings
from shared.events import StudentFacts, UserCreated, UserDeactivated, UserUpdated, make_event, parse_event
from tests.files import pdf, png  # noqa: F401 (used by the records tests through this module)
from tests.conftest import test_documents
from tests.tokens import TestTokens

TOKENS = TestTokens()
SCHOOLS = ("999001", "999002")
TERM = "11201"
COURSE = "10400000000000000000000"     # 23 characters
COURSE2 = "1040000000000000000000B"
assert len(COURSE) == len(COURSE2) == 23
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# username: (roles, homeroom_class, student facts (student_no, class, grade) or None)
PEOPLE = {
    "admin": (["school_admin"], None, None),
    "curriculum": (["curriculum"], None, None),
    "registrar": (["registrar"], None, None),
    "affairs": (["student_affairs"], None, None),
    "office": (["counselling_office"], None, None),
    "counsellor": (["course_counsellor"], None, None),
    "counsellor2": (["course_counsellor"], None, None),
    "teacher01": (["subject_teacher", "homeroom_teacher"], "101", None),
    "teacher02": (["subject_teacher"], None, None),
    "homeroom102": (["homeroom_teacher"], "102", None),
    "student01": (["student"], None, ("1120001", "101", 10)),
    "student02": (["student"], None, ("1110002", "102", 11)),
    "student03": (["student"], None, ("1100003", "101", 12)),
    "junior": (["student"], None, ("1130009", "901", 9)),   # 完全中學 國中部: not a senior-high student
}
STAFF = [u for u, (roles, _, student) in PEOPLE.items() if student is None]
STUDENTS = [u for u, (_, _, student) in PEOPLE.items() if student is not None]
ALL_ROLES = ["school_admin", "registrar", "curriculum", "student_affairs", "counselling_office", "course_counsellor",
             "subject_teacher", "homeroom_teacher"]


def uid(username: str, school: str = "999001") -> str:
    return f"u-{school}-{username}"


def facts(username: str, school: str = "999001", *, status: str = "enrolled", class_name: str | None = None,
          grade: int | None = None, **changes) -> dict:
    roles, homeroom, student = PEOPLE[username]
    data = {"user_id": uid(username, school), "school": school, "city": "TPE", "username": username,
            "display_name": f"{username}@{school}", "roles": roles, "homeroom_class": homeroom,
            "student": StudentFacts(student_no=student[0], class_name=class_name or student[1], grade=grade or student[2],
                                    status=status) if student else None}
    data.update(changes)
    return data


def identity_event(payload, school: str | None, at: str | None = None) -> tuple:
    """An identity event as the consumer receives it: made by the catalogue, validated again."""
    body = make_event(payload, school=school, producer="identity")
    if at is not None:
        body["occurred_at"] = at
    return parse_event(body)


def created(username: str, school: str = "999001", *, at: str | None = None, **changes) -> tuple:
    return identity_event(UserCreated(**facts(username, school, **changes)), school, at)


def updated(username: str, school: str = "999001", *, at: str | None = None, **changes) -> tuple:
    return identity_event(UserUpdated(**facts(username, school, **changes)), school, at)


def deactivated(username: str, school: str = "999001", *, at: str | None = None) -> tuple:
    return identity_event(UserDeactivated(user_id=uid(username, school), school=school,
                                          deactivated_at="2026-01-01T00:00:00Z", reason="left"), school, at)


def handler_of(runtime, queue: str):
    (subscription,) = [s for s in runtime.spec.subscriptions(runtime) if s.queue == queue]
    return subscription.handler


def directory_handler(runtime):
    return handler_of(runtime, "records.user-directory")


def feed(runtime, *items) -> None:
    handler = directory_handler(runtime)
    for envelope, payload in items:
        handler(envelope, payload)


def everyone(school: str) -> list[tuple]:
    return [created(username, school) for username in PEOPLE]


def h(username: str, school: str = "999001", roles: list[str] | None = None) -> dict:
    """Headers of a signed-in user of the directory (or a made-up one with explicit roles)."""
    if username == "cityadmin":
        return TOKENS.headers("u-cityadmin", None, ["city_admin"], city="TPE")
    if username == "khhadmin":
        return TOKENS.headers("u-khhadmin", None, ["city_admin"], city="KHH")
    return TOKENS.headers(uid(username, school), school, roles or PEOPLE[username][0], username=username)


def intruder(school: str = "999002") -> dict:
    """A user of another school holding every staff role: only the tenant seal can stop them."""
    return TOKENS.headers(uid("intruder", school), school, ALL_ROLES, username="intruder")


def base(school: str = "999001") -> str:
    return f"/api/v1/records/schools/{school}"


def problem_of(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["message"]["zh-TW"] and body["message"]["en"]
    if code is not None:
        assert body["code"] == code, body
    return body




def stored_files(runtime) -> list[str]:
    """Every object in the media store (a file store in the tests), partial uploads included."""
    root = runtime.state["media"].root
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def outbox_events(model, **filters) -> list[dict]:
    return [item["event"] for doc in model._get_collection().find(filters) for item in doc.get("outbox", [])]


# ---- fixtures ----------------------------------------------------------------------------------------------

@pytest.fixture
def records(tmp_path):
    from services.records.app import create_runtime

    settings = Settings(service="records", bus_url="memory://", **test_documents(),
                        media_url=f"file://{tmp_path}/media", var_dir=tmp_path, relay_poll_seconds=0.05,
                        consumer_backoff_ms=10, consumer_max_retries=2)
    runtime = create_runtime(settings)
    runtime.verifier = TOKENS.verifier
    for school in SCHOOLS:
        feed(runtime, *everyone(school))
    yield runtime
    runtime.state["imports"].join()
    runtime.stop_workers()


@pytest.fixture
def client(records):
    return records.create_app().test_client()


def setup_term(client, school: str = "999001", term: str = TERM) -> None:
    response = client.post(f"{base(school)}/terms", json={"code": term}, headers=h("curriculum", school))
    assert response.status_code == 201, response.get_data(as_text=True)


def add_section(client, school: str = "999001", *, course_code: str = COURSE, section_name: str = "101",
                teachers=("teacher01",), subject: str = "國語文", credits: int = 4, category: str = "部定必修",
                term: str = TERM) -> dict:
    response = client.post(f"{base(school)}/sections", headers=h("curriculum", school), json={
        "term": term, "course_code": course_code, "subject_name": subject, "credits": credits, "category": category,
        "section_name": section_name, "teacher_ids": [uid(t, school) for t in teachers]})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def enrol(client, section_id: str, student: str, school: str = "999001", who: str = "curriculum") -> dict:
    response = client.post(f"{base(school)}/sections/{section_id}/enrolments", headers=h(who, school),
                           json={"student_id": uid(student, school)})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def course(client):
    """Per school: term 11201; 國語文 (101, teacher01) with student01 and student03; 英語文 (102, teacher02) with
    student02."""
    result = {}
    for school in SCHOOLS:
        setup_term(client, school)
        chinese = add_section(client, school)
        english = add_section(client, school, course_code=COURSE2, section_name="102", teachers=("teacher02",),
                              subject="英語文", credits=2)
        result[school] = {
            "section": chinese["id"], "section2": english["id"],
            "e1": enrol(client, chinese["id"], "student01", school)["id"],
            "e3": enrol(client, chinese["id"], "student03", school)["id"],
            "e2": enrol(client, english["id"], "student02", school)["id"],
        }
    return result


def test_the_support_directory_is_fed_for_both_schools(records):
    from services.records.models import Directory

    for school in SCHOOLS:
        assert Directory.objects(school=school).count() == len(PEOPLE)
    student = Directory.objects(id=uid("student01")).first()
    assert (student.student_no, student.class_name, student.grade, student.city) == ("1120001", "101", 10, "TPE")
