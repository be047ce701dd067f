"""What records listens to: identity's user facts, kept as the user directory (students, teachers, classes), and
the exchange's finals (a final term's data refuses every change, shared/finality.py).

Queue ``records.user-directory``. The handler is an idempotent upsert that ignores stale events; the
consumer also skips event ids it has handled before (shared.bus.ProcessedEvents).
"""
from __future__ import annotations

from shared.bus import Subscription
from shared.finality import finality_subscription
from shared.projections import user_directory_subscription

from .models import Directory, FinalPeriod


def subscriptions(runtime) -> list[Subscription]:
    return [user_directory_subscription("records", Directory),
            finality_subscription("records", FinalPeriod)]  # queue records.finality
