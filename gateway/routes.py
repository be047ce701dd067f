"""Which service serves which path, what needs no token, and how large a body may be."""
from __future__ import annotations

import re

# (path pattern, service). First match wins. Services are reached at <NAME>_URL (shared.config.service_url).
ROUTES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^/api/v1/(auth|me|schools|users)(/|$)"), "identity"),
    (re.compile(r"^/api/v1/records(/|$)"), "records"),
    (re.compile(r"^/api/v1/intake(/|$)"), "intake"),
    (re.compile(r"^/api/v1/certification(/|$)"), "certification"),
    (re.compile(r"^/api/v1/scheduling(/|$)"), "scheduling"),
    (re.compile(r"^/api/v1/exchange(/|$)"), "exchange"),
]

# Reachable without an access token (method, path).
PUBLIC = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"), ("GET", "/api/v1/auth/jwks")}

DEFAULT_BODY_LIMIT = 1024 * 1024
# Larger bodies where files travel; everything else is a small JSON document.
BODY_LIMITS: list[tuple[re.Pattern, int]] = [
    (re.compile(r"^/api/v1/schools/[0-9]{6}/imports/"), 20 * 1024 * 1024),
    (re.compile(r"^/api/v1/records/schools/[0-9]{6}/imports/"), 20 * 1024 * 1024),
    # intake enforces each file kind's own limit (documents 4 MiB, media 10 MiB) while streaming
    (re.compile(r"^/api/v1/intake/.+/files(/|$)"), 10 * 1024 * 1024 + 64 * 1024),
    (re.compile(r"^/api/v1/records/.+/attachments(/|$)"), 4 * 1024 * 1024 + 64 * 1024),
]


def service_for(path: str) -> str | None:
    for pattern, service in ROUTES:
        if pattern.match(path):
            return service
    return None


def body_limit(path: str) -> int:
    for pattern, limit in BODY_LIMITS:
        if pattern.match(path):
            return limit
    return DEFAULT_BODY_LIMIT


def routed_services() -> list[str]:
    """Services the gateway proxies to that this deployment runs (see deploy.wsgi.SERVICES)."""
    from deploy.wsgi import SERVICES

    return sorted({service for _, service in ROUTES} & set(SERVICES))
