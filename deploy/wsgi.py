"""Gunicorn entry points, one per process kind: ``gunicorn -c deploy/gunicorn.conf.py 'deploy.wsgi:identity()'``.

Gunicorn loads the app in each worker after forking (no preload), so the OpenTelemetry provider, bus
connections and background threads made here belong to the worker, never to the master.
"""
from __future__ import annotations

import importlib
import logging
import os

from shared.tracing import init_tracing

SERVICES = {"identity": "services.identity.app", "gateway": "gateway.app"}


def boot(name: str, *, start_workers: bool | None = None):
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    init_tracing(name)
    runtime = importlib.import_module(SERVICES[name]).create_runtime()
    if name == "identity" and os.environ.get("FOOTPRINT_SEED_DEMO") == "1":
        from services.identity.domain import seed_demo

        seed_demo(runtime.state["identity"])
    if runtime.settings.inproc_workers if start_workers is None else start_workers:
        runtime.start_workers(wait=False)
    return runtime


def identity():
    return boot("identity").create_app()


def gateway():
    return boot("gateway").create_app()
