"""The central database sandbox: a stand-in for the ministry's 學生學習歷程資料庫, in its own process.

The real central side has no public API specification; this sandbox implements the contract in
`shared/central.py` the way the ministry's side behaves as far as schools can see it: it validates a
submission package as a whole (422) and row by row (a row it cannot accept is *rejected* in the receipt, the
rest is received), answers with the four kinds of 收訖明細 per student, treats the same package sent twice as
one (same receipt), refuses a different package under an id it already holds (409), and accepts a correction
only of a version it received. Tests and operators can tell it to misbehave, the ways a national service
does at a deadline: fail with 5xx, answer slowly, take the package and then not answer in time, or return a
receipt whose file checksums differ from what was sent.

    python -m deploy.central_sandbox --port 8190 [--data var/central] [--token SECRET]

Tests run it as a process (`SandboxProcess`) or on a thread (`SandboxThread`); `make services` and `make run`
start it once the central submission exchange service that talks to it lands (issue #7). With ``--data``
receipts are kept as files and survive a restart.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from flask import Flask, Response, request
from pydantic import ValidationError
from werkzeug.serving import make_server

from shared.central import (COURSE_CODE, DOCUMENT_TYPES, KINDS_OF_SCOPE, MAX_BRIEF, MAX_DOCUMENT_BYTES,
                            MAX_MEDIA_BYTES, MEDIA_TYPES, NATIONAL_CAPS, RECEIPT_KINDS, SHA256, Package,
                            canonical_digest)

FAULT_MODES = ("error", "slow", "timeout", "tamper")
# code: (status, zh-TW, English) — the sandbox speaks problem+json like Footprint, with its own codes
PROBLEMS = {
    "unauthorised": (401, "中央資料庫拒絕：學校憑證無效。", "Central database: the school credential is invalid."),
    "malformed_package": (422, "提交封包格式錯誤。", "The submission package is malformed."),
    "digest_mismatch": (422, "提交封包檢查碼與內容不符。", "The package checksum does not match its content."),
    "wrong_kind_for_scope": (422, "學期提交只含幹部與修課紀錄，學年提交只含課程學習成果與多元表現。",
                             "A term package carries cadres and course records; a year package outcomes and performances."),
    "package_conflict": (409, "相同封包編號已收過不同內容。", "A different package was already received under this id."),
    "nothing_to_correct": (409, "找不到要更正的已收訖版本。", "There is no received version to correct."),
    "not_found": (404, "找不到收訖明細。", "No such receipt."),
    "injected_failure": (503, "中央資料庫暫時無法服務（模擬）。", "The central database is unavailable (simulated)."),
}


def problem(code: str, detail: str | None = None, errors: list | None = None) -> Response:
    status, zh, en = PROBLEMS[code]
    body = {"type": f"urn:central-sandbox:{code}", "title": en, "status": status, "code": code,
            "message": {"zh-TW": zh, "en": en}}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body, ensure_ascii=False), status, mimetype="application/problem+json")


def reply(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status, headers=headers, mimetype="application/json")


def _file_problem(entry: dict) -> str | None:
    if not SHA256.match(entry["sha256"]):
        return "bad_sha256"
    if entry["media_type"] in DOCUMENT_TYPES:
        return "file_too_large" if entry["size"] > MAX_DOCUMENT_BYTES else None
    if entry["media_type"] in MEDIA_TYPES:
        return "file_too_large" if entry["size"] > MAX_MEDIA_BYTES else None
    return "file_type_not_allowed"


def _row_problem(kind: str, row: dict) -> str | None:
    """Why the central side would not accept this row (None: it does)."""
    if kind in ("course_records", "outcomes") and not COURSE_CODE.match(row["course_code"]):
        return "invalid_course_code"
    if kind in ("outcomes", "performances"):
        if len(row.get("brief") or "") > MAX_BRIEF:
            return "brief_too_long"
        if kind == "outcomes" and not row.get("files"):
            return "no_file"
        for entry in row.get("files", []):
            if reason := _file_problem(entry):
                return reason
    return None


class CentralDatabase:
    """The sandbox's state: receipts by package id, the faults still to inject, a log of what arrived."""

    def __init__(self, data_dir: str | Path | None = None, token: str | None = None):
        self.lock = threading.Lock()
        self.receipts: dict[str, dict] = {}
        self.digests: dict[str, str] = {}
        self.faults: list[dict] = []
        self.log: list[dict] = []
        self.token = token
        self.data_dir = Path(data_dir) if data_dir else None
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.data_dir.glob("*.json")):
                stored = json.loads(path.read_text(encoding="utf-8"))
                self.receipts[stored["receipt"]["package_id"]] = stored["receipt"]
                self.digests[stored["receipt"]["package_id"]] = stored["package_sha256"]

    # -- faults ------------------------------------------------------------------------------------
    def next_fault(self) -> dict | None:
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault["times"] -= 1
            if fault["times"] <= 0:
                self.faults.pop(0)
            return dict(fault)

    # -- receiving ---------------------------------------------------------------------------------
    def receive(self, package: Package, raw: dict, fault: dict | None) -> tuple[int, dict | str]:
        """(status, receipt) or (status, problem code)."""
        if canonical_digest(raw) != package.package_sha256:
            return 422, "digest_mismatch"
        allowed = KINDS_OF_SCOPE[package.scope]
        for student in package.students:
            if any(getattr(student, kind) for kind in RECEIPT_KINDS if kind not in allowed):
                return 422, "wrong_kind_for_scope"
        with self.lock:
            known = self.digests.get(package.package_id)
            if known is not None:
                return (200, self.receipts[package.package_id]) if known == package.package_sha256 \
                    else (409, "package_conflict")
            if package.corrects_version is not None:
                corrected = [r for r in self.receipts.values()
                             if (r["school"], r["term"], r["scope"], r["version"]) ==
                             (package.school, package.term, package.scope, package.corrects_version)]
                if not corrected:
                    return 409, "nothing_to_correct"
            receipt = self._receipt(package, raw, tamper=bool(fault and fault["mode"] == "tamper"))
            self.receipts[package.package_id] = receipt
            self.digests[package.package_id] = package.package_sha256
            self._keep(receipt, package.package_sha256)
            return 201, receipt

    def _receipt(self, package: Package, raw: dict, *, tamper: bool) -> dict:
        """The receipt, row by row from the validated package's JSON (``raw``: same content, plain dicts)."""
        students = []
        tampered = False
        for student in raw["students"]:
            # all four kinds of 收訖明細 on every student; those a package of this scope cannot carry are null
            entry = {"student_id": student["student_id"], **{kind: None for kind in RECEIPT_KINDS}}
            for kind in KINDS_OF_SCOPE[package.scope]:
                rows, seen = [], set()
                for index, data in enumerate(student.get(kind, [])):
                    reason = _row_problem(kind, data)
                    if reason is None and data["key"] in seen:
                        reason = "duplicate_key"
                    if reason is None and kind in NATIONAL_CAPS and index >= NATIONAL_CAPS[kind]:
                        reason = "cap_exceeded"
                    seen.add(data["key"])
                    sha = [f["sha256"] for f in data.get("files", [])]
                    if tamper and not tampered and sha and reason is None:
                        # what a storage fault on the central side looks like to the school: a different checksum
                        sha = [("0" if sha[0][0] != "0" else "1") + sha[0][1:]] + sha[1:]
                        tampered = True
                    rows.append({"key": data["key"], "status": "rejected" if reason else "received",
                                 "reason": reason, "sha256": sha})
                entry[kind] = {"received": sum(r["status"] == "received" for r in rows),
                               "rejected": sum(r["status"] == "rejected" for r in rows), "rows": rows}
            students.append(entry)
        return {"receipt_id": str(uuid.uuid4()), "package_id": package.package_id, "school": package.school,
                "term": package.term, "scope": package.scope, "version": package.version,
                "package_sha256": package.package_sha256,
                "received_at": datetime.now(timezone.utc).isoformat(), "students": students}

    def _keep(self, receipt: dict, digest: str) -> None:
        if not self.data_dir:
            return
        path = self.data_dir / f"{receipt['package_id']}.json"
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps({"receipt": receipt, "package_sha256": digest}, ensure_ascii=False),
                           encoding="utf-8")
        os.replace(partial, path)  # a receipt file is whole or absent


def create_app(central: CentralDatabase | None = None) -> Flask:
    central = central or CentralDatabase()
    app = Flask("central_sandbox")
    app.config["central"] = central

    @app.before_request
    def check_credential():
        if request.path.startswith("/_sandbox") or request.path == "/healthz" or not central.token:
            return None
        if request.headers.get("Authorization") != f"Bearer {central.token}":
            return problem("unauthorised")
        return None

    @app.get("/healthz")
    def healthz():
        return reply({"status": "ok"})

    @app.post("/central/v1/packages")
    def receive_package():
        fault = central.next_fault()
        started = time.monotonic()
        if fault and fault["mode"] == "error":
            central.log.append({"package_id": None, "outcome": "error", "at": started,
                                "traceparent": request.headers.get("traceparent")})
            return problem("injected_failure")
        if fault and fault["mode"] == "slow":
            time.sleep(fault["delay_seconds"])
        raw = request.get_json(silent=True)
        if not isinstance(raw, dict):
            return problem("malformed_package", "the body is not a JSON object")
        try:
            package = Package.model_validate_json(request.get_data())  # pydantic's own parser: several times faster
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]), "reason": e["type"]} for e in exc.errors()]
            return problem("malformed_package", errors=errors[:50])
        status, result = central.receive(package, raw, fault)
        central.log.append({"package_id": package.package_id, "outcome": status, "at": started,
                            "traceparent": request.headers.get("traceparent")})
        if isinstance(result, str):
            return problem(result)
        if fault and fault["mode"] == "timeout":
            time.sleep(fault["delay_seconds"])  # received and kept, but the answer comes too late for the client
        return reply(result, status, {"Location": f"/central/v1/packages/{package.package_id}/receipt"})

    @app.get("/central/v1/packages/<package_id>/receipt")
    def get_receipt(package_id: str):
        receipt = central.receipts.get(package_id)
        return reply(receipt) if receipt else problem("not_found")

    @app.get("/central/v1/schools/<school>/terms/<term>/receipts")
    def list_receipts(school: str, term: str):
        found = [r for r in central.receipts.values() if r["school"] == school and r["term"] == term]
        return reply({"items": sorted(found, key=lambda r: (r["scope"], r["version"]))})

    @app.post("/_sandbox/faults")
    def add_fault():
        body = request.get_json(silent=True) or {}
        mode = body.get("mode")
        if mode not in FAULT_MODES:
            return problem("malformed_package", f"mode must be one of {', '.join(FAULT_MODES)}")
        fault = {"mode": mode, "times": max(1, int(body.get("times", 1))),
                 "delay_seconds": float(body.get("delay_seconds", 2.0))}
        with central.lock:
            central.faults.append(fault)
        return reply(fault, 201)

    @app.delete("/_sandbox/faults")
    def clear_faults():
        with central.lock:
            central.faults.clear()
        return Response(status=204)

    @app.get("/_sandbox/log")
    def show_log():
        return reply({"items": list(central.log)})

    return app


class SandboxThread:
    """The sandbox on a thread of this process (``make run``, unit-level tests)."""

    def __init__(self, port: int = 0, data_dir: str | Path | None = None, token: str | None = None):
        self.central = CentralDatabase(data_dir, token)
        self.server = make_server("127.0.0.1", port, create_app(self.central), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="central-sandbox", daemon=True)

    def start(self) -> "SandboxThread":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SandboxProcess:
    """The sandbox as its own process (system tests, ``make services``)."""

    def __init__(self, port: int, data_dir: str | Path | None = None, token: str | None = None, log=None):
        self.port, self.data_dir, self.token, self.log = port, data_dir, token, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "SandboxProcess":
        import urllib.request

        args = [sys.executable, "-m", "deploy.central_sandbox", "--port", str(self.port)]
        if self.data_dir:
            args += ["--data", str(self.data_dir)]
        if self.token:
            args += ["--token", self.token]
        self.proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], stdout=self.log,
                                     stderr=subprocess.STDOUT if self.log else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the central sandbox exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the central sandbox did not answer /healthz")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("CENTRAL_SANDBOX_PORT", "8190")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data", default=os.environ.get("CENTRAL_SANDBOX_DATA"))
    parser.add_argument("--token", default=os.environ.get("CENTRAL_TOKEN"))
    args = parser.parse_args(argv)
    central = CentralDatabase(args.data, args.token)
    server = make_server(args.host, args.port, create_app(central), threaded=True)
    print(f"central database sandbox on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
