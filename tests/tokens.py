"""Access tokens for testing a service without running identity: a test key, and a verifier that trusts it."""
from __future__ import annotations

import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import TokenVerifier


class TestTokens:
    __test__ = False  # not a test class

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        self.kid = "test-" + uuid.uuid4().hex[:8]
        self.verifier = TokenVerifier(public_keys={self.kid: self.key.public_key()})

    def token(self, user_id: str, school: str | None = "999001", roles: tuple[str, ...] | list[str] = ("student",), *,
              city: str = "TPE", username: str | None = None, must_change_password: bool = False,
              receipts_only: bool = False, ttl: int = 600) -> str:
        now = time.time()
        claims = {"iss": "footprint-identity", "aud": "footprint", "typ": "access", "sub": user_id,
                  "usr": username or user_id, "sch": school, "city": city, "roles": list(roles),
                  "pwd": must_change_password, "rst": receipts_only, "iat": int(now), "ims": int(now * 1000),
                  "exp": int(now) + ttl, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})

    def headers(self, *args, **kwargs) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*args, **kwargs)}"}
