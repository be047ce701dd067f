"""Reminders: when 成果上傳 is about to close, every student enrolled in the term who has sent no course outcome gets
a notification (once, however often the event arrives), readable only by them through /me/notifications."""
from __future__ import annotations

import time

from shared.events import UserDeactivated, parse_event
from services.scheduling import domain
from services.scheduling.models import Edge, Notification
from tests.service.test_scheduling_support import (A, B, TERM, outbox_events, problem_of, taipei,
                                                   world)  # noqa: F401 (fixture)

CLOSING_AT = taipei(2024, 2, 12, 17, 0)  # 3 days before 成果上傳 ends (2024-02-15 17:00)


def school_of_students(world):
    for student in ("s1", "s2", "s3", "sb"):
        world.user(student)
    for student in ("s1", "s2", "s3"):
        world.enrol(student)
    world.enrol("sb", school=B)
    world.submitted("s2")          # s2 sent an outcome of the term
    world.submitted("s3", term="11202")  # s3 only of another term
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 29, 17))  # stores the whole term
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 29, 17), school=B, user="admb")


def closing_event(kind: str = "outcome_upload", school: str = A) -> dict:
    return next(e for e in outbox_events(Edge) if e["type"] == "scheduling.closing.announced.v1"
                and e["payload"]["kind"] == kind and e["school"] == school)


def notifications(world, user: str, **query):
    response = world.client.get("/api/v1/scheduling/me/notifications", headers=world.h(user), query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_students_without_an_outcome_of_the_term_are_reminded_once(world):
    school_of_students(world)
    world.deliver("scheduling.user-directory", UserDeactivated(user_id="s9", school=A, deactivated_at=CLOSING_AT,
                                                               reason="transferred"), school=A)
    domain.run_edges(world.scheduling, at=CLOSING_AT)
    event = closing_event()
    for _ in range(2):  # a redelivery adds nothing
        world.handlers["scheduling.reminders"](*parse_event(event))
    body = notifications(world, "s1")
    assert body["unread"] == 1
    (note,) = body["items"]
    assert note["topic"] == "window_closing" and note["window_kind"] == "outcome_upload" and note["term"] == TERM
    assert note["ends_at"] == "2024-02-15T17:00:00+08:00"
    assert note["title"]["zh-TW"] == "成果上傳即將截止"
    assert "2024-02-15 17:00" in note["message"]["zh-TW"] and "112學年度第1學期" in note["message"]["zh-TW"]
    assert "2024-02-15 17:00" in note["message"]["en"]
    assert notifications(world, "s3")["unread"] == 1     # sent only in another term
    assert notifications(world, "s2")["items"] == []     # sent one in this term
    assert notifications(world, "sb")["items"] == []     # another school's window did not close
    assert notifications(world, "t1")["items"] == []
    assert Notification.objects.count() == 2


def test_other_windows_closing_remind_nobody(world):
    school_of_students(world)
    domain.run_edges(world.scheduling, at=taipei(2024, 2, 26, 17, 30))
    world.handlers["scheduling.reminders"](*parse_event(closing_event("selection")))
    assert Notification.objects.count() == 0


def test_a_withdrawn_student_or_one_who_left_is_not_reminded(world):
    from shared.events import EnrolmentWithdrawn

    school_of_students(world)
    world.deliver("scheduling.enrolments", EnrolmentWithdrawn(enrolment_id=f"E-s1-{TERM}", school=A, term=TERM,
                                                              section_id="SEC", student_id="s1"), school=A)
    world.deliver("scheduling.user-directory", UserDeactivated(user_id="s3", school=A, deactivated_at=CLOSING_AT,
                                                               reason="transferred"), school=A)
    domain.run_edges(world.scheduling, at=CLOSING_AT)
    world.handlers["scheduling.reminders"](*parse_event(closing_event()))
    assert Notification.objects.count() == 0


def test_marking_read_is_the_owners_alone(world):
    school_of_students(world)
    domain.run_edges(world.scheduling, at=CLOSING_AT)
    world.handlers["scheduling.reminders"](*parse_event(closing_event()))
    (note,) = notifications(world, "s1")["items"]
    path = f"/api/v1/scheduling/me/notifications/{note['id']}/read"
    problem_of(world.client.post(path, headers=world.h("s3")), 404, "not_found")
    problem_of(world.client.post(path, headers=world.h("sb")), 404, "not_found")
    response = world.client.post(path, headers=world.h("s1"))
    assert response.status_code == 200 and response.get_json()["read_at"]
    again = world.client.post(path, headers=world.h("s1"))
    assert again.get_json()["read_at"] == response.get_json()["read_at"]
    body = notifications(world, "s1")
    assert body["unread"] == 0 and len(body["items"]) == 1
    assert notifications(world, "s1", unread="true")["items"] == []
    problem_of(world.client.get("/api/v1/scheduling/me/notifications", headers=world.h("s1"),
                                query_string={"limit": "0"}), 422, "validation_failed")


def test_over_the_bus_the_closing_event_becomes_notifications(world):
    """The whole loop in one process: job → outbox → relay → memory:// bus → scheduling.reminders → notification."""
    school_of_students(world)
    world.runtime.start_workers()
    domain.run_edges(world.scheduling, at=CLOSING_AT)
    deadline = time.monotonic() + 60  # generous: it only costs time when the test fails anyway
    while time.monotonic() < deadline and Notification.objects.count() < 3:
        time.sleep(0.05)
    assert sorted((n.school, n.user_id) for n in Notification.objects) == [(A, "s1"), (A, "s3"), (B, "sb")]
