"""Packages: what a term and a year package hold, built from a snapshot of the projections, immutable, stored
with their sha256; the year waits for intake's lock and the selections it counted; bad input is a clear 4xx."""
from __future__ import annotations

import json

from services.exchange import build
from services.exchange.models import Package, Submission
from tests.service.test_exchange_support import A, B, CODE, TERM, outbox_events, problem_of, sandbox, world  # noqa: F401


def body_of(world, package_id: str) -> dict:
    return json.loads(build.read_body(world.exchange.store, Package.objects(id=package_id).first()))


def test_a_term_package_holds_course_records_and_cadres_of_the_term_and_announces_the_request(world):
    world.section()
    world.enrol("s1")
    world.grade("s1", 88)
    world.enrol("s2")
    world.cadre("s1")
    response = world.submit("term")
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["submission_id"] == f"{A}-term-{TERM}" and created["packages"][0]["state"] == "building"
    [requested] = outbox_events(Submission)
    assert requested["type"] == "exchange.submission.requested.v1" and requested["payload"]["scope"] == "term"
    assert world.job()["built"] == 1
    body = body_of(world, f"{A}-{TERM}-term-v1")
    by_student = {s["student_id"]: s for s in body["students"]}
    assert by_student["s1"]["course_records"] == [{"key": "E-s1-SEC1", "course_code": CODE, "name": "國語文",
                                                  "credits": 4, "score": 88.0, "passed": True}]
    assert by_student["s1"]["cadres"] == [{"key": "C-s1-班長", "unit": "101", "role": "班長"}]
    assert by_student["s2"]["course_records"][0]["score"] is None and by_student["s2"]["cadres"] == []
    from shared.central import canonical_digest

    assert body["package_sha256"] == canonical_digest(body)


def test_a_term_package_waits_for_the_sections_of_its_enrolments(world):
    world.enrol("s1", "LATE")  # the enrolment arrived before its section (another queue)
    world.submit("term")
    assert world.job()["built"] == 0
    package = Package.objects(id=f"{A}-{TERM}-term-v1").first()
    assert package.state == "building" and "LATE" in package.last_error
    world.section("LATE")
    world.clock.advance(5)
    assert world.job()["built"] == 1


def test_edits_during_a_build_are_in_the_snapshot_whole_or_not_at_all(world, monkeypatch):
    """A grade that lands between the two reads of the snapshot makes it read again: the package has it."""
    world.section()
    world.enrol("s1")
    world.submit("term")
    collect = build._collect
    calls = []

    first = {}

    def first_read_then_edit(sources):
        calls.append(1)
        if len(calls) == 1:
            first.update({name: list(model._get_collection().find(query)) for name, model, query in sources})
            world.grade("s1", 70)
        return collect(sources)

    monkeypatch.setattr(build, "_collect", first_read_then_edit)
    assert world.job()["built"] == 1
    assert first["course_records"][0].get("score") is None  # the first read had the old state
    body = body_of(world, f"{A}-{TERM}-term-v1")
    assert body["students"][0]["course_records"][0]["score"] == 70.0


def test_the_double_collect_refuses_a_changed_row(world):
    world.section()
    world.enrol("s1")
    from services.exchange.models import CourseRecord

    sources = [("course_records", CourseRecord, {"school": A, "term": TERM})]
    original = CourseRecord._get_collection().find

    class Interfering:
        def __init__(self):
            self.reads = 0

        def __call__(self, *args, **kwargs):
            self.reads += 1
            if self.reads == 2:
                world.grade("s1", 50)
            return original(*args, **kwargs)

    collection = CourseRecord._get_collection()
    interfering = Interfering()
    collection.find = interfering  # pymongo collections allow attribute assignment on the instance
    try:
        assert build._collect(sources) is None
    finally:
        del collection.find
    assert build._collect(sources) is not None


def test_a_year_package_waits_for_the_lock_and_every_counted_selection(world):
    world.select("s1")
    world.select("s2")
    world.select("s2", outcomes=3)  # revision 2
    response = world.submit("year")
    assert response.status_code == 201 and response.get_json()["submission_id"] == f"{A}-year-112"
    assert response.get_json()["packages"][0]["state"] == "waiting"
    [requested] = outbox_events(Submission)
    assert requested["payload"] == {**requested["payload"], "scope": "year", "year": "112", "term": TERM}
    assert world.job() == {"promoted": 0, "built": 0, "sent": 0}  # no lock yet
    world.lock(students=3, revisions=4)  # intake counted a third student we have not seen yet
    assert world.job()["promoted"] == 0
    world.select("s3")
    assert world.job()["built"] == 1
    body = body_of(world, f"{A}-{TERM}-year-v1")
    by_student = {s["student_id"]: s for s in body["students"]}
    assert sorted(by_student) == ["s1", "s2", "s3"] and len(by_student["s2"]["outcomes"]) == 3
    from tests.service.test_exchange_support import sha

    assert by_student["s1"]["performances"][0]["files"][0]["sha256"] == sha("P-s1-0:v1")


def test_a_stale_selection_revision_keeps_the_year_waiting(world):
    world.select("s1")
    world.lock(students=1, revisions=2)  # intake counted revision 2; its event is still on the way
    world.submit("year")
    assert world.job()["promoted"] == 0
    world.select("s1", outcomes=1)
    assert world.job()["built"] == 1
    assert len(body_of(world, f"{A}-{TERM}-year-v1")["students"][0]["outcomes"]) == 1


def test_a_late_or_repeated_selection_event_changes_nothing(world):
    first = world.select("s1", outcomes=2)
    world.select("s1", outcomes=1)
    world.deliver("exchange.selections", first)  # revision 1 again, late
    from services.exchange.models import Selection

    assert Selection.objects(selection_id=f"{A}:s1:112").first().rows["outcomes"]["count"] == 1


def test_the_body_is_immutable_and_checked_on_every_read(world):
    world.section()
    world.enrol("s1")
    world.submit("term")
    world.job()
    package = Package.objects(id=f"{A}-{TERM}-term-v1").first()
    path = world.exchange.store._path(package.body_key)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"\"credits\":4", b"\"credits\":9"))
    try:
        build.read_body(world.exchange.store, package)
        raise AssertionError("a changed body was read")
    except IOError:
        pass


def test_submitting_twice_and_bad_input(world):
    assert world.submit("term").status_code == 201
    problem_of(world.submit("term"), 409, "submission_exists")
    problem_of(world.post(f"/schools/{A}/submissions", {"scope": "decade", "term": TERM}), 422, "validation_failed")
    problem_of(world.post(f"/schools/{A}/submissions", {"scope": "term", "term": "11203"}), 422, "validation_failed")
    problem_of(world.post(f"/schools/{A}/submissions", {"scope": "term", "term": TERM, "x": 1}), 422,
               "validation_failed")
    response = world.client.post(f"/api/v1/exchange/schools/{A}/submissions", headers=world.h("adm"), data="{",
                                 content_type="application/json")
    problem_of(response, 400, "malformed_json")
    problem_of(world.submit("term", user="t1"), 403, "forbidden")
    problem_of(world.submit("term", user="s1"), 403, "forbidden")
    problem_of(world.submit("term", user="admb", school=A), 404, "not_found")
    problem_of(world.get(f"/schools/{A}/submissions/{A}-term-{TERM}", "admb"), 404, "not_found")
    problem_of(world.get(f"/schools/{B}/submissions/{A}-term-{TERM}", "admb"), 404, "not_found")
    assert Submission.objects.count() == 1


def test_a_submission_is_made_inside_the_submission_window_once_one_is_set(world):
    from datetime import timedelta

    now = world.clock()
    world.window("submission", now + timedelta(hours=1), now + timedelta(days=2))
    problem_of(world.submit("term"), 409, "submission_window_closed")
    assert Submission.objects.count() == 0 and Package.objects.count() == 0
    world.clock.advance(3600)
    assert world.submit("term").status_code == 201
