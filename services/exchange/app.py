"""Exchange service: its spec (submissions with outboxes, subscriptions, API) and its app factory.

``CENTRAL_URL`` (default the sandbox on 127.0.0.1:8190) and ``CENTRAL_TOKEN``: the central database.
``EXCHANGE_SEND_TIMEOUT`` (default 60 s): how long one send waits for the answer. ``EXCHANGE_RETRY_SECONDS``
(default 2): the first retry's delay, doubled on each further one. ``EXCHANGE_JOB_SECONDS`` (default 1; 0 turns it
off): how often the job looks for packages to build and send. The job runs where the outbox relay runs —
worker processes, and the embedded run — never in a web process; any number of workers may run it (claims).
"""
from __future__ import annotations

import os

from shared.config import CENTRAL_SANDBOX_PORT, Settings
from shared.runtime import Runtime, ServiceSpec
from shared.storage import media_store

from . import api, consumers
from .models import Submission
from .send import Exchange, run_once


def _start(runtime: Runtime) -> None:
    exchange = runtime.state["exchange"] = Exchange(
        store=media_store(runtime.settings.media_url),
        central_url=os.environ.get("CENTRAL_URL") or f"http://127.0.0.1:{CENTRAL_SANDBOX_PORT}",
        central_token=os.environ.get("CENTRAL_TOKEN") or None,
        send_timeout=float(os.environ.get("EXCHANGE_SEND_TIMEOUT") or 60),
        retry_seconds=float(os.environ.get("EXCHANGE_RETRY_SECONDS") or 2))
    runtime.every(float(os.environ.get("EXCHANGE_JOB_SECONDS") or 1), lambda: job(exchange), name="exchange job")


def job(exchange: Exchange) -> dict | None:
    """One round: build and send what is due; what it did, when it did anything (the runtime logs it)."""
    counts = run_once(exchange)
    return counts if any(counts.values()) else None


SPEC = ServiceSpec(name="exchange", aggregates=[Submission], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("exchange"))
