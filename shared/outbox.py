"""Transactional outbox without multi-document transactions.

MongoDB needs a replica set for transactions and mongomock has none, so a state change and the events it
causes are written in ONE single-document write: each aggregate document carries its not-yet-published
events in an ``outbox`` array. The relay publishes them (with publisher confirms) and only then pulls each
one from the array. A crash between publish and pull republishes on restart: delivery is at-least-once and
every consumer deduplicates by event id. A broker outage only delays the relay; writes keep succeeding.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable

import mongoengine
from mongoengine import DictField, IntField, ListField

from shared.errors import DomainError
from shared.events import Payload, make_event
from shared.tracing import current_carrier

log = logging.getLogger("footprint.outbox")

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
    """Publishes pending outbox events of the given aggregate classes, oldest document first."""

    def __init__(self, bus, aggregates: list[type[Aggregate]], *, poll_seconds: float = 0.5, batch: int = 200):
        super().__init__(name=f"outbox-relay-{bus.producer}", daemon=True)
        self.bus = bus
        self.aggregates = aggregates
        self.poll_seconds = poll_seconds
        self.batch = batch
        self._wake = threading.Event()
        self._halt = threading.Event()
        self.published = 0

    def notify(self) -> None:
        """Wake the relay now (called after a write in this process, to cut latency below the poll interval)."""
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()

    def relay_once(self) -> int:
        """Publish every pending event once; returns how many. Raises if the broker refuses or is down."""
        count = 0
        for model in self.aggregates:
            collection = model._get_collection()
            pending = collection.find({"outbox.0": {"$exists": True}}, {"outbox": 1}).limit(self.batch)
            for doc in list(pending):
                for item in doc["outbox"]:
                    event = item["event"]
                    self.bus.publish(event, trace_headers=item.get("trace") or {})
                    collection.update_one({"_id": doc["_id"]}, {"$pull": {"outbox": {"event.id": event["id"]}}})
                    count += 1
        self.published += count
        return count

    def run(self) -> None:
        backoff = self.poll_seconds
        while not self._halt.is_set():
            try:
                moved = self.relay_once()
                backoff = self.poll_seconds
                if moved:
                    continue  # drain quickly while there is a backlog
            except Exception as exc:  # broker down, refused publish, store hiccup: keep events, retry later
                log.warning("outbox relay paused: %s; retrying in %.1fs", exc, backoff)
                self.bus.reset()
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

