"""Units of the shared kit: events catalogue, errors table, rate limiter, OpenAPI from routes."""
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from gateway.ratelimit import TokenBuckets
from shared.errors import ERRORS, DomainError, problem
from shared.events import CATALOGUE, UserDeactivated, make_event, parse_event


def test_every_catalogue_type_is_versioned_past_tense_fact():
    for name, model in CATALOGUE.items():
        service, entity, verb, version = name.split(".")
        assert version.startswith("v") and (verb.endswith("ed") or verb in {"withdrawn", "sent", "kept"}), name
        assert model.model_config.get("extra") == "forbid"


def test_event_envelope_round_trip_and_validation():
    event = make_event(UserDeactivated(user_id="u1", school="999001", deactivated_at="2026-01-01T00:00:00Z",
                                       reason="left"), school="999001", producer="identity")
    assert event["type"] == "identity.user.deactivated.v1" and len(event["id"]) == 36
    envelope, payload = parse_event(event)
    assert payload.user_id == "u1" and envelope.producer == "identity"
    bad = {**event, "payload": {"user_id": "u1"}}
    with pytest.raises(ValidationError):
        parse_event(bad)


def test_problem_bodies_are_bilingual_and_stable():
    for code, (status, zh, en) in ERRORS.items():
        body = problem(code)
        assert body["code"] == code and body["status"] == status and 400 <= status < 600
        assert body["message"]["zh-TW"] == zh and body["message"]["en"] == en
    with pytest.raises(KeyError):
        DomainError("no_such_code")


def test_token_bucket_limits_and_refills(monkeypatch):
    # The limiter's clock is the test's: on a loaded machine 10 ms can pass between two takes on the real one,
    # and at 100 tokens/s that refills a token (the fourth take would then be allowed).
    from gateway import ratelimit

    now = [1000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: now[0]))
    buckets = TokenBuckets(rate=100, burst=3)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("k")
    assert 0 < wait <= 0.011
    assert buckets.take("other") == 0.0
    now[0] += 0.02  # time passes
    assert buckets.take("k") == 0.0
