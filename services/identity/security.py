"""Identity's secrets: password hashing, the token signing key, and the national-ID vault."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwt.algorithms import OKPAlgorithm

from shared.errors import DomainError

log = logging.getLogger("footprint.identity")

# Passwords people choose: argon2id with OWASP's minimum profile (19 MiB, t=2), about 30 ms here.
CHOSEN = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
# Initial passwords from bulk imports must be changed at first sign-in, so they get a light profile:
# 10,000 students are imported in seconds instead of minutes. The first sign-in replaces the hash.
INITIAL = PasswordHasher(time_cost=1, memory_cost=4096, parallelism=1)
# Verified against when a username does not exist, so unknown and known users take the same time.
_DUMMY_HASH = CHOSEN.hash("footprint-timing-equaliser")


def hash_password(password: str, *, initial: bool = False) -> str:
    return (INITIAL if initial else CHOSEN).hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return CHOSEN.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str, *, username: str, old_password: str | None = None) -> None:
    if len(password) < 10 or password.lower() == username.lower() or (old_password is not None and password == old_password):
        raise DomainError("weak_password")


def _secret_file(var_dir: Path, name: str, make: callable) -> bytes:
    """Development keys: generated once under var/keys. Production passes them in by environment/secret."""
    path = var_dir / "keys" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{name}.{os.getpid()}.tmp")
        tmp.write_bytes(make())
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if another process made it first: every process then reads the same key
            log.warning("generated development secret %s (set it by environment in production)", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()


class SigningKeys:
    """The Ed25519 key that signs access tokens; its public half is served as a JWKS."""

    def __init__(self, private_pem: bytes):
        self.private_key = serialization.load_pem_private_key(private_pem, password=None)
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise ValueError("the token signing key must be Ed25519")
        public_raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = hashlib.sha256(public_raw).hexdigest()[:16]

    @classmethod
    def load(cls, key_file: str, var_dir: Path) -> "SigningKeys":
        if key_file:
            return cls(Path(key_file).read_bytes())
        return cls(_secret_file(var_dir, "identity-signing-ed25519.pem", lambda: Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())))

    def jwks(self) -> dict:
        import json

        jwk = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "EdDSA", "use": "sig"})
        return {"keys": [jwk]}


# ---- 身分證字號 / 居留證號 -------------------------------------------------------------------------------

# Letter values of the Taiwanese ID check-digit algorithm (A=10 … Z=33, with I, O, W, Z out of order).
_LETTER = {c: v for c, v in zip("ABCDEFGHJKLMNPQRSTUVXYWZIO", range(10, 36))}
_NATIONAL_ID = re.compile(r"^[A-Z][1289][0-9]{8}$")   # citizens (1/2) and the 2021 resident format (8/9)
_OLD_RESIDENT = re.compile(r"^[A-Z][A-D][0-9]{8}$")    # resident certificates issued before 2021


def normalise_national_id(raw: str) -> str:
    """Validate format and check digit; returns the upper-case number or raises invalid_national_id."""
    value = (raw or "").strip().upper()
    if _NATIONAL_ID.match(value):
        second = int(value[1])
    elif _OLD_RESIDENT.match(value):
        second = _LETTER[value[1]] % 10
    else:
        raise DomainError("invalid_national_id")
    letter = _LETTER[value[0]]
    digits = [second] + [int(c) for c in value[2:]]
    total = letter // 10 + (letter % 10) * 9 + sum(d * w for d, w in zip(digits, (8, 7, 6, 5, 4, 3, 2, 1))) + digits[-1]
    if total % 10 != 0:
        raise DomainError("invalid_national_id")
    return value


def mask_national_id(value: str) -> str:
    return f"{value[:2]}{'*' * 5}{value[-3:]}"


class NationalIdVault:
    """AES-256-GCM encryption at rest, plus an HMAC-SHA256 keyed hash that makes a number findable."""

    def __init__(self, encryption_key: bytes, hash_key: bytes):
        self._aead = AESGCM(encryption_key)
        self._hash_key = hash_key

    @classmethod
    def load(cls, enc_b64: str, hash_b64: str, var_dir: Path) -> "NationalIdVault":
        enc = base64.b64decode(enc_b64) if enc_b64 else _secret_file(var_dir, "national-id-aes256.key", lambda: os.urandom(32))
        mac = base64.b64decode(hash_b64) if hash_b64 else _secret_file(var_dir, "national-id-hmac.key", lambda: os.urandom(32))
        return cls(enc, mac)

    def lookup_hash(self, school: str, value: str) -> str:
        return hmac.new(self._hash_key, f"{school}:{value}".encode(), hashlib.sha256).hexdigest()

    def seal(self, school: str, value: str) -> tuple[str, str, str]:
        """(ciphertext, lookup hash, masked) for a validated number; the school is bound as associated data."""
        nonce = os.urandom(12)
        ciphertext = self._aead.encrypt(nonce, value.encode(), school.encode())
        return base64.b64encode(nonce + ciphertext).decode(), self.lookup_hash(school, value), mask_national_id(value)

    def open(self, school: str, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], school.encode()).decode()
