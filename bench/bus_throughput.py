"""Event bus throughput against the real RabbitMQ: the kit (shared.bus) versus raw kombu, in one run.

Three variants publish the SAME N envelopes (shared.events.UserDeactivated via make_event, built before the
clock starts); each variant gets a fresh exchange and queue (uuid-named), deleted at the end:

  kit            EventBus.publish (persistent, mandatory, publisher confirms, tracing span, lock) on a fresh
                 topic exchange, consumed by a ConsumerWorker (pydantic validation of envelope + payload,
                 idempotency check and mark in a ProcessedEvents on the document store, ack after handling)
  raw            kombu Producer.publish (persistent, NO confirms) + a kombu Consumer acking each message
  raw+confirms   the same with the transport option confirm_publish=True (each publish waits for its confirm,
                 as the kit does): the fair baseline for the kit

Two phases per variant, producer and consumer thread in ONE process (as the outbox relay and the consumers
share the embedded run's one process):
  1. together: the consumer runs while N events are published; end-to-end = first publish -> last message
     handled/acked; publish = first publish -> last publish returned.
  2. apart: N events published with no consumer running (publish alone), then the consumer drains them
     (consume alone = first -> last handled).
Both ends use prefetch 16 (the kit's default).

    .venv/bin/python -m bench.bus_throughput [--events 2000] [--rounds 3] [--no-dict-marks]
"""
from __future__ import annotations

import argparse
import atexit
import socket
import statistics
import threading
import time
import uuid
from pathlib import Path
from datetime import datetime, timezone

from kombu import Connection, Consumer, Exchange, Producer, Queue

from bench.common import machine, print_table, ratio
from deploy.services import rabbitmq_url
from shared.bus import (ConsumerWorker, EventBus, ProcessedEvents, Subscription, declare_consumer_queues, events_exchange,
                        wait_ready)
from shared.documents import connect_documents, database
from shared.events import UserDeactivated, make_event, parse_event
from shared.tracing import init_tracing

EVENT_TYPE = "identity.user.deactivated.v1"
PREFETCH = 16


def make_events(n: int) -> list[dict]:
    moment = datetime.now(timezone.utc)
    return [make_event(UserDeactivated(user_id=uuid.uuid4().hex, school="999001", deactivated_at=moment,
                                       reason="benchmark"), school="999001", producer="bench")
            for _ in range(n)]


def wait_for(predicate, timeout: float, poll: float = 0.0005) -> float:
    """Spin until predicate() holds; returns the perf_counter moment it was seen (raises on timeout)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("consumer did not receive every event in time")
        time.sleep(poll)
    return time.perf_counter()


# ---- (a) the kit ----------------------------------------------------------------------------------------

class DictMarks:
    """ProcessedEvents' interface on a Python set: isolates what the document store costs the consumer."""

    def __init__(self):
        self.marks: set[str] = set()

    def seen(self, queue: str, event_id: str) -> bool:
        return f"{queue}:{event_id}" in self.marks

    def mark(self, queue: str, event_id: str, event_type: str) -> None:
        self.marks.add(f"{queue}:{event_id}")


class KitVariant:
    """EventBus on a fresh exchange; ConsumerWorker on a fresh queue with idempotency marks in the documents."""

    def __init__(self, url: str, created: dict, *, dict_marks: bool = False):
        self.dict_marks = dict_marks
        tag = uuid.uuid4().hex[:12]
        self.url = url
        self.exchange = events_exchange(f"bench.events.{tag}")
        self.queue = f"bench.kit.{tag}"
        created["exchanges"].append(self.exchange.name)
        created["queues"].extend([self.queue, f"{self.queue}.retry", f"{self.queue}.dlq"])
        self.handled_at: list[float] = []
        self.sub = Subscription(queue=self.queue, event_types=[EVENT_TYPE], handler=self._handle, prefetch=PREFETCH,
                                exchange=self.exchange)
        with Connection(url) as conn:
            declare_consumer_queues(conn.channel(), self.sub)  # the queue exists before anything is published
        self.bus = EventBus(url, "bench", exchange=self.exchange)
        self.bus.ping()  # connect and declare before any clock starts, like a running relay
        self.consumer: ConsumerWorker | None = None

    def _handle(self, envelope, payload) -> None:
        self.handled_at.append(time.perf_counter())

    def publish(self, event: dict) -> None:
        self.bus.publish(event)

    def start_consumer(self) -> None:
        self.handled_at = []
        database("bench")["processed_events"].drop()  # every phase starts with no idempotency marks
        self.marks = DictMarks() if self.dict_marks else ProcessedEvents(database("bench"))
        self.consumer = ConsumerWorker(self.url, "bench", self.sub, self.marks)
        self.consumer.start()
        wait_ready([self.consumer], timeout=15)
        if not self.consumer.ready.is_set():
            raise RuntimeError("kit consumer not ready")

    def received(self) -> int:
        return self.consumer.handled if self.consumer else 0

    def stop_consumer(self) -> str:
        worker, self.consumer = self.consumer, None
        worker.stop()
        worker.join(timeout=5)
        marks = len(self.marks.marks) if self.dict_marks else database("bench")["processed_events"].count_documents({})
        return f"{worker.handled} handled, {marks} marks, {worker.dead_lettered} dead-lettered"

    def close(self) -> None:
        self.bus.reset()


# ---- (b), (c) raw kombu ---------------------------------------------------------------------------------

class RawConsumer(threading.Thread):
    def __init__(self, url: str, queue: Queue):
        super().__init__(daemon=True, name="raw-consumer")
        self.url = url
        self.queue = queue
        self.count = 0
        self.handled_at: list[float] = []
        self.ready = threading.Event()
        self._halt = threading.Event()

    def on_message(self, body, message) -> None:
        message.ack()
        self.count += 1
        self.handled_at.append(time.perf_counter())

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        with Connection(self.url, heartbeat=0) as conn:
            channel = conn.channel()
            with Consumer(channel, queues=[self.queue], callbacks=[self.on_message], accept=["json"],
                          prefetch_count=PREFETCH):
                self.ready.set()
                while not self._halt.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except socket.timeout:
                        continue


class RawVariant:
    def __init__(self, url: str, created: dict, *, confirms: bool):
        tag = uuid.uuid4().hex[:12]
        self.url = url
        self.exchange = Exchange(f"bench.raw.{tag}", type="topic", durable=True)
        self.queue = Queue(f"bench.raw.{tag}", self.exchange, routing_key=EVENT_TYPE, durable=True)
        created["exchanges"].append(self.exchange.name)
        created["queues"].append(self.queue.name)
        with Connection(url) as setup:
            self.queue(setup.channel()).declare()  # declares the exchange, the queue and the binding
        self.conn = Connection(url, transport_options={"confirm_publish": True} if confirms else {})
        self.producer = Producer(self.conn.channel(), exchange=self.exchange, serializer="json")
        self.consumer: RawConsumer | None = None
        self.handled_at: list[float] = []

    def publish(self, event: dict) -> None:
        self.producer.publish(event, routing_key=event["type"], delivery_mode=2, message_id=event["id"], retry=False)

    def start_consumer(self) -> None:
        self.consumer = RawConsumer(self.url, self.queue)
        self.handled_at = self.consumer.handled_at
        self.consumer.start()
        if not self.consumer.ready.wait(15):
            raise RuntimeError("raw consumer not ready")

    def received(self) -> int:
        return self.consumer.count if self.consumer else 0

    def stop_consumer(self) -> str:
        consumer, self.consumer = self.consumer, None
        consumer.stop()
        consumer.join(timeout=5)
        return f"{consumer.count} acked"

    def close(self) -> None:
        self.conn.release()


def run_variant(variant, events: list[dict], timeout: float) -> dict:
    """Phase 1: consumer running while publishing (end-to-end). Phase 2: publish alone, then drain alone."""
    n = len(events)
    out = {}
    try:
        variant.start_consumer()
        t0 = time.perf_counter()
        for event in events:
            variant.publish(event)
        t_published = time.perf_counter()
        t_done = wait_for(lambda: variant.received() >= n, timeout)
        t_last = variant.handled_at[-1] if variant.handled_at else t_done
        out["together_check"] = variant.stop_consumer()
        out["together_publish"] = n / (t_published - t0)
        out["together_e2e"] = n / (max(t_last, t_published) - t0)
        out["together_e2e_s"] = max(t_last, t_published) - t0

        t0 = time.perf_counter()
        for event in events:
            variant.publish(event)
        out["alone_publish"] = n / (time.perf_counter() - t0)
        variant.start_consumer()
        wait_for(lambda: variant.received() >= n, timeout)
        times = variant.handled_at
        out["alone_consume"] = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
        out["alone_check"] = variant.stop_consumer()
        out["received"] = n if out["together_check"].startswith(f"{n} ") and out["alone_check"].startswith(f"{n} ") else -1
    finally:
        if variant.consumer is not None:
            variant.stop_consumer()
        variant.close()
    return out


def median_run(results: list[dict]) -> dict:
    """Per-metric median over rounds (checks taken from the first round)."""
    out = dict(results[0])
    for key in ("together_e2e", "together_publish", "together_e2e_s", "alone_publish", "alone_consume"):
        out[key] = statistics.median(r[key] for r in results)
    return out


def cleanup(url: str, created: dict) -> list[str]:
    """Delete every exchange and queue this run declared (never the shared footprint.* ones)."""
    deleted = []
    with Connection(url) as conn:
        channel = conn.channel()
        for name in created["queues"]:
            try:
                channel.queue_delete(name)
                deleted.append(f"queue {name}")
            except Exception as exc:  # already gone: a fresh channel for the next one
                print(f"  could not delete queue {name}: {exc}")
                channel = conn.channel()
        for name in created["exchanges"]:
            try:
                channel.exchange_delete(name)
                deleted.append(f"exchange {name}")
            except Exception as exc:
                print(f"  could not delete exchange {name}: {exc}")
                channel = conn.channel()
    return deleted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events per variant (default 2000)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="repeat the variants (order reversed every other round); medians reported (default 3)")
    parser.add_argument("--documents-url", default="",
                        help="where the kit keeps idempotency marks (default: a SecantusDB daemon of its own; "
                             "or a mongodb:// URL)")
    parser.add_argument("--dict-marks", action=argparse.BooleanOptionalAction, default=True,
                        help="a fourth variant: the kit with idempotency marks in a Python set, no document store "
                             "(default on; --no-dict-marks skips it)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the consumer per variant")
    args = parser.parse_args(argv)
    url = rabbitmq_url()
    started = time.perf_counter()
    if not args.documents_url:
        import tempfile

        from deploy.docstore import DocumentStoreDaemon

        daemon = DocumentStoreDaemon(Path(tempfile.mkdtemp(prefix="footprint-bench-bus-")) / "documents").start()
        atexit.register(daemon.wipe)
        args.documents_url = daemon.url
    connect_documents("bench", args.documents_url, db_name="footprint_bench")
    init_tracing("bench")  # an SDK tracer provider as every service process has (no exporter configured)
    print(f"Machine: {machine()}")
    print(f"RabbitMQ: {url}; {args.events} events per variant, prefetch {PREFETCH}, producer and consumer thread in "
          f"one process; {args.rounds} round(s), variants interleaved per round", flush=True)

    t0 = time.perf_counter()
    events = make_events(args.events)
    made = time.perf_counter() - t0
    t0 = time.perf_counter()
    for event in events:
        parse_event(event)
    parsed = time.perf_counter() - t0
    print(f"Catalogue cost alone (not in the timings below except where the variant does it): make_event "
          f"{args.events / made:,.0f}/s, parse_event {args.events / parsed:,.0f}/s\n", flush=True)

    created = {"exchanges": [], "queues": []}
    names = ["kit (EventBus + ConsumerWorker)", "raw kombu, no confirms", "raw kombu, confirm_publish"]
    makers = {names[0]: lambda: KitVariant(url, created),
              names[1]: lambda: RawVariant(url, created, confirms=False),
              names[2]: lambda: RawVariant(url, created, confirms=True)}
    if args.dict_marks:
        names.append("kit, marks in a Python set")
        makers[names[-1]] = lambda: KitVariant(url, created, dict_marks=True)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    try:
        for round_no in range(args.rounds):
            for name in (names if round_no % 2 == 0 else names[::-1]):
                result = run_variant(makers[name](), events, args.timeout)
                if result["received"] != args.events:
                    raise RuntimeError(f"{name}: not every event arrived ({result})")
                runs[name].append(result)
    finally:
        deleted = cleanup(url, created)
        print(f"Cleaned up {len(deleted)} benchmark queues/exchanges (of {len(created['queues'])} queues and "
              f"{len(created['exchanges'])} exchanges declared; the shared footprint.unrouted/dlx/retry are left).\n")

    best = {name: median_run(runs[name]) for name in names}
    rows = []
    for name in names:
        r = best[name]
        rows.append([name, args.events, r["together_e2e_s"], r["together_e2e"], r["together_publish"],
                     r["alone_publish"], r["alone_consume"]])
    print_table(["variant", "events", "end-to-end s", "end-to-end ev/s", "publish ev/s (consumer running)",
                 "publish ev/s (alone)", "consume ev/s (alone)"], rows,
                title="Throughput" + (f" (median of {args.rounds} rounds, per column)" if args.rounds > 1 else ""))
    print("Checks: " + "; ".join(f"{name}: {best[name]['together_check']} / {best[name]['alone_check']}" for name in names)
          + "\n")
    kit, raw, raw_c = (best[name] for name in names[:3])
    columns = ("together_e2e", "together_publish", "alone_publish", "alone_consume")
    print_table(["ratio of events/s", "end-to-end", "publish (consumer running)", "publish (alone)", "consume (alone)"], [
        ["kit / raw kombu (no confirms)"] + [f"{ratio(kit[c], raw[c]):.2f}x" for c in columns],
        ["kit / raw kombu + confirms"] + [f"{ratio(kit[c], raw_c[c]):.2f}x" for c in columns],
        ["raw + confirms / raw (cost of confirms)"] + [f"{ratio(raw_c[c], raw[c]):.2f}x" for c in columns],
    ] + ([["kit with set marks / kit with " + args.documents_url.split(":")[0] + " marks"]
          + [f"{ratio(best[names[3]][c], kit[c]):.2f}x" for c in columns]] if args.dict_marks else []), title="Ratios (below 1 = slower)")
    print(f"Wall time {time.perf_counter() - started:.1f}s.")


if __name__ == "__main__":
    main()
