"""The event bus on kombu: one durable topic exchange, confirmed publishing, safe consuming.

Topology (declared idempotently by every process that uses it):
- ``footprint.events``: durable topic exchange for all domain events, routing key = event type. Its
  alternate exchange ``footprint.unrouted`` keeps events nobody subscribes to yet in the ``footprint.unrouted``
  queue (7-day TTL) instead of dropping them; a publish that is still returned (mandatory) or nacked raises.
- per consuming service and purpose, a durable queue ``<service>.<purpose>`` (replicas compete on it),
  plus ``<queue>.retry`` (TTL'd messages dead-letter back into the queue: backoff) and ``<queue>.dlq``
  (exhausted or poison messages, for an operator to inspect and replay: ``python -m deploy.dlq``).

On ``memory://`` (one process) the same code runs; retries back off in the consumer thread because the
in-memory transport has no TTL or dead-lettering.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import pymongo.errors
from kombu import Connection, Consumer, Exchange, Producer, Queue
from pydantic import ValidationError

from shared.events import EXCHANGE, Envelope, Payload, UnknownEvent, parse_event
from shared.tracing import SpanKind, inject_headers, span

log = logging.getLogger("footprint.bus")

UNROUTED = "footprint.unrouted"
DEAD_LETTER_EXCHANGE = "footprint.dlx"
RETRY_EXCHANGE = "footprint.retry"
RETRIES_HEADER = "x-footprint-retries"
ERROR_HEADER = "x-footprint-error"


class PublishError(Exception):
    """The broker did not take responsibility for an event (unroutable, nacked, or unreachable)."""


def _connection(url: str) -> Connection:
    options = {"confirm_publish": True} if url.startswith("amqp") else {}
    return Connection(url, transport_options=options, heartbeat=30 if url.startswith("amqp") else 0,
                      connect_timeout=5)


def events_exchange(name: str = EXCHANGE, *, alternate: bool = True) -> Exchange:
    args = {"alternate-exchange": UNROUTED} if alternate else {}
    return Exchange(name, type="topic", durable=True, arguments=args)


def declare_topology(channel, exchange: Exchange) -> None:
    exchange(channel).declare()
    if (exchange.arguments or {}).get("alternate-exchange"):
        unrouted = Exchange(UNROUTED, type="fanout", durable=True)
        unrouted(channel).declare()
        Queue(UNROUTED, unrouted, durable=True, queue_arguments={"x-message-ttl": 7 * 24 * 3600 * 1000})(channel).declare()


class EventBus:
    """Publishing side. Thread-safe: one connection, serialised by a lock (the outbox relay is its main user)."""

    def __init__(self, url: str, producer: str, *, exchange: Exchange | None = None):
        self.url = url
        self.producer = producer
        self.exchange = exchange or events_exchange()
        self.is_memory = url.startswith("memory://")
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._producer: Producer | None = None
        self._returned: list[str] = []

    def _ensure(self) -> Producer:
        if self._producer is None:
            conn = _connection(self.url)
            try:
                conn.ensure_connection(max_retries=1)
                channel = conn.channel()
                declare_topology(channel, self.exchange)
            except Exception:
                conn.release()  # a failed declare must not leave the connection open
                raise
            self._conn = conn
            self._producer = Producer(channel, exchange=self.exchange, serializer="json",
                                      on_return=self._on_return)
        elif not self.is_memory:
            self._conn.heartbeat_check()
        return self._producer

    def _on_return(self, exception, exchange, routing_key, message) -> None:
        self._returned.append(f"{routing_key}: {exception}")

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    def _reset_locked(self) -> None:
        try:
            if self._conn is not None:
                self._conn.release()
        except Exception:  # the connection is already broken; nothing to release
            pass
        self._conn = None
        self._producer = None

    def ping(self) -> None:
        # Never wait behind a publish stuck on a blocked broker: readiness answers within 2 s either way.
        if not self._lock.acquire(timeout=2):
            raise PublishError("the bus connection is busy (broker blocked?)")
        try:
            self._ensure()
            if not self.is_memory and not self._conn.connected:
                self._reset_locked()
                raise PublishError("not connected")
        finally:
            self._lock.release()

    def publish(self, event: dict, *, trace_headers: dict | None = None) -> None:
        """Publish one envelope persistently; returns only once the broker confirmed it."""
        attributes = {
            "messaging.system": "rabbitmq" if not self.is_memory else "memory",
            "messaging.operation.type": "publish",
            "messaging.destination.name": self.exchange.name,
            "messaging.rabbitmq.destination.routing_key": event["type"],
            "messaging.message.id": event["id"],
            "footprint.school": event.get("school") or "",
            "footprint.event_type": event["type"],
        }
        with span(self.producer, f"{self.exchange.name} publish", kind=SpanKind.PRODUCER,
                  parent_headers=trace_headers, attributes=attributes):
            headers = inject_headers({})
            with self._lock:
                try:
                    producer = self._ensure()
                    self._returned.clear()
                    producer.publish(event, routing_key=event["type"], delivery_mode=2, mandatory=True,
                                     headers=headers, message_id=event["id"], retry=False,
                                     **({} if self.is_memory else {"confirm_timeout": 10}))
                except PublishError:
                    raise
                except Exception as exc:
                    self._reset_locked()
                    raise PublishError(f"publish of {event['type']} failed: {exc}") from exc
                if self._returned:
                    raise PublishError(f"unroutable: {self._returned[0]}")


@dataclass
class Subscription:
    """What one consuming service listens to for one purpose, and the idempotent handler for it."""

    queue: str
    event_types: list[str]
    handler: Callable[[Envelope, Payload], None]
    prefetch: int = 16
    max_retries: int = 5
    backoff_ms: int = 500
    exchange: Exchange = field(default_factory=events_exchange)


class ProcessedEvents:
    """Idempotency marks in the consuming service's own database: (queue, event id) handled already."""

    RETENTION_DAYS = 30  # redeliveries come within minutes; dead-letter replays within days

    def __init__(self, database):
        self.collection = database["processed_events"]
        # The store drops old marks itself.
        self.collection.create_index("at", expireAfterSeconds=self.RETENTION_DAYS * 24 * 3600)

    def seen(self, queue: str, event_id: str) -> bool:
        return self.collection.find_one({"_id": f"{queue}:{event_id}"}, {"_id": 1}) is not None

    def mark(self, queue: str, event_id: str, event_type: str) -> None:
        try:
            self.collection.insert_one({"_id": f"{queue}:{event_id}", "type": event_type,
                                        "at": datetime.now(timezone.utc)})
        except Exception as exc:  # duplicate key: a competing replica marked it first, which is fine
            if "duplicate" not in str(exc).lower():
                raise


def declare_consumer_queues(channel, sub: Subscription) -> Queue:
    declare_topology(channel, sub.exchange)
    main = Queue(sub.queue, durable=True)
    main(channel).declare()
    for event_type in sub.event_types:
        main(channel).bind_to(exchange=sub.exchange.name, routing_key=event_type)
    dlx = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)
    dlx(channel).declare()
    Queue(f"{sub.queue}.dlq", dlx, routing_key=sub.queue, durable=True)(channel).declare()
    retry = Exchange(RETRY_EXCHANGE, type="direct", durable=True)
    retry(channel).declare()
    Queue(f"{sub.queue}.retry", retry, routing_key=sub.queue, durable=True,
          queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": sub.queue})(channel).declare()
    return main


class ConsumerWorker(threading.Thread):
    """Consumes one subscription: ack after the handler succeeded, retries with backoff, then dead-letters."""

    def __init__(self, url: str, service: str, sub: Subscription, processed: ProcessedEvents):
        super().__init__(name=f"consumer-{sub.queue}", daemon=True)
        self.url = url
        self.service = service
        self.sub = sub
        self.processed = processed
        self.is_memory = url.startswith("memory://")
        self._halt = threading.Event()
        self.handled = 0
        self.dead_lettered = 0
        self.ready = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        delay = 0.5
        while not self._halt.is_set():
            try:
                with _connection(self.url) as conn:
                    conn.ensure_connection(max_retries=1)
                    channel = conn.channel()
                    queue = declare_consumer_queues(channel, self.sub)
                    self._channel = channel
                    with Consumer(channel, queues=[queue], callbacks=[self._on_message], accept=["json"],
                                  prefetch_count=self.sub.prefetch, on_decode_error=self._on_undecodable):
                        self.ready.set()
                        delay = 0.5
                        while not self._halt.is_set():
                            try:
                                conn.drain_events(timeout=0.5)
                            except socket.timeout:
                                conn.heartbeat_check()  # keeps an idle connection alive (RabbitMQ drops silent ones)
                                continue
            except Exception as exc:
                if self._halt.is_set():
                    break
                log.warning("consumer %s reconnecting in %.1fs: %s", self.sub.queue, delay, exc)
                self._halt.wait(delay)
                delay = min(delay * 2, 10.0)

    # -- message handling -------------------------------------------------------------------------------

    def _on_undecodable(self, message, exc) -> None:
        """Not JSON, or not the content type we accept: poison. Dead-letter it rather than have it redelivered
        ahead of every good message forever."""
        self._dead_letter({"raw": message.body.decode("latin-1") if isinstance(message.body, bytes) else str(message.body)},
                          dict(message.headers or {}), f"undecodable: {type(exc).__name__}: {exc}")
        message.ack()

    def _on_message(self, body, message) -> None:
        headers = dict(message.headers or {})
        retries = int(headers.get(RETRIES_HEADER, 0))
        event_id = body.get("id", "?") if isinstance(body, dict) else "?"
        event_type = body.get("type", "?") if isinstance(body, dict) else "?"
        attributes = {
            "messaging.system": "memory" if self.is_memory else "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.destination.name": self.sub.queue,
            "messaging.message.id": event_id,
            "messaging.consumer.group.name": self.sub.queue,
            "footprint.event_type": event_type,
            "footprint.school": (body.get("school") or "") if isinstance(body, dict) else "",
            "footprint.retries": retries,
        }
        with span(self.service, f"{self.sub.queue} process", kind=SpanKind.CONSUMER, parent_headers=headers,
                  attributes=attributes) as current:
            try:
                envelope, payload = parse_event(body)
            except (UnknownEvent, ValidationError, TypeError) as exc:
                # Poison: no retry can fix a message that does not match the catalogue.
                current.set_attribute("footprint.outcome", "poison")
                self._dead_letter(body, headers, f"invalid event: {exc}")
                message.ack()
                return
            if self.processed.seen(self.sub.queue, envelope.id):
                current.set_attribute("footprint.outcome", "duplicate")
                message.ack()
                return
            store_wait = 0.5
            while True:
                try:
                    self.sub.handler(envelope, payload)
                    self.processed.mark(self.sub.queue, envelope.id, envelope.type)
                    current.set_attribute("footprint.outcome", "handled")
                    self.handled += 1
                    message.ack()
                    return
                except pymongo.errors.ConnectionFailure as exc:
                    # The document store is down (restarting, failing over), not the message: wait for it
                    # without spending the message's retries, so an outage never dead-letters good events.
                    log.warning("handler %s waits for the document store (%s)", self.sub.queue, exc)
                    if self._halt.wait(store_wait):
                        return  # shutting down: leave unacked, it is redelivered
                    store_wait = min(store_wait * 2, 5.0)
                except Exception as exc:
                    log.warning("handler %s failed on %s (try %d): %s", self.sub.queue, envelope.id, retries + 1, exc)
                    if retries >= self.sub.max_retries:
                        current.set_attribute("footprint.outcome", "dead-lettered")
                        self._dead_letter(body, headers, f"{type(exc).__name__}: {exc}")
                        message.ack()
                        return
                    backoff = self.sub.backoff_ms * (2 ** retries) / 1000.0
                    retries += 1
                    if self.is_memory:
                        # The in-memory transport cannot delay a message; wait here and try again.
                        if self._halt.wait(backoff):
                            return  # shutting down: leave unacked, it is redelivered
                        continue
                    self._republish(RETRY_EXCHANGE, body, {**headers, RETRIES_HEADER: retries}, expiration=backoff)
                    message.ack()
                    return

    def _republish(self, exchange: str, body: dict, headers: dict, expiration: float | None = None) -> None:
        producer = Producer(self._channel, exchange=Exchange(exchange, type="direct", durable=True), serializer="json")
        kwargs = {"expiration": expiration} if expiration else {}
        producer.publish(body, routing_key=self.sub.queue, delivery_mode=2, headers=headers, **kwargs)

    def _dead_letter(self, body, headers: dict, error: str) -> None:
        self.dead_lettered += 1
        self._republish(DEAD_LETTER_EXCHANGE, body if isinstance(body, dict) else {"raw": json.dumps(body, default=str)},
                        {**headers, ERROR_HEADER: error[:500], "x-footprint-dead-at": time.time()})


def wait_ready(workers: list[ConsumerWorker], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.ready.wait(max(0.0, deadline - time.monotonic()))
