"""The event bus against the real RabbitMQ: confirms, unroutable publishes, idempotent redelivery,
retry with backoff, dead letters and their replay (inspected with pika, independently of the kit)."""
from __future__ import annotations

import threading
import time
import uuid

import pika
import pytest
from kombu import Exchange

from deploy import dlq
from shared.bus import ConsumerWorker, EventBus, ProcessedEvents, PublishError, Subscription, events_exchange
from shared.documents import connect_documents, database
from shared.events import UserDeactivated, make_event
from tests.conftest import test_documents


def event(user_id="u1"):
    return make_event(UserDeactivated(user_id=user_id, school="999001", deactivated_at="2026-11-23T00:00:00Z",
                                      reason="test"), school="999001", producer="test")


class Harness:
    """A private exchange and queue per test, torn down afterwards."""

    def __init__(self, url: str, handler, *, max_retries=2, backoff_ms=50):
        self.url = url
        self.tag = uuid.uuid4().hex[:8]
        self.exchange = events_exchange(f"test.events.{self.tag}")
        self.queue = f"test-{self.tag}.consumer"
        documents = test_documents()
        connect_documents(f"bus{self.tag}", documents["documents_url"], db_name=f"{documents['documents_prefix']}_bus")
        self.processed = ProcessedEvents(database(f"bus{self.tag}"))
        self.sub = Subscription(queue=self.queue, event_types=["identity.user.deactivated.v1"], handler=handler,
                                max_retries=max_retries, backoff_ms=backoff_ms, exchange=self.exchange)
        self.bus = EventBus(url, "test", exchange=self.exchange)
        self.worker = ConsumerWorker(url, "test", self.sub, self.processed)

    def start(self):
        self.worker.start()
        assert self.worker.ready.wait(60)  # connecting and declaring: slow only on a loaded machine
        return self

    def close(self):
        self.worker.stop()
        self.worker.join(5)
        self.bus.reset()
        connection = pika.BlockingConnection(dlq.pika_parameters(self.url))
        channel = connection.channel()
        for queue in (self.queue, f"{self.queue}.retry", f"{self.queue}.dlq"):
            channel.queue_delete(queue)
        channel.exchange_delete(self.exchange.name)
        connection.close()


def wait_for(predicate, timeout=60.0):
    """Poll ``predicate`` until it holds. The deadline is generous: it only costs time when the test fails anyway,
    and a loaded 2-core machine may take seconds for a round trip through RabbitMQ and the document store."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def harness(rabbitmq):
    made = []

    def make(handler, **kwargs):
        made.append(Harness(rabbitmq, handler, **kwargs).start())
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_published_events_are_consumed_and_acked(harness):
    seen = []
    h = harness(lambda envelope, payload: seen.append(payload.user_id))
    for i in range(20):
        h.bus.publish(event(f"u{i}"))
    assert wait_for(lambda: len(seen) == 20)
    assert seen == [f"u{i}" for i in range(20)]  # one queue, one consumer: order kept
    connection = pika.BlockingConnection(dlq.pika_parameters(h.url))
    assert connection.channel().queue_declare(h.queue, passive=True).method.message_count == 0
    connection.close()


def test_redelivered_event_id_has_no_second_effect(harness):
    effects = []
    h = harness(lambda envelope, payload: effects.append(envelope.id))
    once = event()
    h.bus.publish(once)
    h.bus.publish(once)  # the relay crashed after publishing but before marking: same id again
    last = event("u2")
    h.bus.publish(last)
    # One queue, one consumer: u2 is handled only after the copy ahead of it was (no sleeping and hoping).
    # (``handled`` counts an event once its handler returned and it is marked, just after the effect.)
    assert wait_for(lambda: last["id"] in effects and h.worker.handled >= 2)
    assert h.worker.handled == 2
    assert effects.count(once["id"]) == 1 and len(effects) == 2


def test_failing_handler_retries_with_backoff_then_dead_letters_and_replays(harness):
    attempts = []
    healthy = threading.Event()

    def handler(envelope, payload):
        attempts.append(time.monotonic())
        if not healthy.is_set():
            raise RuntimeError("downstream is down")

    h = harness(handler, max_retries=2, backoff_ms=100)
    doomed = event("u-doomed")
    h.bus.publish(doomed)
    assert wait_for(lambda: h.worker.dead_lettered == 1)
    assert len(attempts) == 3  # first try + 2 retries
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # exponential backoff via the TTL'd retry queue
    letters = dlq.inspect(h.url, h.queue)
    assert [(x["id"], x["type"]) for x in letters] == [(doomed["id"], "identity.user.deactivated.v1")]
    assert "downstream is down" in letters[0]["error"]
    assert dlq.inspect(h.url, h.queue)  # inspecting does not consume
    healthy.set()
    assert dlq.replay(h.url, h.queue) == 1
    assert wait_for(lambda: h.worker.handled == 1)
    assert dlq.inspect(h.url, h.queue) == []


def test_poison_message_goes_straight_to_the_dead_letters(harness):
    h = harness(lambda envelope, payload: None)
    connection = pika.BlockingConnection(dlq.pika_parameters(h.url))
    channel = connection.channel()
    channel.basic_publish(h.exchange.name, "identity.user.deactivated.v1", b'{"id": "x", "type": "nope"}',
                          pika.BasicProperties(content_type="application/json"))
    connection.close()
    assert wait_for(lambda: h.worker.dead_lettered == 1)
    assert h.worker.handled == 0 and dlq.inspect(h.url, h.queue)[0]["error"].startswith("invalid event")


def test_undecodable_messages_are_dead_lettered_and_do_not_block_the_queue(harness):
    seen = []
    h = harness(lambda envelope, payload: seen.append(payload.user_id))
    connection = pika.BlockingConnection(dlq.pika_parameters(h.url))
    channel = connection.channel()
    for body, content_type in ((b"not json at all", "text/plain"), (b"{broken", "application/json")):
        channel.basic_publish(h.exchange.name, "identity.user.deactivated.v1", body,
                              pika.BasicProperties(content_type=content_type))
    connection.close()
    h.bus.publish(event("after-the-junk"))
    assert wait_for(lambda: seen == ["after-the-junk"])  # the good event behind them still gets through
    assert wait_for(lambda: h.worker.dead_lettered == 2)
    assert all(letter["error"].startswith("undecodable") for letter in dlq.inspect(h.url, h.queue))


def test_unroutable_publish_is_an_error_not_silence(rabbitmq):
    tag = uuid.uuid4().hex[:8]
    bare = Exchange(f"test.bare.{tag}", type="topic", durable=True)  # no alternate exchange, no queue bound
    bus = EventBus(rabbitmq, "test", exchange=bare)
    try:
        with pytest.raises(PublishError, match="unroutable"):
            bus.publish(event())
    finally:
        bus.reset()
        connection = pika.BlockingConnection(dlq.pika_parameters(rabbitmq))
        connection.channel().exchange_delete(bare.name)
        connection.close()


def test_events_nobody_consumes_yet_are_kept_not_dropped(rabbitmq):
    tag = uuid.uuid4().hex[:8]
    bus = EventBus(rabbitmq, "test", exchange=events_exchange(f"test.events.{tag}"))
    kept = event(f"nobody-listens-{tag}")

    def parked() -> bool:
        connection = pika.BlockingConnection(dlq.pika_parameters(rabbitmq))
        try:
            channel = connection.channel()
            for _ in range(10000):  # other publishers may have parked events there too; look for ours
                method, _props, body = channel.basic_get("footprint.unrouted", auto_ack=False)
                if method is None:
                    return False
                if kept["id"] in body.decode():
                    channel.basic_ack(method.delivery_tag)  # tidy up our own
                    return True
            return False
        finally:
            connection.close()  # everything else goes back

    try:
        bus.publish(kept)  # confirmed: the alternate exchange took it
        # Polled, not looked at once: another run's scan of the shared queue (another checkout's suite on the same
        # broker) holds the messages it has got but not acked until it closes, ours among them.
        assert wait_for(parked)
    finally:
        bus.reset()
        connection = pika.BlockingConnection(dlq.pika_parameters(rabbitmq))
        connection.channel().exchange_delete(f"test.events.{tag}")
        connection.close()


def test_publish_to_a_broker_that_is_down_raises(rabbitmq):
    bus = EventBus("amqp://guest:guest@127.0.0.1:1//", "test")
    with pytest.raises(PublishError):
        bus.publish(event())
