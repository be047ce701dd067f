"""Gunicorn entry points, one per process kind: ``gunicorn -c deploy/gunicorn.conf.py 'deploy.wsgi:identity()'``.

Gunicorn loads the app in each worker after forking (no preload), so the OpenTelemetry provider, bus
connections and background threads made here belong to the worker, never to the master.
"""
from __future__ import annotations

import importlib
import logging
import os

from mongoengine.errors import NotUniqueError

from shared.tracing import init_tracing

# Every process kind, in start order: identity first (others fetch its signing keys), the gateway last.
SERVICES = {"identity": "services.identity.app", "records": "services.records.app", "intake": "services.intake.app",
            "certification": "services.certification.app", "scheduling": "services.scheduling.app",
            "exchange": "services.exchange.app", "gateway": "gateway.app"}


def boot(name: str, *, start_workers: bool | None = None):
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    init_tracing(name)
    runtime = importlib.import_module(SERVICES[name]).create_runtime()
    from deploy.topology import declare

    declare(runtime.settings.bus_url)  # every service's queues exist before this process publishes anything
    if runtime.settings.inproc_workers if start_workers is None else start_workers:
        runtime.start_workers(wait=False)
    if os.environ.get("FOOTPRINT_SEED_DEMO") == "1" and runtime.spec.seed_demo:
        for attempt in range(10):
            try:
                runtime.spec.seed_demo(runtime)
                break
            except NotUniqueError:  # another process of this service seeded the same row at the same moment;
                continue            # the seed is idempotent, so go again: it skips what exists now
    return runtime


def app(name: str):
    """``gunicorn 'deploy.wsgi:app("records")'``: the web app of any process kind."""
    return boot(name).create_app()


def identity():
    return app("identity")


def gateway():
    return app("gateway")
