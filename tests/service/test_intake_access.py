"""Who may do what: every role's allowed and forbidden actions, downloads, listings, and the tenant seal —
another school's caller gets 404 on every endpoint, never 403, and learns nothing."""
from __future__ import annotations

import pytest

from services.intake.models import Outcome
from tests.service.test_intake_support import (A, B, TERM, jpeg, pdf, png, problem_of, user_event, USERS, User,
                                               world)  # noqa: F401 (fixture)

OUTCOMES = "/api/v1/intake/outcomes"
PERFORMANCES = "/api/v1/intake/performances"

# s1's outcome in SEC-A1 (taught by t_math), class 101 (homeroom t_home)
VIEWERS = ["s1", "t_math", "t_home", "admin", "registrar", "curriculum"]
NOT_VIEWERS = ["s2", "s3", "t_home2", "t_other", "affairs", "counsellor"]
OTHER_TENANT = ["b1", "b_teacher", "b_admin", "city"]


@pytest.fixture
def s1_items(world):
    outcome = world.outcome()
    file = world.upload(outcome, pdf(), "成果.pdf").get_json()
    performance = world.performance()
    proof = world.upload(performance, png(), "證明.png", kind="performances").get_json()
    return {"outcome": outcome, "file": file, "performance": performance, "proof": proof}


@pytest.mark.parametrize("user", VIEWERS)
def test_viewers_see_and_download(world, s1_items, user):
    outcome, file = s1_items["outcome"], s1_items["file"]
    assert world.get(f"{OUTCOMES}/{outcome['id']}", user).get_json()["id"] == outcome["id"]
    download = world.get(f"/api/v1/intake/files/{file['file_id']}", user)
    assert download.status_code == 200 and download.data == pdf()
    assert download.headers["X-Content-SHA256"] == file["sha256"]
    assert world.get(f"/api/v1/intake/files/{file['file_id']}/link", user).status_code == 200


@pytest.mark.parametrize("user", NOT_VIEWERS)
def test_others_of_the_school_are_forbidden(world, s1_items, user):
    outcome, file = s1_items["outcome"], s1_items["file"]
    problem_of(world.get(f"{OUTCOMES}/{outcome['id']}", user), 403, "forbidden")
    problem_of(world.get(f"/api/v1/intake/files/{file['file_id']}", user), 403, "forbidden")
    problem_of(world.get(f"/api/v1/intake/files/{file['file_id']}/link", user), 403, "forbidden")


@pytest.mark.parametrize("user", ["s1", "t_home", "admin", "registrar", "curriculum"])
def test_performance_viewers(world, s1_items, user):
    performance, proof = s1_items["performance"], s1_items["proof"]
    assert world.get(f"{PERFORMANCES}/{performance['id']}", user).status_code == 200
    assert world.get(f"/api/v1/intake/files/{proof['file_id']}", user).data == png()


@pytest.mark.parametrize("user", ["s2", "t_math", "t_other", "t_home2", "affairs"])
def test_performances_have_no_section_teacher(world, s1_items, user):
    problem_of(world.get(f"{PERFORMANCES}/{s1_items['performance']['id']}", user), 403, "forbidden")
    problem_of(world.get(f"/api/v1/intake/files/{s1_items['proof']['file_id']}", user), 403, "forbidden")


@pytest.mark.parametrize("user", ["t_math", "t_home", "admin", "s2"])
def test_only_the_owner_changes_an_item(world, s1_items, user):
    outcome, file, performance = s1_items["outcome"], s1_items["file"], s1_items["performance"]
    h = world.h(user)
    code = 403
    problem_of(world.client.patch(f"{OUTCOMES}/{outcome['id']}", headers=h, json={"brief": "x"}), code, "forbidden")
    problem_of(world.client.post(f"{OUTCOMES}/{outcome['id']}/submit", headers=h), code, "forbidden")
    problem_of(world.client.delete(f"{OUTCOMES}/{outcome['id']}", headers=h), code, "forbidden")
    problem_of(world.upload(outcome, png(), "x.png", user=user), code, "forbidden")
    problem_of(world.client.delete(f"/api/v1/intake/files/{file['file_id']}", headers=h), code, "forbidden")
    problem_of(world.client.patch(f"{PERFORMANCES}/{performance['id']}", headers=h, json={"name": "x"}), code,
               "forbidden")
    problem_of(world.client.delete(f"{PERFORMANCES}/{performance['id']}", headers=h), code, "forbidden")
    problem_of(world.upload(performance, png(), "x.png", user=user, kind="performances"), code, "forbidden")
    # nothing changed
    assert world.raw(Outcome, outcome["id"])["brief"] == outcome["brief"]
    assert len(world.objects()) == 2


@pytest.mark.parametrize("user", ["t_math", "admin", "registrar", "city"])
def test_only_students_create_items(world, user):
    problem_of(world.client.post(OUTCOMES, headers=world.h(user), json={"section_id": "SEC-A1"}), 403, "forbidden")
    problem_of(world.client.post(PERFORMANCES, headers=world.h(user), json={
        "category": "other", "name": "x", "start_date": "2024-01-01", "end_date": "2024-01-01", "year": "112"}),
        403, "forbidden")


@pytest.mark.parametrize("user", ["registrar", "curriculum", "t_math", "s1"])
def test_only_the_school_admin_sets_the_policy(world, user):
    problem_of(world.client.put(f"/api/v1/intake/schools/{A}/policy", headers=world.h(user), json={}), 403, "forbidden")
    assert world.get(f"/api/v1/intake/schools/{A}/policy", user).status_code == 200


def test_tokens_are_required_and_checked(world, s1_items):
    assert world.client.get(OUTCOMES).status_code == 401
    problem_of(world.client.get(f"{OUTCOMES}/{s1_items['outcome']['id']}", headers={"Authorization": "Bearer x.y.z"}),
               401, "invalid_token")
    temp = world.tokens.headers("s1", A, ("student",), receipts_only=True)
    problem_of(world.client.get(OUTCOMES, headers=temp), 403, "forbidden")
    fresh = world.tokens.headers("s1", A, ("student",), must_change_password=True)
    problem_of(world.client.get(OUTCOMES, headers=fresh), 403, "password_change_required")


# ---- listings ------------------------------------------------------------------------------------------------

def test_listings_by_role(world):
    s1_math = world.outcome("s1", "SEC-A1")
    s1_term2 = world.outcome("s1", "SEC-A3")
    s2_math = world.outcome("s2", "SEC-A1")
    s3_english = world.outcome("s3", "SEC-A2")
    world.outcome("b1", "SEC-B1")

    def ids(user, query=""):
        body = world.get(f"{OUTCOMES}{query}", user).get_json()
        assert body["total"] == len(body["items"])
        return {o["id"] for o in body["items"]}

    assert ids("s1") == {s1_math["id"], s1_term2["id"]}
    assert ids("s1", f"?term={TERM}") == {s1_math["id"]}
    assert ids("t_math") == {s1_math["id"], s1_term2["id"], s2_math["id"]}  # their sections, both terms
    assert ids("t_math", "?section_id=SEC-A1") == {s1_math["id"], s2_math["id"]}
    assert ids("t_home") == {s1_math["id"], s1_term2["id"], s2_math["id"]}  # class 101
    assert ids("t_home2") == {s3_english["id"]}                            # class 102
    assert ids("t_other") == {s3_english["id"]}                            # teaches SEC-A2
    for staff in ("admin", "registrar", "curriculum"):
        assert ids(staff) == {s1_math["id"], s1_term2["id"], s2_math["id"], s3_english["id"]}
    assert ids("admin", "?student_id=s2") == {s2_math["id"]}
    assert ids("affairs") == set() and ids("counsellor") == set()
    assert ids("b_admin") == {o["id"] for o in Outcome.objects(school=B)}
    assert len(ids("b_admin")) == 1
    problem_of(world.get(OUTCOMES, "city"), 403, "forbidden")
    page = world.get(f"{OUTCOMES}?limit=2&offset=0", "admin").get_json()
    assert page["total"] == 4 and len(page["items"]) == 2


def test_performance_listings_by_role(world):
    mine = world.performance("s1")
    classmate = world.performance("s2")
    other_class = world.performance("s3")

    def ids(user):
        return {p["id"] for p in world.get(PERFORMANCES, user).get_json()["items"]}

    assert ids("s1") == {mine["id"]}
    assert ids("t_home") == {mine["id"], classmate["id"]}
    assert ids("t_math") == set()  # performances are not tied to sections
    assert ids("admin") == {mine["id"], classmate["id"], other_class["id"]}
    assert ids("b_admin") == set()


def test_the_homeroom_relationship_follows_the_directory(world, s1_items):
    outcome = s1_items["outcome"]
    assert world.get(f"{OUTCOMES}/{outcome['id']}", "t_home2").status_code == 403
    moved = User("s1", A, ("student",), class_name="102")  # s1 changes class (identity announces it)
    world.deliver(user_event(moved))
    assert world.get(f"{OUTCOMES}/{outcome['id']}", "t_home2").status_code == 200
    assert world.get(f"{OUTCOMES}/{outcome['id']}", "t_home").status_code == 403


# ---- the tenant seal: every endpoint ---------------------------------------------------------------------------

@pytest.mark.parametrize("user", OTHER_TENANT)
def test_another_school_gets_404_everywhere(world, s1_items, user):
    outcome, file = s1_items["outcome"], s1_items["file"]
    performance, proof = s1_items["performance"], s1_items["proof"]
    h = world.h(user)
    student = "student" in USERS[user].roles
    before = world.get(f"{OUTCOMES}/{outcome['id']}").get_json()
    reads = [
        world.client.get(f"/api/v1/intake/schools/{A}/policy", headers=h),
        world.client.get(f"{OUTCOMES}/{outcome['id']}", headers=h),
        world.client.get(f"{PERFORMANCES}/{performance['id']}", headers=h),
        world.client.get(f"/api/v1/intake/files/{file['file_id']}", headers=h),
        world.client.get(f"/api/v1/intake/files/{file['file_id']}/link", headers=h),
        world.client.get(f"/api/v1/intake/files/{proof['file_id']}", headers=h),
        world.client.get(f"/api/v1/intake/files/{proof['file_id']}/link", headers=h),
    ]
    for response in reads:
        problem_of(response, 404, "not_found")
    if "school_admin" in USERS[user].roles:
        problem_of(world.client.put(f"/api/v1/intake/schools/{A}/policy", headers=h, json={"uploads_open": False}), 404,
                   "not_found")
    if student:  # the student-only writes: the item is simply not there for them
        writes = [
            world.client.patch(f"{OUTCOMES}/{outcome['id']}", headers=h, json={"brief": "x"}),
            world.client.post(f"{OUTCOMES}/{outcome['id']}/submit", headers=h),
            world.client.delete(f"{OUTCOMES}/{outcome['id']}", headers=h),
            world.upload(outcome, png(), "x.png", user=user),
            world.upload(outcome, pdf(), "成果.pdf", user=user, key=file["upload_key"]),  # even a "retry"
            world.client.delete(f"/api/v1/intake/files/{file['file_id']}", headers=h),
            world.client.patch(f"{PERFORMANCES}/{performance['id']}", headers=h, json={"name": "x"}),
            world.client.delete(f"{PERFORMANCES}/{performance['id']}", headers=h),
            world.upload(performance, jpeg(), "x.jpg", user=user, kind="performances"),
            world.client.delete(f"/api/v1/intake/files/{proof['file_id']}", headers=h),
        ]
        for response in writes:
            problem_of(response, 404, "not_found")
    if USERS[user].school is not None:
        assert world.get(OUTCOMES, user).get_json()["items"] == []
        assert world.get(PERFORMANCES, user).get_json()["items"] == []
    # nothing of school A changed
    assert world.get(f"/api/v1/intake/schools/{A}/policy").get_json()["uploads_open"] is True
    assert world.get(f"{OUTCOMES}/{outcome['id']}").get_json() == before
    assert world.raw(Outcome, outcome["id"])["version"] == 2 and len(world.objects()) == 2


def test_another_school_cannot_enrol_into_this_schools_sections(world):
    problem_of(world.client.post(OUTCOMES, headers=world.h("b1"), json={"section_id": "SEC-A1"}), 422, "not_enrolled")


def test_a_substitute_opens_the_outcomes_and_files_of_the_teacher_they_stand_in_for(world):
    from datetime import datetime, timedelta, timezone

    from shared.events import SubstituteAssigned, SubstituteRemoved
    from tests.service.test_intake_support import event

    item = world.outcome()
    file = world.upload(item, pdf()).get_json()
    outcome_url, file_url = f"/api/v1/intake/outcomes/{item['id']}", f"/api/v1/intake/files/{file['file_id']}"
    assert world.client.get(outcome_url, headers=world.h("t_other")).status_code == 403
    today = datetime.now(timezone(timedelta(hours=8))).date()
    world.deliver(event(SubstituteAssigned(assignment_id="sub-1", school=A, teacher_id="t_math", substitute_id="t_other",
                                           starts_on=(today - timedelta(days=1)).isoformat(),
                                           ends_on=(today + timedelta(days=1)).isoformat()),
                        school=A, producer="certification"))
    assert world.client.get(outcome_url, headers=world.h("t_other")).status_code == 200
    assert world.client.get(file_url, headers=world.h("t_other")).status_code == 200
    listed = world.client.get("/api/v1/intake/outcomes", headers=world.h("t_other")).get_json()["items"]
    assert item["id"] in [o["id"] for o in listed]
    # an assignment for other dates opens nothing; a removed one no longer does
    world.deliver(event(SubstituteRemoved(assignment_id="sub-1", school=A), school=A, producer="certification"))
    assert world.client.get(outcome_url, headers=world.h("t_other")).status_code == 403
    world.deliver(event(SubstituteAssigned(assignment_id="sub-2", school=A, teacher_id="t_math", substitute_id="t_other",
                                           starts_on=(today + timedelta(days=5)).isoformat(),
                                           ends_on=(today + timedelta(days=9)).isoformat()),
                        school=A, producer="certification"))
    assert world.client.get(file_url, headers=world.h("t_other")).status_code == 403
