"""Windows: the city template's defaults, a school admin adjusting them within the city's rules (each broken rule a
422 with its own code), the tenant seal, and every change announced in the same write as the change."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.scheduling.models import Schedule
from tests.service.test_scheduling_support import (A, B, TERM, outbox_events, problem_of, taipei,
                                                   world)  # noqa: F401 (fixture)

KINDS = ["precheck", "outcome_upload", "certification", "performance_upload", "selection", "submission",
         "receipt_confirmation", "dispute"]


def windows_of(body: dict) -> dict:
    return {w["kind"]: w for w in body["windows"]}


# ---- the template ------------------------------------------------------------------------------------------

def test_an_unset_term_shows_the_city_template_and_enforces_nothing(world):
    response = world.get(f"/schools/{A}/terms/{TERM}", "s1")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["configured"] is False and body["version"] == 0 and body["city"] == "TPE"
    assert body["term_name"] == {"zh-TW": "112學年度第1學期", "en": "term 11201 (school year 112, semester 1)"}
    assert (body["term_starts_on"], body["term_ends_on"]) == ("2023-08-01", "2024-01-31")
    windows = windows_of(body)
    assert list(windows) == KINDS
    upload = windows["outcome_upload"]
    assert upload["name"] == {"zh-TW": "成果上傳", "en": "course outcome upload"}
    # 第1學期 Aug–Jan; uploads until two weeks after the term's end, 17:00 Taiwan time
    assert (upload["starts_at"], upload["ends_at"]) == ("2023-08-01T08:00:00+08:00", "2024-02-15T17:00:00+08:00")
    assert upload["state"] == "open" and upload["revision"] == 0
    for kind in ("selection", "receipt_confirmation"):
        length = datetime.fromisoformat(windows[kind]["ends_at"]) - datetime.fromisoformat(windows[kind]["starts_at"])
        assert length >= timedelta(days=3) and windows[kind]["min_days"] == 3
    chain = [windows[k] for k in ("selection", "submission", "receipt_confirmation", "dispute")]
    for first, second in zip(chain, chain[1:]):
        assert first["ends_at"] <= second["starts_at"]
    assert Schedule.objects.count() == 0


def test_the_second_term_runs_february_to_july(world):
    body = world.get(f"/schools/{A}/terms/11202").get_json()
    assert (body["term_starts_on"], body["term_ends_on"]) == ("2024-02-01", "2024-07-31")
    upload = windows_of(body)["outcome_upload"]
    assert (upload["starts_at"], upload["ends_at"]) == ("2024-02-01T08:00:00+08:00", "2024-08-15T17:00:00+08:00")


@pytest.mark.parametrize("term", ["1120", "11203", "112011", "abcde", "11200"])
def test_a_malformed_term_is_422(world, term):
    problem_of(world.get(f"/schools/{A}/terms/{term}"), 422, "invalid_term")
    problem_of(world.set_window("selection", taipei(2024, 2, 23), taipei(2024, 2, 28), term=term), 422, "invalid_term")


# ---- adjusting ---------------------------------------------------------------------------------------------

def test_setting_one_window_stores_the_term_and_announces_every_window(world):
    response = world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 27, 17))
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["configured"] is True and body["version"] == 1
    selection = windows_of(body)["selection"]
    assert (selection["starts_at"], selection["ends_at"]) == ("2024-02-23T08:00:00+08:00", "2024-02-27T17:00:00+08:00")
    assert selection["updated_by"] == "adm" and selection["revision"] == 1
    events = outbox_events(Schedule)
    assert sorted(e["payload"]["kind"] for e in events) == sorted(KINDS)
    assert {e["type"] for e in events} == {"scheduling.window.scheduled.v1"}
    sel = next(e for e in events if e["payload"]["kind"] == "selection")
    assert sel["school"] == A and sel["producer"] == "scheduling"
    assert sel["payload"] == {"window_id": f"{A}:{TERM}:selection", "school": A, "term": TERM, "kind": "selection",
                              "starts_at": "2024-02-23T00:00:00Z", "ends_at": "2024-02-27T09:00:00Z", "revision": 1,
                              "set_by": "adm"}
    # everyone of the school reads the stored schedule now
    for user in ("s1", "t1", "cur"):
        assert world.get(f"/schools/{A}/terms/{TERM}", user).get_json() == world.get(f"/schools/{A}/terms/{TERM}").get_json()


def test_a_change_announces_only_what_changed_and_counts_revisions(world):
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 27, 17))
    Schedule._get_collection().update_many({}, {"$set": {"outbox": []}})  # as if relayed
    response = world.put(f"/schools/{A}/terms/{TERM}", {"windows": [
        {"kind": "outcome_upload", "starts_at": "2023-08-15T08:00:00+08:00", "ends_at": "2024-02-20T17:00:00+08:00"},
        {"kind": "selection", "starts_at": "2024-02-23T08:00:00+08:00", "ends_at": "2024-02-27T17:00:00+08:00"}]})
    assert response.status_code == 200, response.get_data(as_text=True)
    windows = windows_of(response.get_json())
    assert windows["outcome_upload"]["revision"] == 2 and windows["selection"]["revision"] == 1
    (event,) = outbox_events(Schedule)
    assert event["payload"]["kind"] == "outcome_upload" and event["payload"]["revision"] == 2
    assert event["payload"]["ends_at"] == "2024-02-20T09:00:00Z"
    # the same again changes nothing and announces nothing
    again = world.put(f"/schools/{A}/terms/{TERM}", {"windows": [
        {"kind": "outcome_upload", "starts_at": "2023-08-15T00:00:00Z", "ends_at": "2024-02-20T09:00:00Z"}]})
    assert again.status_code == 200 and again.get_json()["version"] == response.get_json()["version"]
    assert len(outbox_events(Schedule)) == 1


def test_moving_two_chained_windows_at_once_is_judged_as_a_whole(world):
    """Moving selection later into submission's dates and submission later still is fine in one request."""
    response = world.put(f"/schools/{A}/terms/{TERM}", {"windows": [
        {"kind": "selection", "starts_at": "2024-03-01T08:00:00+08:00", "ends_at": "2024-03-05T17:00:00+08:00"},
        {"kind": "submission", "starts_at": "2024-03-06T08:00:00+08:00", "ends_at": "2024-03-08T08:00:00+08:00"}]})
    assert response.status_code == 201, response.get_data(as_text=True)


# ---- each rule ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, starts, ends, code", [
    ("selection", taipei(2024, 2, 27), taipei(2024, 2, 23), "window_ends_before_start"),
    ("selection", taipei(2024, 2, 23), taipei(2024, 2, 23), "window_ends_before_start"),
    ("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 26, 7), "window_too_short"),       # under 3 days
    ("receipt_confirmation", taipei(2024, 3, 8, 8), taipei(2024, 3, 10, 8), "window_too_short"),
    ("certification", taipei(2024, 2, 1, 8), taipei(2024, 2, 1, 20), "window_too_short"),    # under 1 day
    ("outcome_upload", taipei(2023, 8, 1, 8), taipei(2024, 2, 14, 17), "window_ends_too_early"),
    ("submission", taipei(2024, 2, 27, 8), taipei(2024, 3, 7, 17), "window_overlap"),        # into selection
    ("dispute", taipei(2024, 3, 10, 8), taipei(2024, 3, 21, 17), "window_overlap"),          # into receipts
    ("precheck", taipei(2020, 1, 1), taipei(2020, 2, 1), "window_out_of_range"),
])
def test_each_broken_rule_is_422_with_its_code(world, kind, starts, ends, code):
    body = problem_of(world.set_window(kind, starts, ends), 422, code)
    assert any(e["code"] == code and e["field"] == f"windows.{kind}" or e["code"] == code for e in body["errors"])
    for error in body["errors"]:
        assert error["message"]["zh-TW"] and error["message"]["en"]
    assert Schedule.objects.count() == 0  # nothing written


def test_every_broken_rule_is_listed(world):
    body = problem_of(world.put(f"/schools/{A}/terms/{TERM}", {"windows": [
        {"kind": "selection", "starts_at": "2024-02-27T08:00:00+08:00", "ends_at": "2024-02-23T08:00:00+08:00"},
        {"kind": "outcome_upload", "starts_at": "2023-08-01T08:00:00+08:00", "ends_at": "2024-02-01T08:00:00+08:00"}]}),
        422, "window_ends_before_start")
    assert {e["code"] for e in body["errors"]} == {"window_ends_before_start", "window_ends_too_early"}
    assert "成果上傳" in next(e for e in body["errors"] if e["code"] == "window_ends_too_early")["message"]["zh-TW"]


@pytest.mark.parametrize("body", [
    {"windows": [{"kind": "selection", "starts_at": "2024-02-23T08:00:00", "ends_at": "2024-02-27T08:00:00+08:00"}]},
    {"windows": [{"kind": "lunch", "starts_at": "2024-02-23T08:00:00+08:00", "ends_at": "2024-02-27T08:00:00+08:00"}]},
    {"windows": [{"kind": "selection", "starts_at": "soon", "ends_at": "2024-02-27T08:00:00+08:00"}]},
    {"windows": [{"kind": "selection", "starts_at": "2024-02-23T08:00:00+08:00", "ends_at": "2024-02-27T08:00:00+08:00"}] * 2},
    {"windows": "all"},
    {"extra": 1},
])
def test_malformed_bodies_are_422_never_500(world, body):
    problem_of(world.put(f"/schools/{A}/terms/{TERM}", body), 422, "validation_failed")


def test_malformed_json_and_an_unknown_kind(world):
    response = world.client.put(f"/api/v1/scheduling/schools/{A}/terms/{TERM}", data=b"{", headers=world.h("adm"),
                                content_type="application/json")
    problem_of(response, 400, "malformed_json")
    problem_of(world.set_window("lunch", taipei(2024, 2, 23), taipei(2024, 2, 27)), 404, "not_found")


# ---- the tenant seal ---------------------------------------------------------------------------------------

def test_another_school_is_not_found_for_reading_and_writing(world):
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 27, 17))
    for user in ("admb", "sb", "city"):
        problem_of(world.get(f"/schools/{A}/terms/{TERM}", user), 404, "not_found")
        problem_of(world.get(f"/schools/{A}/terms/{TERM}/calendar.ics", user), 404, "not_found")
        problem_of(world.get(f"/schools/{A}/terms", user), 404, "not_found")
    problem_of(world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 28, 17), user="admb"), 404,
               "not_found")
    assert windows_of(world.get(f"/schools/{A}/terms/{TERM}").get_json())["selection"]["ends_at"] == \
        "2024-02-27T17:00:00+08:00"
    # B's own term is untouched and unset
    assert world.get(f"/schools/{B}/terms/{TERM}", "admb").get_json()["configured"] is False


@pytest.mark.parametrize("user", ["s1", "t1", "cur"])
def test_only_the_school_admin_writes(world, user):
    problem_of(world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 27, 17), user=user), 403,
               "forbidden")
    assert Schedule.objects.count() == 0


def test_no_token_is_401(world):
    problem_of(world.client.get(f"/api/v1/scheduling/schools/{A}/terms/{TERM}"), 401, "unauthenticated")


def test_the_terms_the_school_has_set(world):
    world.set_window("selection", taipei(2024, 2, 23, 8), taipei(2024, 2, 27, 17))
    world.set_window("selection", taipei(2024, 7, 20, 8), taipei(2024, 7, 25, 17), term="11202")
    items = world.get(f"/schools/{A}/terms", "s1").get_json()["items"]
    assert [i["term"] for i in items] == ["11202", "11201"]
