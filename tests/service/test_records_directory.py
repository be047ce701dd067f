"""The user directory records keeps from identity's events, and the demo seed that waits for it."""
from __future__ import annotations

import time

from tests.conftest import test_documents
from tests.service.test_records_support import (COURSE, base, client, created, deactivated, directory_handler, feed,  # noqa: F401
                                                h, outbox_events, problem_of, records, uid, updated)


def _entry(user_id):
    from services.records.models import Directory

    return Directory._get_collection().find_one({"_id": user_id})


def test_the_same_event_twice_has_one_effect(records):
    from services.records.models import Directory

    event = created("teacher02", homeroom_class="103")
    before = Directory.objects.count()
    handler = directory_handler(records)
    handler(*event)
    first = _entry(uid("teacher02"))
    handler(*event)
    assert _entry(uid("teacher02")) == first and Directory.objects.count() == before
    assert first["homeroom_class"] == "103"


def test_an_older_event_never_overwrites_a_newer_one(records):
    from datetime import datetime, timedelta, timezone

    def later(minutes):
        return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()

    feed(records, updated("student02", class_name="103", grade=12, at=later(60)))
    feed(records, updated("student02", class_name="999", at=later(30)))  # older, delivered late
    entry = _entry(uid("student02"))
    assert (entry["class_name"], entry["grade"]) == ("103", 12)
    feed(records, deactivated("student02", at=later(10)))  # older still: ignored
    assert _entry(uid("student02"))["active"] is True
    feed(records, deactivated("student02", at=later(90)))
    assert _entry(uid("student02"))["active"] is False


def test_the_consumer_skips_a_redelivered_event(records):
    """Through the real consumer on the memory bus: a redelivery is acked without a second effect."""
    records.start_workers()
    (worker,) = [w for w in records.consumers if w.sub.queue == "records.user-directory"]
    first = created("teacher02", display_name="第一次")
    envelope = first[0].model_dump(mode="json")
    sentinel = created("counsellor2", display_name="哨兵")[0].model_dump(mode="json")
    records.bus.publish(envelope)
    records.bus.publish(envelope)            # the same event id again (at-least-once delivery)
    records.bus.publish(sentinel)            # published last: when it is applied, the duplicate was seen
    deadline = time.monotonic() + 10
    # Wait on the worker's own count as well: the sentinel's effect lands a moment before it is counted.
    while time.monotonic() < deadline and (_entry(uid("counsellor2"))["display_name"] != "哨兵" or worker.handled < 2):
        time.sleep(0.02)
    assert _entry(uid("counsellor2"))["display_name"] == "哨兵"
    assert _entry(uid("teacher02"))["display_name"] == "第一次"
    assert worker.handled == 2 and worker.dead_lettered == 0
    marks = records.processed.collection.count_documents({"_id": f"records.user-directory:{envelope['id']}"})
    assert marks == 1


def test_directory_changes_take_effect_in_the_rules(client, records):
    from tests.service.test_records_support import add_section, enrol, setup_term

    setup_term(client)
    section = add_section(client)
    enrol(client, section["id"], "student01")
    assert client.get(f"{base()}/enrolments", headers=h("homeroom102")).get_json()["total"] == 0
    feed(records, updated("student01", class_name="102"))      # moved to class 102
    assert client.get(f"{base()}/enrolments", headers=h("homeroom102")).get_json()["total"] == 1
    feed(records, deactivated("teacher02"))                     # a teacher who left cannot be assigned
    problem_of(client.patch(f"{base()}/sections/{section['id']}", headers=h("curriculum"),
                            json={"teacher_ids": [uid("teacher02")]}), 422, "validation_failed")


def test_seed_demo_waits_for_the_directory_then_seeds_once(tmp_path):
    from services.records import domain
    from services.records.app import SPEC, create_runtime
    from services.records.models import Enrolment, Section, Term
    from shared.config import Settings

    runtime = create_runtime(Settings(service="records", **test_documents(), media_url=f"file://{tmp_path}/media", var_dir=tmp_path))
    try:
        assert domain.seed_demo(runtime, timeout=10, poll=0.02) is None
        thread = runtime.state["seed_thread"]
        time.sleep(0.1)
        assert thread.is_alive() and Section.objects.count() == 0   # still waiting for identity's users
        for school in ("999001", "999002"):
            feed(runtime, created("teacher01", school), created("student01", school))
        thread.join(5)
        assert not thread.is_alive()
        for school in ("999001", "999002"):
            assert Term.objects(id=f"{school}:11201").first().name == "112學年度第1學期"
            (section,) = Section.objects(school=school)
            assert (section.subject_name, section.course_code, section.section_name, section.credits, section.category,
                    section.teacher_ids) == ("國語文", COURSE, "101", 4, "部定必修", [uid("teacher01", school)])
            assert len(section.course_code) == 23
            (enrolment,) = Enrolment.objects(school=school)
            assert (enrolment.student_id, enrolment.student_no, enrolment.section_id) == \
                (uid("student01", school), "1120001", section.id)
        events = sorted(e["type"] for e in outbox_events(Section) + outbox_events(Enrolment))
        assert events == ["records.enrolment.created.v1"] * 2 + ["records.section.created.v1"] * 2
        # again (a restart of the embedded run): nothing new
        assert SPEC.seed_demo(runtime) is None
        runtime.state["seed_thread"].join(5)
        assert Section.objects.count() == 2 and Enrolment.objects.count() == 2 and Term.objects.count() == 2
        assert len(outbox_events(Section) + outbox_events(Enrolment)) == 4
    finally:
        runtime.stop_workers()


def test_seed_demo_gives_up_quietly_without_identity(tmp_path):
    from services.records import domain
    from services.records.app import create_runtime
    from services.records.models import Section
    from shared.config import Settings

    runtime = create_runtime(Settings(service="records", **test_documents(), media_url=f"file://{tmp_path}/media", var_dir=tmp_path))
    domain.seed_demo(runtime, timeout=0.1, poll=0.02)
    runtime.state["seed_thread"].join(2)
    assert not runtime.state["seed_thread"].is_alive() and Section.objects.count() == 0
