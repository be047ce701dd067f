"""Records service: its spec (aggregates with outboxes, the user directory subscription, API) and app factory."""
from __future__ import annotations

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec
from shared.storage import media_store

from . import api, consumers, domain
from .imports import ImportRunner
from .models import Cadre, CounsellingRecord, Enrolment, Section


def _start(runtime: Runtime) -> None:
    runtime.state["media"] = media_store(runtime.settings.media_url)
    runtime.state["imports"] = ImportRunner(concurrency=2)


def _seed(runtime: Runtime) -> None:
    """Demo term, section and enrolment once identity's demo users reached the directory (background)."""
    return domain.seed_demo(runtime)


SPEC = ServiceSpec(name="records", aggregates=[Section, Enrolment, CounsellingRecord, Cadre], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=_seed)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("records"))
