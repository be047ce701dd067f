"""Identity service: its spec (documents with outboxes, subscriptions, API) and its app factory."""
from __future__ import annotations

from shared.config import Settings
from shared.runtime import Runtime, ServiceSpec

from . import api, consumers
from .domain import Identity
from .models import School, User
from .security import NationalIdVault, SigningKeys


def _start(runtime: Runtime) -> None:
    settings = runtime.settings
    runtime.state["identity"] = Identity(
        keys=SigningKeys.load(settings.jwt_private_key_file, settings.var_dir),
        vault=NationalIdVault.load(settings.national_id_key, settings.national_id_hash_key, settings.var_dir),
        access_ttl=settings.access_token_ttl, refresh_ttl=settings.refresh_token_ttl)
    # Identity verifies its own tokens with its own key: no JWKS round trip to itself.
    from shared.auth import TokenVerifier

    keys = runtime.state["identity"].keys
    runtime.verifier = TokenVerifier(public_keys={keys.kid: keys.private_key.public_key()})


def _seed(runtime: Runtime) -> dict:
    from .domain import seed_demo

    return seed_demo(runtime.state["identity"])


SPEC = ServiceSpec(name="identity", aggregates=[School, User], subscriptions=consumers.subscriptions,
                   install_api=api.install, on_start=_start, seed_demo=_seed)


def create_runtime(settings: Settings | None = None) -> Runtime:
    return Runtime(SPEC, settings or Settings.from_env("identity"))
