"""Separate processes on one host (``make services``): for each service and the gateway a gunicorn web
process and a worker process (outbox relay and consumers, deploy/worker.py), against RabbitMQ on localhost
and one shared document store. Also used by the system tests and benchmarks.

The central database is CENTRAL_URL when set, else the sandbox (deploy/central_sandbox.py) this set starts as a
process of its own on ``ports["central"]`` (8190), its receipts under ``<var>/central``, and stops with it.

The store is DOCUMENTS_URL when set (a MongoDB), else a SecantusDB daemon this set starts under
``<var>/documents`` and stops with it (deploy/docstore.py). ``web``/``workers`` scale a service out: web
processes are gunicorn workers on one port (WEB_CONCURRENCY); worker processes compete on the service's
durable queues and share its outbox relay lease.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.wsgi import SERVICES
from shared.config import CENTRAL_SANDBOX_PORT, DEFAULT_PORTS

ROOT = Path(__file__).resolve().parent.parent
PORTS = {name: DEFAULT_PORTS[name] for name in SERVICES}
ORDER = tuple(SERVICES)  # identity first (the others fetch its keys), the gateway last


def rabbitmq_url() -> str:
    return os.environ.get("BUS_URL", "amqp://guest:guest@127.0.0.1:5672//")


class ProcessSet:
    def __init__(self, *, ports: dict[str, int] | None = None, env: dict[str, str] | None = None,
                 var_dir: str | None = None, log_dir: str | None = None, web: dict[str, int] | None = None,
                 workers: dict[str, int] | None = None):
        self.ports = {**PORTS, "central": CENTRAL_SANDBOX_PORT, **(ports or {})}
        self.var_dir = var_dir or str(ROOT / "var")
        self.log_dir = Path(log_dir or Path(self.var_dir) / "logs")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.web = web or {}
        self.worker_counts = workers or {}
        self.env = {
            **os.environ, "BUS_URL": rabbitmq_url(), "FOOTPRINT_VAR_DIR": self.var_dir, "FOOTPRINT_SEED_DEMO": "1",
            "PYTHONPATH": str(ROOT), "FOOTPRINT_INPROC_WORKERS": "0",
            **{f"{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in self.ports.items()},
            **(env or {}),
        }
        self.central = None
        if not (env or {}).get("CENTRAL_URL") and not os.environ.get("CENTRAL_URL"):
            from deploy.central_sandbox import SandboxProcess

            self.central = SandboxProcess(self.ports["central"], Path(self.var_dir) / "central")
            self.env["CENTRAL_URL"] = self.central.url
        else:
            self.env["CENTRAL_URL"] = (env or {}).get("CENTRAL_URL") or os.environ["CENTRAL_URL"]
        self.docstore = None
        if not self.env.get("DOCUMENTS_URL"):
            from deploy.docstore import DocumentStoreDaemon

            self.docstore = DocumentStoreDaemon(Path(self.var_dir) / "documents", log_path=self.log_dir / "documents.log")
            self.env["DOCUMENTS_URL"] = self.docstore.url
        self.procs: dict[str, subprocess.Popen] = {}
        self.workers: dict[str, list[subprocess.Popen]] = {}
        self.logs: list = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, timeout: float = 30.0, names: tuple[str, ...] = ORDER) -> "ProcessSet":
        try:
            self._start(timeout, names)
        except BaseException:
            self.stop()  # never leave half a platform running
            raise
        return self

    def _start(self, timeout: float, names: tuple[str, ...]) -> None:
        if self.docstore and self.docstore.proc is None:
            self.docstore.start(timeout)
        if self.central and self.central.proc is None:
            self.central.log = open(self.log_dir / "central-sandbox.log", "ab")
            self.logs.append(self.central.log)
            self.central.start(timeout)
        for name in names:
            env = {**self.env, "BIND": f"127.0.0.1:{self.ports[name]}", "FOOTPRINT_PROCESS": f"footprint-{name}",
                   "OTEL_SERVICE_NAME": name, "WEB_CONCURRENCY": str(self.web.get(name, 1))}
            self.procs[name] = self._spawn(
                name, [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py"),
                       f"deploy.wsgi:app({name!r})"], env)
            self.wait_ready(name, timeout)
            for _ in range(self.worker_counts.get(name, 1)):
                self.start_worker(name)

    def _spawn(self, log_name: str, command: list[str], env: dict) -> subprocess.Popen:
        log = open(self.log_dir / f"{log_name}.log", "ab")
        self.logs.append(log)
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_worker(self, name: str) -> subprocess.Popen:
        """One more worker process of ``name`` (relay + consumers); returns it (tests kill -9 it)."""
        env = {**self.env, "FOOTPRINT_PROCESS": f"footprint-{name}-worker", "OTEL_SERVICE_NAME": name,
               "FOOTPRINT_SEED_DEMO": "0"}
        proc = self._spawn(f"{name}-worker", [sys.executable, "-m", "deploy.worker", name], env)
        self.workers.setdefault(name, []).append(proc)
        return proc

    def wait_ready(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log_dir / (name + '.log')}")
            try:
                with urllib.request.urlopen(f"{self.url(name)}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not ready after {timeout}s; see {self.log_dir / (name + '.log')}")

    def all_processes(self) -> list[subprocess.Popen]:
        return [*self.procs.values(), *(proc for procs in self.workers.values() for proc in procs)]

    def stop(self) -> None:
        processes = self.all_processes()
        for proc in processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()
        self.workers.clear()
        if self.central:
            self.central.stop()
            self.central.proc = None
        if self.docstore:
            self.docstore.stop()
        for log in self.logs:
            log.close()
        self.logs.clear()

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def peak_rss_kib(self, name: str) -> int:
        """Peak resident memory (VmHWM) of a process and its gunicorn workers, the largest of them."""
        import glob

        peaks = []
        for status in glob.glob("/proc/[0-9]*/status"):
            try:
                text = Path(status).read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            pid = int(fields["Pid"])
            if pid == self.pid(name) or int(fields.get("PPid", "0")) == self.pid(name):
                peaks.append(int(fields.get("VmHWM", "0 kB").split()[0]))
        return max(peaks or [0])


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or a supervisor stops the children as Ctrl-C does
    processes = ProcessSet().start()
    print(f"Footprint services up: {', '.join(f'{n} {processes.url(n)}' for n in ORDER)}, each with a worker process "
          f"(RabbitMQ {rabbitmq_url()}; documents {processes.env['DOCUMENTS_URL']}; logs in {processes.log_dir}). "
          f"Demo accounts as in `make run`. Ctrl-C stops.",
          flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        processes.stop()


if __name__ == "__main__":
    main()
