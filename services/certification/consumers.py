"""What certification consumes: intake's submissions, records' course sections, identity's users.

Every handler is repeatable on its own (the bus also deduplicates by event id): a submission is applied by
its submission number, sections and users by ``occurred_at`` (an older event never overwrites a newer one).
"""
from __future__ import annotations

from shared.bus import Subscription
from shared.events import Envelope, OutcomeSubmitted, SectionFacts
from shared.finality import finality_subscription
from shared.projections import user_directory_subscription

from . import domain
from .models import DirectoryUser, FinalPeriod

SUBMISSIONS = "certification.submissions"
COURSE_CATALOGUE = "certification.course-catalogue"
SECTION_EVENTS = ["records.section.created.v1", "records.section.updated.v1"]


def on_submission(envelope: Envelope, payload) -> None:
    if isinstance(payload, OutcomeSubmitted):
        domain.on_submitted(envelope, payload)


def on_section(envelope: Envelope, payload) -> None:
    if isinstance(payload, SectionFacts):
        domain.apply_section_event(envelope, payload)


def subscriptions(runtime) -> list[Subscription]:
    return [
        Subscription(queue=SUBMISSIONS, event_types=["intake.outcome.submitted.v1"], handler=on_submission),
        Subscription(queue=COURSE_CATALOGUE, event_types=SECTION_EVENTS, handler=on_section),
        user_directory_subscription("certification", DirectoryUser),  # queue certification.user-directory
        finality_subscription("certification", FinalPeriod),  # queue certification.finality
    ]
