"""Three relay processes of one service over one store and the real RabbitMQ: the outbox lease lets one of
them publish, so 2,000 pending events leave once each; kill -9 the holder mid-batch and another process
takes over once the lease ran out, losing nothing and duplicating at most the event it had in flight.

The processes are tests/relay_process.py (a pretend service ``outboxtest`` with one aggregate), each on the
suite's document store (the same private database prefix) and the system tests' RabbitMQ virtual host; a
collector in this process counts every delivery on a private queue bound to a private exchange.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Queue

from shared.bus import EventBus, declare_topology, events_exchange
from shared.events import UserDeactivated, make_event
from shared.outbox import LEASE_SECONDS, LEASES, STANDBY_SECONDS
from tests import relay_process
from tests.conftest import test_documents

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 2000  # 500 aggregates with 4 pending events each


def wait_for(predicate, timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def wait_drained(count, stall: float = 20.0, every: float = 0.2) -> bool:
    """True once ``count()`` reaches 0; False only if it stops going down for ``stall`` seconds. The relays'
    throughput depends on what else the two cores are doing (CI may run beside a loaded core), so the test
    waits on progress, not on a fixed time for all 2,000."""
    best, progressed = count(), time.monotonic()
    while best > 0:
        if time.monotonic() - progressed > stall:
            return False
        time.sleep(every)
        now = count()
        if now < best:
            best, progressed = now, time.monotonic()
    return True


class Collector(threading.Thread):
    """Every delivery on a private queue bound to ``exchange`` (all routing keys), with its arrival time."""

    def __init__(self, url: str, exchange: str):
        super().__init__(daemon=True)
        self.exchange = events_exchange(exchange)
        self.queue = Queue(f"{exchange}.collector", self.exchange, routing_key="#", durable=False)
        self.conn = Connection(url, connect_timeout=5)
        self.conn.ensure_connection(max_retries=3)
        self.channel = self.conn.channel()
        declare_topology(self.channel, self.exchange)
        self.queue(self.channel).declare()  # bound before any relay publishes
        self.arrivals: list[tuple[float, str]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with Consumer(self.channel, queues=[self.queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
            while not self._halt.is_set():
                try:
                    self.conn.drain_events(timeout=0.2)
                except socket.timeout:
                    continue

    def _on_message(self, body, message) -> None:
        self.arrivals.append((time.monotonic(), body["id"]))

    def ids(self) -> list[str]:
        return [event_id for _, event_id in self.arrivals]

    def barrier(self, url: str, timeout: float = 20) -> None:
        """Publish a marker after every relay has stopped and wait for it: the queue is FIFO, so whatever the
        relays had published is in ``arrivals`` by then (no sleeping and hoping nothing more comes)."""
        marker = make_event(UserDeactivated(user_id="marker", school="999001", deactivated_at="2026-11-23T00:00:00Z",
                                            reason="barrier"), school="999001", producer="test")
        marker["id"] = f"marker-{uuid.uuid4()}"
        bus = EventBus(url, "test", exchange=self.exchange)
        try:
            bus.publish(marker)
        finally:
            bus.reset()
        assert wait_for(lambda: marker["id"] in self.ids(), timeout), "the marker never arrived"
        self.arrivals = [arrival for arrival in self.arrivals if arrival[1] != marker["id"]]

    def close(self) -> None:
        self._halt.set()
        self.join(5)
        try:
            self.queue(self.channel).delete()
            self.exchange(self.channel).delete()
        finally:
            self.conn.release()


class Replicas:
    """``count`` relay processes of the pretend service, sharing one store database prefix and one exchange."""

    def __init__(self, count: int, *, documents: dict, bus_url: str, exchange: str, log_dir: Path,
                 lease: float = LEASE_SECONDS):
        self.procs: list[subprocess.Popen] = []
        self.holders: dict[str, subprocess.Popen] = {}
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for n in range(count):
            with open(log_dir / f"relay-{n}.log", "ab") as log:
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.relay_process", "--documents-url", documents["documents_url"],
                     "--prefix", documents["documents_prefix"], "--bus-url", bus_url, "--exchange", exchange,
                     "--poll", "0.2", "--lease", str(lease)],
                    cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True))
        for proc in self.procs:  # each prints its holder id once its relay thread runs
            line = proc.stdout.readline()
            assert line, f"relay process {proc.pid} exited with {proc.wait()}"
            self.holders[json.loads(line)["holder"]] = proc

    def kill(self, holder: str) -> None:
        proc = self.holders[holder]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> dict[int, int]:
        """SIGTERM the live ones (clean stop: each releases); returns pid -> events it published."""
        live = [proc for proc in self.procs if proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        published = {}
        for proc in live:
            out, _ = proc.communicate(timeout=20)
            assert proc.returncode == 0, f"relay process {proc.pid} exited with {proc.returncode}"
            published[proc.pid] = json.loads(out.strip().splitlines()[-1])["published"]
        return published

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def world(vhost_url, tmp_path):
    """Fresh store database and exchange, 2,000 pending events, a collector; the test starts the replicas."""
    documents = test_documents()
    relay_process.connect(documents["documents_url"], documents["documents_prefix"])
    ids = relay_process.insert_parcels(EVENTS // 4, 4)
    assert len(ids) == EVENTS == relay_process.pending_count()
    exchange = f"test.outbox.{uuid.uuid4().hex[:8]}"
    collector = Collector(vhost_url, exchange)
    collector.start()
    made: list[Replicas] = []

    def replicas(count: int = 3, **options) -> Replicas:
        made.append(Replicas(count, documents=documents, bus_url=vhost_url, exchange=exchange, log_dir=tmp_path,
                             **options))
        return made[-1]

    yield {"ids": ids, "collector": collector, "replicas": replicas, "bus_url": vhost_url}
    for replica_set in made:
        replica_set.kill_all()
    collector.close()


def lease() -> dict | None:
    return relay_process.Parcel._get_collection().database[LEASES].find_one({"_id": relay_process.SERVICE})


def test_three_relay_processes_publish_each_of_2000_events_exactly_once(world):
    collector, ids = world["collector"], world["ids"]
    started = time.monotonic()
    # A lease longer than the test: a holder starved past the usual 5 s on a loaded machine would lose it to a
    # standby (and may duplicate its in-flight event, as documented): the next test's business, not this one's.
    replicas = world["replicas"](3, lease=600)
    assert wait_drained(relay_process.pending_count), f"{relay_process.pending_count()} events still pending"
    drained = time.monotonic() - started
    published = replicas.stop()
    collector.barrier(world["bus_url"])

    counts = Counter(collector.ids())
    assert set(counts) == set(ids)  # every event arrived, nothing else did
    duplicates = {event_id: n for event_id, n in counts.items() if n > 1}
    print(f"\n{EVENTS} events through 3 relay processes in {drained:.1f}s; published per process "
          f"{sorted(published.values())}; duplicates {len(duplicates)}")
    assert duplicates == {}
    assert sorted(published.values()) == [0, 0, EVENTS]  # the lease holder published them all
    assert lease()["expires_at"].year == 1970  # released on the clean stop


def test_kill_9_of_the_holder_mid_batch_loses_nothing_and_another_process_takes_over(world):
    collector, ids = world["collector"], world["ids"]
    replicas = world["replicas"](3)
    assert wait_for(lambda: len(collector.arrivals) >= 400, timeout=60), "the relays did not get going"
    holder = lease()["holder"]
    assert holder in replicas.holders
    replicas.kill(holder)  # mid-batch: the holder was publishing its backlog
    killed = time.monotonic()
    left = relay_process.pending_count()
    assert left > 0, "the backlog drained before the kill; nothing was mid-batch"

    # a survivor takes the lease once the dead holder's lease ran out (at most a lease after its last renewal)
    assert wait_for(lambda: lease()["holder"] != holder, timeout=LEASE_SECONDS + 10)
    takeover = time.monotonic() - killed
    successor = lease()["holder"]
    assert successor in replicas.holders and successor != holder
    assert wait_drained(relay_process.pending_count), f"{relay_process.pending_count()} events still pending"
    published = replicas.stop()
    collector.barrier(world["bus_url"])

    counts = Counter(collector.ids())
    assert set(counts) == set(ids)  # nothing lost, nothing foreign
    duplicates = {event_id: n for event_id, n in counts.items() if n > 1}
    # The queue is FIFO and the survivors publish only once the dead holder's lease ran out, seconds after the
    # kill: the last ``sum(published)`` arrivals are theirs, everything before is the dead holder's. (Split by
    # count, not by arrival time: this process's collector may lag behind the queue on a loaded machine.)
    split = len(collector.arrivals) - sum(published.values())
    before = [event_id for _, event_id in collector.arrivals[:split]]
    after = [at for at, _ in collector.arrivals[split:]]
    resumed = after[0] - killed if after else float("nan")
    print(f"\nkill -9 of the holder with {left} of {EVENTS} events pending: lease taken over after {takeover:.2f}s "
          f"(lease {LEASE_SECONDS:.0f}s, standby retry {STANDBY_SECONDS}s), publishing resumed after {resumed:.2f}s; "
          f"duplicates {len(duplicates)} {sorted(duplicates.values())}; survivors published {sorted(published.values())}")
    # at most the one event the holder had in flight (published, not yet pulled from its outbox), twice
    assert len(duplicates) <= 1 and set(duplicates.values()) <= {2}
    for event_id in duplicates:
        assert before[-1] == event_id, "a duplicate other than the dead holder's in-flight event"
    assert takeover <= LEASE_SECONDS + STANDBY_SECONDS + 2.5  # slack for a starved standby on a loaded core
    # The successor alone published what was pending, once. ``left`` was read just after the kill and may still
    # count the dead holder's last event if its $pull was already on the wire (the store applies it anyway).
    assert min(published.values()) == 0 and left - 1 <= max(published.values()) <= left
