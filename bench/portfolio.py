"""A running platform for the upload benchmarks: every service as its own gunicorn process on RabbitMQ,
moto's S3 server in its own process standing in for MinIO, and helpers that act like a school's staff and
students through the gateway (import students, enrol them, sign in, upload, submit)."""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import quote

import urllib3

from bench.common import free_port, free_ports
from deploy.services import ORDER, ProcessSet

TERM = "11201"
HIGH_LIMITS = {"GATEWAY_IP_RATE": "100000", "GATEWAY_IP_BURST": "100000",
               "GATEWAY_USER_RATE": "100000", "GATEWAY_USER_BURST": "100000"}
_LETTERS = {c: v for c, v in zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36))}


def national_id(n: int) -> str:
    """A valid, distinct 身分證字號 for bench student ``n``."""
    body = f"{1 + n % 2}{n:07d}"[-8:]
    letter = "ABCDEFGHJKLMNPQRSTUVXYWZ"[n // 10_000_000 % 24]
    value = _LETTERS[letter]
    total = value // 10 + (value % 10) * 9 + sum(int(d) * w for d, w in zip(body, (8, 7, 6, 5, 4, 3, 2, 1)))
    return f"{letter}{body}{(10 - total % 10) % 10}"


def pdf_bytes(size: int) -> bytes:
    filler = (b"Footprint learning outcome line. " * (size // 33 + 1))[: max(0, size - 200)]
    return (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n2 0 obj << /Length " + str(len(filler)).encode()
            + b" >> stream\n" + filler
            + b"\nendstream endobj\nxref\n0 3\ntrailer << /Root 1 0 R >>\nstartxref\n9\n%%EOF\n")


def mp4_bytes(size: int) -> bytes:
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    moov = struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 8, b"mvhd")
    payload = size - len(ftyp) - len(moov) - 8
    return ftyp + struct.pack(">I4s", 8 + payload, b"mdat") + (b"\x00\x01\x02\x03" * (payload // 4 + 1))[:payload] + moov


class MotoS3:
    """moto's S3 server as a separate process (so it does not share the benchmark's GIL)."""

    def __init__(self):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except Exception:
                time.sleep(0.2)
        self.url = f"s3://footprint:footprint-secret@127.0.0.1:{self.port}/footprint-media"

    def store(self):
        from shared.storage import media_store

        return media_store(self.url)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)



class WaitTimedOut(RuntimeError):
    """The condition did not come true in time (other errors of the predicate propagate as they are)."""


def wait_until(predicate, timeout: float = 120.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (raises)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise WaitTimedOut(f"timed out after {timeout}s waiting for {what}")


class Platform:
    def __init__(self, *, env: dict | None = None, web: dict | None = None, workers: dict | None = None,
                 log_dir: str | None = None):
        """``web``/``workers``: processes per service (e.g. ``{"intake": 2}``); one of each by default."""
        self.s3 = MotoS3()
        self.var = tempfile.mkdtemp(prefix="footprint-bench-")
        self.vhost, self.procs = None, None
        try:
            env = dict(env or {})
            # A RabbitMQ virtual host of its own (queues left by an earlier run, or a developer's `make services`,
            # must not take or give events), unless the caller names the bus.
            if "BUS_URL" not in env:
                self.vhost = f"footprint-bench-{uuid.uuid4().hex[:8]}"
                subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True)
                subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                               check=True, capture_output=True)
                env["BUS_URL"] = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
            ports = dict(zip([*ORDER, "central"], free_ports(len(ORDER) + 1)))  # the sandbox too: never 8190
            self.procs = ProcessSet(ports=ports, var_dir=self.var, web=web, workers=workers, log_dir=log_dir, env={
                **HIGH_LIMITS, "MEDIA_URL": self.s3.url, "LOG_LEVEL": "WARNING", "GUNICORN_THREADS": "32", **env})
            self.bus_url = self.procs.env["BUS_URL"]
            self.procs.start(timeout=60)
        except BaseException:
            self.stop()  # never leave moto, a vhost or half a platform behind
            raise
        self.gateway = self.procs.url("gateway")
        self.http = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(connect=5, read=120), retries=False)

    def stop(self):
        if self.procs:
            self.procs.stop()
        self.s3.stop()
        if self.vhost:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True)
        shutil.rmtree(self.var, ignore_errors=True)

    # -- HTTP as a portal would ------------------------------------------------------------------------------
    def call(self, method, path, token=None, *, json_body=None, body=None, headers=None, expect=(200, 201, 202, 204)):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        response = self.http.request(method, self.gateway + path, body=body, headers=headers)
        if expect and response.status not in expect:
            raise RuntimeError(f"{method} {path}: {response.status} {response.data[:300]!r}")
        return response

    def login(self, username, password, school="999001"):
        return self.call("POST", "/api/v1/auth/login", json_body={"school": school, "username": username,
                                                                  "password": password}).json()["access_token"]

    def wait(self, predicate, timeout=120.0, what="condition"):
        return wait_until(predicate, timeout, what)

    def demo_section(self, admin_token) -> dict:
        def found():
            items = self.call("GET", f"/api/v1/records/schools/999001/sections?term={TERM}", admin_token).json()["items"]
            return next((s for s in items if s["section_name"] == "101"), None)
        return self.wait(found, what="the demo section")

    def add_students(self, admin_token, count: int, section: dict, *, first: int = 1) -> list[tuple[str, str]]:
        """Import ``count`` students (identity), enrol them in ``section`` (records), wait until intake knows."""
        people = []
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["學號", "姓名", "班級", "年級", "身分證字號", "初始密碼"])
        for n in range(first, first + count):
            number = f"B{n:06d}"
            people.append((number, f"init-{n:06d}"))
            writer.writerow([number, f"學生{n}", "101", "10", national_id(n), f"init-{n:06d}"])
        report = self.call("POST", "/api/v1/schools/999001/imports/students", admin_token, body=out.getvalue().encode(),
                           headers={"Content-Type": "text/csv"}).json()
        assert report["rejected"] == 0, report["errors"][:3]
        enrol = io.StringIO()
        writer = csv.writer(enrol)
        writer.writerow(["學期", "學號", "課程代碼", "開課班級"])
        for number, _ in people:
            writer.writerow([TERM, number, section["course_code"], section["section_name"]])

        def records_knows_them():  # identity's user events must reach records before it can enrol them
            job = self.call("POST", "/api/v1/records/schools/999001/imports/enrolments?wait=true&dry_run=true", admin_token,
                            body=enrol.getvalue().encode(), headers={"Content-Type": "text/csv"}, expect=None)
            return job.status in (200, 201, 202) and job.json().get("report", {}).get("rejected", 1) == 0
        # Identity's user events reach records (and intake, certification) one by one: allow for the count.
        self.wait(records_knows_them, timeout=120 + count * 0.25, what="records' user directory")
        job = self.call("POST", "/api/v1/records/schools/999001/imports/enrolments?wait=true", admin_token,
                        body=enrol.getvalue().encode(), headers={"Content-Type": "text/csv"}).json()
        assert job["report"]["rejected"] == 0, job["report"]["errors"][:3]
        return people

    def activate(self, number: str, initial: str) -> str:
        """First sign-in: change the imported initial password, sign in again; returns an access token."""
        token = self.login(number, initial)
        self.call("POST", "/api/v1/auth/password", token, json_body={"current_password": initial,
                                                                     "new_password": f"chosen-{initial}-pw"})
        return self.login(number, f"chosen-{initial}-pw")

    def new_outcome(self, token, section_id, *, brief="學習成果", timeout=300.0) -> str:
        def created():
            response = self.call("POST", "/api/v1/intake/outcomes", token, expect=None,
                                 json_body={"section_id": section_id, "brief": brief})
            if response.status == 201:
                return response.json()["id"]
            if response.status == 422 and response.json().get("code") == "not_enrolled":
                return None  # intake has not yet heard of the enrolment
            raise RuntimeError(f"outcome: {response.status} {response.data[:200]!r}")
        return self.wait(created, timeout=timeout, what="intake to know the enrolment")

    def upload(self, token, outcome_id, data: bytes, name: str, key: str | None = None):
        return self.call("PUT", f"/api/v1/intake/outcomes/{outcome_id}/files/{key or uuid.uuid4().hex}", token, body=data,
                         headers={"X-File-Name": quote(name), "Content-Type": "application/octet-stream"}).json()


def run_on_platform(run, args, **platform_options):
    """Start the platform, run ``run(platform, args)``, always stop it, and say how long it all took."""
    from bench.common import machine

    started = time.perf_counter()
    print(f"{machine()}\nStarting every service (gunicorn, RabbitMQ, the shared document store) and moto's S3 "
          f"server...", flush=True)
    platform = Platform(**platform_options)
    try:
        return run(platform, args)
    finally:
        platform.stop()
        print(f"Wall time {time.perf_counter() - started:.1f}s.")


def peak_rss_mib(procs: ProcessSet, name: str) -> float:
    return procs.peak_rss_kib(name) / 1024


def reset_peak_rss(procs: ProcessSet, name: str) -> None:
    """Reset VmHWM (writing 5 to clear_refs) so a peak can be measured for one phase; best effort."""
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in Path(status).read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["Pid"]) == procs.pid(name) or int(fields.get("PPid", "0")) == procs.pid(name):
            try:
                Path(status).with_name("clear_refs").write_text("5")
            except OSError:
                pass


__all__ = ["Platform", "run_on_platform", "pdf_bytes", "mp4_bytes", "peak_rss_mib", "reset_peak_rss", "national_id", "TERM", "os"]
