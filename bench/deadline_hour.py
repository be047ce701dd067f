"""The deadline hour: 2,000 students of one school upload a course outcome and send it for certification
within a few minutes, through the gateway, with every service a separate process on RabbitMQ and moto's
S3 server standing in for MinIO. Then nothing may be missing:

- intake holds 2,000 submitted outcomes, certification holds 2,000 pending items in the teacher's queue;
- every stored object's sha256, read back from S3 directly (not through Footprint), equals the sha256 the
  student's portal computed before uploading; there are exactly as many objects as uploads;
- every dead-letter queue is empty.

Each student does what a real one does at the deadline: first sign-in with the imported initial password,
the required password change, sign in again, start the outcome, upload the file (X-Content-SHA256 set),
send it for certification. ``--clients`` portals work at once.

The whole run is made once per ``--intake`` count, each on a fresh platform: with ``--intake 1,2`` first one
intake web process and one intake worker process, then two of each competing on intake's durable queues,
every process sharing one document store (a SecantusDB daemon). The two columns are printed side by side.

    .venv/bin/python -m bench.deadline_hour [--students 2000] [--clients 24] [--size 65536] [--intake 1,2]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from urllib.parse import unquote, urlparse

import pika

from bench.common import print_table, summary_ms
from bench.portfolio import Platform, WaitTimedOut, run_on_platform, pdf_bytes
from deploy.dlq import pika_parameters
from deploy.topology import subscriptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=24, help="student portals working at once")
    parser.add_argument("--size", type=int, default=64 * 1024, help="bytes per uploaded PDF (default 64 KiB)")
    parser.add_argument("--intake", default="1,2", help="intake web+worker processes per run, comma-separated")
    args = parser.parse_args(argv)
    results = {}
    for count in (int(n) for n in args.intake.split(",")):
        print(f"\n=== intake: {count} web process(es) + {count} worker process(es) ===", flush=True)
        results[count] = run_on_platform(run, args, web={"intake": count}, workers={"intake": count})
    names = list(results)
    rows = [[label, *(results[n][key] for n in names)] for label, key in (
        ("students who finished", "finished"), ("peak wall time (s)", "peak_seconds"),
        ("students/s", "rate"), ("upload p50 ms", "upload_p50"), ("upload p95 ms", "upload_p95"),
        ("submit p50 ms", "submit_p50"), ("submit p95 ms", "submit_p95"),
        ("students who could not finish", "failures"), ("outcomes submitted in intake", "submitted"),
        ("pending in the teacher's queue", "pending"), ("objects in S3", "objects"),
        ("sha256 not found in S3", "missing"), ("dead letters", "dead"), ("events settled after (s)", "settle_seconds"),
        ("nothing lost", "ok"))]
    print()
    print_table(["", *(f"intake ×{n}" for n in names)], rows,
                title=f"Side by side: {args.students:,} students, {args.clients} at a time")


def run(platform: Platform, args) -> dict:
    admin = platform.login("admin", "footprint-demo")
    section = platform.demo_section(admin)
    t0 = time.perf_counter()
    people = platform.add_students(admin, args.students, section)
    print(f"Imported and enrolled {len(people):,} students in {time.perf_counter() - t0:.1f}s "
          f"(identity import + records enrolment import through the gateway).", flush=True)
    # At a real deadline the enrolments were made weeks before: let intake and certification project them first,
    # so that "start outcome" measures starting an outcome, not the projection racing the first students.
    t0 = time.perf_counter()
    queues_drained(platform, ("intake.", "certification."))
    print(f"Intake and certification had projected the enrolments {time.perf_counter() - t0:.1f}s later.", flush=True)

    timings = {step: [] for step in ("first sign-in", "password change", "sign-in", "start outcome", "upload", "submit")}
    expected: dict[str, str] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def student(person):
        number, initial = person
        data = pdf_bytes(args.size) + f"% {number}\n".encode()  # each file different: its own sha256
        data = data.replace(b"%%EOF\n% " + number.encode() + b"\n", b"% " + number.encode() + b"\n%%EOF\n")
        digest = hashlib.sha256(data).hexdigest()
        steps = {}
        t = time.perf_counter()
        token = platform.login(number, initial)
        steps["first sign-in"] = time.perf_counter() - t
        t = time.perf_counter()
        platform.call("POST", "/api/v1/auth/password", token, json_body={"current_password": initial,
                                                                         "new_password": f"chosen-{initial}-pw"})
        steps["password change"] = time.perf_counter() - t
        t = time.perf_counter()
        token = platform.login(number, f"chosen-{initial}-pw")
        steps["sign-in"] = time.perf_counter() - t
        t = time.perf_counter()
        outcome = platform.new_outcome(token, section["id"], brief=f"{number} 的讀書報告")
        steps["start outcome"] = time.perf_counter() - t
        t = time.perf_counter()
        stored = platform.call("PUT", f"/api/v1/intake/outcomes/{outcome}/files/deadline-{number}", token, body=data,
                               headers={"X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                                        "Content-Type": "application/octet-stream"}).json()
        steps["upload"] = time.perf_counter() - t
        t = time.perf_counter()
        platform.call("POST", f"/api/v1/intake/outcomes/{outcome}/submit", token)
        steps["submit"] = time.perf_counter() - t
        assert stored["sha256"] == digest
        with lock:
            expected[outcome] = digest
            for step, seconds in steps.items():
                timings[step].append(seconds)

    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=args.clients)
    try:
        futures = [pool.submit(student, person) for person in people]
        for done, future in enumerate(as_completed(futures), 1):
            try:
                future.result()
            except Exception as exc:  # a student who could not finish is a failure of the platform
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
            if done % 250 == 0:
                print(f"  {done:,} students done after {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        # On Ctrl-C do not wait for 2,000 queued students: drop them, so the platform is stopped promptly.
        pool.shutdown(wait=True, cancel_futures=True)
    peak_seconds = time.perf_counter() - t0

    # -- nothing lost ------------------------------------------------------------------------------------
    # Fresh tokens: the admin's from the start of the run has expired by now (access tokens live 10 minutes,
    # longer than the peak); the wait below is shorter than that.
    admin = platform.login("admin", "footprint-demo")
    teacher = platform.login("teacher01", "footprint-demo")

    def settled():
        intake = platform.call("GET", "/api/v1/intake/outcomes?term=11201&status=submitted&limit=1", admin).json()
        counts = platform.call("GET", "/api/v1/certification/counts?term=11201", teacher).json()
        pending = sum(s["pending"] for s in counts["sections"])
        return (intake["total"], pending) if pending >= len(expected) else None

    t_settle = time.perf_counter()
    try:
        submitted, pending = platform.wait(settled, timeout=300, what="certification to receive every submission")
    except WaitTimedOut:  # a missing count is a finding; any other error is the benchmark's and stops it
        submitted, pending = -1, -1
    settle_seconds = time.perf_counter() - t_settle

    store = platform.s3.store()
    stored_hashes = []
    for obj in store.client.list_objects(store.bucket, prefix="999001/", recursive=True):
        digest = hashlib.sha256()
        for chunk in store.open(obj.object_name):
            digest.update(chunk)
        stored_hashes.append(digest.hexdigest())
    missing = set(expected.values()) - set(stored_hashes)

    connection = pika.BlockingConnection(pika_parameters(platform.bus_url))
    channel = connection.channel()
    dead = {sub.queue: channel.queue_declare(f"{sub.queue}.dlq", passive=True).method.message_count
            for sub in subscriptions()}
    connection.close()

    rows = [[step, *(lambda s: [s["n"], s["p50"], s["p95"], s["p99"], s["max"]])(summary_ms(values))]
            for step, values in timings.items()]
    print()
    print_table(["step", "n", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows,
                title=f"{args.students:,} students, {args.clients} at a time, {args.size // 1024} KiB PDF each: "
                      f"{len(expected):,} finished in {peak_seconds:.0f}s ({len(expected) / peak_seconds:.1f} students/s)")
    checks = [
        ["students who could not finish", len(failures), 0],
        ["outcomes submitted in intake", submitted, args.students],
        ["pending in the teacher's certification queue", pending, args.students],
        ["objects in S3 for the school", len(stored_hashes), args.students],
        ["uploaded files whose sha256 is not found in S3", len(missing), 0],
        ["dead letters (all queues)", sum(dead.values()), 0],
    ]
    print_table(["check", "found", "expected"], checks,
                title=f"Nothing lost (events settled {settle_seconds:.1f}s after the last submit; S3 read back directly)")
    for failure in failures[:5]:
        print("FAILURE: " + failure)
    ok = all(found == want for _, found, want in checks)
    print("RESULT: " + ("nothing lost, every sha256 verified" if ok else "PROBLEMS: see the table above"), flush=True)
    upload, submit = summary_ms(timings["upload"]), summary_ms(timings["submit"])
    return {"finished": len(expected), "peak_seconds": round(peak_seconds, 1),
            "rate": round(len(expected) / peak_seconds, 1), "upload_p50": upload["p50"], "upload_p95": upload["p95"],
            "submit_p50": submit["p50"], "submit_p95": submit["p95"], "failures": len(failures), "submitted": submitted,
            "pending": pending, "objects": len(stored_hashes), "missing": len(missing), "dead": sum(dead.values()),
            "settle_seconds": round(settle_seconds, 1), "ok": "yes" if ok else "NO"}


def queues_drained(platform: Platform, prefixes: tuple[str, ...], quiet_polls: int = 3, timeout: float = 600.0):
    """Wait until the queues of these services have held no message, ready or delivered and not yet acked, for
    ``quiet_polls`` polls a second apart (a passive declare counts only the ready ones: a consumer's prefetched
    messages would look done)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < quiet_polls:
        if time.monotonic() > deadline:
            raise WaitTimedOut(f"the queues of {prefixes} still busy after {timeout}s")
        listing = subprocess.run(["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "-p",
                                  unquote(urlparse(platform.bus_url).path[1:]) or "/", "name", "messages"],
                                 check=True, capture_output=True, text=True).stdout
        busy = sum(int(count) for name, count in (line.split() for line in listing.splitlines() if line.strip())
                   if name.startswith(prefixes) and not name.endswith(".dlq"))
        quiet = quiet + 1 if busy == 0 else 0
        time.sleep(1.0)


if __name__ == "__main__":
    main()
