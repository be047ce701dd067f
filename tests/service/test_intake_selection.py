"""Selection (勾選): each school year a student selects at most 6 certified course outcomes and 10 diverse
performances (a school may set lower caps), only inside the 勾選 window once scheduling set one, never after the
year was locked by its submission. A selection is saved whole with a snapshot of its items (every file's sha256)
in intake.selection.changed.v1; a selected performance cannot change until it is unselected."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.intake.models import Selection, YearLock
from shared.events import WindowSet, parse_event
from tests.service.test_intake_support import (A, B, TERM, TERM2, event, pdf, png, problem_of, sha,
                                               world)  # noqa: F401 (fixture)

OUTCOMES = "/api/v1/intake/outcomes"
PERFORMANCES = "/api/v1/intake/performances"
YEAR = TERM[:3]
SELECTION = f"/api/v1/intake/selections/{YEAR}"
HOUR = timedelta(hours=1)


def certified(world, n: int = 1, *, user: str = "s1", section: str = "SEC-A1") -> list[dict]:
    """``n`` course outcomes of ``user``, each with a file, submitted and certified (the event as certification
    sends it)."""
    made = []
    for index in range(n):
        item = world.outcome(user, section, brief=f"成果 {index}")
        assert world.upload(item, pdf(), f"成果{index}.pdf", user=user).status_code == 201
        response = world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h(user))
        assert response.status_code == 200, response.get_data(as_text=True)
        world.certify(item, 1)
        made.append(world.get(f"{OUTCOMES}/{item['id']}", user).get_json())
    assert all(m["status"] == "certified" for m in made)
    return made


def select(world, outcomes=(), performances=(), *, user: str = "s1", year: str = YEAR):
    return world.client.put(f"/api/v1/intake/selections/{year}", headers=world.h(user),
                            json={"outcome_ids": [o["id"] for o in outcomes],
                                  "performance_ids": [p["id"] for p in performances]})


def outbox(world, user: str = "s1", year: str = YEAR) -> list:
    raw = world.raw(Selection, Selection.key(A, user, year)) or {"outbox": []}
    return [parse_event(entry["event"]) for entry in raw["outbox"]]


def announce(world, starts: datetime, ends: datetime, term: str = TERM2) -> None:
    world.deliver(event(WindowSet(window_id=f"{A}:{term}:selection", school=A, term=term, kind="selection",
                                  starts_at=starts, ends_at=ends, revision=1, set_by="admin"),
                        school=A, producer="scheduling"))


# ---- what can be selected --------------------------------------------------------------------------------

def test_a_student_selects_certified_outcomes_and_performances_with_every_sha256(world):
    world.set_policy(outcome_cap_per_term=9)
    outcomes = certified(world, 2)
    performance = world.performance()
    assert world.upload(performance, png(), "證明.png", kind="performances").status_code == 201
    response = select(world, outcomes, [performance])
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["id"], body["year"], body["revision"], body["locked"]) == (f"{A}:s1:{YEAR}", YEAR, 1, False)
    assert body["caps"] == {"outcomes": 6, "performances": 10}
    assert [o["id"] for o in body["outcomes"]] == [o["id"] for o in outcomes]
    assert body["outcomes"][0]["files"][0]["sha256"] == sha(pdf())
    assert body["performances"][0]["files"][0]["sha256"] == sha(png())
    assert world.get(SELECTION).get_json() == body

    [(envelope, payload)] = outbox(world)  # saved with the selection, in the same write
    assert envelope.type == "intake.selection.changed.v1" and envelope.school == A and envelope.producer == "intake"
    assert (payload.student_id, payload.year, payload.revision, payload.changed_by) == ("s1", YEAR, 1, "s1")
    assert [o.outcome_id for o in payload.outcomes] == [o["id"] for o in outcomes]
    assert payload.outcomes[0].files[0].sha256 == sha(pdf()) and payload.outcomes[0].course_code
    assert payload.performances[0].files[0].sha256 == sha(png()) and payload.performances[0].name == "全國科展"


def test_before_selecting_the_selection_is_empty(world):
    body = world.get(SELECTION).get_json()
    assert (body["revision"], body["outcomes"], body["performances"], body["locked"]) == (0, [], [], False)


def test_only_certified_outcomes_can_be_selected(world):
    draft = world.outcome()
    submitted = world.outcome(brief="送出")
    world.upload(submitted, pdf(), "a.pdf")
    assert world.client.post(f"{OUTCOMES}/{submitted['id']}/submit", headers=world.h("s1")).status_code == 200
    returned = world.outcome(brief="退回")
    world.upload(returned, pdf(), "b.pdf")
    world.client.post(f"{OUTCOMES}/{returned['id']}/submit", headers=world.h("s1"))
    world.send_back(returned, 1)
    body = problem_of(select(world, [draft, submitted, returned]), 422, "not_selectable")
    assert [e["field"] for e in body["errors"]] == ["outcome_ids[0]", "outcome_ids[1]", "outcome_ids[2]"]
    assert {e["code"] for e in body["errors"]} == {"not_certified"}
    assert world.raw(Selection, Selection.key(A, "s1", YEAR)) is None  # nothing written


def test_another_students_or_another_years_items_cannot_be_selected(world):
    (theirs,) = certified(world, 1, user="s2")
    other_year = world.performance(term=None, year="111")
    (mine,) = certified(world, 1)
    body = problem_of(select(world, [mine, theirs], [other_year]), 422, "not_selectable")
    assert [(e["field"], e["code"]) for e in body["errors"]] == [
        ("outcome_ids[1]", "not_yours_or_other_year"), ("performance_ids[0]", "not_yours_or_other_year")]
    assert select(world, [mine], [other_year], year="111").status_code == 422  # mine is of 112, not 111
    assert select(world, [], [other_year], year="111").status_code == 200


def test_the_national_caps_hold_and_a_school_may_set_lower_ones(world):
    world.set_policy(outcome_cap_per_term=9, performance_cap_per_year=20)
    outcomes = certified(world, 7)
    body = problem_of(select(world, outcomes), 422, "selection_cap_exceeded")
    assert body["errors"][0]["field"] == "outcomes" and body["caps"] == {"outcomes": 6, "performances": 10}
    assert select(world, outcomes[:6]).status_code == 200
    performances = [world.performance(name=f"表現 {n}") for n in range(11)]
    problem_of(select(world, outcomes[:6], performances), 422, "selection_cap_exceeded")
    assert select(world, outcomes[:6], performances[:10]).status_code == 200

    over = world.client.put(f"/api/v1/intake/schools/{A}/policy", headers=world.h("admin"),
                            json={"outcome_selection_cap": 7, "performance_cap_per_year": 20})
    problem_of(over, 422, "validation_failed")  # never above the national cap
    policy = world.set_policy(outcome_cap_per_term=9, performance_cap_per_year=20, outcome_selection_cap=3,
                              performance_selection_cap=2)
    assert (policy["outcome_selection_cap"], policy["performance_selection_cap"]) == (3, 2)
    problem_of(select(world, outcomes[:4]), 422, "selection_cap_exceeded")
    problem_of(select(world, outcomes[:3], performances[:3]), 422, "selection_cap_exceeded")
    assert select(world, outcomes[:3], performances[:2]).get_json()["caps"] == {"outcomes": 3, "performances": 2}


def test_bad_input_is_a_clear_422(world):
    (outcome,) = certified(world, 1)
    twice = world.client.put(SELECTION, headers=world.h("s1"),
                             json={"outcome_ids": [outcome["id"], outcome["id"]], "performance_ids": []})
    problem_of(twice, 422, "validation_failed")
    problem_of(world.client.put("/api/v1/intake/selections/11", headers=world.h("s1"), json={}), 422,
               "validation_failed")
    problem_of(world.client.put(SELECTION, headers=world.h("s1"), json={"outcome_ids": "x"}), 422,
               "validation_failed")
    problem_of(world.client.put(SELECTION, headers=world.h("t_math"), json={}), 403, "forbidden")


def test_the_same_selection_again_changes_and_announces_nothing(world):
    outcomes = certified(world, 2)
    assert select(world, outcomes).get_json()["revision"] == 1
    assert select(world, outcomes).get_json()["revision"] == 1
    assert len(outbox(world)) == 1
    reordered = select(world, outcomes[::-1]).get_json()
    assert reordered["revision"] == 2 and [o["id"] for o in reordered["outcomes"]] == [o["id"] for o in outcomes[::-1]]
    assert [payload.revision for _, payload in outbox(world)] == [1, 2]
    assert select(world, []).get_json()["outcomes"] == []


# ---- a selected performance stays as selected ----------------------------------------------------------------

def test_a_selected_performance_cannot_change_until_unselected(world):
    performance = world.performance()
    assert select(world, [], [performance]).status_code == 200
    path = f"{PERFORMANCES}/{performance['id']}"
    problem_of(world.client.patch(path, headers=world.h("s1"), json={"name": "改名"}), 409, "item_selected")
    problem_of(world.client.delete(path, headers=world.h("s1")), 409, "item_selected")
    problem_of(world.upload(performance, png(), "new.png", kind="performances"), 409, "item_selected")
    assert select(world, [], []).status_code == 200
    assert world.client.patch(path, headers=world.h("s1"), json={"name": "改名"}).status_code == 200


# ---- the 勾選 window --------------------------------------------------------------------------------------------

def test_outside_the_selection_window_it_is_409_and_inside_it_works(world):
    (outcome,) = certified(world, 1)
    ends = datetime(2020, 7, 10, 9, 0, tzinfo=timezone.utc)
    announce(world, ends - timedelta(days=5), ends)
    body = problem_of(select(world, [outcome]), 409, "window_closed")
    assert body["message"]["zh-TW"].startswith("勾選期間為 2020-07-05 17:00 至 2020-07-10 17:00")
    assert body["window"]["kind"] == "selection"
    now = datetime.now(timezone.utc)
    announce(world, now - HOUR, now + 72 * HOUR)
    assert select(world, [outcome]).status_code == 200
    assert world.get(SELECTION).status_code == 200  # reading is never restricted


# ---- locked after the year's submission ------------------------------------------------------------------------

def test_the_year_lock_freezes_every_selection_once(world):
    (mine,) = certified(world, 1)
    (theirs,) = certified(world, 1, user="s2")
    assert select(world, [mine]).status_code == 200
    assert select(world, [theirs], user="s2").status_code == 200
    lock_path = f"/api/v1/intake/schools/{A}/selections/{YEAR}/lock"
    problem_of(world.client.post(lock_path, headers=world.h("registrar")), 403, "forbidden")
    problem_of(world.client.post(f"/api/v1/intake/schools/{B}/selections/{YEAR}/lock", headers=world.h("admin")),
               404, "not_found")
    first = world.client.post(lock_path, headers=world.h("admin"))
    assert first.status_code == 200 and first.get_json()["newly_locked"] == 2
    again = world.client.post(lock_path, headers=world.h("admin")).get_json()
    assert again["newly_locked"] == 0 and again["locked_at"] == first.get_json()["locked_at"]
    lock = world.raw(YearLock, f"{A}:{YEAR}")
    [(envelope, payload)] = [parse_event(entry["event"]) for entry in lock["outbox"]]
    assert envelope.type == "intake.selection.locked.v1" and (payload.year, payload.students) == (YEAR, 2)

    problem_of(select(world, []), 409, "selection_locked")
    problem_of(select(world, [], [world.performance()], user="s3"), 409, "selection_locked")  # had none yet
    assert world.get(SELECTION).get_json()["locked"] is True
    assert select(world, [], [], year="113").status_code == 200  # another year is not locked


# ---- who sees a selection -----------------------------------------------------------------------------------------

def test_staff_and_the_homeroom_teacher_see_a_students_selection_others_do_not(world):
    (outcome,) = certified(world, 1)
    select(world, [outcome])
    for viewer in ("registrar", "admin", "t_home"):  # t_home is homeroom teacher of s1's class 101
        response = world.get(f"{SELECTION}?student_id=s1", viewer)
        assert response.status_code == 200 and response.get_json()["outcomes"][0]["id"] == outcome["id"], viewer
    problem_of(world.get(f"{SELECTION}?student_id=s1", "t_home2"), 403, "forbidden")
    problem_of(world.get(f"{SELECTION}?student_id=s1", "s2"), 403, "forbidden")
    problem_of(world.get(f"{SELECTION}?student_id=s1", "b_admin"), 404, "not_found")  # the tenant seal

    listing = world.get(f"/api/v1/intake/schools/{A}/selections/{YEAR}", "registrar").get_json()
    assert listing["total"] == 1 and listing["items"][0]["student_id"] == "s1"
    problem_of(world.get(f"/api/v1/intake/schools/{A}/selections/{YEAR}", "s1"), 403, "forbidden")
    problem_of(world.get(f"/api/v1/intake/schools/{A}/selections/{YEAR}", "b_admin"), 404, "not_found")


# ---- the year lock's fence: no selection saved after the count ------------------------------------------------

def _lock_announcement(world) -> tuple[int, int]:
    lock = world.raw(YearLock, f"{A}:{YEAR}")
    [(envelope, payload)] = [parse_event(entry["event"]) for entry in lock["outbox"]]
    assert envelope.type == "intake.selection.locked.v1"
    return payload.students, payload.revisions


def _saved_selections(world) -> dict[str, int]:
    return {s.student_id: s.revision for s in Selection.saved(school=A, year=YEAR)}


def _lock_when(monkeypatch, target, name: str):
    """Run the year lock (as the exchange's year submission does) the moment put_selection calls ``name``."""
    from services.intake.domain import lock_selections
    original = getattr(target, name)
    done = []

    def then_lock(*args, **kwargs):
        if not done:
            done.append(lock_selections(A, YEAR, "exchange", announce_again=True))
        return original(*args, **kwargs)
    monkeypatch.setattr(target, name, then_lock)
    return done


def test_a_first_selection_racing_the_lock_before_its_reservation_is_refused(world, monkeypatch):
    from services.intake import domain
    (theirs,) = certified(world, 1, user="s2")
    assert select(world, [theirs], user="s2").status_code == 200
    (mine,) = certified(world, 1)
    locked = _lock_when(monkeypatch, domain, "_reserve_selection")  # after every check, before the first write
    problem_of(select(world, [mine]), 409, "selection_locked")
    assert locked and _lock_announcement(world) == (1, 1) and _saved_selections(world) == {"s2": 1}
    assert outbox(world) == []  # nothing of s1's selection was announced
    assert world.get(SELECTION).get_json()["locked"] is True


def test_a_first_selection_racing_the_lock_after_its_reservation_is_refused(world, monkeypatch):
    from services.intake import events as intake_events
    (mine,) = certified(world, 1)
    locked = _lock_when(monkeypatch, intake_events, "selection_changed")  # reserved, about to be saved
    problem_of(select(world, [mine]), 409, "selection_locked")
    assert locked and _lock_announcement(world) == (0, 0) and _saved_selections(world) == {}
    assert outbox(world) == []
    body = world.get(SELECTION).get_json()
    assert (body["revision"], body["outcomes"], body["locked"]) == (0, [], True)
    listing = world.get(f"/api/v1/intake/schools/{A}/selections/{YEAR}", "registrar").get_json()
    assert listing["total"] == 0  # an empty reservation is no selection


def test_a_change_racing_the_lock_is_refused_and_the_counted_revision_stays(world, monkeypatch):
    from services.intake import events as intake_events
    first, second = certified(world, 2)
    assert select(world, [first]).status_code == 200
    locked = _lock_when(monkeypatch, intake_events, "selection_changed")  # read at revision 1, saving revision 2
    problem_of(select(world, [first, second]), 409, "selection_locked")
    assert locked and _lock_announcement(world) == (1, 1) and _saved_selections(world) == {"s1": 1}
    body = world.get(SELECTION).get_json()
    assert body["revision"] == 1 and [o["id"] for o in body["outcomes"]] == [first["id"]] and body["locked"]
    assert [envelope.type for envelope, _ in outbox(world)] == ["intake.selection.changed.v1"]
