"""The whole bus topology in one place: every service's durable queues and bindings.

Every Footprint process declares all of it when it boots (idempotent, a few dozen declarations), so no
event is published before the queue of a service that wants it exists — whatever order processes start in.
(Identity seeds and publishes at once; records, which listens for those users, may start a second later.)

    python -m deploy.topology    # declare it against BUS_URL, e.g. from a deploy job
"""
from __future__ import annotations

import importlib
import os

from kombu import Connection

from shared.bus import Subscription, declare_consumer_queues


def subscriptions() -> list[Subscription]:
    from deploy.wsgi import SERVICES

    found = []
    for module in SERVICES.values():
        found += importlib.import_module(module).SPEC.subscriptions(None)
    return found


def declare(bus_url: str) -> int:
    """Declare every subscription's queues and bindings; returns how many subscriptions."""
    subs = subscriptions()
    with Connection(bus_url, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=3)
        channel = connection.channel()
        for sub in subs:
            declare_consumer_queues(channel, sub)
    return len(subs)


if __name__ == "__main__":
    url = os.environ.get("BUS_URL", "amqp://guest:guest@127.0.0.1:5672//")
    print(f"declared the queues of {declare(url)} subscriptions on {url.rsplit('@', 1)[-1]}")
