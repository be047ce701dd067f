"""Upload windows: intake enforces the 成果上傳 / 多元表現上傳 windows scheduling announces (scheduling.window.scheduled.v1,
projected; no call to scheduling), 409 window_closed outside them; a school and term without a window is not
restricted; a change applies at once, on every app reading the projection, and an older announcement never
overrides a newer one."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.intake.models import Window
from shared.events import WindowSet
from tests.service.test_intake_support import (A, B, TERM, TERM2, event, pdf, problem_of,
                                               world)  # noqa: F401 (fixture)

OUTCOMES = "/api/v1/intake/outcomes"
PERFORMANCES = "/api/v1/intake/performances"
HOUR = timedelta(hours=1)


def now() -> datetime:
    return datetime.now(timezone.utc)


def announce(world, kind: str, starts: datetime, ends: datetime, *, school: str = A, term: str = TERM,
             revision: int = 1, at: datetime | None = None) -> dict:
    body = event(WindowSet(window_id=f"{school}:{term}:{kind}", school=school, term=term, kind=kind, starts_at=starts,
                           ends_at=ends, revision=revision, set_by="adm"),
                 school=school, producer="scheduling", at=at)
    world.deliver(body)
    return body


def start_outcome(world, user: str = "s1", section: str = "SEC-A1"):
    return world.client.post(OUTCOMES, headers=world.h(user), json={"section_id": section, "brief": "我的數學小論文"})


def new_performance(world, **fields):
    body = {"category": "competition", "name": "全國科展", "organiser": "教育部", "start_date": "2023-09-01",
            "end_date": "2023-09-03", "hours": 12, "brief": "科展佳作", "result": "佳作", "term": TERM, **fields}
    return world.client.post(PERFORMANCES, headers=world.h("s1"), json=body)


def test_without_a_window_nothing_is_restricted(world):
    item = world.outcome()
    assert world.upload(item, pdf()).status_code == 201
    assert world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1")).status_code == 200
    assert new_performance(world).status_code == 201
    assert Window.objects.count() == 0


def test_inside_the_window_uploads_go_through(world):
    announce(world, "outcome_upload", now() - HOUR, now() + HOUR)
    item = world.outcome()
    assert world.upload(item, pdf()).status_code == 201
    response = world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1"))
    assert response.status_code == 200, response.get_data(as_text=True)


def test_after_the_window_every_change_of_an_outcome_is_409_window_closed(world):
    item = world.outcome()  # started while no window was known
    ends = datetime(2020, 1, 15, 9, 0, tzinfo=timezone.utc)  # 17:00 Taiwan time
    announce(world, "outcome_upload", ends - timedelta(days=30), ends)
    body = problem_of(start_outcome(world), 409, "window_closed")
    assert body["message"]["zh-TW"] == "成果上傳期間為 2019-12-16 17:00 至 2020-01-15 17:00（臺灣時間），目前已經截止。"
    assert "course outcome upload" in body["message"]["en"] and "2020-01-15 17:00" in body["message"]["en"]
    assert body["window"] == {"kind": "outcome_upload", "term": TERM, "starts_at": "2019-12-16T17:00:00+08:00",
                              "ends_at": "2020-01-15T17:00:00+08:00"}
    problem_of(world.upload(item, pdf()), 409, "window_closed")
    direct = world.client.post(f"{OUTCOMES}/{item['id']}/uploads", headers=world.h("s1"),
                               json={"name": "a.pdf", "size": 10, "sha256": "0" * 64, "kind": "document"})
    problem_of(direct, 409, "window_closed")
    problem_of(world.client.patch(f"{OUTCOMES}/{item['id']}", headers=world.h("s1"), json={"brief": "改"}), 409,
               "window_closed")
    problem_of(world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1")), 409, "window_closed")
    problem_of(world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")), 409, "window_closed")
    assert world.get(f"{OUTCOMES}/{item['id']}").status_code == 200  # reading is not restricted


def test_before_the_window_opens_it_says_so(world):
    announce(world, "outcome_upload", now() + 24 * HOUR, now() + 48 * HOUR)
    body = problem_of(start_outcome(world), 409, "window_closed")
    assert "尚未開始" in body["message"]["zh-TW"] and "has not opened yet" in body["message"]["en"]


def test_a_window_binds_only_its_school_and_term(world):
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - 24 * HOUR, school=B)
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - 24 * HOUR, term=TERM2)
    assert start_outcome(world).status_code == 201                       # school A, TERM: no window known
    problem_of(start_outcome(world, section="SEC-A3"), 409, "window_closed")  # s1's TERM2 section
    problem_of(world.client.post(OUTCOMES, headers=world.h("b1"), json={"section_id": "SEC-B1", "brief": "乙"}), 409,
               "window_closed")


def test_a_change_takes_effect_at_once_on_every_app_and_stale_news_is_ignored(world):
    other_replica = world.runtime.create_app().test_client()  # another web process reading the same projection
    t0 = now() - timedelta(minutes=5)
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - 24 * HOUR, at=t0)
    problem_of(start_outcome(world), 409, "window_closed")
    reopened = announce(world, "outcome_upload", now() - 48 * HOUR, now() + 24 * HOUR, revision=2,
                        at=t0 + timedelta(minutes=1))
    assert start_outcome(world).status_code == 201
    response = other_replica.post(OUTCOMES, headers=world.h("s2"), json={"section_id": "SEC-A1", "brief": "x"})
    assert response.status_code == 201, response.get_data(as_text=True)
    # an older announcement arriving late, and the same one again, change nothing
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - 24 * HOUR, at=t0 - timedelta(minutes=1))
    world.deliver(reopened)
    assert Window.objects.get(window_id=f"{A}:{TERM}:outcome_upload").revision == 2
    assert start_outcome(world, "s2").status_code == 201
    # and closing it again applies at once on both
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - HOUR, revision=3, at=t0 + timedelta(minutes=2))
    problem_of(start_outcome(world), 409, "window_closed")
    problem_of(other_replica.post(OUTCOMES, headers=world.h("s2"), json={"section_id": "SEC-A1", "brief": "x"}), 409,
               "window_closed")


def test_performances_follow_the_performance_upload_window(world):
    announce(world, "outcome_upload", now() - 48 * HOUR, now() - 24 * HOUR)  # another kind: no effect here
    assert new_performance(world).status_code == 201
    announce(world, "performance_upload", now() - 48 * HOUR, now() - 24 * HOUR)
    body = problem_of(new_performance(world), 409, "window_closed")
    assert "多元表現上傳" in body["message"]["zh-TW"]
    # without a term, the year's windows decide: one of them open is enough
    year = TERM[:3]
    problem_of(new_performance(world, term=None, year=year), 409, "window_closed")
    announce(world, "performance_upload", now() - HOUR, now() + HOUR, term=TERM2)
    assert new_performance(world, term=None, year=year).status_code == 201
    assert new_performance(world, term=TERM2, year=year).status_code == 201
