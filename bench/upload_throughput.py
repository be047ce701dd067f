"""Uploads through the platform versus straight to the object store, side by side in one run.

Every service runs as its own gunicorn process on RabbitMQ; moto's S3 server (its own process) stands in
for MinIO. For 1 MiB documents (PDF) and 10 MiB media (MP4), at each ``--concurrency`` (default 1 and 4), it
times three paths in alternating blocks (the order rotates every round) so all see the same machine:

- bare:      a presigned PUT of the bytes to the bucket (urllib3), nothing else — the yardstick;
- streamed:  PUT /api/v1/intake/outcomes/<id>/files/<key> via the gateway → intake (checks the bytes, sha256,
             MD5) → S3 (presigned PUT, streamed) → the file recorded on the outcome;
- direct:    POST …/outcomes/<id>/uploads via the gateway (checks, a pending upload, a presigned create-only
             PUT) + the PUT straight to S3 (same client as bare) + POST /api/v1/intake/uploads/<id>/complete via
             the gateway (intake streams the object back: type by bytes, size, sha256; then the file record).

Each client is its own student with its own outcome; files are deleted between blocks, outside the clock.
Throughput is bytes / wall time of a path's blocks. For the direct path it also shows where the time goes
(init, PUT, complete) and, measured in the same rounds, the floor under it: one authenticated round trip
through the gateway to intake (GET the outcome: token checked twice, one document read) and one read-back
of the same bytes from the store with sha256 — the least any init + complete that reads the file back costs. Then ``--memory-clients`` clients upload 1 MiB and then 10 MiB files at the same moment,
on the direct and on the streamed path, and the peak resident memory (VmHWM, reset before each round) of the
gateway and intake web processes is compared with their resident memory before.

    .venv/bin/python -m bench.upload_throughput [--uploads 24] [--concurrency 1,4] [--memory-clients 20]
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import urllib3

from bench.common import print_table, ratio, summary_ms
from bench.portfolio import Platform, mp4_bytes, pdf_bytes, run_on_platform

MIB = 1024 * 1024
PATHS = ("bare", "streamed", "direct")
PROBES = ("roundtrip", "readback")  # not uploads: the pieces the direct path cannot do without
LABELS = {"bare": "bare presigned PUT to S3", "streamed": "streamed: gateway → intake → S3",
          "direct": "direct: init + PUT to S3 + complete"}


def _statuses(procs, name: str):
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields["Pid"]) == procs.pid(name) or int(fields.get("PPid", "0")) == procs.pid(name):
            yield status, fields


def rss_kib(procs, name: str, field: str) -> int:
    return max([int(fields.get(field, "0 kB").split()[0]) for _, fields in _statuses(procs, name)] or [0])


def reset_peaks(procs, name: str) -> None:
    for status, _ in list(_statuses(procs, name)):
        try:
            status.with_name("clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uploads", type=int, default=24, help="uploads per size, path and concurrency (default 24)")
    parser.add_argument("--concurrency", default="1,4", help="clients at a time, comma-separated (default 1,4)")
    parser.add_argument("--memory-clients", type=int, default=20, help="simultaneous uploads (default 20)")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    run_on_platform(run, args)


class Paths:
    """The three ways to upload one file, each returning its wall time (and the direct path its phases)."""

    def __init__(self, platform: Platform, tokens: list[str], outcomes: list[str]):
        self.platform = platform
        self.tokens = tokens
        self.outcomes = outcomes
        self.store = platform.s3.store()
        self.store.ping()
        self.http = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(connect=5, read=120), retries=False)
        self.cleanup: list = []  # run after each timed block, so clean-up work never overlaps a measurement
        self.lock = threading.Lock()
        self.probe_keys: dict[int, str] = {}

    def keep_probe(self, data: bytes) -> None:
        key = self.probe_keys[len(data)] = f"bench/probe/{uuid.uuid4().hex}"
        self.store.put(key, iter([data]), length=len(data))

    def _forget_file(self, i: int, file_id: str) -> None:
        with self.lock:
            self.cleanup.append(lambda: self.platform.call("DELETE", f"/api/v1/intake/files/{file_id}", self.tokens[i]))

    def clean(self) -> None:
        while self.cleanup:
            self.cleanup.pop()()

    def bare(self, i: int, data: bytes, name: str, digest: str, kind: str) -> tuple[float, dict]:
        key = f"bench/bare/{uuid.uuid4().hex}"
        url = self.store.client.presigned_put_object(self.store.bucket, key, expires=timedelta(minutes=15))
        t0 = time.perf_counter()
        response = self.http.request("PUT", url, body=data, headers={"Content-Length": str(len(data))})
        elapsed = time.perf_counter() - t0
        assert response.status == 200, response.data[:200]
        with self.lock:
            self.cleanup.append(lambda: self.store.delete(key))
        return elapsed, {}

    def streamed(self, i: int, data: bytes, name: str, digest: str, kind: str) -> tuple[float, dict]:
        t0 = time.perf_counter()
        file = self.platform.call("PUT", f"/api/v1/intake/outcomes/{self.outcomes[i]}/files/{uuid.uuid4().hex}",
                                  self.tokens[i], body=data,
                                  headers={"X-File-Name": quote(name), "Content-Type": "application/octet-stream"}).json()
        elapsed = time.perf_counter() - t0
        assert file["size"] == len(data) and file["sha256"] == digest
        self._forget_file(i, file["file_id"])
        return elapsed, {}

    def roundtrip(self, i: int, data: bytes, name: str, digest: str, kind: str) -> tuple[float, dict]:
        t0 = time.perf_counter()
        self.platform.call("GET", f"/api/v1/intake/outcomes/{self.outcomes[i]}", self.tokens[i])
        return time.perf_counter() - t0, {}

    def readback(self, i: int, data: bytes, name: str, digest: str, kind: str) -> tuple[float, dict]:
        key = self.probe_keys[len(data)]
        t0 = time.perf_counter()
        hasher = hashlib.sha256()
        with self.store.fetch(key) as fetched:
            for chunk in fetched:
                hasher.update(chunk)
        elapsed = time.perf_counter() - t0
        assert hasher.hexdigest() == digest
        return elapsed, {}

    def direct(self, i: int, data: bytes, name: str, digest: str, kind: str) -> tuple[float, dict]:
        t0 = time.perf_counter()
        start = self.platform.call("POST", f"/api/v1/intake/outcomes/{self.outcomes[i]}/uploads", self.tokens[i],
                                   json_body={"name": name, "size": len(data), "sha256": digest, "kind": kind}).json()
        t1 = time.perf_counter()
        response = self.http.request("PUT", start["url"], body=data, headers=start["headers"])
        assert response.status == 200, response.data[:200]
        t2 = time.perf_counter()
        file = self.platform.call("POST", start["complete_url"], self.tokens[i]).json()
        t3 = time.perf_counter()
        assert file["size"] == len(data) and file["sha256"] == digest
        self._forget_file(i, file["file_id"])
        return t3 - t0, {"init": t1 - t0, "put": t2 - t1, "complete": t3 - t2}


def run(platform: Platform, args) -> None:
    admin = platform.login("admin", "footprint-demo")
    section = platform.demo_section(admin)
    platform.call("PUT", "/api/v1/intake/schools/999001/policy", admin, json_body={"outcome_cap_per_term": 9})
    clients = max(max(args.concurrency), args.memory_clients)
    people = platform.add_students(admin, clients, section)
    with ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(lambda p: platform.activate(*p), people))
        outcomes = list(pool.map(lambda t: platform.new_outcome(t, section["id"]), tokens))
    paths = Paths(platform, tokens, outcomes)
    files = [("1 MiB PDF", pdf_bytes(MIB), "成果.pdf", "document"),
             ("10 MiB MP4", mp4_bytes(10 * MIB - 4096), "成果.mp4", "media")]
    # warm every path once (connections, first-request imports) outside the clock
    for label, data, name, kind in files:
        paths.keep_probe(data)
        for path in PATHS + PROBES:
            getattr(paths, path)(0, data, name, hashlib.sha256(data).hexdigest(), kind)
        paths.clean()

    results = {}
    for concurrency in args.concurrency:
        for label, data, name, kind in files:
            digest = hashlib.sha256(data).hexdigest()
            latencies = {path: [] for path in PATHS + PROBES}
            phases: list[dict] = []
            busy = dict.fromkeys(PATHS, 0.0)
            done, round_no = 0, 0
            while done < args.uploads:
                n = min(concurrency, args.uploads - done)  # one upload per client per block: ≤ 5 files per outcome
                order = PATHS[round_no % 3:] + PATHS[:round_no % 3]
                for path in order:
                    fn = getattr(paths, path)
                    t0 = time.perf_counter()
                    with ThreadPoolExecutor(max_workers=concurrency) as pool:
                        timed = list(pool.map(lambda k: fn(k % concurrency, data, name, digest, kind), range(n)))
                    busy[path] += time.perf_counter() - t0
                    latencies[path] += [t for t, _ in timed]
                    if path == "direct":
                        phases += [p for _, p in timed]
                    paths.clean()
                for probe in PROBES:
                    fn = getattr(paths, probe)
                    with ThreadPoolExecutor(max_workers=concurrency) as pool:
                        latencies[probe] += [t for t, _ in pool.map(lambda k: fn(k % concurrency, data, name, digest, kind),
                                                                      range(n))]
                done += n
                round_no += 1
            results[(concurrency, label)] = (len(data), latencies, busy, phases)
            print(f"  {label}, {concurrency} at a time: done", flush=True)

    for concurrency in args.concurrency:
        rows, ratios, phase_rows = [], [], []
        for label, *_ in files:
            size, latencies, busy, phases = results[(concurrency, label)]
            mbps = {}
            for path in PATHS:
                s = summary_ms(latencies[path])
                mbps[path] = size * len(latencies[path]) / busy[path] / MIB
                rows.append([label, LABELS[path], s["n"], s["p50"], s["p95"], s["mean"], mbps[path]])
            p50 = {path: summary_ms(latencies[path])["p50"] for path in PATHS}
            ratios.append([label, f"{ratio(mbps['direct'], mbps['bare']):.2f}x", f"{ratio(mbps['streamed'], mbps['bare']):.2f}x",
                           f"{ratio(mbps['direct'], mbps['streamed']):.2f}x", p50["direct"] - p50["bare"],
                           p50["streamed"] - p50["bare"]])
            med = {phase: statistics.median(p[phase] for p in phases) * 1000 for phase in ("init", "put", "complete")}
            rt, rb = (summary_ms(latencies[probe])["p50"] for probe in PROBES)
            floor = p50["bare"] + 2 * rt + rb
            phase_rows.append([label, med["init"], med["put"], med["complete"], p50["bare"], rt, rb, floor,
                               f"{p50['bare'] / floor:.2f}x", f"{p50['bare'] / p50['direct']:.2f}x"])
        print()
        print_table(["file", "path", "uploads", "p50 ms", "p95 ms", "mean ms", "MiB/s"], rows,
                    title=f"Uploads, {concurrency} client(s) at a time, same files, same store, alternating blocks")
        print_table(["file", "direct/bare (target ≥ 0.8x)", "streamed/bare", "direct/streamed", "direct added p50 ms",
                     "streamed added p50 ms"], ratios, title="Throughput ratios (MiB/s)")
        print_table(["file", "init", "PUT", "complete", "bare PUT", "round trip", "read-back", "floor",
                     "bare/floor", "bare/direct"], phase_rows,
                    title="Where the direct path's time goes (p50 ms; floor = bare PUT + 2 round trips + read-back)")

    # -- memory while many clients upload at once: 1 MiB files, then 10 MiB files, on both platform paths -------
    # Streaming shows as growth that does not follow the file size (buffers per request are fixed).
    memory_rows = []
    for path in ("direct", "streamed"):
        for size in (MIB, 10 * MIB - 4096):
            data = mp4_bytes(size)
            digest = hashlib.sha256(data).hexdigest()
            for name in ("gateway", "intake"):
                reset_peaks(platform.procs, name)
            before = {name: rss_kib(platform.procs, name, "VmRSS") for name in ("gateway", "intake")}
            barrier = threading.Barrier(args.memory_clients)
            fn = getattr(paths, path)

            def at_once(i: int) -> bool:
                barrier.wait()
                fn(i, data, "同時.mp4", digest, "media")  # asserts size and sha256 of the recorded file
                return True

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.memory_clients) as pool:
                ok = list(pool.map(at_once, range(args.memory_clients)))
            wall = time.perf_counter() - t0
            peak = {name: rss_kib(platform.procs, name, "VmHWM") for name in ("gateway", "intake")}
            paths.clean()
            for name in ("gateway", "intake"):
                memory_rows.append([path, f"{size / MIB:.0f} MiB MP4", name, f"{sum(ok)}/{len(ok)}", wall,
                                    before[name] / 1024, peak[name] / 1024, (peak[name] - before[name]) / 1024,
                                    args.memory_clients * len(data) / MIB])
    print_table(["path", "file", "process", "recorded, sha256 right", "seconds", "RSS before MiB", "peak MiB",
                 "growth MiB", "bytes in flight MiB"], memory_rows,
                title=f"{args.memory_clients} clients uploading at the same moment (peak = VmHWM of the gunicorn worker)")


if __name__ == "__main__":
    main()
