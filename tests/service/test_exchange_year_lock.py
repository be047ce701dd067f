"""The year's submission locks the year's selections in intake before the package is built from them: the exchange's
exchange.submission.requested.v1 makes intake lock and announce intake.selection.locked.v1 with the selections'
count and revisions' sum; only a projection holding every one of them at that revision lets the build start."""
from __future__ import annotations

from services.exchange.build import year_complete
from services.exchange.consumers import apply_selection_event
from services.exchange.models import Package, Submission
from services.intake.models import Selection, YearLock
from shared.events import parse_event
from tests.service.test_exchange_support import sandbox, world  # noqa: F401
from tests.service.test_intake_selection import YEAR, certified, select
from tests.service.test_intake_support import A, problem_of
from tests.service.test_intake_support import world as intake  # noqa: F401 (fixture)


def pending(model) -> list[dict]:
    events = [item["event"] for doc in model._get_collection().find({}, {"outbox": 1}) for item in doc.get("outbox", [])]
    model._get_collection().update_many({}, {"$set": {"outbox": []}})
    return events


def test_a_year_submission_locks_intakes_selections_before_the_build(world, intake):
    (first,) = certified(intake, 1)
    assert select(intake, [first]).status_code == 200
    (second,) = certified(intake, 1)
    assert select(intake, [first, second]).status_code == 200  # revision 2
    (theirs,) = certified(intake, 1, user="s2")
    assert select(intake, [theirs], user="s2").status_code == 200
    changes = pending(Selection)
    assert [e["payload"]["revision"] for e in changes] == [1, 2, 1]

    assert world.submit("year").status_code == 201
    [requested] = pending(Submission)
    intake.deliver(requested)  # intake hears the request on intake.submission-requests
    assert YearLock.objects(id=f"{A}:{YEAR}").first() is not None
    problem_of(select(intake, [], user="s1"), 409, "selection_locked")
    [locked] = pending(YearLock)
    assert locked["type"] == "intake.selection.locked.v1"
    assert (locked["payload"]["students"], locked["payload"]["revisions"]) == (2, 3)

    # the lock overtook a selection change on the way: the exchange waits for it
    apply_selection_event(*parse_event(locked))
    for change in changes[:1] + changes[2:]:
        apply_selection_event(*parse_event(change))
    assert not year_complete(A, YEAR)
    assert world.job()["built"] == 0
    apply_selection_event(*parse_event(changes[1]))
    assert year_complete(A, YEAR)
    assert world.job() == {"promoted": 1, "built": 1, "sent": 1}
    package = Package.objects(submission_id=f"{A}-year-{YEAR}").first()
    assert package.state == "received" and package.rows == {"outcomes": 3, "performances": 0}

    intake.deliver(requested)  # a redelivered request: one lock, announced again for a consumer that lost it
    [again] = pending(YearLock)
    assert again["payload"]["students"] == 2 and YearLock.objects.count() == 1
