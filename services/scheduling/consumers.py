"""What scheduling consumes: records' enrolments, intake's submissions and identity's users (whom a reminder is
for), and its own ``scheduling.closing.announced.v1`` (the reminders themselves, so they are retried like any
consumer's work and a repeated delivery adds nothing).

Every handler is repeatable: enrolments by ``occurred_at`` (an older event never overwrites a newer one),
submissions and notifications by ids derived from what caused them.
"""
from __future__ import annotations

from shared.bus import Subscription
from shared.projections import user_directory_subscription

from . import domain
from .models import DirectoryUser

ENROLMENT_EVENTS = ["records.enrolment.created.v1", "records.enrolment.withdrawn.v1"]


def subscriptions(runtime) -> list[Subscription]:
    return [
        Subscription(queue="scheduling.enrolments", event_types=ENROLMENT_EVENTS, handler=domain.apply_enrolment_event),
        Subscription(queue="scheduling.submissions", event_types=["intake.outcome.submitted.v1"],
                     handler=domain.apply_submission_event),
        Subscription(queue="scheduling.reminders", event_types=["scheduling.closing.announced.v1"],
                     handler=domain.remind_on_closing),
        user_directory_subscription("scheduling", DirectoryUser),  # queue scheduling.user-directory
    ]
