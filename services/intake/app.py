"""Intake service: its spec (documents with outboxes, subscriptions, API) and its app factory.

``MEDIA_PUBLIC_URL`` (e.g. ``https://media.example.edu``): where browsers reach the media store, for the
presigned links intake hands out (downloads and direct uploads); default: the host in ``MEDIA_URL``.
``INTAKE_SWEEP_SECONDS`` (default 60; 0 turns it off): how often each intake process sweeps direct uploads that
were never completed.
"""
from __future__ import annotations

import logging
import os
import threading

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec
from shared.storage import FileMediaStore, media_store

from . import api, consumers
from .domain import Intake, sweep_direct_uploads
from .models import Outcome, Performance, Selection, YearLock

log = logging.getLogger("footprint.intake")


def _start(runtime: Runtime) -> None:
    store = media_store(runtime.settings.media_url, public_url=os.environ.get("MEDIA_PUBLIC_URL") or None)
    runtime.state["media"] = store
    intake = runtime.state["intake"] = Intake(store=store)
    interval = float(os.environ.get("INTAKE_SWEEP_SECONDS") or 60)
    if interval > 0 and not isinstance(store, FileMediaStore):
        threading.Thread(target=_sweep_every, args=(runtime, intake, interval), name="intake-upload-sweep",
                         daemon=True).start()


def _sweep_every(runtime: Runtime, intake: Intake, interval: float) -> None:
    while not runtime.stopping.wait(interval):
        try:
            swept = sweep_direct_uploads(intake)
            if swept:
                log.info("swept %d direct uploads", swept)
        except Exception:  # the store or documents are down: try again next round
            log.warning("sweeping direct uploads failed", exc_info=True)


SPEC = ServiceSpec(name="intake", aggregates=[Outcome, Performance, Selection, YearLock], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("intake"))
