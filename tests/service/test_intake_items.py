"""Outcomes and performances: the state machine, locks, caps, the school policy, enrolment, validation."""
from __future__ import annotations

import pytest

from services.intake.models import Outcome, Performance
from tests.service.test_intake_support import (A, TERM, TERM2, jpeg, pdf, png, problem_of, sha, withdrawal_event,
                                               world)  # noqa: F401 (fixture)

OUTCOMES = "/api/v1/intake/outcomes"
PERFORMANCES = "/api/v1/intake/performances"


def submit(world, item, user="s1", **headers):
    return world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h(user, **headers))


def patch(world, item, brief, user="s1"):
    return world.client.patch(f"{OUTCOMES}/{item['id']}", headers=world.h(user), json={"brief": brief})


def get(world, item, user="s1"):
    return world.get(f"{OUTCOMES}/{item['id']}", user)


# ---- the outcome state machine ----------------------------------------------------------------------------

def test_draft_submitted_returned_edited_resubmitted_certified(world):
    item = world.outcome(brief="")
    assert (item["status"], item["editable"], item["submission"], item["term"]) == ("draft", True, 0, TERM)
    assert item["course_code"] and item["subject_name"] == "數學"

    # submit needs a file and a brief
    body = problem_of(submit(world, item), 422, "validation_failed")
    assert {e["field"] for e in body["errors"]} == {"files", "brief"}
    first = world.upload(item, pdf(), "v1.pdf").get_json()
    problem_of(submit(world, item), 422, "validation_failed")
    assert patch(world, item, "函數圖形的觀察").status_code == 200

    submitted = submit(world, item, **{"X-Forwarded-For": "203.0.113.9, 10.0.0.2"})
    assert submitted.status_code == 200, submitted.get_data(as_text=True)
    out = submitted.get_json()
    assert (out["status"], out["editable"], out["submission"]) == ("submitted", False, 1)
    assert out["files"][0]["submitted_in"] == 1

    # locked: no edit, upload, file removal or deletion; no second submission
    problem_of(patch(world, item, "改一下"), 409, "item_locked")
    problem_of(world.upload(item, png(), "new.png"), 409, "item_locked")
    problem_of(world.client.delete(f"/api/v1/intake/files/{first['file_id']}", headers=world.h("s1")), 409, "item_locked")
    problem_of(world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")), 409, "item_locked")
    problem_of(submit(world, item), 409, "invalid_transition")

    # certification returns it: editable again, with the reason
    world.send_back(out, 1, reason="請補充心得")
    returned = get(world, item).get_json()
    assert (returned["status"], returned["editable"], returned["return_reason"]) == ("returned", True, "請補充心得")
    assert patch(world, item, "函數圖形的觀察與心得").status_code == 200
    second = world.upload(item, jpeg(), "v2.jpg").get_json()
    # a file that was part of submission 1 is retired (kept as evidence), not deleted
    assert world.client.delete(f"/api/v1/intake/files/{first['file_id']}", headers=world.h("s1")).status_code == 204
    assert len(world.objects()) == 2
    assert world.get(f"/api/v1/intake/files/{first['file_id']}", "t_math").data == pdf()

    resubmitted = submit(world, item).get_json()
    assert (resubmitted["status"], resubmitted["submission"], resubmitted["return_reason"]) == ("submitted", 2, None)
    assert [f["file_id"] for f in resubmitted["files"]] == [second["file_id"]]

    world.certify(out, 1)  # a late decision about submission 1 changes nothing
    assert get(world, item).get_json()["status"] == "submitted"
    world.certify(out, 2)
    certified = get(world, item).get_json()
    assert (certified["status"], certified["editable"], certified["submission"]) == ("certified", False, 2)
    assert certified["certified_at"]

    problem_of(submit(world, item), 409, "invalid_transition")
    problem_of(patch(world, item, "x"), 409, "item_locked")
    problem_of(world.upload(item, png(), "late.png"), 409, "item_locked")
    problem_of(world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")), 409, "item_locked")
    raw = world.raw(Outcome, item["id"])
    assert [e["event"]["payload"]["submission"] for e in raw["outbox"]] == [1, 2]


def test_a_returned_outcome_may_be_deleted_and_submitted_files_stay_as_evidence(world):
    item = world.outcome()
    kept = world.upload(item, pdf(), "kept.pdf").get_json()
    submit(world, item)
    world.send_back(item, 1)
    fresh = world.upload(item, png(), "fresh.png").get_json()
    assert len(world.objects()) == 2
    assert world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")).status_code == 204
    assert len(world.objects()) == 1  # the never-submitted PNG is gone, the submitted PDF is kept
    assert world.objects()[0].read_bytes() == pdf()
    problem_of(get(world, item), 404, "not_found")
    problem_of(world.get(f"/api/v1/intake/files/{kept['file_id']}"), 404, "not_found")
    problem_of(world.get(f"/api/v1/intake/files/{fresh['file_id']}"), 404, "not_found")
    assert world.raw(Outcome, item["id"])["deleted_at"] is not None


def test_a_draft_can_be_deleted_with_its_files(world):
    item = world.outcome()
    file = world.upload(item, pdf()).get_json()
    assert world.client.delete(f"/api/v1/intake/files/{file['file_id']}", headers=world.h("s1")).status_code == 204
    assert world.objects() == [] and get(world, item).get_json()["files"] == []
    world.upload(item, png(), "p.png")
    assert world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")).status_code == 204
    assert world.objects() == []
    assert world.get(OUTCOMES).get_json()["total"] == 0


def test_submit_records_who_from_where(world):
    item = world.outcome()
    world.upload(item, pdf())
    submit(world, item, **{"X-Forwarded-For": "198.51.100.7, 10.1.1.1"})
    raw = world.raw(Outcome, item["id"])
    assert (raw["submitted_by"], raw["submitted_from"]) == ("s1", "198.51.100.7")
    other = world.outcome(brief="第二件")
    world.upload(other, pdf(b"2"))
    submit(world, other)
    assert world.raw(Outcome, other["id"])["submitted_from"] == "127.0.0.1"  # no proxy header: the peer address


# ---- enrolment ------------------------------------------------------------------------------------------------

def test_only_for_ones_own_active_enrolments(world):
    for section in ("SEC-A2",      # another student's section
                    "SEC-B1",      # another school's section
                    "SEC-NOPE"):   # unknown
        problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": section, "brief": "x"}),
                   422, "not_enrolled")
    assert world.outcome(section="SEC-A3")["term"] == TERM2


def test_a_withdrawn_enrolment_cannot_take_or_submit_outcomes(world):
    item = world.outcome()
    world.upload(item, pdf())
    world.deliver(withdrawal_event("E-s1-A1", A, TERM, "SEC-A1", "s1"))
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A1"}), 422, "not_enrolled")
    problem_of(submit(world, item), 422, "not_enrolled")
    assert get(world, item).get_json()["status"] == "draft"


# ---- caps and the upload window -----------------------------------------------------------------------------

@pytest.mark.parametrize("cap", [6, 9])
def test_outcome_cap_per_student_per_term(world, cap):
    world.set_policy(outcome_cap_per_term=cap)
    items = [world.outcome(brief=f"第{n}件") for n in range(cap)]
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A1"}), 409,
               "upload_cap_reached")
    assert world.outcome(section="SEC-A3")["term"] == TERM2  # another term has its own cap
    assert world.outcome(user="s2")["student_id"] == "s2"   # another student too
    world.client.delete(f"{OUTCOMES}/{items[0]['id']}", headers=world.h("s1"))
    assert world.outcome(brief="補上")["status"] == "draft"   # a deleted one frees its place
    assert Outcome.objects(student_id="s1", term=TERM, deleted_at=None).count() == cap


def test_the_cap_holds_when_two_creations_race(world, monkeypatch):
    """Both requests pass the first count; the check after the insert keeps only the first ``cap``."""
    from services.intake import domain

    for n in range(5):
        world.outcome(brief=str(n))
    real = domain.save_with_events
    raced = {"done": False}

    def save_and_race(item, events=()):
        saved = real(item, events)
        if not raced["done"] and isinstance(item, Outcome) and item.brief == "me":
            raced["done"] = True  # a concurrent request inserts its sixth outcome first
            real(Outcome(school=A, student_id="s1", term=TERM, section_id="SEC-A1", enrolment_id="E-s1-A1",
                         course_code="x" * 23, brief="the other", created_at=item.created_at.replace(year=2000)))
        return saved

    monkeypatch.setattr(domain, "save_with_events", save_and_race)
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A1", "brief": "me"}), 409,
               "upload_cap_reached")
    briefs = sorted(o.brief for o in Outcome.objects(student_id="s1", term=TERM, deleted_at=None))
    assert briefs == ["0", "1", "2", "3", "4", "the other"]


@pytest.mark.parametrize("cap", [10, 20])
def test_performance_cap_per_student_per_school_year(world, cap):
    world.set_policy(performance_cap_per_year=cap)
    for n in range(cap):
        world.performance(name=f"活動{n}", **({"term": TERM2} if n % 2 else {}))  # both terms are year 112
    problem_of(world.client.post(PERFORMANCES, headers=world.h("s1"), json={
        "category": "other", "name": "one more", "start_date": "2024-01-01", "end_date": "2024-01-01", "year": "112"}),
        409, "upload_cap_reached")
    assert world.performance(term=None, year="113")["year"] == "113"


def test_uploads_closed_stops_every_student_write_but_not_reads_or_retries(world):
    item = world.outcome()
    perf = world.performance()
    done = world.upload(item, pdf(), key="before-closing").get_json()
    world.set_policy(uploads_open=False)
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A1"}), 409, "uploads_closed")
    problem_of(world.client.post(PERFORMANCES, headers=world.h("s1"), json={
        "category": "other", "name": "x", "start_date": "2024-01-01", "end_date": "2024-01-01", "year": "112"}),
        409, "uploads_closed")
    problem_of(world.upload(item, png(), "p.png"), 409, "uploads_closed")
    problem_of(world.upload(perf, png(), "p.png", kind="performances"), 409, "uploads_closed")
    problem_of(patch(world, item, "x"), 409, "uploads_closed")
    problem_of(submit(world, item), 409, "uploads_closed")
    problem_of(world.client.delete(f"/api/v1/intake/files/{done['file_id']}", headers=world.h("s1")), 409, "uploads_closed")
    problem_of(world.client.delete(f"{OUTCOMES}/{item['id']}", headers=world.h("s1")), 409, "uploads_closed")
    assert world.upload(item, pdf(), key="before-closing").status_code == 200  # an idempotent retry still answers
    assert get(world, item).status_code == 200
    assert world.get(f"/api/v1/intake/files/{done['file_id']}").data == pdf()
    assert len(world.objects()) == 1
    world.set_policy(uploads_open=True)
    assert submit(world, item).status_code == 200


# ---- policy -------------------------------------------------------------------------------------------------

def test_policy_defaults_and_replacement(world):
    defaults = world.get(f"/api/v1/intake/schools/{A}/policy").get_json()
    assert {k: defaults[k] for k in ("document_limit_bytes", "media_limit_bytes", "outcome_cap_per_term",
                                     "performance_cap_per_year", "uploads_open")} == {
        "document_limit_bytes": 4 * 1024 * 1024, "media_limit_bytes": 10 * 1024 * 1024, "outcome_cap_per_term": 6,
        "performance_cap_per_year": 10, "uploads_open": True}
    saved = world.set_policy(document_limit_bytes=2 * 1024 * 1024, outcome_cap_per_term=9, performance_cap_per_year=20)
    assert (saved["document_limit_bytes"], saved["media_limit_bytes"], saved["outcome_cap_per_term"],
            saved["updated_by"]) == (2 * 1024 * 1024, 10 * 1024 * 1024, 9, "admin")
    assert world.get(f"/api/v1/intake/schools/{A}/policy", "t_math").get_json()["outcome_cap_per_term"] == 9
    assert world.set_policy()["outcome_cap_per_term"] == 6  # PUT replaces: what is left out takes its default


@pytest.mark.parametrize("body", [
    {"document_limit_bytes": 4 * 1024 * 1024 + 1}, {"media_limit_bytes": 10 * 1024 * 1024 + 1},
    {"document_limit_bytes": 0}, {"outcome_cap_per_term": 7}, {"performance_cap_per_year": 15},
    {"uploads_open": "maybe"}, {"surprise": 1},
])
def test_bad_policies_are_refused(world, body):
    problem_of(world.client.put(f"/api/v1/intake/schools/{A}/policy", headers=world.h("admin"), json=body), 422,
               "validation_failed")
    assert world.get(f"/api/v1/intake/schools/{A}/policy").get_json()["updated_at"] is None


# ---- performances -------------------------------------------------------------------------------------------

def test_performance_round_trip_with_files_and_links(world):
    item = world.performance(links=["https://youtu.be/abc", "http://example.org/work"], term=None, year="112")
    assert (item["year"], item["term"], item["hours"], item["status"]) == ("112", None, 12, "draft")
    proof = world.upload(item, pdf(), "證書.pdf", kind="performances").get_json()
    video = world.upload(item, jpeg(), "現場.jpg", kind="performances").get_json()
    changed = world.client.patch(f"{PERFORMANCES}/{item['id']}", headers=world.h("s1"),
                                 json={"result": "第一名", "end_date": "2023-09-05", "links": []}).get_json()
    assert (changed["result"], changed["end_date"], changed["links"], changed["name"]) == ("第一名", "2023-09-05", [],
                                                                                         "全國科展")
    assert [f["sha256"] for f in changed["files"]] == [proof["sha256"], video["sha256"]] == [sha(pdf()), sha(jpeg())]
    assert world.performance(term=TERM)["year"] == "112"
    listed = world.get(f"{PERFORMANCES}?year=112").get_json()
    assert listed["total"] == 2
    assert world.client.delete(f"{PERFORMANCES}/{item['id']}", headers=world.h("s1")).status_code == 204
    assert world.get(f"{PERFORMANCES}?year=112").get_json()["total"] == 1
    assert world.objects() == [] and world.raw(Performance, item["id"])["deleted_at"] is not None


@pytest.mark.parametrize("fields", [
    {"end_date": "2023-08-31"},                                   # before the start
    {"hours": 2000.5}, {"hours": -1},
    {"links": ["ftp://example.org/x"]}, {"links": ["javascript:alert(1)"]}, {"links": ["https://"]},
    {"links": [f"https://example.org/{n}" for n in range(6)]},
    {"brief": "字" * 101}, {"name": ""}, {"category": "sports"},
    {"term": "11201x"}, {"term": None, "year": None}, {"term": TERM, "year": "113"},
    {"surprise": True}, {"start_date": "2023-02-30"},
])
def test_bad_performances_are_refused_and_nothing_is_written(world, fields):
    body = {"category": "competition", "name": "科展", "start_date": "2023-09-01", "end_date": "2023-09-03",
            "term": TERM, **fields}
    problem_of(world.client.post(PERFORMANCES, headers=world.h("s1"), json=body), 422, "validation_failed")
    assert Performance.objects.count() == 0


def test_a_patch_cannot_break_a_performance(world):
    item = world.performance()
    for body in ({"end_date": "2020-01-01"}, {"hours": 3000}, {"links": ["file:///etc/passwd"]}, {"year": "113"},
                 {"name": ""}):
        problem_of(world.client.patch(f"{PERFORMANCES}/{item['id']}", headers=world.h("s1"), json=body), 422,
                   "validation_failed")
    assert world.get(f"{PERFORMANCES}/{item['id']}").get_json() == item


@pytest.mark.parametrize("body", [{"brief": "字" * 101}, {"brief": 5}, {}, {"brief": "ok", "status": "certified"}])
def test_bad_outcome_bodies(world, body):
    item = world.outcome()
    problem_of(world.client.patch(f"{OUTCOMES}/{item['id']}", headers=world.h("s1"), json=body), 422,
               "validation_failed")
    assert get(world, item).get_json() == item


def test_the_brief_is_at_most_100_characters(world):
    assert world.outcome(brief="字" * 100)["brief"] == "字" * 100
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), json={"section_id": "SEC-A1", "brief": "字" * 101}),
               422, "validation_failed")
    problem_of(world.client.post(OUTCOMES, headers=world.h("s1"), data="{nope", content_type="application/json"), 400,
               "malformed_json")
    problem_of(world.client.get(f"{OUTCOMES}?term=abc", headers=world.h("s1")), 422, "validation_failed")
    problem_of(world.client.get(f"{OUTCOMES}?limit=1000", headers=world.h("s1")), 422, "validation_failed")


def test_openapi_document_covers_the_routes(world):
    document = world.client.get("/openapi.json").get_json()
    paths = document["paths"]
    assert {"/api/v1/intake/schools/{code}/policy", "/api/v1/intake/outcomes", "/api/v1/intake/outcomes/{outcome_id}",
            "/api/v1/intake/outcomes/{outcome_id}/submit", "/api/v1/intake/outcomes/{outcome_id}/files/{upload_key}",
            "/api/v1/intake/performances", "/api/v1/intake/performances/{performance_id}",
            "/api/v1/intake/performances/{performance_id}/files/{upload_key}", "/api/v1/intake/files/{file_id}",
            "/api/v1/intake/files/{file_id}/link"} <= set(paths)
    upload = paths["/api/v1/intake/outcomes/{outcome_id}/files/{upload_key}"]["put"]
    assert upload["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    assert upload["security"] == [{"bearer": []}]
    schemas = document["components"]["schemas"]
    for name in ("PolicyIn", "OutcomeIn", "OutcomePatch", "PerformanceIn", "PerformancePatch"):
        assert schemas[name]["additionalProperties"] is False, name
