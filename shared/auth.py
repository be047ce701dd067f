"""Token verification, shared by the gateway and every service.

Identity signs short-lived access JWTs with an Ed25519 key (EdDSA); everyone else verifies them locally
with the public keys from identity's JWKS endpoint (fetched once, refetched on an unknown key id), so a
request never needs a round trip to identity to be authorised.
"""
from __future__ import annotations

import functools
import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Callable

import jwt
from flask import current_app, g, request

from shared.errors import DomainError

ISSUER = "footprint-identity"
AUDIENCE = "footprint"
ALGORITHM = "EdDSA"

STAFF_ROLES = frozenset({"subject_teacher", "course_counsellor", "homeroom_teacher", "registrar", "curriculum",
                         "student_affairs", "counselling_office", "school_admin"})


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    school: str | None  # None for a city admin
    city: str
    roles: tuple[str, ...]
    issued_at: int
    issued_at_ms: int = 0  # millisecond precision: a revocation in the same second as issuance still counts
    must_change_password: bool = False
    # Suspended/transferred students keep a temporary account that may only confirm receipts.
    receipts_only: bool = False
    token_id: str = ""

    def has(self, *roles: str) -> bool:
        return bool(set(roles) & set(self.roles))

    @property
    def is_city_admin(self) -> bool:
        return "city_admin" in self.roles

    def can_see_school(self, school: str, school_city: str | None = None) -> bool:
        """Tenant seal: one's own school only; a city admin sees the schools of their city."""
        if self.school is not None:
            return self.school == school
        return self.is_city_admin and school_city == self.city

    @classmethod
    def from_claims(cls, claims: dict) -> "Principal":
        return cls(user_id=claims["sub"], username=claims.get("usr", ""), school=claims.get("sch"),
                   city=claims.get("city", ""), roles=tuple(claims.get("roles", [])), issued_at=int(claims["iat"]),
                   issued_at_ms=int(claims.get("ims") or int(claims["iat"]) * 1000),
                   must_change_password=bool(claims.get("pwd", False)), receipts_only=bool(claims.get("rst", False)),
                   token_id=claims.get("jti", ""))


class TokenVerifier:
    def __init__(self, *, jwks_url: str = "", public_keys: dict[str, object] | None = None, refetch_seconds: float = 30):
        self.jwks_url = jwks_url
        self._keys: dict[str, object] = dict(public_keys or {})
        self._lock = threading.Lock()
        self._last_fetch = 0.0
        self._refetch_seconds = refetch_seconds

    def _fetch(self) -> None:
        with urllib.request.urlopen(self.jwks_url, timeout=3) as response:  # noqa: S310 (internal URL from config)
            document = json.load(response)
        keys = {}
        for jwk in document.get("keys", []):
            keys[jwk["kid"]] = jwt.PyJWK.from_dict(jwk, algorithm=ALGORITHM).key
        self._keys.update(keys)

    def _key(self, kid: str):
        key = self._keys.get(kid)
        if key is None and self.jwks_url:
            with self._lock:
                if kid not in self._keys and time.monotonic() - self._last_fetch > (self._refetch_seconds if self._keys else 0.5):
                    self._last_fetch = time.monotonic()
                    try:
                        self._fetch()
                    except Exception as exc:
                        raise DomainError("upstream_unavailable", f"cannot fetch signing keys: {exc}") from exc
            key = self._keys.get(kid)
        if key is None:
            raise DomainError("invalid_token", "unknown signing key")
        return key

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise DomainError("invalid_token", "malformed token") from exc
        if header.get("alg") != ALGORITHM or not isinstance(header.get("kid"), str):
            raise DomainError("invalid_token", "unexpected token algorithm")
        try:
            claims = jwt.decode(token, self._key(header["kid"]), algorithms=[ALGORITHM], audience=AUDIENCE,
                                issuer=ISSUER, options={"require": ["exp", "iat", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError as exc:
            raise DomainError("invalid_token", "token expired") from exc
        except jwt.PyJWTError as exc:
            raise DomainError("invalid_token", str(exc)) from exc
        if claims.get("typ") != "access":
            raise DomainError("invalid_token", "not an access token")
        return Principal.from_claims(claims)


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError("unauthenticated")
    return token.strip()


def authenticate() -> Principal:
    verifier: TokenVerifier = current_app.extensions["footprint.verifier"]
    principal = verifier.verify(bearer_token())
    g.principal = principal
    return principal


def require_auth(*roles: str, allow_password_change: bool = False, allow_receipts_only: bool = False) -> Callable:
    """Decorator: a valid access token, and one of ``roles`` when given (403 otherwise)."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = authenticate()
            if principal.must_change_password and not allow_password_change:
                raise DomainError("password_change_required")
            if principal.receipts_only and not allow_receipts_only:
                raise DomainError("forbidden", "temporary accounts may only confirm receipts")
            if roles and not principal.has(*roles):
                raise DomainError("forbidden")
            return view(*args, **kwargs)

        wrapper.footprint_auth = {"roles": list(roles)}  # read by the OpenAPI builder
        return wrapper

    return decorate


def current_principal() -> Principal:
    return g.principal
