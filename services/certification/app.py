"""Certification service: its spec (the certification aggregate, subscriptions, API) and its app factory."""
from __future__ import annotations

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec

from . import api, consumers
from .models import Certification, Substitute

SPEC = ServiceSpec(name="certification", aggregates=[Certification, Substitute], subscriptions=consumers.subscriptions,
                   install_api=api.install, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("certification"))
