"""A tiny aggregate with events, and one outbox relay process of a pretend service over it, for the outbox
lease tests (tests/service/test_outbox.py in-process, tests/system/test_outbox_replicas.py as processes).

    python -m tests.relay_process --documents-url URL --prefix P --bus-url AMQP --exchange NAME

connects to ``<P>_outboxtest`` on the store, relays ``Parcel`` events to the exchange until SIGTERM (a clean
stop: the lease is released) or SIGKILL (not), prints one JSON line ``{"holder": …}`` once its relay runs and
one ``{"published": n}`` line on a clean exit. ``--lease`` sets the lease's length in seconds. ``--no-lease``
makes every relay believe it holds the lease, to show that the replica test catches the duplicates a relay
without the lease produces.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from mongoengine import IntField

from shared.bus import EventBus, events_exchange
from shared.documents import connect_documents
from shared.events import UserDeactivated
from shared.outbox import LEASE_SECONDS, Aggregate, OutboxRelay, insert_with_events, outbox_item

SERVICE = "outboxtest"  # the relay's (and its lease's) name, and the documents' alias


class Parcel(Aggregate):
    meta = {"db_alias": SERVICE, "collection": "parcels"}

    number = IntField(required=True)


def connect(documents_url: str, prefix: str) -> None:
    connect_documents(SERVICE, documents_url, db_name=f"{prefix}_{SERVICE}")


def parcel_event(number: int, k: int) -> dict:
    """An outbox item of a catalogue event type (the bus only carries catalogue events)."""
    return outbox_item(UserDeactivated(user_id=f"parcel-{number}-{k}", school="999001",
                                       deactivated_at="2026-11-23T00:00:00Z", reason="outbox lease test"),
                       school="999001", producer=SERVICE)


def insert_parcels(count: int, events_each: int) -> list[str]:
    """``count`` parcels with ``events_each`` pending events each; returns the ids of the events it made.

    (Not read back from the store: a relay already running may publish and pull some before a read-back.)"""
    parcels = [Parcel(number=n) for n in range(count)]
    made: list[str] = []

    def events_of(parcel: Parcel) -> list[dict]:
        items = [parcel_event(parcel.number, k) for k in range(events_each)]
        made.extend(item["event"]["id"] for item in items)
        return items

    insert_with_events(parcels, events_of)
    return made


def pending_count() -> int:
    return sum(len(doc["outbox"]) for doc in Parcel._get_collection().find({"outbox.event.id": {"$exists": True}},
                                                                         {"outbox": 1}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--bus-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--lease", type=float, default=LEASE_SECONDS)
    parser.add_argument("--no-lease", action="store_true")
    args = parser.parse_args(argv)

    if args.no_lease:
        OutboxRelay.hold_lease = lambda self: True
    connect(args.documents_url, args.prefix)
    relay = OutboxRelay(EventBus(args.bus_url, SERVICE, exchange=events_exchange(args.exchange)), [Parcel],
                        poll_seconds=args.poll, lease_seconds=args.lease)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay.start()
    print(json.dumps({"holder": relay.holder}), flush=True)
    stop.wait()
    relay.stop()
    relay.join(10)
    relay.bus.reset()
    print(json.dumps({"published": relay.published}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
