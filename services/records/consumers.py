"""What records listens to: identity's user facts, kept as the user directory (students, teachers, classes).

Queue ``records.user-directory``. The handler is an idempotent upsert that ignores stale events; the
consumer also skips event ids it has handled before (shared.bus.ProcessedEvents).
"""
from __future__ import annotations

from shared.bus import Subscription
from shared.projections import user_directory_subscription

from .models import Directory


def subscriptions(runtime) -> list[Subscription]:
    return [user_directory_subscription("records", Directory)]
