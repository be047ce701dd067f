"""Scheduling service: its spec (schedules and edges with outboxes, subscriptions, API) and its app factory.

``SCHEDULING_CLOSING_DAYS`` (default 3): how many days before a window closes ``scheduling.closing.announced.v1``
is announced (and students are reminded). ``SCHEDULING_JOB_SECONDS`` (default 60; 0 turns it off): how often
the edge job runs. It runs where the outbox relay runs — worker processes, and the embedded run — never in a
web process; any number of worker replicas may run it at once (each edge is claimed by one insert).
"""
from __future__ import annotations

import os

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec

from . import api, consumers
from .domain import Scheduling, run_edges
from .models import Edge, Schedule


def _start(runtime: Runtime) -> None:
    scheduling = runtime.state["scheduling"] = Scheduling(
        closing_days=int(os.environ.get("SCHEDULING_CLOSING_DAYS") or 3))
    runtime.every(float(os.environ.get("SCHEDULING_JOB_SECONDS") or 60), lambda: run_edges(scheduling),
                  name="window edge job")


SPEC = ServiceSpec(name="scheduling", aggregates=[Schedule, Edge], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=None)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("scheduling"))
