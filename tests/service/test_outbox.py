"""The outbox: a state change and its events are saved together and relayed, whatever fails when."""
from __future__ import annotations

import time
import uuid

import pytest

from shared.bus import EventBus
from shared.outbox import OutboxRelay, save_with_events
from tests.service.test_bus_rabbitmq import Harness, wait_for
from tests.tcpproxy import TcpProxy

STUDENT = {"student_no": "1120999", "class_name": "102", "grade": 10, "status": "enrolled", "national_id": "F131104093"}


def deactivate_teacher(client, runtime):
    """A state change through the API: deactivating a user emits identity.user.deactivated.v1."""
    from services.identity.models import User
    from tests.conftest import bearer, login

    admin = login(client, "999001", "admin")
    teacher = User.objects(school="999001", username="teacher01").first()
    response = client.post(f"/api/v1/users/{teacher.id}/deactivate", headers=bearer(admin), json={"reason": "離職"})
    assert response.status_code == 200, response.get_data(as_text=True)
    return teacher.id


@pytest.fixture
def consumer(rabbitmq):
    seen: list = []
    harness = Harness(rabbitmq, lambda envelope, payload: seen.append((envelope.id, payload.user_id))).start()
    harness.seen = seen
    yield harness
    harness.close()


def pending_user_events():
    from services.identity.models import User

    return [item["event"] for doc in User._get_collection().find({"outbox.0": {"$exists": True}}) for item in doc["outbox"]]


def test_process_dies_between_saving_and_publishing(client, identity_runtime, consumer, rabbitmq):
    # The first process saved the change (with its event) and died before its relay ran.
    teacher_id = deactivate_teacher(client, identity_runtime)
    saved = [e for e in pending_user_events() if e["type"] == "identity.user.deactivated.v1"]
    assert [e["payload"]["user_id"] for e in saved] == [teacher_id]
    # A new process starts: a fresh bus and relay over the same (durable) documents publish it, once.
    relay = OutboxRelay(EventBus(rabbitmq, "identity", exchange=consumer.exchange), identity_runtime.spec.aggregates)
    while relay.relay_once():
        pass
    assert wait_for(lambda: (saved[0]["id"], teacher_id) in consumer.seen)
    assert pending_user_events() == []
    relay.relay_once()
    time.sleep(0.3)
    assert [s for s in consumer.seen if s[1] == teacher_id] == [(saved[0]["id"], teacher_id)]
    relay.bus.reset()


def test_crash_after_publish_before_marking_republishes_and_the_consumer_dedupes(client, identity_runtime, consumer,
                                                                                rabbitmq, monkeypatch):
    from services.identity.models import User

    teacher_id = deactivate_teacher(client, identity_runtime)
    collection = User._get_collection()
    original = collection.update_one
    calls = {"n": 0}

    def crash_on_pull(filter_, update, *args, **kwargs):
        if "$pull" in update and calls["n"] == 0:
            calls["n"] += 1
            raise ConnectionError("process killed right after the broker confirmed")
        return original(filter_, update, *args, **kwargs)

    first = OutboxRelay(EventBus(rabbitmq, "identity", exchange=consumer.exchange), [User])
    monkeypatch.setattr(type(collection), "update_one", lambda self, *a, **k: crash_on_pull(*a, **k)
                        if self is collection else original(*a, **k), raising=True)
    with pytest.raises(ConnectionError):
        first.relay_once()
    monkeypatch.undo()
    second = OutboxRelay(EventBus(rabbitmq, "identity", exchange=consumer.exchange), [User])
    while second.relay_once():
        pass
    assert wait_for(lambda: consumer.worker.handled >= 1)
    time.sleep(0.5)
    deliveries = [s for s in consumer.seen if s[1] == teacher_id]
    assert len(deliveries) == 1  # published twice, handled once
    assert pending_user_events() == []
    first.bus.reset()
    second.bus.reset()


def test_broker_down_writes_succeed_and_events_flow_when_it_returns(client, identity_runtime, consumer, rabbitmq):
    from services.identity.models import User

    proxy = TcpProxy(5672).up()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
    relay = OutboxRelay(EventBus(url, "identity", exchange=consumer.exchange), [User], poll_seconds=0.1)
    relay.start()
    try:
        proxy.down()  # the broker is gone for the service
        teacher_id = deactivate_teacher(client, identity_runtime)  # the write still succeeds (200)
        time.sleep(1.0)
        assert any(e["payload"].get("user_id") == teacher_id for e in pending_user_events())
        assert not any(s[1] == teacher_id for s in consumer.seen)
        proxy.up()  # the broker is back
        assert wait_for(lambda: any(s[1] == teacher_id for s in consumer.seen), timeout=20)
        assert wait_for(lambda: pending_user_events() == [], timeout=5)
    finally:
        relay.stop()
        relay.join(5)
        relay.bus.reset()
        proxy.down()


def test_concurrent_update_is_a_conflict_not_a_lost_event(identity_runtime, demo):
    from services.identity import events
    from services.identity.models import User
    from shared.errors import DomainError

    first = User.objects(school="999001", username="teacher01").first()
    second = User.objects(school="999001", username="teacher01").first()
    first.display_name = "A"
    save_with_events(first, [events.user_updated(first)])
    second.display_name = "B"
    with pytest.raises(DomainError) as info:
        save_with_events(second, [events.user_updated(second)])
    assert info.value.code == "conflict"
    stored = User._get_collection().find_one({"_id": first.id})
    assert stored["display_name"] == "A"
    assert [i["event"]["payload"]["display_name"] for i in stored["outbox"] if i["event"]["type"].endswith("updated.v1")] == ["A"]


def test_events_carry_the_trace_context_they_were_caused_in(identity_runtime, demo):
    from opentelemetry import trace

    from services.identity import domain
    from shared.auth import Principal
    from shared.tracing import init_tracing, span

    init_tracing("test")
    admin = Principal(user_id="x", username="admin", school="999001", city="TPE", roles=("school_admin",), issued_at=0)
    with span("identity", "test-request") as current:
        user = domain.create_user(identity_runtime.state["identity"], admin, "999001", username=f"u{uuid.uuid4().hex[:6]}",
                                  display_name="x", roles=["subject_teacher"], password="long-enough-pass")
        trace_id = format(current.get_span_context().trace_id, "032x")
    from services.identity.models import User

    stored = User._get_collection().find_one({"_id": user.id})
    assert trace_id in stored["outbox"][0]["trace"]["traceparent"]
    assert trace.get_current_span() is not None
