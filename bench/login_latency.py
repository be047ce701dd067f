"""Sign-in and token-check latency through the gateway versus straight to identity, measured side by side.

Starts identity and the gateway as separate gunicorn processes (deploy.services.ProcessSet) on free loopback
ports against the local RabbitMQ, with the demo data seeded, then times

- ``POST /api/v1/auth/login`` (argon2id verify + refresh token write + JWT signing in identity), and
- ``GET /api/v1/me`` (token verification: in the gateway AND in identity when proxied; identity only when direct)

with the same keep-alive HTTP client (one http.client connection per client thread and target), in
alternating batches gateway/direct so both targets see the same machine conditions.

    .venv/bin/python -m bench.login_latency [--requests 300] [--concurrency 4] [--batch 20]
"""
from __future__ import annotations

import argparse
import http.client
import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import free_ports, machine, print_table, ratio, summary_ms
from deploy.services import PORTS, ProcessSet, rabbitmq_url

SCHOOL, USERNAME, PASSWORD = "999001", "student01", "footprint-demo"
HIGH_LIMITS = {"GATEWAY_IP_RATE": "100000", "GATEWAY_IP_BURST": "100000",
               "GATEWAY_USER_RATE": "100000", "GATEWAY_USER_BURST": "100000"}


class Client:
    """Keep-alive HTTP/1.1 client for one host:port, one per thread; reconnects if the server closed."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.reconnects += 1
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Load:
    """A fixed pool of client threads, each with its own keep-alive connection to every target."""

    def __init__(self, ports: dict[str, int], concurrency: int):
        self.ports = ports
        self.concurrency = concurrency
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="client")
        self.local = threading.local()

    def _client(self, target: str) -> Client:
        clients = getattr(self.local, "clients", None)
        if clients is None:
            clients = self.local.clients = {}
        if target not in clients:
            clients[target] = Client(self.ports[target])
        return clients[target]

    def _worker(self, target: str, count: int, method: str, path: str, body: bytes | None, headers: dict,
                start: threading.Barrier) -> tuple[list[float], int]:
        client = self._client(target)
        start.wait()
        latencies, errors = [], 0
        for _ in range(count):
            t0 = time.perf_counter()
            status, _data = client.request(method, path, body, headers)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors += 1
        return latencies, errors

    def batch(self, target: str, n: int, method: str, path: str, body: bytes | None, headers: dict) -> tuple[list[float], int, float]:
        """n requests split over the client threads; returns (latencies, non-200 count, wall seconds)."""
        shares = [n // self.concurrency + (1 if i < n % self.concurrency else 0) for i in range(self.concurrency)]
        shares = [s for s in shares if s]
        barrier = threading.Barrier(len(shares) + 1)
        futures = [self.pool.submit(self._worker, target, s, method, path, body, headers, barrier) for s in shares]
        barrier.wait()
        t0 = time.perf_counter()
        results = [f.result() for f in futures]
        wall = time.perf_counter() - t0
        return [x for lat, _ in results for x in lat], sum(e for _, e in results), wall

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def measure(load: Load, label: str, method: str, path: str, body: bytes | None, headers: dict, *, total: int,
            batch: int) -> dict:
    """Alternate gateway/direct batches (order swapped every round) until each target served ``total``."""
    out = {t: {"lat": [], "errors": 0, "wall": 0.0} for t in ("gateway", "direct")}
    done, round_no = 0, 0
    while done < total:
        size = min(batch, total - done)
        order = ("gateway", "direct") if round_no % 2 == 0 else ("direct", "gateway")
        for target in order:
            lat, errors, wall = load.batch(target, size, method, path, body, headers)
            out[target]["lat"].extend(lat)
            out[target]["errors"] += errors
            out[target]["wall"] += wall
        done += size
        round_no += 1
    for target, data in out.items():
        data["summary"] = summary_ms(data["lat"])
        data["rps"] = len(data["lat"]) / data["wall"] if data["wall"] else float("nan")
    out["label"] = label
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint per target (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--batch", type=int, default=20, help="requests per alternating batch (default 20)")
    parser.add_argument("--me-factor", type=int, default=3,
                        help="GET /me is cheap: run requests x this many of it (default 3)")
    args = parser.parse_args(argv)

    var_dir = tempfile.mkdtemp(prefix="footprint-bench-")
    # A free port for every process the set starts (identity and gateway, and any service added later),
    # so the benchmark never collides with a running `make services` on the default ports.
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    identity_port, gateway_port = ports["identity"], ports["gateway"]
    print(f"Machine: {machine()}")
    print(f"RabbitMQ: {rabbitmq_url()}; " + ", ".join(f"{name} :{port}" for name, port in ports.items())
          + f" (separate gunicorn processes, gthread); var dir {var_dir}")
    print("Gateway rate limits raised for the benchmark: " + ", ".join(f"{k}={v}" for k, v in HIGH_LIMITS.items())
          + " (defaults: 50/s per IP burst 200, 10/s per user burst 40)")
    print(f"Client: {args.concurrency} threads, http.client keep-alive (one connection per thread and target), "
          f"alternating batches of {args.batch}, gateway and direct interleaved; account {SCHOOL}/{USERNAME} "
          f"with the correct password (identity locks after 5 failures).", flush=True)
    processes = ProcessSet(ports=ports, var_dir=var_dir, env={**HIGH_LIMITS, "LOG_LEVEL": "WARNING"})
    started = time.perf_counter()
    ok = False
    try:
        processes.start(timeout=60, names=("identity", "gateway"))  # the two this measures
        print(f"Processes ready in {time.perf_counter() - started:.1f}s.\n", flush=True)
        load = Load({"gateway": gateway_port, "direct": identity_port}, args.concurrency)
        login_body = json.dumps({"school": SCHOOL, "username": USERNAME, "password": PASSWORD}).encode()
        json_headers = {"Content-Type": "application/json"}
        # Warm-up: connections, imports, JWKS fetch in the gateway, caches.
        status, data = Client(identity_port).request("POST", "/api/v1/auth/login", login_body, json_headers)
        if status != 200:
            raise SystemExit(f"login failed ({status}): {data[:300]!r}")
        token = json.loads(data)["access_token"]
        me_headers = {"Authorization": f"Bearer {token}"}
        for target in ("gateway", "direct"):
            for method, path, body, headers in (("POST", "/api/v1/auth/login", login_body, json_headers),
                                                ("GET", "/api/v1/me", None, me_headers)):
                _lat, errors, _wall = load.batch(target, 2 * args.concurrency, method, path, body, headers)
                if errors:
                    raise SystemExit(f"warm-up {method} {path} via {target}: {errors} non-200 answers")

        results = [
            measure(load, "POST /api/v1/auth/login", "POST", "/api/v1/auth/login", login_body, json_headers,
                    total=args.requests, batch=args.batch),
            measure(load, "GET /api/v1/me", "GET", "/api/v1/me", None, me_headers,
                    total=args.requests * args.me_factor, batch=args.batch * args.me_factor),
        ]
        load.close()
        if args.concurrency != 1:
            # One client thread: the hop's own cost, without the client threads queueing for 2 cores.
            serial = Load({"gateway": gateway_port, "direct": identity_port}, 1)
            serial_me = measure(serial, "GET /api/v1/me (1 thread)", "GET", "/api/v1/me", None, me_headers,
                                total=args.requests, batch=args.batch)
            serial.close()
            results.append(serial_me)
        ok = True
    finally:
        processes.stop()
        if ok:
            shutil.rmtree(var_dir, ignore_errors=True)
        else:
            print(f"Failed; process logs kept in {processes.log_dir}", flush=True)

    rows = []
    for result in results:
        for target in ("gateway", "direct"):
            s, data = result[target]["summary"], result[target]
            rows.append([result["label"], "gateway → identity" if target == "gateway" else "direct to identity",
                         s["n"], data["errors"], s["p50"], s["p95"], s["p99"], s["mean"], data["rps"]])
    print_table(["endpoint", "path", "requests", "non-200", "p50 ms", "p95 ms", "p99 ms", "mean ms", "req/s"], rows,
                title=f"Latency (concurrency {args.concurrency} unless marked, keep-alive)")
    ratio_rows = []
    for result in results:
        gw, direct = result["gateway"], result["direct"]
        ratio_rows.append([result["label"],
                           f"{ratio(gw['summary']['p50'], direct['summary']['p50']):.2f}x",
                           f"{ratio(gw['summary']['p95'], direct['summary']['p95']):.2f}x",
                           gw["summary"]["p50"] - direct["summary"]["p50"],
                           gw["summary"]["p95"] - direct["summary"]["p95"],
                           gw["summary"]["mean"] - direct["summary"]["mean"],
                           f"{ratio(gw['rps'], direct['rps']):.2f}x"])
    print_table(["endpoint", "p50 gw/direct", "p95 gw/direct", "added p50 ms", "added p95 ms", "added mean ms",
                 "req/s gw/direct"], ratio_rows, title="Gateway overhead")
    total_errors = sum(r[t]["errors"] for r in results for t in ("gateway", "direct"))
    if total_errors:
        print(f"WARNING: {total_errors} non-200 answers; figures include them.")
    print(f"Wall time {time.perf_counter() - started:.1f}s (including process start).")


if __name__ == "__main__":
    main()
