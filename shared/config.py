"""Twelve-factor settings: everything comes from environment variables, with embedded defaults.

Every URL picks a backend by its scheme:
- BUS_URL: ``amqp://user:pass@host:5672//`` (RabbitMQ) or ``memory://`` (one process)
- DOCUMENTS_URL: ``mongodb://host/...`` (MongoDB in production; the SecantusDB surrogate in development and
  tests, see deploy/docstore.py).
  DOCUMENTS_DB_PREFIX names the databases (``<prefix>_<service>``; tests give each test its own prefix).
- MEDIA_URL: ``s3://KEY:SECRET@HOST:PORT/BUCKET`` (MinIO/S3) or ``file:///path``
- tracing: the standard ``OTEL_*`` variables (read by the OpenTelemetry SDK itself)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Where each service listens when run as separate processes on one host (make services).
DEFAULT_PORTS = {"gateway": 8080, "identity": 8101, "records": 8102, "intake": 8103, "certification": 8104,
                 "scheduling": 8105, "exchange": 8106}
# The central database sandbox (deploy/central_sandbox.py) where no CENTRAL_URL names the real one.
CENTRAL_SANDBOX_PORT = 8190


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def service_url(name: str) -> str:
    """Base URL of a service as the gateway (or another caller) reaches it: ``<NAME>_URL``."""
    return _env(f"{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}").rstrip("/")


@dataclass(frozen=True)
class Settings:
    service: str
    bus_url: str = "memory://"
    documents_url: str = "mongodb://127.0.0.1:27017/"
    documents_prefix: str = "footprint"
    media_url: str = "file://./var/media"
    var_dir: Path = Path("var")
    # Consumers and the outbox relay run inside the web process (the one-process embedded run) or in separate
    # worker processes (deploy/worker.py) wherever the store is shared.
    inproc_workers: bool = False
    jwt_private_key_file: str = ""
    jwks_url: str = ""
    jwt_public_key_file: str = ""
    access_token_ttl: int = 600
    refresh_token_ttl: int = 14 * 24 * 3600
    national_id_key: str = ""
    national_id_hash_key: str = ""
    consumer_prefetch: int = 16
    consumer_max_retries: int = 5
    consumer_backoff_ms: int = 500
    relay_poll_seconds: float = 0.5
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        documents_url = _env("DOCUMENTS_URL", "mongodb://127.0.0.1:27017/")
        return cls(
            service=service,
            bus_url=_env("BUS_URL", "memory://"),
            documents_url=documents_url,
            documents_prefix=_env("DOCUMENTS_DB_PREFIX", "footprint"),
            media_url=_env("MEDIA_URL", "file://./var/media"),
            var_dir=Path(_env("FOOTPRINT_VAR_DIR", "var")),
            inproc_workers=_bool("FOOTPRINT_INPROC_WORKERS", False),
            jwt_private_key_file=_env("JWT_PRIVATE_KEY_FILE", ""),
            jwks_url=_env("JWKS_URL", f"{service_url('identity')}/api/v1/auth/jwks"),
            jwt_public_key_file=_env("JWT_PUBLIC_KEY_FILE", ""),
            access_token_ttl=int(_env("ACCESS_TOKEN_TTL", "600")),
            refresh_token_ttl=int(_env("REFRESH_TOKEN_TTL", str(14 * 24 * 3600))),
            national_id_key=_env("NATIONAL_ID_KEY", ""),
            national_id_hash_key=_env("NATIONAL_ID_HASH_KEY", ""),
            consumer_prefetch=int(_env("CONSUMER_PREFETCH", "16")),
            consumer_max_retries=int(_env("CONSUMER_MAX_RETRIES", "5")),
            consumer_backoff_ms=int(_env("CONSUMER_BACKOFF_MS", "500")),
            relay_poll_seconds=float(_env("OUTBOX_POLL_SECONDS", "0.5")),
        )
