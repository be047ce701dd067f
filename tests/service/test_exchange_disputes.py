"""Disputes (疑義) in and out of the receipt confirmation window, corrections with only the changed rows, rejections,
final (定案) with its event, and every change refused after it; the audit trail says who, when and from where."""
from __future__ import annotations

import json
from datetime import timedelta

from services.exchange import build
from services.exchange.models import Dispute, Package, Submission
from tests.service.test_exchange_support import A, TERM, outbox_events, problem_of, sandbox, world  # noqa: F401

SID = f"{A}-term-{TERM}"
D = f"/schools/{A}/submissions/{SID}"


def received_term(world) -> None:
    world.section()
    world.enrol("s1")
    world.grade("s1", 55)
    world.enrol("s2")
    world.grade("s2", 90)
    world.cadre("s2")
    assert world.submit("term").status_code == 201
    assert world.job()["sent"] == 1


def dispute(world, user: str = "s1", student: str = "s1", kind: str = "course_records", key: str = "E-s1-SEC1",
            reason: str = "成績應為 65 分"):
    return world.post(f"{D}/disputes", {"student_id": student, "kind": kind, "row_key": key, "reason": reason}, user)


def test_a_student_disputes_their_own_row_inside_the_window_only(world):
    received_term(world)
    now = world.clock()
    world.window("receipt_confirmation", now + timedelta(days=1), now + timedelta(days=4))
    problem_of(dispute(world), 409, "dispute_window_closed")  # not open yet
    world.clock.advance(timedelta(days=1).total_seconds())
    raised = dispute(world)
    assert raised.status_code == 201, raised.get_data(as_text=True)
    body = raised.get_json()
    assert body["state"] == "open" and body["raised_by"] == "s1" and body["version"] == 1 and not body["by_platform"]
    world.clock.advance(timedelta(days=3).total_seconds())
    problem_of(dispute(world), 409, "dispute_window_closed")  # closed again


def test_without_a_window_disputes_are_open_until_final_and_rows_are_sealed(world):
    received_term(world)
    assert dispute(world).status_code == 201
    problem_of(dispute(world, "s1", "s2", key="E-s2-SEC1"), 404, "not_found")  # another student's row
    problem_of(dispute(world, key="E-nope"), 404, "not_found")
    problem_of(dispute(world, kind="outcomes"), 404, "not_found")  # no such row in that kind
    problem_of(dispute(world, "t1", "s2", key="E-s2-SEC1"), 403, "forbidden")
    problem_of(dispute(world, "admb", "s1"), 404, "not_found")
    problem_of(dispute(world, reason=""), 422, "validation_failed")
    problem_of(dispute(world, kind="grades"), 422, "validation_failed")
    staff = dispute(world, "reg", "s2", "cadres", "C-s2-班長", "職稱錯誤")
    assert staff.status_code == 201 and staff.get_json()["raised_by"] == "reg"
    assert len(world.get(f"{D}/disputes", "adm").get_json()["items"]) == 2
    assert len(world.get(f"{D}/disputes", "s1").get_json()["items"]) == 1


def test_staff_reject_a_dispute_with_a_reason(world):
    received_term(world)
    dispute_id = dispute(world).get_json()["dispute_id"]
    problem_of(world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "no"}, "s1"), 403, "forbidden")
    problem_of(world.post(f"{D}/disputes/{dispute_id}/reject", {}, "adm"), 422, "validation_failed")
    rejected = world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "成績經查無誤"}, "adm")
    assert rejected.status_code == 200
    assert rejected.get_json()["state"] == "rejected" and rejected.get_json()["resolution"]["reason"] == "成績經查無誤"
    problem_of(world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "again"}, "adm"), 409, "invalid_transition")
    problem_of(world.post(f"{D}/disputes/nope/reject", {"reason": "x"}, "adm"), 404, "not_found")


def test_a_correction_carries_only_the_changed_rows_once_the_data_was_fixed(world):
    received_term(world)
    dispute_id = dispute(world).get_json()["dispute_id"]
    # the data was not fixed yet: nothing to send
    body = problem_of(world.post(f"{D}/corrections", {"dispute_ids": [dispute_id]}), 409, "nothing_changed")
    assert body["errors"][0]["dispute_id"] == dispute_id
    world.clock.advance(1)
    world.grade("s1", 65)  # fixed in records, and the projection caught up
    response = world.post(f"{D}/corrections", {"dispute_ids": [dispute_id]}, "reg")
    assert response.status_code == 201, response.get_data(as_text=True)
    correction = response.get_json()
    assert correction["version"] == 2 and correction["corrects_version"] == 1 and correction["state"] == "ready"
    assert correction["rows"] == {"cadres": 0, "course_records": 1}
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": []}), 409, "submission_busy")
    stored = json.loads(build.read_body(world.exchange.store, Package.objects(id=correction["package_id"]).first()))
    assert stored["corrects_version"] == 1
    assert stored["students"] == [{"student_id": "s1", "cadres": [], "course_records": [
        {"key": "E-s1-SEC1", "course_code": "A" * 23, "name": "國語文", "credits": 4, "score": 65.0, "passed": True}]}]
    assert Dispute.objects(id=dispute_id).first().state == "correcting"
    assert world.job()["sent"] == 1
    resolved = Dispute.objects(id=dispute_id).first()
    assert resolved.state == "resolved" and resolved.resolution.corrected_in_version == 2
    receipts = world.receipts(SID, "s1", version=2)
    assert receipts["items"][0]["course_records"]["rows"][0]["key"] == "E-s1-SEC1"


def test_a_platform_dispute_is_answered_by_sending_the_row_again(world):
    from tests.service.test_exchange_sending import fault

    world.select("s1", outcomes=1, performances=1)
    world.lock(students=1, revisions=1)
    world.submit("year")
    fault(world, "tamper")
    world.job()
    [platform] = Dispute.objects(submission_id=f"{A}-year-112")
    response = world.post(f"/schools/{A}/submissions/{A}-year-112/corrections", {"dispute_ids": [platform.id]})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["rows"] == {"outcomes": 1, "performances": 0}  # the sandbox tampers the first file
    assert platform.kind == "outcomes"
    world.job()
    assert Dispute.objects(id=platform.id).first().state == "resolved"
    assert Dispute.objects(submission_id=f"{A}-year-112", state="open").count() == 0  # the resend matched


def test_final_needs_everything_received_and_no_open_dispute_then_refuses_everything(world):
    world.section()
    world.enrol("s1")
    world.submit("term")
    problem_of(world.post(f"{D}/final"), 409, "submission_busy")  # not sent yet
    world.job()
    dispute_id = dispute(world).get_json()["dispute_id"]
    problem_of(world.post(f"{D}/final"), 409, "disputes_open")
    problem_of(world.post(f"{D}/final", user="reg"), 403, "forbidden")
    world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "查無誤"})
    final = world.client.post(f"/api/v1/exchange{D}/final", headers={**world.h("adm"), "X-Forwarded-For": "203.0.113.9"})
    assert final.status_code == 200, final.get_data(as_text=True)
    body = final.get_json()
    assert body["state"] == "final" and body["final_version"] == 1 and body["finalized_by"] == "adm"
    finalized = [e for e in outbox_events(Submission) if e["type"] == "exchange.submission.finalized.v1"]
    assert [e["payload"]["version"] for e in finalized] == [1]
    assert finalized[0]["payload"]["scope"] == "term" and finalized[0]["payload"]["term"] == TERM
    assert body["audit"][-1] == {**body["audit"][-1], "by": "adm", "source": "203.0.113.9", "action": "finalized"}
    assert [a["action"] for a in body["audit"]] == ["requested", "built", "received", "dispute_raised",
                                                    "dispute_rejected", "finalized"]
    problem_of(world.post(f"{D}/final"), 409, "submission_final")
    problem_of(dispute(world), 409, "submission_final")
    problem_of(world.post(f"{D}/disputes/{dispute_id}/reject", {"reason": "x"}), 409, "submission_final")
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": []}), 409, "submission_final")
    problem_of(world.submit("term"), 409, "submission_final")
    assert world.receipts(SID, "s1")["total"] == 1  # reading stays possible


def test_a_correction_needs_a_received_version_and_known_open_disputes(world):
    world.section()
    world.enrol("s1")
    world.submit("term")
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": []}), 409, "submission_busy")
    world.job()
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": ["nope"]}), 404, "not_found")
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": []}), 409, "nothing_changed")
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": "x"}), 422, "validation_failed")
    problem_of(world.post(f"{D}/corrections", {"dispute_ids": []}, "s1"), 403, "forbidden")
    assert Package.objects(submission_id=SID).count() == 1  # no partial write
