"""The exchange's job: build what waits to be built, send what waits to be sent, keep the receipts.

It runs where the outbox relay runs (worker processes; the embedded run), never in a web process. Any number of
workers may run it: a package is worked on by whoever holds its claim (``claimed_by``/``claimed_until``, taken
with one find-and-modify); a worker that dies mid-send simply lets its claim run out and another takes the
package over. Sending is idempotent end to end: the body is built once and stored, so every attempt sends the
same bytes under the same package id, and the central side answers the same package with the same receipt.

Failures: a 5xx, 408, 429, a timeout, a refused connection or an unreadable answer is retried with exponential
backoff (``retry_seconds`` · 2ⁿ, at most ``max_backoff``); any other 4xx is final (``failed``, with the
answer kept in ``last_error``). Each send is a CLIENT span that continues the trace of the request that asked
for the package, and its ``traceparent`` travels to the central side.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import urllib3
from pydantic import ValidationError
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError

from shared.central import Receipt
from shared.tracing import SpanKind, inject_headers, span

from . import build
from .models import AuditEntry, Dispute, Package, ReceiptStudent, Resolution, Submission, now

log = logging.getLogger("footprint.exchange")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
RETRYABLE = {408, 429}


@dataclass
class Exchange:
    """What the exchange's rules need besides documents: the media store, the central side, a clock, timings."""

    store: object
    central_url: str
    central_token: str | None = None
    clock: Callable[[], datetime] = now
    send_timeout: float = 60.0
    retry_seconds: float = 2.0
    max_backoff: float = 300.0
    runner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    http: urllib3.PoolManager = field(default_factory=lambda: urllib3.PoolManager(num_pools=2, maxsize=2))

    @property
    def claim_seconds(self) -> float:
        """A claim outlives one send (connect + the answer's timeout) with a margin."""
        return self.send_timeout + 30.0


def audit(submission_id: str, at: datetime, by: str, action: str, detail: dict | None = None, source: str = "") -> None:
    """One more audit entry; bumps the version so a concurrent save of the submission conflicts, never loses it."""
    Submission._get_collection().update_one({"_id": submission_id}, {
        "$push": {"audit": AuditEntry(at=at, by=by, source=source, action=action, detail=detail or {}).to_mongo()},
        "$inc": {"version": 1}})


# ---- claims ------------------------------------------------------------------------------------------------

def claim(exchange: Exchange, state: str) -> Package | None:
    at = exchange.clock()
    doc = Package._get_collection().find_one_and_update(
        {"state": state, "next_attempt_at": {"$lte": at}, "claimed_until": {"$lt": at}},
        {"$set": {"claimed_by": exchange.runner, "claimed_until": at + timedelta(seconds=exchange.claim_seconds)}},
        return_document=ReturnDocument.AFTER)
    return Package._from_son(doc) if doc else None


def _finish(exchange: Exchange, package: Package, changes: dict) -> bool:
    """Write ``changes`` and let go of the claim, if this runner still holds it."""
    result = Package._get_collection().update_one(
        {"_id": package.id, "claimed_by": exchange.runner},
        {"$set": {**changes, "claimed_by": None, "claimed_until": EPOCH}})
    return result.modified_count == 1


# ---- the job -----------------------------------------------------------------------------------------------

def run_once(exchange: Exchange) -> dict[str, int]:
    """One round: promote year packages whose selections are complete, build, send. Returns what it did."""
    done = {"promoted": promote_waiting(exchange), "built": 0, "sent": 0}
    while (package := claim(exchange, "building")) is not None:
        done["built"] += build_claimed(exchange, package)
    while (package := claim(exchange, "ready")) is not None:
        done["sent"] += send_claimed(exchange, package)
    return done


def promote_waiting(exchange: Exchange) -> int:
    promoted = 0
    for package in Package.objects(state="waiting"):
        if build.year_complete(package.school, package.year):
            promoted += Package.objects(id=package.id, state="waiting").update_one(set__state="building")
    return promoted


def build_claimed(exchange: Exchange, package: Package) -> int:
    if Submission.objects(id=package.submission_id).count() == 0:
        # the request that made the package has not written its submission yet (or crashed before): not yet
        _finish(exchange, package, {"next_attempt_at": exchange.clock() + timedelta(seconds=exchange.retry_seconds)})
        return 0
    try:
        with span("exchange", "build package", parent_headers=package.trace or {},
                  attributes={"footprint.school": package.school, "footprint.package_id": package.id}):
            rows = build.student_rows(package.scope, build.snapshot(package.scope, package.school, package.term,
                                                                   package.year))
            at = exchange.clock()
            header = build.store_body(exchange.store, package, rows, at)
    except build.NotReady as exc:
        log.info("package %s not ready: %s", package.id, exc)
        _finish(exchange, package, {"last_error": str(exc)[:500],
                                    "next_attempt_at": exchange.clock() + timedelta(seconds=exchange.retry_seconds)})
        return 0
    if _finish(exchange, package, {**header, "state": "ready", "next_attempt_at": at, "last_error": None}):
        audit(package.submission_id, at, "platform", "built", {"version": package.version, "students": header["students"],
                                                               "rows": header["rows"]})
        return 1
    return 0


def _retry(exchange: Exchange, package: Package, error: str) -> None:
    attempts = package.attempts + 1
    delay = min(exchange.retry_seconds * 2 ** (attempts - 1), exchange.max_backoff)
    log.warning("sending %s failed (attempt %d, next in %.1fs): %s", package.id, attempts, delay, error)
    _finish(exchange, package, {"attempts": attempts, "last_error": error[:500],
                                "next_attempt_at": exchange.clock() + timedelta(seconds=delay)})


def send_claimed(exchange: Exchange, package: Package) -> int:
    body = build.read_body(exchange.store, package)
    headers = {"Content-Type": "application/json", "Idempotency-Key": package.id}
    if exchange.central_token:
        headers["Authorization"] = f"Bearer {exchange.central_token}"
    url = f"{exchange.central_url.rstrip('/')}/central/v1/packages"
    with span("exchange", "POST /central/v1/packages", kind=SpanKind.CLIENT, parent_headers=package.trace or {},
              attributes={"http.request.method": "POST", "url.full": url, "footprint.school": package.school,
                          "footprint.package_id": package.id, "footprint.attempt": package.attempts + 1}) as current:
        inject_headers(headers)
        try:
            response = exchange.http.request(
                "POST", url, body=body, headers=headers, retries=False, preload_content=True,
                timeout=urllib3.Timeout(connect=5.0, read=exchange.send_timeout))
        except urllib3.exceptions.HTTPError as exc:  # refused, reset, timed out
            current.set_attribute("footprint.outcome", "unreachable")
            _retry(exchange, package, f"{type(exc).__name__}: {exc}")
            return 0
        current.set_attribute("http.response.status_code", response.status)
    if response.status in (200, 201):
        try:
            receipt = Receipt.model_validate_json(response.data)
        except ValidationError as exc:
            _retry(exchange, package, f"unreadable receipt: {exc}"[:500])
            return 0
        if receipt.package_id != package.id or receipt.package_sha256 != package.package_sha256:
            _retry(exchange, package, f"the receipt is for {receipt.package_id} ({receipt.package_sha256})")
            return 0
        keep_receipt(exchange, package, receipt, response.data, body)
        return 1
    error = f"HTTP {response.status}: {response.data[:300].decode('utf-8', 'replace')}"
    if response.status >= 500 or response.status in RETRYABLE:
        _retry(exchange, package, error)
        return 0
    log.error("the central database refused %s: %s", package.id, error)
    if _finish(exchange, package, {"state": "failed", "attempts": package.attempts + 1, "last_error": error[:500]}):
        audit(package.submission_id, exchange.clock(), "platform", "refused", {"version": package.version,
                                                                               "error": error[:300]})
    return 0


# ---- receipts ----------------------------------------------------------------------------------------------

def _ignore_duplicates(write) -> None:
    try:
        write()
    except BulkWriteError as exc:  # a repeated receipt (taken-over send): those documents exist, identical
        if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
            raise


def keep_receipt(exchange: Exchange, package: Package, receipt: Receipt, raw: bytes, body: bytes) -> None:
    """Store the receipt (raw, in the media store; per student, in documents), compare every file's sha256 with the
    manifest, raise the platform's disputes, then mark the package received. Each step is repeatable, so a crash
    anywhere in between only means the next runner does it again with the same receipt."""
    at = exchange.clock()
    key = f"exchange/{package.school}/{package.id}.receipt.json"
    exchange.store.put(key, [raw], length=len(raw), content_type="application/json")
    manifest = {}
    for student in json.loads(body)["students"]:
        for kind in ("outcomes", "performances"):
            for row in student.get(kind, []):
                manifest[(student["student_id"], kind, row["key"])] = [f["sha256"] for f in row["files"]]
    docs, disputes, rejected = [], [], 0
    for student in json.loads(raw)["students"]:  # validated as a Receipt already; plain dicts are cheaper to walk
        student_id = student["student_id"]
        kinds = {kind: student.get(kind) for kind in ("cadres", "course_records", "outcomes", "performances")}
        # plain documents (thousands of them: mongoengine's conversion would cost more than the insert)
        docs.append({"_id": f"{package.id}:{student_id}", "package_id": package.id,
                     "submission_id": package.submission_id, "school": package.school, "version": package.version,
                     "student_id": student_id, "receipt_json": json.dumps(kinds, ensure_ascii=False)})
        for kind, receipt_kind in kinds.items():
            for row in (receipt_kind or {}).get("rows", []):
                rejected += row["status"] == "rejected"
                if kind not in ("outcomes", "performances") or row["status"] != "received":
                    continue
                sent = manifest.get((student_id, kind, row["key"]))
                if sent != row["sha256"]:
                    disputes.append(Dispute(
                        id=f"platform:{package.id}:{student_id}:{kind}:{row['key']}", school=package.school,
                        submission_id=package.submission_id, version=package.version, student_id=student_id,
                        kind=kind, row_key=row["key"], reason="sha256_mismatch", raised_by="platform", raised_at=at,
                        by_platform=True, detail={"sent": sent or [], "received": row["sha256"]}).to_mongo())
    for start in range(0, len(docs), 1000):
        batch = docs[start:start + 1000]
        _ignore_duplicates(lambda: ReceiptStudent._get_collection().insert_many(batch, ordered=False))
    if disputes:
        _ignore_duplicates(lambda: Dispute._get_collection().insert_many(disputes, ordered=False))
    changes = {"state": "received", "received_at": at, "receipt_id": receipt.receipt_id, "receipt_key": key,
               "receipt_sha256": hashlib.sha256(raw).hexdigest(), "rejected_rows": rejected,
               "mismatches": len(disputes), "attempts": package.attempts + 1, "last_error": None}
    if not _finish(exchange, package, changes):
        return  # another runner took it over meanwhile and keeps the same receipt
    if package.answers_disputes:
        Dispute._get_collection().update_many(
            {"_id": {"$in": list(package.answers_disputes)}, "state": "correcting"},
            {"$set": {"state": "resolved", "resolution": Resolution(
                at=at, by="platform", reason="corrected", corrected_in_version=package.version).to_mongo()}})
    audit(package.submission_id, at, "platform", "received", {
        "version": package.version, "receipt_id": receipt.receipt_id, "rejected_rows": rejected,
        "sha256_mismatches": len(disputes)})
