"""The events scheduling emits (payload models live in shared.events, the catalogue)."""
from __future__ import annotations

from shared.events import WindowClosed, WindowClosing, WindowOpened, WindowSet
from shared.outbox import outbox_item

from .models import Edge, Schedule, Window

PRODUCER = "scheduling"


def window_id(school: str, term: str, kind: str) -> str:
    return f"{school}:{term}:{kind}"


def window_set(schedule: Schedule, window: Window) -> dict:
    return outbox_item(WindowSet(
        window_id=window_id(schedule.school, schedule.term, window.kind), school=schedule.school, term=schedule.term,
        kind=window.kind, starts_at=window.starts_at, ends_at=window.ends_at, revision=window.revision,
        set_by=window.updated_by), school=schedule.school, producer=PRODUCER)


def window_edge(edge: Edge, *, closing_days: int) -> dict:
    facts = {"window_id": window_id(edge.school, edge.term, edge.kind), "school": edge.school, "term": edge.term,
             "kind": edge.kind, "starts_at": edge.starts_at, "ends_at": edge.ends_at, "revision": edge.revision}
    if edge.edge == "opened":
        payload = WindowOpened(**facts)
    elif edge.edge == "closing":
        payload = WindowClosing(**facts, days_before=closing_days)
    else:
        payload = WindowClosed(**facts)
    return outbox_item(payload, school=edge.school, producer=PRODUCER)
