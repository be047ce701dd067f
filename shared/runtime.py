"""Wiring of one service process: documents, bus, outbox relay, consumers and the Flask app.

A service describes itself with a ServiceSpec (its aggregates, subscriptions and API); the Runtime turns it
into a running process the same way in the embedded run, under gunicorn, and in a separate worker process.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from flask import Flask

from shared import outbox as outbox_module
from shared.auth import TokenVerifier
from shared.bus import ConsumerWorker, EventBus, ProcessedEvents, Subscription, wait_ready
from shared.config import Settings
from shared.documents import connect_documents, database, ping
from shared.http import create_app
from shared.outbox import Aggregate, OutboxRelay

log = logging.getLogger("footprint.runtime")


@dataclass
class ServiceSpec:
    name: str
    aggregates: list[type[Aggregate]] = field(default_factory=list)
    # (settings, runtime) -> subscriptions; a function so handlers can close over the runtime's state
    subscriptions: Callable[["Runtime"], list[Subscription]] = lambda runtime: []
    # (app, runtime) -> None: registers the service's API on the app
    install_api: Callable[[Flask, "Runtime"], None] | None = None
    on_start: Callable[["Runtime"], None] | None = None
    # demo data for the embedded run and `make services` (FOOTPRINT_SEED_DEMO=1); may wait for events
    seed_demo: Callable[["Runtime"], object] | None = None


class Runtime:
    def __init__(self, spec: ServiceSpec, settings: Settings, *, verifier: TokenVerifier | None = None):
        self.spec = spec
        self.settings = settings
        connect_documents(spec.name, settings.documents_url, db_name=f"{settings.documents_prefix}_{spec.name}")
        self.bus = EventBus(settings.bus_url, spec.name)
        self.relay = OutboxRelay(self.bus, spec.aggregates, poll_seconds=settings.relay_poll_seconds)
        self.verifier = verifier or TokenVerifier(jwks_url=settings.jwks_url)
        self.processed = ProcessedEvents(database(spec.name))
        self.consumers: list[ConsumerWorker] = []
        self.state: dict = {}  # service-specific objects shared by API and consumers (e.g. signing keys)
        self.stopping = threading.Event()  # background work of the service (seeding, jobs) ends when this is set
        if spec.on_start:
            spec.on_start(self)

    def every(self, seconds: float, job: Callable[[], object], *, name: str, workers_only: bool = True) -> None:
        """Run ``job`` every ``seconds`` on a thread of its own until the runtime stops (0 or less: never).

        ``workers_only``: only while this process runs the outbox relay — worker processes and the embedded run, never
        a gunicorn web process (start_workers starts the relay). A failing round (the store or a peer is down) is
        logged and the next round tries again; what a round returns, if truthy, is logged."""
        if seconds <= 0:
            return

        def loop() -> None:
            while not self.stopping.wait(seconds):
                if workers_only and not self.relay.is_alive():
                    continue
                try:
                    done = job()
                    if done:
                        log.info("%s: %s", name, done)
                except Exception:
                    log.warning("%s failed; trying again in %ss", name, seconds, exc_info=True)

        threading.Thread(target=loop, name=name, daemon=True).start()

    def create_app(self) -> Flask:
        app = create_app(self.spec.name, ready_checks={"documents": lambda: ping(self.spec.name), "bus": self.bus.ping})
        app.extensions["footprint.verifier"] = self.verifier
        app.extensions["footprint.runtime"] = self
        if self.spec.install_api:
            self.spec.install_api(app, self)
        return app

    def start_workers(self, *, wait: bool = True) -> None:
        """Start the outbox relay and the consumers (in this process)."""
        if self.spec.aggregates and not self.relay.is_alive():
            outbox_module.add_listener(self.relay.notify)
            self.relay.start()
        subs = self.spec.subscriptions(self)
        for sub in subs:
            sub.prefetch = self.settings.consumer_prefetch
            sub.max_retries = self.settings.consumer_max_retries
            sub.backoff_ms = self.settings.consumer_backoff_ms
            worker = ConsumerWorker(self.settings.bus_url, self.spec.name, sub, self.processed)
            worker.start()
            self.consumers.append(worker)
        if wait:
            wait_ready(self.consumers)

    def stop_workers(self) -> None:
        self.stopping.set()
        outbox_module.remove_listener(self.relay.notify)
        self.relay.stop()
        for worker in self.consumers:
            worker.stop()
        for worker in self.consumers:
            worker.join(timeout=3)
        if self.relay.is_alive():
            self.relay.join(timeout=3)
        self.consumers = []
        self.bus.reset()
