"""Confirming receipts (收訖明細確認): a student their latest receipt, staff on a student's behalf or for the school,
inside the receipt confirmation window, never over an open dispute, once per version (the same answer again), a
newer received version needing a new one; what the receipts and the submission show; the audit trail; the seal."""
from __future__ import annotations

from datetime import timedelta

from services.exchange.models import Confirmation
from tests.service.test_exchange_support import A, TERM, problem_of, sandbox, world  # noqa: F401

SID = f"{A}-term-{TERM}"
D = f"/schools/{A}/submissions/{SID}"
DAY = timedelta(days=1).total_seconds()


def received_term(world, students=("s1", "s2")) -> None:
    world.section()
    for student in students:
        world.enrol(student)
        world.grade(student, 55 if student == "s1" else 90)
    world.cadre(students[-1])
    assert world.submit("term").status_code == 201
    assert world.job()["sent"] == 1


def confirm(world, user: str = "s1", body: dict | None = None, **headers):
    return world.client.post(f"/api/v1/exchange{D}/confirmations", headers={**world.h(user), **headers},
                             json=body if body is not None else {})


def dispute(world, user: str = "s1", student: str = "s1", key: str = "E-s1-SEC1"):
    response = world.post(f"{D}/disputes", {"student_id": student, "kind": "course_records", "row_key": key,
                                            "reason": "成績應為 65 分"}, user)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["dispute_id"]


def confirmed(world, student: str, user: str = "adm") -> dict[int, dict | None]:
    return {r["version"]: r["confirmed"] for r in world.receipts(SID, user, student_id=student)["items"]}


def test_a_student_confirms_their_receipt_once_and_the_same_answer_comes_again(world):
    received_term(world)
    first = confirm(world, "s1", **{"X-Forwarded-For": "203.0.113.7"})
    assert first.status_code == 201, first.get_data(as_text=True)
    body = first.get_json()
    assert body == {**body, "submission_id": SID, "version": 1, "student_id": "s1", "by": "s1", "on_behalf": False,
                    "source": "203.0.113.7"}
    world.clock.advance(60)
    again = confirm(world, "s1", {"student_id": "s1"})  # naming themself is the same
    assert again.status_code == 200 and again.get_json() == body
    assert Confirmation.objects(submission_id=SID).count() == 1
    assert confirmed(world, "s1") == {1: {"at": body["at"], "by": "s1", "on_behalf": False, "version": 1}}
    assert confirmed(world, "s1", "s1") == confirmed(world, "s1")  # the student reads it on their own receipt
    assert confirmed(world, "s2") == {1: None}
    view = world.submission(SID)
    assert view["confirmations"] == {"students": 2, "confirmed": 1, "school": None}
    entries = [a for a in view["audit"] if a["action"] == "confirmed"]
    assert entries == [{"at": body["at"], "by": "s1", "source": "203.0.113.7", "action": "confirmed",
                        "detail": {"version": 1, "student_id": "s1", "on_behalf": False}}]  # once, not per answer


def test_only_inside_the_receipt_confirmation_window_once_one_is_set(world):
    received_term(world)
    now = world.clock()
    world.window("receipt_confirmation", now + timedelta(days=1), now + timedelta(days=4))
    problem_of(confirm(world, "s1"), 409, "confirmation_window_closed")  # not open yet
    problem_of(confirm(world, "adm"), 409, "confirmation_window_closed")
    world.clock.advance(DAY)
    assert confirm(world, "s1").status_code == 201
    world.clock.advance(3 * DAY)  # closed again
    problem_of(confirm(world, "s2"), 409, "confirmation_window_closed")
    problem_of(confirm(world, "reg", {"student_id": "s2"}), 409, "confirmation_window_closed")
    assert confirm(world, "s1").status_code == 200  # what was confirmed in time answers the same


def test_staff_confirm_on_a_students_behalf_and_for_the_school(world):
    received_term(world)
    on_behalf = confirm(world, "reg", {"student_id": "s2"})
    assert on_behalf.status_code == 201, on_behalf.get_data(as_text=True)
    assert on_behalf.get_json() == {**on_behalf.get_json(), "student_id": "s2", "by": "reg", "on_behalf": True}
    assert confirmed(world, "s2", "s2")[1] == {**confirmed(world, "s2")[1], "by": "reg", "on_behalf": True}
    own = confirm(world, "s2")  # confirmed already, for them: the same confirmation
    assert own.status_code == 200 and own.get_json() == on_behalf.get_json()
    school = confirm(world, "adm")
    assert school.status_code == 201, school.get_data(as_text=True)
    assert school.get_json() == {**school.get_json(), "student_id": None, "by": "adm", "on_behalf": False,
                                 "version": 1}
    again = confirm(world, "reg")
    assert again.status_code == 200 and again.get_json() == school.get_json()
    view = world.submission(SID)
    assert view["confirmations"] == {"students": 2, "confirmed": 1,
                                     "school": {"at": school.get_json()["at"], "by": "adm", "version": 1}}
    assert [a["detail"] for a in view["audit"] if a["action"] == "confirmed"] == [
        {"version": 1, "student_id": "s2", "on_behalf": True}, {"version": 1, "student_id": None, "on_behalf": False}]
    assert world.submission(SID, "s1")["confirmations"]["confirmed"] == 1  # a student reads the counts too


def test_the_school_confirms_only_what_was_received(world):
    world.section()
    world.enrol("s1")
    world.submit("term")
    problem_of(confirm(world, "adm"), 409, "submission_busy")  # not sent yet
    problem_of(confirm(world, "s1"), 404, "not_found")  # no receipt yet
    world.job()
    assert confirm(world, "adm").status_code == 201


def test_an_open_dispute_on_the_students_rows_holds_their_confirmation_and_the_schools(world):
    received_term(world)
    dispute_id = dispute(world)
    problem_of(confirm(world, "s1"), 409, "disputes_open")
    problem_of(confirm(world, "reg", {"student_id": "s1"}), 409, "disputes_open")
    problem_of(confirm(world, "adm"), 409, "disputes_open")  # the school's: any dispute of the submission
    assert confirm(world, "s2").status_code == 201  # another student's rows are not held
    assert world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "成績經查無誤"}).status_code == 200
    assert confirm(world, "s1").status_code == 201
    assert confirm(world, "adm").status_code == 201
    assert Confirmation.objects(submission_id=SID).count() == 3


def test_a_newer_received_version_needs_a_new_confirmation(world):
    received_term(world)
    assert confirm(world, "s1").status_code == 201
    assert confirm(world, "s2").status_code == 201
    assert confirm(world, "adm").status_code == 201
    dispute_id = dispute(world)  # a confirmation does not stop a later dispute
    world.clock.advance(1)
    world.grade("s1", 65)
    assert world.post(f"{D}/corrections", {"dispute_ids": [dispute_id]}).status_code == 201
    held = confirm(world, "s1")  # the correction is not received yet: version 1 is still their latest, confirmed
    assert held.status_code == 200 and held.get_json()["version"] == 1
    problem_of(confirm(world, "adm"), 409, "submission_busy")
    assert world.job()["sent"] == 1
    assert confirmed(world, "s1")[2] is None and confirmed(world, "s1")[1]["version"] == 1
    assert world.submission(SID)["confirmations"] == {"students": 2, "confirmed": 1, "school": None}
    # s2's rows were not in the correction: their latest receipt is still version 1, confirmed
    assert confirm(world, "s2").get_json()["version"] == 1
    world.clock.advance(60)
    newer = confirm(world, "s1")
    assert newer.status_code == 201 and newer.get_json()["version"] == 2
    school = confirm(world, "reg")
    assert school.status_code == 201 and school.get_json()["version"] == 2
    view = world.submission(SID)
    assert view["confirmations"] == {"students": 2, "confirmed": 2,
                                     "school": {"at": school.get_json()["at"], "by": "reg", "version": 2}}
    assert set(confirmed(world, "s1")) == {1, 2} and confirmed(world, "s1")[2]["version"] == 2


def test_nothing_is_confirmed_after_final(world):
    received_term(world)
    assert confirm(world, "s1").status_code == 201
    assert world.post(f"{D}/final").status_code == 200
    problem_of(confirm(world, "s1"), 409, "submission_final")
    problem_of(confirm(world, "s2"), 409, "submission_final")
    problem_of(confirm(world, "adm"), 409, "submission_final")
    assert confirmed(world, "s1")[1]["by"] == "s1"  # reading stays possible


def test_the_seal_roles_and_bad_input(world):
    received_term(world, students=("s1",))
    problem_of(confirm(world, "s1", {"student_id": "s2"}), 404, "not_found")  # another student's rows
    problem_of(confirm(world, "s2"), 404, "not_found")  # no receipt of theirs
    problem_of(confirm(world, "adm", {"student_id": "s2"}), 404, "not_found")
    problem_of(confirm(world, "admb"), 404, "not_found")  # another school
    problem_of(confirm(world, "sb"), 404, "not_found")
    problem_of(confirm(world, "t1"), 403, "forbidden")
    curriculum = world.tokens.headers("cur", A, ["curriculum"])  # sees every receipt, confirms none
    problem_of(world.client.post(f"/api/v1/exchange{D}/confirmations", headers=curriculum, json={}), 403, "forbidden")
    problem_of(world.post(f"/schools/{A}/submissions/{A}-term-11202/confirmations", {}, "s1"), 404, "not_found")
    for body in ({"student_id": ""}, {"student_id": 5}, {"student_id": "x" * 65}, {"version": 1}, []):
        problem = problem_of(confirm(world, "adm", body), 422, "validation_failed")
        assert problem["message"]["zh-TW"] and problem["message"]["en"]
    url = f"/api/v1/exchange{D}/confirmations"
    problem_of(world.client.post(url, headers=world.h("s1"), data="{", content_type="application/json"), 400,
               "malformed_json")
    problem_of(world.client.post(url, headers=world.h("s1"), data="x", content_type="text/plain"), 415,
               "unsupported_media_type")
    problem_of(world.client.post(url, json={}), 401, "unauthenticated")
    assert Confirmation.objects().count() == 0
    # a suspended or transferred student keeps an account that may only confirm receipts: it may confirm
    receipts_only = world.tokens.headers("s1", A, ["student"], receipts_only=True)
    assert world.client.post(url, headers=receipts_only, json={}).status_code == 201
