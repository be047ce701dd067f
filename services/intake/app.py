"""Intake service: its spec (documents with outboxes, subscriptions, API) and its app factory."""
from __future__ import annotations

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec
from shared.storage import media_store

from . import api, consumers
from .domain import Intake
from .models import Outcome, Performance


def _start(runtime: Runtime) -> None:
    store = media_store(runtime.settings.media_url)
    runtime.state["media"] = store
    runtime.state["intake"] = Intake(store=store)


SPEC = ServiceSpec(name="intake", aggregates=[Outcome, Performance], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("intake"))
