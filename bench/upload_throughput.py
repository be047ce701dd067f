"""Uploads through the platform versus straight to the object store, side by side in one run.

Every service runs as its own gunicorn process on RabbitMQ; moto's S3 server (its own process) stands in
for MinIO. For 1 MiB documents (PDF) and 10 MiB media (MP4) it times

- through:  PUT /api/v1/intake/outcomes/<id>/files/<key> via the gateway → intake (checks the bytes, sha256)
            → S3 (presigned PUT, streamed) → the file recorded on the outcome;
- direct:   a presigned PUT of the same bytes to the same bucket, with the same HTTP client (urllib3),

in alternating blocks so both see the same machine, ``--concurrency`` clients at a time (each its own
student and outcome). Then 20 clients upload 10 MiB files at once through the gateway and the peak resident
memory (VmHWM) of the gateway and intake worker processes is compared with their resident memory before.

    .venv/bin/python -m bench.upload_throughput [--uploads 24] [--concurrency 4] [--memory-clients 20]
"""
from __future__ import annotations

import argparse
import hashlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import urllib3

from bench.common import print_table, ratio, summary_ms
from bench.portfolio import Platform, run_on_platform, mp4_bytes, pdf_bytes

MIB = 1024 * 1024


def rss_kib(procs, name: str, field: str) -> int:
    from pathlib import Path

    values = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["Pid"]) == procs.pid(name) or int(fields.get("PPid", "0")) == procs.pid(name):
            values.append(int(fields.get(field, "0 kB").split()[0]))
    return max(values or [0])


def reset_peaks(procs, name: str) -> None:
    from pathlib import Path

    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            if int(fields["Pid"]) == procs.pid(name) or int(fields.get("PPid", "0")) == procs.pid(name):
                status.with_name("clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=24, help="uploads per size and path (default 24)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients at a time (default 4)")
    parser.add_argument("--memory-clients", type=int, default=20, help="simultaneous 10 MiB uploads (default 20)")
    args = parser.parse_args(argv)
    run_on_platform(run, args)


def run(platform: Platform, args) -> None:
    admin = platform.login("admin", "footprint-demo")
    section = platform.demo_section(admin)
    platform.call("PUT", "/api/v1/intake/schools/999001/policy", admin, json_body={"outcome_cap_per_term": 9})
    clients = max(args.concurrency, args.memory_clients)
    people = platform.add_students(admin, clients, section)
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda p: platform.activate(*p), people))
        outcomes = list(pool.map(lambda t: platform.new_outcome(t, section["id"]), tokens))
    store = platform.s3.store()
    store.ping()
    http = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(connect=5, read=120), retries=False)

    cleanup: list = []  # removed after each timed block, so clean-up work never overlaps a measurement

    def through(i: int, data: bytes, name: str) -> float:
        t0 = time.perf_counter()
        file = platform.upload(tokens[i], outcomes[i], data, name)
        elapsed = time.perf_counter() - t0
        assert file["size"] == len(data)
        cleanup.append(lambda: platform.call("DELETE", f"/api/v1/intake/files/{file['file_id']}", tokens[i]))
        return elapsed

    def direct(i: int, data: bytes, name: str) -> float:
        key = f"bench/direct/{uuid.uuid4().hex}"
        url = store.client.presigned_put_object(store.bucket, key, expires=timedelta(minutes=15))
        t0 = time.perf_counter()
        response = http.request("PUT", url, body=data, headers={"Content-Length": str(len(data))})
        elapsed = time.perf_counter() - t0
        assert response.status == 200, response.data[:200]
        cleanup.append(lambda: store.delete(key))
        return elapsed

    results = {}
    for label, data, name in (("1 MiB PDF", pdf_bytes(MIB), "成果.pdf"), ("10 MiB MP4", mp4_bytes(10 * MIB - 4096), "成果.mp4")):
        latencies = {"through": [], "direct": []}
        busy = {"through": 0.0, "direct": 0.0}
        block = args.concurrency  # one upload per client per block: at most 5 files per outcome
        done = 0
        while done < args.uploads:
            n = min(block, args.uploads - done)
            for path, fn in (("through", through), ("direct", direct)):
                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    latencies[path] += list(pool.map(lambda k: fn(k % args.concurrency, data, name), range(n)))
                busy[path] += time.perf_counter() - t0
                while cleanup:
                    cleanup.pop()()
            done += n
        results[label] = (len(data), latencies, busy)
        print(f"  {label}: done", flush=True)

    rows, ratios = [], []
    for label, (size, latencies, busy) in results.items():
        per_path = {}
        for path in ("through", "direct"):
            s = summary_ms(latencies[path])
            mbps = size * len(latencies[path]) / busy[path] / MIB
            per_path[path] = (s, mbps)
            rows.append([label, "gateway → intake → S3" if path == "through" else "direct presigned PUT to S3", s["n"],
                         s["p50"], s["p95"], s["mean"], mbps])
        ratios.append([label, f"{ratio(per_path['through'][1], per_path['direct'][1]):.2f}x",
                       f"{ratio(per_path['direct'][0]['p50'], per_path['through'][0]['p50']):.2f}x",
                       per_path["through"][0]["p50"] - per_path["direct"][0]["p50"]])
    print()
    print_table(["file", "path", "uploads", "p50 ms", "p95 ms", "mean ms", "MiB/s"], rows,
                title=f"Uploads, {args.concurrency} clients at a time, same files, same store, alternating blocks")
    print_table(["file", "throughput through/direct (target ≥ 0.8x)", "p50 direct/through", "added p50 ms"], ratios)

    # -- memory while many clients upload at once: 1 MiB files, then 10 MiB files ------------------------
    # Streaming shows as growth that does not follow the file size (buffers per request are fixed).
    memory_rows = []
    for size in (MIB, 10 * MIB - 4096):
        data = mp4_bytes(size)
        digest = hashlib.sha256(data).hexdigest()
        for name in ("gateway", "intake"):
            reset_peaks(platform.procs, name)
        before = {name: rss_kib(platform.procs, name, "VmRSS") for name in ("gateway", "intake")}
        barrier = threading.Barrier(args.memory_clients)

        def at_once(i: int):
            barrier.wait()
            file = platform.upload(tokens[i], outcomes[i], data, "同時.mp4")
            cleanup.append(lambda: platform.call("DELETE", f"/api/v1/intake/files/{file['file_id']}", tokens[i]))
            return file["sha256"] == digest

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.memory_clients) as pool:
            ok = list(pool.map(at_once, range(args.memory_clients)))
        wall = time.perf_counter() - t0
        peak = {name: rss_kib(platform.procs, name, "VmHWM") for name in ("gateway", "intake")}
        while cleanup:
            cleanup.pop()()
        for name in ("gateway", "intake"):
            memory_rows.append([f"{size / MIB:.0f} MiB MP4", name, f"{sum(ok)}/{len(ok)}", wall, before[name] / 1024,
                                peak[name] / 1024, (peak[name] - before[name]) / 1024,
                                args.memory_clients * len(data) / MIB])
    print_table(["file", "process", "stored, sha256 right", "seconds", "RSS before MiB", "peak MiB", "growth MiB",
                 "bodies in flight MiB"], memory_rows,
                title=f"{args.memory_clients} clients uploading at the same moment (peak = VmHWM of the gunicorn worker)")


if __name__ == "__main__":
    main()
