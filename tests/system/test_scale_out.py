"""The platform scaled out the way the city's ops team runs it at the deadline peak, and what it survives.

One platform for this module: identity ×3 and gateway ×2 web processes, intake ×2 web processes and ×2
worker processes competing on intake's durable queues, every other service one web + one worker process,
all on one shared document store (its own SecantusDB daemon, so the test may restart it), RabbitMQ (a
virtual host of its own) and moto's S3 server. Faults are real: kill -9 of processes, a restart of the
document store, a restart of the RabbitMQ application.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.portfolio import HIGH_LIMITS, Platform, pdf_bytes, wait_until as wait_for
from tests.system.conftest import own_vhost

SCALE_WEB = {"identity": 3, "gateway": 2, "intake": 2}
SCALE_WORKERS = {"intake": 2}


@pytest.fixture(scope="module")
def scaled_vhost(rabbitmq):
    yield from own_vhost(rabbitmq)  # not the session platform's: it must not take this platform's events


@pytest.fixture(scope="module")
def scaled(scaled_vhost, tmp_path_factory):
    vhost_url = scaled_vhost
    assert not os.environ.get("DOCUMENTS_URL"), "the scaled platform starts a document store of its own"
    platform = Platform(web=SCALE_WEB, workers=SCALE_WORKERS, log_dir=str(tmp_path_factory.mktemp("scaled-logs")),
                        env={**HIGH_LIMITS, "BUS_URL": vhost_url, "OUTBOX_POLL_SECONDS": "0.2",
                             "GUNICORN_THREADS": "16", "LOG_LEVEL": "INFO"})
    platform.vhost = vhost_url.rsplit("/", 1)[1]
    yield platform
    platform.stop()


@pytest.fixture(scope="module")
def admin(scaled):
    return scaled.login("admin", "footprint-demo")


@pytest.fixture(scope="module")
def section(scaled, admin):
    return scaled.demo_section(admin)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a gunicorn master's workers)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0")) == pid:
            found.append(int(fields["Pid"]))
    return found



def student_file(number: str) -> tuple[bytes, str]:
    data = pdf_bytes(48 * 1024).replace(b"%%EOF\n", f"% {number}\n%%EOF\n".encode())
    return data, hashlib.sha256(data).hexdigest()


def submitted_outcomes(platform: Platform, section: dict, people: list[tuple[str, str]]) -> dict[str, str]:
    """Every student signs in (first sign-in and password change), uploads a PDF and submits; outcome → sha256."""
    def one(person):
        token = platform.activate(*person)
        outcome = platform.new_outcome(token, section["id"], brief=f"{person[0]} 成果")
        data, digest = student_file(person[0])
        stored = platform.call("PUT", f"/api/v1/intake/outcomes/{outcome}/files/f-{person[0]}", token, body=data,
                               headers={"X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                                        "Content-Type": "application/octet-stream"}).json()
        assert stored["sha256"] == digest
        platform.call("POST", f"/api/v1/intake/outcomes/{outcome}/submit", token)
        return outcome, digest

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, people))


def intake_status(platform: Platform, admin: str, outcome_id: str) -> str:
    return platform.call("GET", f"/api/v1/intake/outcomes/{outcome_id}", admin).json()["status"]


def queue_depths(vhost: str) -> dict[str, tuple[int, int]]:
    """RabbitMQ's own count of ready and unacknowledged messages per queue in ``vhost``."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready",
                          "messages_unacknowledged", "--no-table-headers"], capture_output=True, text=True, check=True)
    depths = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            depths[parts[0]] = (int(parts[1]), int(parts[2]))
    return depths


def dead_letters(vhost: str) -> int:
    return sum(ready + unacked for name, (ready, unacked) in queue_depths(vhost).items() if name.endswith(".dlq"))


# ---- sign-in lockout under real concurrency -------------------------------------------------------------

def test_lockout_triggers_at_exactly_the_configured_count_across_processes(scaled):
    """40 wrong passwords at once for one account, through two gateway processes into three identity processes
    (and straight to identity): exactly 5 passwords are ever checked (401), every other attempt is locked
    out (423), and then the right password is refused too."""
    targets = [scaled.gateway, scaled.procs.url("identity")]

    def attempt(n):
        response = requests.post(f"{targets[n % 2]}/api/v1/auth/login", timeout=120,
                                 json={"school": "999002", "username": "admin", "password": f"wrong-guess-{n}"})
        return response.status_code, response.json()["code"]

    barrier = threading.Barrier(40)

    def together(n):
        barrier.wait()
        return attempt(n)

    with ThreadPoolExecutor(max_workers=40) as pool:
        outcomes = Counter(pool.map(together, range(40)))
    assert outcomes == Counter({(401, "invalid_credentials"): 5, (423, "account_locked"): 35}), outcomes
    right = requests.post(f"{scaled.gateway}/api/v1/auth/login", timeout=120,
                          json={"school": "999002", "username": "admin", "password": "footprint-demo"})
    assert right.status_code == 423 and right.json()["code"] == "account_locked"
    assert len(children(scaled.procs.pid("identity"))) == SCALE_WEB["identity"]


# ---- kill -9 of intake processes ---------------------------------------------------------------------------

def test_kill_intake_web_processes_mid_upload_leaves_nothing_half_visible(scaled, admin, section):
    (person,) = scaled.add_students(admin, 1, section, first=5001)
    token = scaled.activate(*person)
    outcome = scaled.new_outcome(token, section["id"])
    data = pdf_bytes(3 * 1024 * 1024)  # under the 4 MB document limit
    digest = hashlib.sha256(data).hexdigest()
    path = f"/api/v1/intake/outcomes/{outcome}/files/killed-upload"
    host, port = scaled.gateway.removeprefix("http://").split(":")

    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("PUT", path)
    for name, value in {"Authorization": f"Bearer {token}", "X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                        "Content-Type": "application/octet-stream", "Content-Length": str(len(data))}.items():
        connection.putheader(name, value)
    connection.endheaders()
    half = len(data) // 2
    for start in range(0, half, 256 * 1024):
        connection.send(data[start:start + 256 * 1024])
    # Let intake get into the stream (reading, inspecting, writing to the store). Nothing outside the process shows
    # how far it got, so this is a pause, not a wait; the assertions hold wherever the kill lands.
    time.sleep(0.5)
    killed = children(scaled.procs.pid("intake"))
    assert len(killed) == SCALE_WEB["intake"]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    try:
        connection.send(data[half:])
        status = connection.getresponse().status
    except OSError:
        status = None  # the connection broke: as good as a 5xx for the client, who retries
    finally:
        connection.close()
    assert status is None or status >= 500, status

    # Nothing half-visible: the outcome has no file, and there is still exactly one outcome.
    item = scaled.call("GET", f"/api/v1/intake/outcomes/{outcome}", token, expect=None)
    if item.status == 200:
        assert item.json()["files"] == []
    # Gunicorn replaces the killed workers; the student's retry with the same upload key then succeeds once.
    wait_for(lambda: len(set(children(scaled.procs.pid("intake"))) - set(killed)) == SCALE_WEB["intake"], 120,
             "gunicorn to replace the killed intake workers")

    answers = []

    def retried():
        response = scaled.call("PUT", path, token, body=data, expect=None,
                               headers={"X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                                        "Content-Type": "application/octet-stream"})
        answers.append((response.status, response.data[:200]))
        return response if response.status in (200, 201) else None

    try:
        stored = wait_for(retried, 120, "the retried upload").json()
    except RuntimeError as exc:  # (what wait_for raises on its deadline)
        raise AssertionError(f"{exc}; last answers: {answers[-3:]}") from None
    assert stored["sha256"] == digest
    again = scaled.call("PUT", path, token, body=data, headers={"X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                                                                "Content-Type": "application/octet-stream"}).json()
    assert again["file_id"] == stored["file_id"]  # the same upload key is idempotent
    item = scaled.call("GET", f"/api/v1/intake/outcomes/{outcome}", token).json()
    assert [f["sha256"] for f in item["files"]] == [digest]
    mine = scaled.call("GET", f"/api/v1/intake/outcomes?term=11201&student_id={item['student_id']}", admin).json()
    assert mine["total"] == 1
    # The object in the store holds exactly the bytes (read back from S3 directly, not through Footprint).
    store = scaled.s3.store()
    read_back = hashlib.sha256()
    for chunk in store.open(stored_object_key(scaled, item, stored["file_id"])):
        read_back.update(chunk)
    assert read_back.hexdigest() == digest


def stored_object_key(platform: Platform, item: dict, file_id: str) -> str:
    """The S3 key of a file: intake records it; the test reads intake's document directly from the store."""
    import pymongo

    prefix = platform.procs.env.get("DOCUMENTS_DB_PREFIX", "footprint")
    with pymongo.MongoClient(platform.procs.env["DOCUMENTS_URL"]) as client:
        doc = client[f"{prefix}_intake"]["outcomes"].find_one({"_id": item["id"]})
    assert doc is not None, "outcome not found in intake's documents"
    return next(f["storage_key"] for f in doc["files"] if f["file_id"] == file_id)


def test_kill_intake_worker_with_events_in_flight_loses_nothing(scaled, admin, section):
    """Both intake worker processes are frozen while certification announces 30 certifications; one of them
    is then killed -9 holding its prefetched, unacknowledged events. The survivor gets them redelivered:
    every outcome shows certified in intake, nothing is dead-lettered, nothing applied twice."""
    people = scaled.add_students(admin, 30, section, first=6001)
    outcomes = submitted_outcomes(scaled, section, people)
    teacher = scaled.login("teacher01", "footprint-demo")
    workers = scaled.procs.workers["intake"]
    assert len(workers) == 2 and all(w.poll() is None for w in workers)
    wait_for(lambda: all(scaled.call("GET", f"/api/v1/certification/outcomes/{o}", teacher, expect=None).status == 200
                         for o in outcomes), 60, "certification to receive every submission")
    for worker in workers:
        os.kill(worker.pid, signal.SIGSTOP)
    try:
        result = scaled.call("POST", "/api/v1/certification/bulk-certify", teacher,
                             json_body={"outcome_ids": list(outcomes)}).json()
        assert result["certified"] == len(outcomes)
        # The events are out of certification's outbox and sit in intake's queue, some prefetched by the frozen
        # workers (unacknowledged): RabbitMQ's own counts say so.
        wait_for(lambda: sum(queue_depths(scaled.vhost).get("intake.certification-status", (0, 0))) >= len(outcomes),
                 60, "the certification events to reach intake's queue")
        assert any(intake_status(scaled, admin, o) == "submitted" for o in outcomes)
        victim, survivor = workers
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGCONT)
    wait_for(lambda: all(intake_status(scaled, admin, o) == "certified" for o in outcomes), 90,
             "every certification to reach intake")
    assert dead_letters(scaled.vhost) == 0
    history = scaled.call("GET", f"/api/v1/certification/outcomes/{next(iter(outcomes))}", teacher).json()
    assert history["state"] == "certified"
    scaled.procs.workers["intake"].remove(victim)
    scaled.procs.start_worker("intake")  # back to two, for the tests after this one


# ---- the document store restarts under load -------------------------------------------------------------

def test_document_store_restart_under_load(scaled, admin, section):
    """Readers and writers keep going while the store is stopped for a few seconds and started again: while it
    is down every answer is 503 problem+json (never 500), afterwards the platform recovers by itself, and
    every submission made before the outage reaches certification (no event lost)."""
    people = scaled.add_students(admin, 10, section, first=7001)
    tokens = {number: scaled.activate(number, initial) for number, initial in people}
    teacher = scaled.login("teacher01", "footprint-demo")
    stop = threading.Event()
    seen: list[tuple[float, int, str, str]] = []

    def load():
        session = requests.Session()
        while not stop.is_set():
            for path in ("/api/v1/me", "/api/v1/intake/outcomes?term=11201&limit=1"):
                try:
                    response = session.get(scaled.gateway + path, headers={"Authorization": f"Bearer {admin}"},
                                           timeout=120)  # a timeout would count as a wrong answer below
                except requests.RequestException as exc:
                    seen.append((time.monotonic(), -1, "", type(exc).__name__))
                    continue
                code = response.json().get("code", "") if response.status_code >= 400 else ""
                seen.append((time.monotonic(), response.status_code, response.headers.get("Content-Type", ""), code))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # Writes just before the outage: their events may still be in the outboxes when the store goes down.
        outcomes = []
        for number, token in tokens.items():
            outcome = scaled.new_outcome(token, section["id"])
            data, digest = student_file(number)
            scaled.call("PUT", f"/api/v1/intake/outcomes/{outcome}/files/restart-{number}", token, body=data,
                        headers={"X-File-Name": "r.pdf", "X-Content-SHA256": digest,
                                 "Content-Type": "application/octet-stream"})
            scaled.call("POST", f"/api/v1/intake/outcomes/{outcome}/submit", token)
            outcomes.append(outcome)
        docstore = scaled.procs.docstore
        down_at = time.monotonic()
        docstore.stop()
        time.sleep(5)  # down for a few seconds, whatever happens meanwhile
        # ... and until the platform has answered a request while it was down (on a loaded machine the first
        # answers, each after a 3 s server selection, may take longer than the outage itself)
        wait_for(lambda: any(t > down_at and status == 503 for t, status, _, _ in seen), 120,
                 "a 503 answer while the store is down")
        docstore.start()
        up_at = time.monotonic()
        wait_for(lambda: any(t > up_at and status == 200 for t, status, _, _ in seen), 60,
                 "requests to succeed again after the store restarted")
        recovered_at = min(t for t, status, _, _ in seen if t > up_at and status == 200)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    during = [(status, ctype, code) for t, status, ctype, code in seen if down_at < t < up_at]
    assert during, "no request was answered while the store was down"
    assert all(status == 200 or (status == 503 and ctype.startswith("application/problem+json")
                                 and code in ("documents_unavailable", "upstream_unavailable"))
               for status, ctype, code in during), Counter(during)
    assert any(status == 503 for status, _, _ in during)
    assert not any(status == 500 for _, status, _, _ in seen)
    assert recovered_at - up_at < 30
    wait_for(lambda: all(scaled.call("GET", f"/api/v1/certification/outcomes/{o}", teacher, expect=None).status == 200
                         for o in outcomes), 90, "every submission made before the outage to reach certification")
    assert dead_letters(scaled.vhost) == 0


# ---- the broker restarts during a deadline run -------------------------------------------------------------

def test_broker_restart_during_a_deadline_run_loses_nothing(scaled, admin, section):
    """40 students sign in, upload and submit, 8 at a time; midway RabbitMQ's application is stopped and
    started again. Students never notice (every write goes to the store with its events in the outbox), and
    afterwards every submission is in certification's queue with its sha256, nothing dead-lettered."""
    people = scaled.add_students(admin, 40, section, first=8001)
    teacher = scaled.login("teacher01", "footprint-demo")
    done = Counter()
    restart_when = 12

    def one(person):
        token = scaled.activate(*person)
        outcome = scaled.new_outcome(token, section["id"])
        data, digest = student_file(person[0])
        scaled.call("PUT", f"/api/v1/intake/outcomes/{outcome}/files/broker-{person[0]}", token, body=data,
                    headers={"X-File-Name": "r.pdf", "X-Content-SHA256": digest,
                             "Content-Type": "application/octet-stream"})
        scaled.call("POST", f"/api/v1/intake/outcomes/{outcome}/submit", token)
        done["students"] += 1
        return outcome, digest

    def restart_broker():
        wait_for(lambda: done["students"] >= restart_when, 120, "the first students to finish")
        done["finished before the stop"] = done["students"]
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True)
        done["finished while the broker was down"] = done["students"] - done["finished before the stop"]
        time.sleep(2)  # the broker stays away for a while: a pause by design, there is nothing to wait for
        subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, capture_output=True)
        done["restarted"] = 1

    restarter = threading.Thread(target=restart_broker, daemon=True)
    restarter.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = dict(pool.map(one, people))
    restarter.join(120)
    assert done["restarted"] and done["finished before the stop"] < len(people), done  # the restart came mid-run
    assert len(outcomes) == len(people)

    def certification_has_all():
        found = {}
        for outcome in outcomes:
            response = scaled.call("GET", f"/api/v1/certification/outcomes/{outcome}", teacher, expect=None)
            if response.status != 200:
                return None
            found[outcome] = response.json()
        return found

    received = wait_for(certification_has_all, 120, "every submission to reach certification after the restart")
    for outcome, digest in outcomes.items():
        assert [f["sha256"] for f in received[outcome]["files"]] == [digest]
    assert dead_letters(scaled.vhost) == 0
