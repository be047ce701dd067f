"""The portfolio core in separate processes on RabbitMQ: a student uploads a course outcome through the
gateway, submits it, the course teacher certifies it, and the student sees it certified — one trace
across all of it (the portal sends one traceparent for the whole journey)."""
from __future__ import annotations

import hashlib
import os
from urllib.parse import quote

import requests

from tests.system.test_platform import auth, wait_until

TERM = "11201"


def pdf_bytes(size: int) -> bytes:
    filler = (b"Footprint learning outcome line. " * ((size // 33) + 1))[:size]
    return (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n2 0 obj << /Length " + str(len(filler)).encode()
            + b" >> stream\n" + filler
            + b"\nendstream endobj\nxref\n0 3\ntrailer << /Root 1 0 R >>\nstartxref\n9\n%%EOF\n")


def test_upload_submit_certify_and_see_it_certified_in_one_trace(processes, otlp):
    gateway = processes.url("gateway")
    trace_id = os.urandom(16).hex()
    traced = {"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"}

    def traced_sign_in(username):
        response = requests.post(f"{gateway}/api/v1/auth/login", headers=traced, timeout=60,
                                 json={"school": "999001", "username": username, "password": "footprint-demo"})
        assert response.status_code == 200, response.text
        return response.json()

    student = traced_sign_in("student01")
    teacher = traced_sign_in("teacher01")
    as_student = {**auth(student), **traced}
    as_teacher = {**auth(teacher), **traced}

    # The demo seed enrols student01 in teacher01's 國語文 section once identity's events reached records.
    def my_enrolment():
        items = requests.get(f"{gateway}/api/v1/records/schools/999001/enrolments?term={TERM}", headers=as_student,
                             timeout=60).json().get("items", [])
        return items[0] if items else None

    enrolment = wait_until(my_enrolment, timeout=120)
    assert enrolment, "the demo enrolment never appeared"

    def start_outcome():  # intake learns the enrolment from records' events
        response = requests.post(f"{gateway}/api/v1/intake/outcomes", headers=as_student, timeout=60,
                                 json={"section_id": enrolment["section_id"], "brief": "讀書報告：論語選讀"})
        return response.json() if response.status_code == 201 else None

    outcome = wait_until(start_outcome, timeout=120)
    assert outcome and outcome["status"] == "draft"

    data = pdf_bytes(1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    uploaded = requests.put(f"{gateway}/api/v1/intake/outcomes/{outcome['id']}/files/report-v1", data=data, timeout=30,
                            headers={**as_student, "X-File-Name": quote("論語讀書報告.pdf"), "X-Content-SHA256": digest,
                                     "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["sha256"] == digest and uploaded.json()["kind"] == "document"

    submitted = requests.post(f"{gateway}/api/v1/intake/outcomes/{outcome['id']}/submit", headers=as_student, timeout=60)
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    locked = requests.patch(f"{gateway}/api/v1/intake/outcomes/{outcome['id']}", headers=as_student, timeout=60,
                            json={"brief": "改寫"})
    assert locked.status_code == 409 and locked.json()["code"] == "item_locked"

    def in_queue():
        items = requests.get(f"{gateway}/api/v1/certification/queue?state=submitted", headers=as_teacher,
                             timeout=60).json().get("items", [])
        return next((i for i in items if i["outcome_id"] == outcome["id"]), None)

    queued = wait_until(in_queue, timeout=120)
    assert queued and queued["files"][0]["sha256"] == digest
    certified = requests.post(f"{gateway}/api/v1/certification/outcomes/{outcome['id']}/certify", headers=as_teacher,
                              timeout=60)
    assert certified.status_code == 200, certified.text

    def seen_certified():
        body = requests.get(f"{gateway}/api/v1/intake/outcomes/{outcome['id']}", headers=as_student, timeout=60).json()
        return body if body["status"] == "certified" else None

    final = wait_until(seen_certified, timeout=120)
    assert final and final["files"][0]["sha256"] == digest

    # The stored bytes (moto's S3 over HTTP) are the uploaded bytes: checked end to end on the way back out.
    download = requests.get(f"{gateway}/api/v1/intake/files/{final['files'][0]['file_id']}", headers=as_student, timeout=30)
    assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == digest
    assert download.headers["X-Content-SHA256"] == digest
    assert requests.get(f"{gateway}/api/v1/certification/outcomes/{outcome['id']}", headers=as_student,
                        timeout=60).json()["state"] == "certified"

    # ---- the trace ----------------------------------------------------------------------------------------
    def whole_trace():  # each process exports on its own schedule: wait until every hop has arrived
        spans = otlp.trace(trace_id)
        seen = {(s.service, s.kind, s.attributes.get("footprint.event_type") or s.name.rsplit("/", 1)[-1]) for s in spans}
        wanted = {("intake", "SERVER", "submit"), ("intake", "PRODUCER", "intake.outcome.submitted.v1"),
                  ("certification", "CONSUMER", "intake.outcome.submitted.v1"), ("certification", "SERVER", "certify"),
                  ("certification", "PRODUCER", "certification.outcome.certified.v1"),
                  ("intake", "CONSUMER", "certification.outcome.certified.v1")}
        services = {s.service for s in spans}
        ids = {s.span_id for s in spans}
        parents_in = all(s.parent_id in ids for s in spans if s.kind != "SERVER" or s.service != "gateway")
        done = wanted <= seen and {"gateway", "identity", "records", "intake", "certification"} <= services and parents_in
        return spans if done and any(s.service == "intake" and s.kind == "SERVER" and "/files/" in s.name
                                     for s in spans) else None

    spans = wait_until(whole_trace, timeout=120)
    assert spans, "the journey's trace is incomplete"
    by_id = {s.span_id: s for s in spans}

    def parent(span):
        return by_id.get(span.parent_id)

    services = {s.service for s in spans}
    assert {"gateway", "identity", "records", "intake", "certification"} <= services

    submit_server = next(s for s in spans if s.service == "intake" and s.kind == "SERVER" and s.name.endswith("/submit"))
    submitted_publish = next(s for s in spans if s.service == "intake" and s.kind == "PRODUCER"
                             and s.attributes.get("footprint.event_type") == "intake.outcome.submitted.v1")
    submitted_consume = next(s for s in spans if s.service == "certification" and s.kind == "CONSUMER"
                             and s.attributes.get("footprint.event_type") == "intake.outcome.submitted.v1")
    certify_server = next(s for s in spans if s.service == "certification" and s.kind == "SERVER"
                          and s.name.endswith("/certify"))
    certified_publish = next(s for s in spans if s.service == "certification" and s.kind == "PRODUCER"
                             and s.attributes.get("footprint.event_type") == "certification.outcome.certified.v1")
    certified_consume = next(s for s in spans if s.service == "intake" and s.kind == "CONSUMER"
                             and s.attributes.get("footprint.event_type") == "certification.outcome.certified.v1")
    upload_server = next(s for s in spans if s.service == "intake" and s.kind == "SERVER" and "/files/" in s.name)

    # each HTTP handler span hangs under the gateway's CLIENT span, which hangs under the gateway's SERVER span
    for server in (upload_server, submit_server, certify_server):
        client = parent(server)
        assert client and client.service == "gateway" and client.kind == "CLIENT"
        assert parent(client).service == "gateway" and parent(client).kind == "SERVER"
    assert parent(submitted_publish) is submit_server and parent(submitted_consume) is submitted_publish
    assert parent(certified_publish) is certify_server and parent(certified_consume) is certified_publish
    assert submitted_consume.attributes["footprint.school"] == "999001"
    assert submitted_publish.attributes["messaging.system"] == "rabbitmq"
