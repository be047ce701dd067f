"""The access-revocation projection, fed by identity's events.

Access tokens are verified locally and live for minutes; when an account or school is deactivated or a
password changes, the gateway learns it from the bus and refuses older tokens at once.
Handlers are idempotent: they only ever move ``not_before`` forward (``$max``).
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

from shared.bus import Subscription
from shared.events import Envelope, SchoolDeactivated, UserDeactivated, UserUpdated

from .models import AccessRevocation

QUEUE = "gateway.access-revocation"


def _revoke(key: str, not_before: datetime, reason: str) -> None:
    AccessRevocation._get_collection().update_one(
        {"_id": key}, {"$max": {"not_before": not_before}, "$set": {"reason": reason}}, upsert=True)


def on_identity_event(envelope: Envelope, payload) -> None:
    if isinstance(payload, UserDeactivated):
        _revoke(f"user:{payload.user_id}", payload.deactivated_at, "deactivated")
    elif isinstance(payload, UserUpdated) and payload.credentials_changed_at is not None:
        _revoke(f"user:{payload.user_id}", payload.credentials_changed_at, "credentials changed")
    elif isinstance(payload, SchoolDeactivated):
        _revoke(f"school:{payload.code}", payload.deactivated_at, "school deactivated")


def subscriptions(runtime) -> list[Subscription]:
    return [Subscription(queue=QUEUE, handler=on_identity_event, event_types=[
        "identity.user.deactivated.v1", "identity.user.updated.v1", "identity.school.deactivated.v1"])]


class RevocationCheck:
    """Reads the projection with a short cache so the hot path costs a dictionary look-up."""

    def __init__(self, ttl: float = 1.0):
        self.ttl = ttl
        self._cache: dict[str, tuple[float, float | None]] = {}
        self._lock = threading.Lock()

    def _not_before(self, key: str) -> float | None:
        moment = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and moment - hit[0] < self.ttl:
            return hit[1]
        doc = AccessRevocation._get_collection().find_one({"_id": key}, {"not_before": 1})
        value = None
        if doc:
            nb = doc["not_before"]
            value = (nb if nb.tzinfo else nb.replace(tzinfo=timezone.utc)).timestamp()
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (moment, value)
        return value

    def revoked(self, user_id: str, school: str | None, issued_at_ms: int) -> bool:
        for key in (f"user:{user_id}", f"school:{school}" if school else None):
            if key is None:
                continue
            not_before = self._not_before(key)
            if not_before is not None and issued_at_ms < int(not_before * 1000):
                return True
        return False
