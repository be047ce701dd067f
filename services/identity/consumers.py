"""Identity consumes no events: it is the source of truth for schools and users.

Its facts (identity.school.*, identity.user.*) are consumed elsewhere, e.g. by the gateway's access
revocation projection (gateway/consumers.py); later services project users and schools from them.
"""
from __future__ import annotations

from shared.bus import Subscription


def subscriptions(runtime) -> list[Subscription]:
    return []
