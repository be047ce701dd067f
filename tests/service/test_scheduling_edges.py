"""The edge job: each window's opening, closing-in-N-days and close are announced once, through the outbox, however
many runners race (two worker replicas); time is the injected clock, never a sleep."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from services.scheduling import domain
from services.scheduling.models import Edge, Schedule
from tests.service.test_scheduling_support import A, TERM, outbox_events, taipei, world  # noqa: F401 (fixture)


def edge_events(kind: str | None = None) -> list[dict]:
    return [e for e in outbox_events(Edge) if kind is None or e["payload"]["kind"] == kind]


EDGE_OF = {"scheduling.window.opened.v1": "opened", "scheduling.closing.announced.v1": "closing",
           "scheduling.window.closed.v1": "closed"}


def types(events) -> list[str]:
    return sorted(EDGE_OF[e["type"]] for e in events)


def set_selection(world, starts=taipei(2024, 2, 23, 8), ends=taipei(2024, 2, 29, 17)):
    response = world.set_window("selection", starts, ends)
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def test_edges_follow_the_clock_once_each(world):
    set_selection(world)
    scheduling = world.scheduling
    before = domain.run_edges(scheduling, at=taipei(2024, 2, 23, 7, 59))
    assert "selection" not in {e.kind for e in before}
    opened = domain.run_edges(scheduling, at=taipei(2024, 2, 23, 8, 0))
    assert [(e.kind, e.edge) for e in opened if e.kind == "selection"] == [("selection", "opened")]
    assert domain.run_edges(scheduling, at=taipei(2024, 2, 24, 8)) == []  # nothing new
    closing = domain.run_edges(scheduling, at=taipei(2024, 2, 26, 17))  # 3 days before the end
    assert ("selection", "closing") in [(e.kind, e.edge) for e in closing]
    closed = domain.run_edges(scheduling, at=taipei(2024, 2, 29, 17))
    assert ("selection", "closed") in [(e.kind, e.edge) for e in closed]
    assert domain.run_edges(scheduling, at=taipei(2024, 2, 29, 18)) == []
    assert types(edge_events("selection")) == ["closed", "closing", "opened"]
    closing_event = next(e for e in edge_events("selection") if e["type"] == "scheduling.closing.announced.v1")
    assert closing_event["payload"]["days_before"] == 3
    assert closing_event["payload"]["window_id"] == f"{A}:{TERM}:selection"
    assert closing_event["payload"]["ends_at"] == "2024-02-29T09:00:00Z"


def test_a_window_moved_after_it_closed_is_opened_and_closed_again(world):
    set_selection(world)
    scheduling = world.scheduling
    domain.run_edges(scheduling, at=taipei(2024, 2, 23, 9))
    domain.run_edges(scheduling, at=taipei(2024, 3, 1))
    world.clock.at = taipei(2024, 3, 1)
    # extend selection by a day (submission moves too, or they would overlap)
    response = world.put(f"/schools/{A}/terms/{TERM}", {"windows": [
        {"kind": "selection", "starts_at": "2024-02-23T08:00:00+08:00", "ends_at": "2024-03-02T17:00:00+08:00"},
        {"kind": "submission", "starts_at": "2024-03-03T08:00:00+08:00", "ends_at": "2024-03-07T17:00:00+08:00"}]})
    assert response.status_code == 200, response.get_data(as_text=True)
    again = domain.run_edges(scheduling, at=taipei(2024, 3, 1, 1))
    assert sorted(e.edge for e in again if e.kind == "selection") == ["closing", "opened"]
    domain.run_edges(scheduling, at=taipei(2024, 3, 2, 17))
    # (the first closing was never due while the job looked: it ran before it and after the end)
    assert types(edge_events("selection")) == ["closed", "closed", "closing", "opened", "opened"]


def test_old_edges_are_not_announced_for_a_term_set_long_after(world):
    world.clock.at = taipei(2025, 1, 1)
    set_selection(world)
    assert domain.run_edges(world.scheduling, at=taipei(2025, 1, 1)) == []


def test_two_runners_racing_announce_each_edge_once(world):
    set_selection(world)
    moments = [taipei(2024, 2, 23, 8), taipei(2024, 2, 26, 17, 30), taipei(2024, 3, 1)]
    runners = [domain.Scheduling(clock=world.clock, closing_days=3, runner=f"worker-{n}") for n in range(2)]
    claimed: list[list] = [[], []]
    for at in moments:
        barrier = threading.Barrier(2)

        def run(n, at=at, barrier=barrier):
            barrier.wait()
            for _ in range(3):  # several rounds each, as a job ticking every few seconds would
                claimed[n].extend(domain.run_edges(runners[n], at=at))

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    ids = [e.id for batch in claimed for e in batch]
    assert len(ids) == len(set(ids)), "an edge was claimed twice"
    assert Edge.objects.count() == len(ids)
    events = edge_events()
    assert len(events) == len(ids) and len({e["id"] for e in events}) == len(ids)
    per_edge = {}
    for event in events:
        key = (event["payload"]["kind"], event["type"], event["payload"]["ends_at"])
        per_edge[key] = per_edge.get(key, 0) + 1
    assert set(per_edge.values()) == {1}
    assert types(edge_events("selection")) == ["closed", "closing", "opened"]
    assert {e.claimed_by for e in Edge.objects} <= {"worker-0", "worker-1"}


def test_the_closing_reminder_days_are_configurable(world):
    set_selection(world)  # ends 2024-02-29 17:00
    five = domain.Scheduling(clock=world.clock, closing_days=5)
    assert ("selection", "closing") not in [(e.kind, e.edge) for e in domain.run_edges(five, at=taipei(2024, 2, 24, 16))]
    assert ("selection", "closing") in [(e.kind, e.edge) for e in domain.run_edges(five, at=taipei(2024, 2, 24, 17))]
    event = next(e for e in edge_events("selection") if e["type"] == "scheduling.closing.announced.v1")
    assert event["payload"]["days_before"] == 5


def test_the_job_runs_in_the_worker_and_its_edges_reach_the_bus(tmp_path, monkeypatch):
    """With workers started (relay running), the job thread announces due edges and the relay publishes them."""
    from services.scheduling.app import create_runtime
    from shared.config import Settings
    from tests.conftest import test_documents
    from tests.tokens import TestTokens

    monkeypatch.setenv("SCHEDULING_JOB_SECONDS", "0.05")
    runtime = create_runtime(Settings(service="scheduling", bus_url="memory://", **test_documents(), var_dir=tmp_path,
                                      relay_poll_seconds=0.05, consumer_backoff_ms=10, consumer_max_retries=2))
    try:
        tokens = TestTokens()
        runtime.verifier = tokens.verifier
        client = runtime.create_app().test_client()
        now = domain.now()
        starts, ends = now - timedelta(days=1), now + timedelta(days=10)
        # the term around now, with a certification window open now
        year = now.year - 1911 - (0 if now.month >= 8 else 1)
        term = f"{year}0{1 if now.month >= 8 or now.month == 1 else 2}"
        response = client.put(f"/api/v1/scheduling/schools/{A}/terms/{term}/windows/certification",
                              headers=tokens.headers("adm", A, ["school_admin"]),
                              json={"starts_at": starts.isoformat(), "ends_at": ends.isoformat()})
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        runtime.start_workers()
        deadline = time.monotonic() + 60  # generous: it only costs time when the test fails anyway
        while time.monotonic() < deadline:
            opened = Edge.objects(kind="certification", edge="opened").first()
            if opened is not None and not Edge._get_collection().find_one({"_id": opened.id})["outbox"] \
                    and not Schedule._get_collection().find_one({"outbox.event.id": {"$exists": True}}):
                break
            time.sleep(0.05)
        opened = Edge.objects(kind="certification", edge="opened").first()
        assert opened is not None, "the job did not run"
        assert Edge._get_collection().find_one({"_id": opened.id})["outbox"] == [], "the relay did not publish it"
    finally:
        runtime.stop_workers()
