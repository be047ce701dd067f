"""Transactional outbox without multi-document transactions.

Multi-document transactions need a MongoDB replica set and cost a round trip of their own; they are not
needed: a state change and the events it causes are written in ONE single-document write (atomic on any
MongoDB, standalone included): each aggregate document carries its not-yet-published
events in an ``outbox`` array. The relay publishes them (with publisher confirms) and only then pulls each
one from the array. A crash between publish and pull republishes on restart: delivery is at-least-once and
every consumer deduplicates by event id. A broker outage only delays the relay; writes keep succeeding.

Any number of processes of a service may run a relay over the same store: a lease document per service
(``outbox_leases``, see OutboxRelay) lets exactly one of them publish at a time.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Iterable

import mongoengine
from mongoengine import DictField, IntField, ListField
from pymongo.errors import DuplicateKeyError

from shared.errors import DomainError
from shared.events import Payload, make_event
from shared.tracing import current_carrier

log = logging.getLogger("footprint.outbox")

LEASES = "outbox_leases"  # one document per relay name (the service), in the service's own database
LEASE_SECONDS = 5.0  # how long a holder may go without renewing; renewed every third of it
STANDBY_SECONDS = 0.5  # how often a relay without the lease tries to take it
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # a released lease expired long ago

# Relays running in this process; a save wakes them so events leave at once rather than at the next poll.
_listeners: list = []


def add_listener(callback) -> None:
    _listeners.append(callback)


def remove_listener(callback) -> None:
    if callback in _listeners:
        _listeners.remove(callback)


def _notify() -> None:
    for callback in list(_listeners):
        callback()


class Aggregate(mongoengine.Document):
    """Base of every document that emits events. ``version`` guards against lost concurrent updates."""

    meta = {"abstract": True, "indexes": [{"fields": ["outbox.event.id"], "sparse": True}]}

    version = IntField(default=0)
    outbox = ListField(DictField(), default=list)


def outbox_item(payload: Payload, *, school: str | None, producer: str) -> dict:
    """An event plus the trace context it was caused in (the relay's publish span continues that trace)."""
    return {"event": make_event(payload, school=school, producer=producer), "trace": current_carrier()}


def save_with_events(doc: Aggregate, events: Iterable[dict] = ()) -> Aggregate:
    """Persist ``doc`` and append ``events`` (outbox items) to its outbox in one atomic document write.

    New documents are inserted with their events; existing ones are updated with ``$set``/``$unset`` of the
    changed fields, ``$push`` of the events and a version check (a concurrent writer gets 409 conflict).
    """
    events = list(events)
    doc.validate()
    if doc._created or doc.pk is None:
        doc.outbox = list(doc.outbox or []) + events
        doc.version = 1
        doc.save(force_insert=True, validate=False)
        if events:
            _notify()
        return doc
    update = doc._get_update_doc()
    for op in ("$set", "$unset"):
        fields = update.get(op, {})
        for key in [k for k in fields if k == "outbox" or k.startswith("outbox.") or k == "version"]:
            fields.pop(key)
        if op in update and not fields:
            update.pop(op)
    if events:
        update["$push"] = {"outbox": {"$each": events}}
    if not update:
        return doc
    update["$inc"] = {"version": 1}
    result = type(doc)._get_collection().update_one({"_id": doc.pk, "version": doc.version}, update)
    if result.matched_count != 1:
        raise DomainError("conflict", "The record changed meanwhile; reload and retry.")
    doc.version += 1
    doc._clear_changed_fields()
    if events:
        _notify()
    return doc


def insert_with_events(docs: list[Aggregate], events_of, *, batch: int = 1000) -> None:
    """Bulk insert of new aggregates, each with its own events (one document write each, batched)."""
    if not docs:
        return
    collection = type(docs[0])._get_collection()
    rows = []
    for doc in docs:
        doc.validate()
        doc.version = 1
        doc.outbox = list(events_of(doc))
        rows.append(doc.to_mongo().to_dict())
    for start in range(0, len(rows), batch):
        collection.insert_many(rows[start:start + batch], ordered=True)
    _notify()


class OutboxRelay(threading.Thread):
    """Publishes pending outbox events of the given aggregate classes while it holds the relay's lease.

    Every process of a service may run a relay (web processes in the embedded run, any number of
    deploy/worker.py replicas); only the holder of the lease ``outbox_leases/<name>`` in the service's own
    database publishes, so each event leaves once in the normal case. The lease lasts ``lease_seconds``;
    the holder renews it every ``renew_seconds`` (a third of the lease), also between the events of a
    long batch, and stops publishing the moment a renewal fails. Others retry every ``standby_seconds``,
    so a holder that died without letting go is replaced within about ``lease_seconds + standby_seconds``;
    one that stops cleanly (or hits a publish error) releases the lease and a successor takes over at its
    next retry. A holder that stalls past its lease (a publish waiting 10 s for a blocked broker's confirm)
    can duplicate the one event it has in flight; consumers deduplicate by event id anyway.
    """

    def __init__(self, bus, aggregates: list[type[Aggregate]], *, poll_seconds: float = 0.5, batch: int = 200,
                 name: str | None = None, lease_seconds: float = LEASE_SECONDS, renew_seconds: float | None = None,
                 standby_seconds: float = STANDBY_SECONDS):
        self.lease_name = name or bus.producer
        super().__init__(name=f"outbox-relay-{self.lease_name}", daemon=True)
        self.bus = bus
        self.aggregates = aggregates
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.renew_seconds = lease_seconds / 3 if renew_seconds is None else renew_seconds
        self.standby_seconds = standby_seconds
        # Unique per relay, not per process: two relays in one process (tests) must not share a lease.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._lease_until = 0.0  # time.monotonic() before which our lease is certainly still valid
        self._renew_at = 0.0
        self._ever_held = False
        self.published = 0

    def notify(self) -> None:
        """Wake the relay now (called after a write in this process, to cut latency below the poll interval)."""
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    # -- the lease ------------------------------------------------------------------------------------------

    def _leases(self):
        return self.aggregates[0]._get_collection().database[LEASES]

    @property
    def holds_lease(self) -> bool:
        return time.monotonic() < self._lease_until

    def hold_lease(self) -> bool:
        """True if this relay holds the lease now, renewing (or taking) it when due; False if another does."""
        now = time.monotonic()
        if now < self._renew_at and now < self._lease_until:
            return True
        return self._take()

    def _take(self) -> bool:
        sent = time.monotonic()
        leases = self._leases()
        # The store's clock decides expiry ($$NOW), so the processes' clocks never matter. Dates are compared as
        # milliseconds ($toLong): SecantusDB's $lt/$cmp treat any two dates as equal. And no upsert here: MongoDB
        # refuses $expr in an upsert's filter, so the lease document is created apart, once (_id only).
        taken = {"_id": self.lease_name,
                 "$or": [{"holder": self.holder},
                         {"$expr": {"$lt": [{"$toLong": "$expires_at"}, {"$toLong": "$$NOW"}]}}]}
        update = [{"$set": {"holder": self.holder, "renewed_at": "$$NOW",
                            "expires_at": {"$add": ["$$NOW", int(self.lease_seconds * 1000)]}}}]
        try:
            doc = leases.find_one_and_update(taken, update, projection={"_id": 1})
            if doc is None and leases.find_one({"_id": self.lease_name}, {"_id": 1}) is None:  # first relay ever
                try:
                    leases.update_one({"_id": self.lease_name},
                                      {"$setOnInsert": {"holder": None, "expires_at": _EPOCH}}, upsert=True)
                except DuplicateKeyError:  # another relay created it at the same moment; fine
                    pass
                doc = leases.find_one_and_update(taken, update, projection={"_id": 1})
        except Exception:
            self._lease_until = self._renew_at = 0.0  # unknown: publish nothing until a renewal succeeds
            raise
        if doc is None:
            if self._lease_until:
                log.warning("outbox relay %s lost the lease %s", self.holder, self.lease_name)
            self._lease_until = self._renew_at = 0.0
            return False
        if not self._lease_until:
            log.info("outbox relay %s holds the lease %s", self.holder, self.lease_name)
        # Counted from before the request: the store's expiry (its now + lease) is never earlier than this.
        self._lease_until = sent + self.lease_seconds
        self._renew_at = sent + self.renew_seconds
        self._ever_held = True
        return True

    def release(self) -> None:
        """Let go of the lease (clean stop, or this relay cannot publish): a successor takes it at once."""
        self._lease_until = self._renew_at = 0.0
        if not self._ever_held:
            return
        try:
            self._leases().update_one({"_id": self.lease_name, "holder": self.holder},
                                      {"$set": {"expires_at": _EPOCH}, "$currentDate": {"released_at": True}})
        except Exception as exc:  # the store is unreachable: the lease simply runs out
            log.warning("outbox relay %s could not release the lease %s: %s", self.holder, self.lease_name, exc)

    # -- relaying -------------------------------------------------------------------------------------------

    def pending(self, collection):
        """The documents with pending events, found through the sparse index on ``outbox.event.id``
        (``outbox.0`` would scan the whole collection). Index order is event-id order (random uuids), not age."""
        return collection.find({"outbox.event.id": {"$exists": True}}, {"outbox": 1}).limit(self.batch)

    def relay_once(self) -> int:
        """Publish pending events (a batch per aggregate class) if this relay holds the lease; returns how many.
        Stops early when the lease is lost or the relay is stopping. Raises if the broker refuses or is down."""
        count = 0
        try:
            for model in self.aggregates:
                collection = model._get_collection()
                if not self.hold_lease():
                    return count
                for doc in list(self.pending(collection)):
                    for item in doc["outbox"]:
                        if self._halt.is_set() or not self.hold_lease():
                            return count
                        event = item["event"]
                        self.bus.publish(event, trace_headers=item.get("trace") or {})
                        collection.update_one({"_id": doc["_id"]}, {"$pull": {"outbox": {"event.id": event["id"]}}})
                        count += 1
            return count
        finally:
            self.published += count

    def run(self) -> None:
        backoff = self.poll_seconds
        try:
            while not self._halt.is_set():
                try:
                    moved = self.relay_once()
                    backoff = self.poll_seconds
                    if moved:
                        continue  # drain quickly while there is a backlog
                except Exception as exc:  # broker down, refused publish, store hiccup: keep events, retry later
                    log.warning("outbox relay paused: %s; retrying in %.1fs", exc, backoff)
                    self.bus.reset()
                    self.release()  # a replica that can reach the broker may take over meanwhile
                    self._halt.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                if self.holds_lease:  # idle holder: wake in time to renew
                    timeout = min(self.poll_seconds, max(0.0, self._renew_at - time.monotonic()))
                else:
                    timeout = self.standby_seconds
                self._wake.wait(timeout)
                self._wake.clear()
        finally:
            self.release()
