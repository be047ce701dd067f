"""The outbox: a state change and its events are saved together and relayed, whatever fails when."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared.bus import EventBus, events_exchange
from shared.outbox import LEASES, OutboxRelay, save_with_events
from tests.conftest import test_documents
from tests.service.test_bus_rabbitmq import Harness, event, wait_for
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


def flush(consumer) -> None:
    """Wait until the consumer has dealt with everything published to its exchange so far: a marker published now
    sits behind all of it in the one queue, and the one consumer takes them in order (no sleeping and hoping
    that a late duplicate would have shown up by then)."""
    marker = event(f"marker-{uuid.uuid4().hex[:8]}")
    consumer.bus.publish(marker)
    assert wait_for(lambda: (marker["id"], marker["payload"]["user_id"]) in consumer.seen), "the marker never arrived"


@pytest.fixture
def consumer(rabbitmq):
    seen: list = []
    harness = Harness(rabbitmq, lambda envelope, payload: seen.append((envelope.id, payload.user_id))).start()
    harness.seen = seen
    yield harness
    harness.close()


def pending_user_events():
    from services.identity.models import User

    return [item["event"] for doc in User._get_collection().find({"outbox.event.id": {"$exists": True}})
            for item in doc["outbox"]]


def expire_lease(relay: OutboxRelay) -> None:
    """What the store sees once a holder that died without releasing has not renewed for a whole lease."""
    leases = relay.aggregates[0]._get_collection().database[LEASES]
    assert leases.update_one({"_id": relay.lease_name, "holder": relay.holder},
                             {"$set": {"expires_at": datetime.now(timezone.utc) - timedelta(seconds=60)}}).matched_count == 1


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
    flush(consumer)
    assert [s for s in consumer.seen if s[1] == teacher_id] == [(saved[0]["id"], teacher_id)]
    relay.bus.reset()


def test_crash_after_publish_before_marking_republishes_and_the_consumer_dedupes(client, identity_runtime, consumer,
                                                                                rabbitmq, monkeypatch):
    from services.identity.models import User

    teacher_id = deactivate_teacher(client, identity_runtime)
    collection = User._get_collection()
    original = type(collection).update_one
    calls = {"n": 0}

    def crash_on_pull(self, filter_, update, *args, **kwargs):
        if self is collection and "$pull" in update and calls["n"] == 0:
            calls["n"] += 1
            raise ConnectionError("process killed right after the broker confirmed")
        return original(self, filter_, update, *args, **kwargs)

    first = OutboxRelay(EventBus(rabbitmq, "identity", exchange=consumer.exchange), [User])
    monkeypatch.setattr(type(collection), "update_one", crash_on_pull, raising=True)
    with pytest.raises(ConnectionError):
        first.relay_once()
    monkeypatch.undo()
    expire_lease(first)  # the dead process never renews its lease again
    second = OutboxRelay(EventBus(rabbitmq, "identity", exchange=consumer.exchange), [User])
    while second.relay_once():
        pass
    assert wait_for(lambda: consumer.worker.handled >= 1)
    flush(consumer)  # both copies were published before the marker
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
        # Let time pass: were the relay able to publish, it would within this second (it retries every 0.1 s at
        # first). There is no condition to wait on: the point is that nothing happens.
        time.sleep(1.0)
        assert any(e["payload"].get("user_id") == teacher_id for e in pending_user_events())
        assert not any(s[1] == teacher_id for s in consumer.seen)
        proxy.up()  # the broker is back
        # the relay's retry backoff grows to 10 s while the broker is away; then a reconnect and the backlog
        assert wait_for(lambda: any(s[1] == teacher_id for s in consumer.seen), timeout=120)
        assert wait_for(lambda: pending_user_events() == [], timeout=60)
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


# -- several relays of one service on one store: the lease ------------------------------------------------------

class RecordingBus(EventBus):
    """The real bus on memory://, noting every event it published (confirmed), in order, across relays."""

    def __init__(self, published: list, after_publish=None):
        super().__init__("memory://", "outboxtest", exchange=events_exchange(f"test.outbox.{uuid.uuid4().hex[:8]}"))
        self.published_ids = published
        self.after_publish = after_publish

    def publish(self, event: dict, *, trace_headers: dict | None = None) -> None:
        super().publish(event, trace_headers=trace_headers)
        self.published_ids.append(event["id"])
        if self.after_publish:
            self.after_publish(event)


@pytest.fixture
def parcels():
    """A private database (on the suite's store) for tests.relay_process.Parcel, the pretend service's aggregate."""
    from tests import relay_process

    documents = test_documents()
    relay_process.connect(documents["documents_url"], documents["documents_prefix"])
    return relay_process


def lease_of(relay: OutboxRelay) -> dict | None:
    return relay.aggregates[0]._get_collection().database[LEASES].find_one({"_id": relay.lease_name})


def stop_all(relays) -> None:
    for relay in relays:
        relay.stop()
    for relay in relays:
        relay.join(5)
        relay.bus.reset()


def test_the_relays_pending_query_is_an_index_scan(parcels):
    parcels.insert_parcels(50, 3)
    parcels.insert_with_events([parcels.Parcel(number=1000 + n) for n in range(50)], lambda parcel: [])
    relay = OutboxRelay(RecordingBus([]), [parcels.Parcel])
    collection = parcels.Parcel._get_collection()

    plan = relay.pending(collection).explain()["queryPlanner"]["winningPlan"]
    stages = []
    while plan:
        stages.append(plan)
        plan = plan.get("inputStage")
    assert "COLLSCAN" not in [stage["stage"] for stage in stages]
    scans = [stage for stage in stages if stage["stage"] == "IXSCAN"]
    assert [dict(scan["keyPattern"]) for scan in scans] == [{"outbox.event.id": 1}]
    # a multikey index scan still yields each pending document once, however many events it holds
    relay.batch = 1000
    assert sorted(doc["_id"] for doc in relay.pending(collection)) == sorted(
        doc["_id"] for doc in collection.find({"outbox.0": {"$exists": True}}))
    assert len(list(relay.pending(collection))) == 50


def test_three_relays_of_one_service_publish_each_event_once(parcels):
    ids = parcels.insert_parcels(300, 2)
    published: list = []
    # A lease far longer than the test: a holder starved for a few seconds on a loaded machine must not lose it
    # (that is the next tests' business), or the counts below would depend on the scheduler.
    relays = [OutboxRelay(RecordingBus(published), [parcels.Parcel], poll_seconds=0.05, batch=50, lease_seconds=600)
              for _ in range(3)]
    for relay in relays:
        relay.start()  # together: they race to create and take the lease
    try:
        assert wait_for(lambda: parcels.pending_count() == 0, timeout=120)
    finally:
        stop_all(relays)
    assert len(published) == len(ids) == 600
    assert sorted(published) == sorted(ids)  # every event, each exactly once
    assert sorted(relay.published for relay in relays) == [0, 0, 600]


def test_a_holder_that_died_without_releasing_is_replaced_once_its_lease_ran_out(parcels):
    ids = parcels.insert_parcels(10, 1)
    published: list = []
    # leases far longer than the test: only expire_lease (the store's view of a dead holder) ends one
    first = OutboxRelay(RecordingBus(published), [parcels.Parcel], batch=4, lease_seconds=600)
    second = OutboxRelay(RecordingBus(published), [parcels.Parcel], batch=4, lease_seconds=600)
    assert first.relay_once() == 4
    assert lease_of(first)["holder"] == first.holder
    assert second.relay_once() == 0 and not second.holds_lease  # first holds it: second waits
    # first dies here, mid-backlog, without releasing; a whole lease later the store sees its lease expired:
    expire_lease(first)
    while second.relay_once():
        pass
    assert second.published == 6 and lease_of(second)["holder"] == second.holder
    assert sorted(published) == sorted(ids)
    # had first only stalled, it finds out at its next renewal and publishes nothing more
    parcels.insert_parcels(1, 1)
    first._renew_at = 0.0
    assert first.relay_once() == 0 and not first.holds_lease


def test_a_relay_that_loses_its_lease_mid_batch_stops_before_the_next_event(parcels):
    ids = parcels.insert_parcels(20, 1)
    published: list = []
    second = OutboxRelay(RecordingBus(published), [parcels.Parcel], lease_seconds=600)  # ends only by expire_lease

    def steal_after_three(event):
        if len(published) == 3:  # first stalled past its lease; second took over meanwhile
            expire_lease(first)
            assert second.hold_lease()

    # renew before every event, so the loss shows at the very next one
    first = OutboxRelay(RecordingBus(published, after_publish=steal_after_three), [parcels.Parcel], renew_seconds=0,
                        lease_seconds=600)
    assert first.relay_once() == 3
    assert not first.holds_lease
    while second.relay_once():
        pass
    assert second.published == 17
    assert sorted(published) == sorted(ids)


def test_a_holder_that_stops_without_releasing_is_replaced_within_lease_and_standby(parcels):
    published: list = []
    relays = [OutboxRelay(RecordingBus(published), [parcels.Parcel], poll_seconds=0.05, lease_seconds=1.0,
                          standby_seconds=0.2) for _ in range(2)]
    for relay in relays:
        relay.start()
    try:
        assert wait_for(lambda: any(relay.holds_lease for relay in relays), timeout=30)
        holder, other = sorted(relays, key=lambda relay: not relay.holds_lease)
        holder.release = lambda: None  # the process dies: nobody lets go of the lease
        holder.stop()
        holder.join(60)  # it ends after its current round trip to the store: seconds at worst on a loaded machine
        assert not holder.is_alive()
        died = time.monotonic()
        assert wait_for(lambda: other.holds_lease, timeout=30)  # the bound is asserted on the next line
        took = time.monotonic() - died
        assert took <= 1.0 + 1.0, took  # the lease ran out (<= 1 s), then the standby's next try (0.2 s) took it
        ids = parcels.insert_parcels(5, 1)
        assert wait_for(lambda: other.published == 5, timeout=60)  # counted once its pass is over
        assert sorted(published) == sorted(ids)
    finally:
        stop_all(relays)


def test_a_clean_stop_releases_the_lease_and_a_successor_takes_over_at_once(parcels):
    published: list = []
    # a long lease: only the release can explain a takeover within seconds
    first, second = [OutboxRelay(RecordingBus(published), [parcels.Parcel], poll_seconds=0.05, lease_seconds=60,
                                 standby_seconds=0.2) for _ in range(2)]
    first.start()
    try:
        assert wait_for(lambda: first.holds_lease, timeout=30)
        second.start()
        first.stop()
        first.join(60)  # it releases on its way out; seconds at worst on a loaded machine
        assert not first.is_alive()
        lease = lease_of(first)
        assert lease["holder"] == first.holder and lease["expires_at"].year == 1970 and lease["released_at"]
        assert wait_for(lambda: second.holds_lease, timeout=30)  # still far inside the 60 s lease
        ids = parcels.insert_parcels(5, 1)
        assert wait_for(lambda: second.published == 5, timeout=60)
        assert sorted(published) == sorted(ids) and first.published == 0
    finally:
        stop_all([first, second])


def test_a_save_in_this_process_wakes_the_holder_at_once(parcels):
    from shared import outbox

    published: list = []
    # neither the poll nor the renewal would wake it within the test's deadline; only notify can
    relay = OutboxRelay(RecordingBus(published), [parcels.Parcel], poll_seconds=120, lease_seconds=600)
    outbox.add_listener(relay.notify)
    relay.start()
    try:
        assert wait_for(lambda: relay.holds_lease, timeout=30)
        ids = parcels.insert_parcels(3, 1)
        assert wait_for(lambda: sorted(published) == sorted(ids), timeout=60)  # still far inside the 120 s poll
    finally:
        outbox.remove_listener(relay.notify)
        stop_all([relay])
