"""The development document store: SecantusDB, a single-node server speaking MongoDB's wire protocol over
WiredTiger (PyPI ``SecantusDB``; no MongoDB server package exists for these machines).

This module is the only place that knows about SecantusDB. Everything else talks to a ``mongodb://`` URL
through pymongo/mongoengine and cannot tell it from MongoDB, which production runs (docker-compose.yml,
k8s/). Two shapes:

- ``DocumentStoreDaemon``: ``secantusd-py`` as its own process (system tests, ``make services``,
  benchmarks), so every process of the platform shares one store and the tests can kill -9 and restart it.
- ``EmbeddedDocumentStore``: the same server on threads inside the caller (``make run``: one process).

Both keep their data under a directory and reopen it intact after a restart.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("footprint.docstore")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mongodb_url(port: int, host: str = "127.0.0.1") -> str:
    # directConnection: the server advertises a one-member replica set; talk to it as the node it is.
    # journal=true: a write is acknowledged once it is in the store's log, so a kill -9 of the store loses nothing
    # acknowledged (production asks MongoDB for the same, with w=majority, in its URL).
    # retryWrites=false: SecantusDB keeps a record of every retryable write and prunes them by scanning (and past
    # 10,000, sorting) all of them under one lock on each write, so a write's cost grows with the writes before it
    # (measured: 15 ms at 2,000 writes, 116 ms at 12,000; 8-12 ms flat without). Production keeps MongoDB's
    # retryable writes; here a write cut by a restart of the store answers 503 and the client retries.
    return f"mongodb://{host}:{port}/?directConnection=true&journal=true&retryWrites=false"


def wait_for_store(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Return once ``url`` answers a ping; raise (with the daemon's exit) otherwise."""
    import pymongo

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"document store exited with {proc.returncode}")
        try:
            client = pymongo.MongoClient(url, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
            try:
                client.admin.command("ping")
                return
            finally:
                client.close()
        except Exception as exc:  # not listening yet
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"document store at {url} did not answer within {timeout}s: {last}")


class DocumentStoreDaemon:
    """``secantusd-py`` on its own port and data directory; start, stop, kill -9 and restart it."""

    def __init__(self, storage_path: str | Path, *, port: int | None = None, log_path: str | Path | None = None,
                 cache_size: str = "512M"):
        self.storage_path = Path(storage_path)
        self.port = port or _free_port()
        self.log_path = Path(log_path) if log_path else self.storage_path.parent / f"{self.storage_path.name}.log"
        self.cache_size = cache_size
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return mongodb_url(self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 30.0) -> "DocumentStoreDaemon":
        self.storage_path.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        daemon = Path(sys.executable).with_name("secantusd-py")
        command = [str(daemon)] if daemon.exists() else [sys.executable, "-m", "secantus"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage_path),
                 "--log-level", "WARNING", "--cache-size", self.cache_size],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_store(self.url, timeout, self.proc)
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """A clean shutdown (SIGTERM: the server closes WiredTiger)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """kill -9: what a crashed or OOM-killed node looks like. WiredTiger recovers from its log on restart."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, timeout: float = 30.0) -> "DocumentStoreDaemon":
        self.stop()
        return self.start(timeout)

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.storage_path, ignore_errors=True)


class EmbeddedDocumentStore:
    """The same server on threads inside this process (``make run``), data kept under ``storage_path``."""

    def __init__(self, storage_path: str | Path, *, port: int = 0):
        from secantus import SecantusDBServer

        self.storage_path = Path(storage_path)
        self.storage_path.mkdir(parents=True, exist_ok=True)
        # Test commands (fail points) stay off: this port is reachable by anything on the host.
        self.server = SecantusDBServer(host="127.0.0.1", port=port, storage_path=str(self.storage_path),
                                       enable_test_commands=False, cache_size="256M")

    def start(self) -> "EmbeddedDocumentStore":
        self.server.start()
        wait_for_store(self.url)
        return self

    @property
    def url(self) -> str:
        return mongodb_url(self.server.address[1])

    def stop(self) -> None:
        self.server.stop()
