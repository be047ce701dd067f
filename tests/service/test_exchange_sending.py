"""Sending to the central database sandbox: receipts kept, the same package twice is one receipt, retries with
backoff on 5xx, slow answers and timeouts, a dead worker's send taken over, a refusal is final, the trace of the
request reaches the central side, and a receipt whose sha256 differs from the manifest is the platform's dispute."""
from __future__ import annotations

import json
import time
import urllib.request
from datetime import timedelta

from services.exchange.models import Dispute, Package, ReceiptStudent, Submission
from services.exchange.send import claim
from tests.service.test_exchange_support import A, TERM, problem_of, sandbox, world  # noqa: F401

TERM_PACKAGE = f"{A}-{TERM}-term-v1"
YEAR_PACKAGE = f"{A}-{TERM}-year-v1"


def fault(world, mode: str, times: int = 1, delay: float = 2.0) -> None:
    request = urllib.request.Request(f"{world.sandbox.url}/_sandbox/faults", method="POST",
                                     data=json.dumps({"mode": mode, "times": times, "delay_seconds": delay}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


def central_log(world) -> list[dict]:
    return list(world.sandbox.central.log)


def term_ready(world) -> None:
    world.section()
    world.enrol("s1")
    world.grade("s1", 75)
    world.enrol("s2")
    world.cadre("s2")
    assert world.submit("term").status_code == 201


def package(package_id: str = TERM_PACKAGE) -> Package:
    return Package.objects(id=package_id).first()


def test_a_sent_package_keeps_its_receipt_staff_see_all_and_a_student_their_own(world):
    term_ready(world)
    assert world.job() == {"promoted": 0, "built": 1, "sent": 1}
    sent = package()
    assert sent.state == "received" and sent.receipt_id and sent.attempts == 1 and sent.rejected_rows == 0
    staff = world.receipts(f"{A}-term-{TERM}", "adm")
    assert staff["total"] == 2 and [r["student_id"] for r in staff["items"]] == ["s1", "s2"]
    s1 = staff["items"][0]
    assert s1["course_records"]["received"] == 1 and s1["course_records"]["rows"][0]["key"] == "E-s1-SEC1"
    assert s1["outcomes"] is None and s1["performances"] is None  # a term package carries no year rows
    assert world.receipts(f"{A}-term-{TERM}", "reg", student_id="s2")["items"][0]["cadres"]["received"] == 1
    own = world.receipts(f"{A}-term-{TERM}", "s1")
    assert own["total"] == 1 and own["items"][0]["student_id"] == "s1"
    problem_of(world.get(f"/schools/{A}/submissions/{A}-term-{TERM}/receipts", "s1", student_id="s2"), 404, "not_found")
    problem_of(world.get(f"/schools/{A}/submissions/{A}-term-{TERM}/receipts", "t1"), 403, "forbidden")
    problem_of(world.get(f"/schools/{A}/submissions/{A}-term-{TERM}/receipts", "admb"), 404, "not_found")
    detail = world.submission(f"{A}-term-{TERM}")
    assert [a["action"] for a in detail["audit"]] == ["requested", "built", "received"]
    assert "audit" not in world.submission(f"{A}-term-{TERM}", "s1")  # the trail is for staff
    stored = world.exchange.store._path(sent.receipt_key).read_bytes()
    import hashlib

    assert hashlib.sha256(stored).hexdigest() == sent.receipt_sha256


def test_the_same_package_sent_again_is_one_receipt(world):
    term_ready(world)
    world.job()
    first = package()
    # as if the worker had died after the central side answered and before it wrote anything down
    Package.objects(id=TERM_PACKAGE).update_one(set__state="ready", set__next_attempt_at=world.clock())
    assert world.job()["sent"] == 1
    again = package()
    arrivals = [entry for entry in central_log(world) if entry["package_id"] == TERM_PACKAGE]
    assert [entry["outcome"] for entry in arrivals] == [201, 200]  # the central side knew it: same receipt
    assert again.receipt_id == first.receipt_id and ReceiptStudent.objects(submission_id=f"{A}-term-{TERM}").count() == 2


def test_server_errors_are_retried_with_growing_backoff(world):
    term_ready(world)
    fault(world, "error", times=2)
    assert world.job()["sent"] == 0
    first = package()
    assert first.state == "ready" and first.attempts == 1 and "503" in first.last_error
    assert first.next_attempt_at == world.clock() + timedelta(seconds=0.5)
    assert world.job()["sent"] == 0  # not due yet
    world.clock.advance(0.5)
    assert world.job()["sent"] == 0
    second = package()
    assert second.attempts == 2 and second.next_attempt_at == world.clock() + timedelta(seconds=1.0)
    world.clock.advance(1.0)
    assert world.job()["sent"] == 1
    assert package().state == "received" and package().attempts == 3


def test_a_timeout_after_the_central_side_kept_the_package_is_retried_into_the_same_receipt(world):
    term_ready(world)
    fault(world, "timeout", delay=2.5)  # the client gives up after 1 s; the central side kept it
    assert world.job()["sent"] == 0
    assert "Timeout" in package().last_error
    world.clock.advance(0.5)
    assert world.job()["sent"] == 1
    outcomes = [entry["outcome"] for entry in central_log(world) if entry["package_id"] == TERM_PACKAGE]
    assert outcomes == [201, 200]


def test_a_slow_answer_is_retried(world):
    term_ready(world)
    fault(world, "slow", delay=2.5)
    assert world.job()["sent"] == 0 and package().attempts == 1
    world.clock.advance(0.5)
    assert world.job()["sent"] == 1 and package().state == "received"


def test_a_dead_workers_send_is_taken_over_when_its_claim_runs_out(world):
    term_ready(world)
    world.job()  # built and sent; make it pending again, claimed by a worker that died
    Package.objects(id=TERM_PACKAGE).update_one(set__state="ready", set__claimed_by="dead-host:1",
                                                set__claimed_until=world.clock() + timedelta(seconds=60))
    assert world.job()["sent"] == 0  # its claim still holds
    world.clock.advance(61)
    assert world.job()["sent"] == 1
    assert package().state == "received" and package().claimed_by is None


def test_two_runners_never_hold_the_same_claim(world):
    term_ready(world)
    world.job()
    Package.objects(id=TERM_PACKAGE).update_one(set__state="ready")
    other = type(world.exchange)(store=world.exchange.store, central_url=world.sandbox.url, clock=world.clock,
                                 runner="other:2")
    claims = [claim(world.exchange, "ready"), claim(other, "ready")]
    assert sum(c is not None for c in claims) == 1


def test_a_refused_package_fails_and_is_not_retried(world):
    from shared.central import canonical_digest

    term_ready(world)
    # the central side already holds a different package under our id: it refuses ours (409 package_conflict)
    other = {"package_id": TERM_PACKAGE, "school": A, "term": TERM, "scope": "term", "version": 1,
             "built_at": "2024-01-01T00:00:00+00:00", "corrects_version": None, "students": []}
    other["package_sha256"] = canonical_digest(other)
    request = urllib.request.Request(f"{world.sandbox.url}/central/v1/packages", data=json.dumps(other).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    world.job()
    refused = package()
    assert refused.state == "failed" and "409" in refused.last_error
    world.clock.advance(3600)
    assert world.job()["sent"] == 0
    assert world.submission(f"{A}-term-{TERM}")["audit"][-1]["action"] == "refused"
    # once the cause is dealt with, staff send the whole package again as the next version
    again = world.post(f"/schools/{A}/submissions/{A}-term-{TERM}/corrections", {"dispute_ids": []}, "reg")
    assert again.status_code == 201, again.get_data(as_text=True)
    assert (again.get_json()["version"], again.get_json()["corrects_version"], again.get_json()["state"]) == \
        (2, None, "building")
    assert world.job() == {"promoted": 0, "built": 1, "sent": 1}
    assert package(f"{A}-{TERM}-term-v2").state == "received" and package(f"{A}-{TERM}-term-v2").students == 2


def test_the_request_trace_reaches_the_central_side(world):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from shared import tracing

    exporter = InMemorySpanExporter()
    provider = tracing.init_tracing("test", extra_processors=[SimpleSpanProcessor(exporter)])
    assert isinstance(provider, TracerProvider)
    term_ready(world)
    world.job()
    trace_id = package().trace["traceparent"].split("-")[1]
    [arrival] = [entry for entry in central_log(world) if entry["package_id"] == TERM_PACKAGE]
    assert arrival["traceparent"].split("-")[1] == trace_id
    clients = [s for s in exporter.get_finished_spans() if s.name == "POST /central/v1/packages"]
    assert clients and format(clients[-1].context.trace_id, "032x") == trace_id
    assert clients[-1].kind.name == "CLIENT" and clients[-1].attributes["http.response.status_code"] == 201


def test_a_receipt_whose_sha256_differs_from_the_manifest_is_a_dispute_by_the_platform(world):
    world.select("s1", outcomes=2, performances=1)
    world.lock(students=1, revisions=1)
    assert world.submit("year").status_code == 201
    fault(world, "tamper")
    assert world.job()["sent"] == 1
    received = package(YEAR_PACKAGE)
    assert received.state == "received" and received.mismatches == 1
    [dispute] = Dispute.objects(submission_id=f"{A}-year-112")
    assert dispute.by_platform and dispute.raised_by == "platform" and dispute.reason == "sha256_mismatch"
    assert dispute.detail["sent"] != dispute.detail["received"] and dispute.state == "open"
    listed = world.get(f"/schools/{A}/submissions/{A}-year-112/disputes", "s1").get_json()["items"]
    assert [d["dispute_id"] for d in listed] == [dispute.id]
    assert world.get(f"/schools/{A}/submissions/{A}-year-112/disputes", "s2").get_json()["items"] == []


def test_the_job_runs_in_the_background_where_the_relay_runs(world):
    from services.exchange import app

    term_ready(world)
    assert not world.runtime.relay.is_alive()
    world.runtime.start_workers()
    world.runtime.every(0.05, lambda: app.job(world.exchange), name="exchange job")
    deadline = time.monotonic() + 15
    while package().state != "received":
        assert time.monotonic() < deadline, package().to_mongo()
        time.sleep(0.05)
    assert Submission.objects(id=f"{A}-term-{TERM}").first().outbox == []  # the relay published the request


def test_bad_queries_are_422_and_unknown_things_404(world):
    term_ready(world)
    world.job()
    path = f"/schools/{A}/submissions/{A}-term-{TERM}"
    for query in ({"limit": "0"}, {"limit": "501"}, {"version": "x"}, {"offset": "-1"}, {"unknown": "1"}):
        problem_of(world.get(f"{path}/receipts", "adm", **query), 422, "validation_failed")
    problem_of(world.get(f"{path}/disputes", "adm", state="closed"), 422, "validation_failed")
    problem_of(world.get(f"/schools/{A}/submissions/{A}-term-11102"), 404, "not_found")
    assert world.receipts(f"{A}-term-{TERM}", "adm", version="2")["total"] == 0
    listed = world.get(f"/schools/{A}/submissions", "t1").get_json()["items"]
    assert [s["submission_id"] for s in listed] == [f"{A}-term-{TERM}"] and "packages" not in listed[0]
