"""Intake service: its spec (documents with outboxes, subscriptions, API) and its app factory.

``MEDIA_PUBLIC_URL`` (e.g. ``https://media.example.edu``): where browsers reach the media store, for the
presigned links intake hands out (downloads and direct uploads); default: the host in ``MEDIA_URL``.
``INTAKE_SWEEP_SECONDS`` (default 60; 0 turns it off): how often each intake process sweeps direct uploads that
were never completed.
"""
from __future__ import annotations

import os

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec
from shared.storage import FileMediaStore, media_store

from . import api, consumers
from .domain import Intake, sweep_direct_uploads
from .models import Outcome, Performance, Selection, YearLock


def _start(runtime: Runtime) -> None:
    store = media_store(runtime.settings.media_url, public_url=os.environ.get("MEDIA_PUBLIC_URL") or None)
    runtime.state["media"] = store
    intake = runtime.state["intake"] = Intake(store=store)
    if not isinstance(store, FileMediaStore):  # direct uploads exist only on S3/MinIO
        # Every process sweeps (not only workers): a sweep is idempotent, and web processes are where uploads start.
        runtime.every(float(os.environ.get("INTAKE_SWEEP_SECONDS") or 60), lambda: sweep_direct_uploads(intake),
                      name="direct upload sweep", workers_only=False)


SPEC = ServiceSpec(name="intake", aggregates=[Outcome, Performance, Selection, YearLock], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("intake"))
