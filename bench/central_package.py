"""A school's year package for the central database, built and submitted: 3,000 students, then 6,000.

Each student uploaded about 15 course outcomes and 25 diverse performances and selected 6 + 10 of them (a
selection carries the selected items whole, with every file's sha256: that is all of intake a package needs).
The exchange's projection is filled through its own consumer handler (not timed), intake's lock is announced,
and then one round of the exchange's job is timed: the double-collect snapshot, the package body (every row,
every file's sha256) written to the media store with its sha256, the HTTP send to the central database sandbox
(its own process: it validates the whole package and answers with 收訖明細 for every row), and the receipt kept
(per-student documents, every outcome/performance file's sha256 compared with the manifest).

    .venv/bin/python -m bench.central_package [--students 3000] [--files 2]

Prints both runs and the ratio; exits non-zero if 3,000 take more than 30 s or 6,000 more than 2.2× that.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import free_port, print_table

TERM, YEAR = "11202", "112"
LIMIT_SECONDS, LIMIT_RATIO = 30.0, 2.2


def files(item: str, count: int) -> list[dict]:
    return [{"file_id": f"{item}-f{n}", "name": f"{item}-{n}.pdf", "kind": "document", "media_type": "application/pdf",
             "size": 180_000 + n, "sha256": hashlib.sha256(f"{item}:{n}".encode()).hexdigest()} for n in range(count)]


def fill(school: str, students: int, per_item_files: int) -> None:
    """Every student's selection (6 of ~15 outcomes, 10 of ~25 performances) and the year's lock, as events."""
    from services.exchange.consumers import apply_selection_event
    from shared.events import SelectionChanged, SelectionLocked, make_event, parse_event

    for n in range(students):
        student = f"S{n:05d}"
        payload = SelectionChanged(
            selection_id=f"{school}:{student}:{YEAR}", school=school, student_id=student, year=YEAR, revision=1,
            outcomes=[{"outcome_id": f"O{n:05d}{i:02d}{uuid.uuid4().hex[:20]}", "term": f"{YEAR}0{1 + i % 2}",
                       "section_id": f"SEC{i}", "course_code": f"{i:02d}" + "1" * 21, "subject_name": f"科目{i}",
                       "brief": "課程學習成果簡述" * 4, "files": files(f"{student}-O{i}", per_item_files)}
                      for i in range(6)],
            performances=[{"performance_id": f"P{n:05d}{i:02d}{uuid.uuid4().hex[:20]}", "term": f"{YEAR}01",
                           "category": "競賽表現", "name": f"全國科展第{i}屆", "organiser": "教育部",
                           "start_date": "2024-03-01", "end_date": "2024-03-02", "brief": "多元表現簡述" * 4,
                           "links": ["https://example.edu.tw/p"], "files": files(f"{student}-P{i}", per_item_files)}
                          for i in range(10)],
            changed_by=student)
        apply_selection_event(*parse_event(make_event(payload, school=school, producer="intake")))
    lock = SelectionLocked(school=school, year=YEAR, students=students, revisions=students, locked_by="admin")
    apply_selection_event(*parse_event(make_event(lock, school=school, producer="intake")))


def run(school: str, students: int, per_item_files: int, documents_url: str, central_url: str, work: Path) -> dict:
    """One school's year package (each run its own school: the central side keeps what it received)."""
    from services.exchange import domain, send
    from services.exchange.app import create_runtime
    from services.exchange.models import Package, ReceiptStudent
    from shared.auth import Principal
    from shared.config import Settings

    os.environ["EXCHANGE_JOB_SECONDS"] = "0"  # this benchmark runs the job's round itself
    os.environ["CENTRAL_URL"] = central_url
    settings = Settings(service="exchange", documents_url=documents_url, documents_prefix=f"b{uuid.uuid4().hex[:8]}",
                        media_url=f"file://{work}/media-{students}")
    runtime = create_runtime(settings)
    exchange = runtime.state["exchange"]
    started = time.perf_counter()
    fill(school, students, per_item_files)
    filled = time.perf_counter() - started
    admin = Principal(user_id="admin", username="admin", school=school, city="TPE", roles=("school_admin",),
                      issued_at=0)
    t0 = time.perf_counter()
    domain.request_submission(exchange, admin, school, "year", TERM, "127.0.0.1")
    assert send.promote_waiting(exchange) == 1
    package = send.claim(exchange, "building")
    assert send.build_claimed(exchange, package) == 1
    t1 = time.perf_counter()
    package = send.claim(exchange, "ready")
    assert send.send_claimed(exchange, package) == 1
    t2 = time.perf_counter()
    package = Package.objects(id=package.id).first()
    assert package.state == "received" and package.mismatches == 0 and package.rejected_rows == 0, package.to_mongo()
    assert ReceiptStudent.objects(submission_id=package.submission_id).count() == students
    runtime.stop_workers()
    return {"students": students, "rows": sum(package.rows.values()), "body_mb": package.body_size / 1e6,
            "fill_s": filled, "build_s": t1 - t0, "send_s": t2 - t1, "total_s": t2 - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=3000)
    parser.add_argument("--files", type=int, default=2, help="files per selected item")
    args = parser.parse_args()
    from deploy.central_sandbox import SandboxProcess
    from deploy.docstore import DocumentStoreDaemon

    work = Path(tempfile.mkdtemp(prefix="footprint-central-bench-"))
    store = DocumentStoreDaemon(work / "documents", log_path=work / "documents.log").start()
    central = SandboxProcess(free_port(), log=open(work / "central.log", "ab")).start()
    try:
        results = [run(school, n, args.files, store.url, central.url, work)
                   for school, n in (("999001", args.students), ("999002", 2 * args.students))]
    finally:
        central.stop()
        store.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(["students", "rows", "body MB", "projection fill s", "snapshot + build s", "send + receipt s",
                 "built and submitted s"],
                [[r["students"], r["rows"], r["body_mb"], r["fill_s"], r["build_s"], r["send_s"], r["total_s"]]
                 for r in results], title=f"Year package, 6 outcomes + 10 performances per student, {args.files} "
                                          f"files each (central database sandbox in its own process)")
    small, large = results
    ratio = large["total_s"] / small["total_s"]
    ok = small["total_s"] <= LIMIT_SECONDS and ratio <= LIMIT_RATIO
    print(f"{large['students']:,} vs {small['students']:,} students: {ratio:.2f}x the time "
          f"(limits: {LIMIT_SECONDS:.0f} s for {small['students']:,}, {LIMIT_RATIO}x for twice as many)")
    print("RESULT:", "within the limits" if ok else "OVER THE LIMITS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
