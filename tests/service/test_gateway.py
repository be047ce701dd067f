"""The gateway in front of identity (embedded platform on loopback): routing, auth, revocation, limits,
streaming, health and the merged API document."""
from __future__ import annotations

import hashlib
import os
import time

import pytest
import requests
import urllib3

from gateway.ratelimit import TokenBuckets
from tests.conftest import free_port, test_documents
from tests.standin import StandInService


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from deploy.embedded import Platform

    from deploy.wsgi import SERVICES

    documents = test_documents(for_module=True)
    saved = dict(os.environ)  # the embedded platform writes its settings into the environment
    platform = Platform(gateway_port=free_port(), env={
        **{f"{name.upper()}_URL": f"http://127.0.0.1:{free_port()}" for name in SERVICES if name != "gateway"},
        "BUS_URL": "memory://", "DOCUMENTS_URL": documents["documents_url"], "DOCUMENTS_DB_PREFIX": documents["documents_prefix"],
        "FOOTPRINT_VAR_DIR": str(tmp_path_factory.mktemp("var")), "OUTBOX_POLL_SECONDS": "0.05"}).start()
    yield platform
    platform.stop()
    os.environ.clear()
    os.environ.update(saved)  # later modules (and the processes they start) must not inherit them


def sign_in(platform, username, school="999001", password="footprint-demo"):
    response = requests.post(f"{platform.url}/api/v1/auth/login", json={"school": school, "username": username,
                                                                        "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def auth(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_login_and_me_through_the_gateway_with_request_ids(platform):
    tokens = sign_in(platform, "student01")
    response = requests.get(f"{platform.url}/api/v1/me", headers={**auth(tokens), "X-Request-ID": "req-abc-123"})
    assert response.status_code == 200 and response.json()["user"]["username"] == "student01"
    assert response.headers["X-Request-ID"] == "req-abc-123"
    assert len(requests.get(f"{platform.url}/api/v1/me", headers=auth(tokens)).headers["X-Request-ID"]) == 32


def test_gateway_refuses_bad_tokens_itself(platform):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Token x"}):
        response = requests.get(f"{platform.url}/api/v1/schools", headers=headers)
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["code"] in ("unauthenticated", "invalid_token")


def test_unknown_routes_and_versions(platform):
    tokens = sign_in(platform, "student01")
    assert requests.get(f"{platform.url}/api/v1/nothing", headers=auth(tokens)).json()["code"] == "route_not_found"
    assert requests.get(f"{platform.url}/api/v2/me").status_code == 404


def test_deactivated_users_token_is_refused_at_once(platform):
    admin = sign_in(platform, "admin", school="999002")
    teacher = sign_in(platform, "teacher01", school="999002")
    me = requests.get(f"{platform.url}/api/v1/me", headers=auth(teacher)).json()
    assert requests.get(f"{platform.url}/api/v1/schools", headers=auth(teacher)).status_code == 200
    response = requests.post(f"{platform.url}/api/v1/users/{me['user']['id']}/deactivate", headers=auth(admin),
                             json={"reason": "離職"})
    assert response.status_code == 200
    deadline = time.monotonic() + 60  # identity's outbox -> the bus -> the gateway's consumer: seconds under load
    while time.monotonic() < deadline:
        refused = requests.get(f"{platform.url}/api/v1/schools", headers=auth(teacher))
        if refused.status_code == 401:
            break
        time.sleep(0.1)
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"


def test_tenant_isolation_through_the_gateway(platform):
    admin_a = sign_in(platform, "admin")
    admin_b = sign_in(platform, "admin", school="999002")
    b_users = requests.get(f"{platform.url}/api/v1/schools/999002/users", headers=auth(admin_b)).json()["items"]
    response = requests.get(f"{platform.url}/api/v1/users/{b_users[0]['id']}", headers=auth(admin_a))
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_oversize_bodies_are_413_with_and_without_length(platform):
    admin = sign_in(platform, "admin")
    big = b"x" * (1024 * 1024 + 10)
    response = requests.post(f"{platform.url}/api/v1/schools", data=big, headers={**auth(admin), "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"

    def chunks():
        for _ in range(40):
            yield b"y" * 32768

    response = requests.post(f"{platform.url}/api/v1/schools", data=chunks(),
                             headers={**auth(admin), "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


def test_malformed_bodies_through_the_gateway_are_4xx(platform):
    admin = sign_in(platform, "admin")
    for data, ctype in ((b"{", "application/json"), (b'{"code": 1}', "application/json"), (b"a=b", "text/plain")):
        response = requests.post(f"{platform.url}/api/v1/schools", data=data, headers={**auth(admin), "Content-Type": ctype})
        assert 400 <= response.status_code < 500 and response.headers["Content-Type"] == "application/problem+json"


def test_rate_limits_answer_429_with_retry_after(platform):
    gateway = platform.gateway_app.extensions["footprint.gateway"]
    saved = gateway.user_limits
    # A token comes back only after 100 s: however slowly a loaded machine answers the five requests, the fourth
    # finds the bucket empty (at 0.5/s, two seconds for the first four would have refilled one).
    gateway.user_limits = TokenBuckets(rate=0.01, burst=3)
    try:
        tokens = sign_in(platform, "teacher01")
        statuses = [requests.get(f"{platform.url}/api/v1/me", headers=auth(tokens)) for _ in range(5)]
        assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
        limited = statuses[3]
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        gateway.user_limits = saved
    saved_ip = gateway.ip_limits
    gateway.ip_limits = TokenBuckets(rate=0.01, burst=2)  # as above: no refill within the test
    try:
        codes = [requests.post(f"{platform.url}/api/v1/auth/login", json={}).status_code for _ in range(3)]
        assert codes == [422, 422, 429]
    finally:
        gateway.ip_limits = saved_ip


def test_readiness_and_the_merged_api_document(platform):
    ready = requests.get(f"{platform.url}/readyz").json()
    assert ready["status"] == "ready" and ready["checks"] == {
        "documents": "ok", "bus": "ok", "service:identity": "ok", "service:records": "ok", "service:intake": "ok",
        "service:certification": "ok", "service:scheduling": "ok", "service:exchange": "ok"}
    assert requests.get(f"{platform.url}/healthz").json()["status"] == "alive"
    document = requests.get(f"{platform.url}/api/v1/openapi.json").json()
    assert {"/api/v1/auth/login", "/api/v1/me", "/healthz", "/readyz", "/api/v1/openapi.json",
            "/api/v1/records/schools/{code}/sections", "/api/v1/intake/outcomes/{outcome_id}/files/{upload_key}",
            "/api/v1/certification/outcomes/{outcome_id}/certify",
            "/api/v1/scheduling/schools/{school}/terms/{term}"} <= set(document["paths"])
    assert "Problem" in document["components"]["schemas"] and "x-footprint-missing-services" not in document


# ---- streaming: a 10 MB body is never held whole in gateway memory ------------------------------------------

def test_ten_megabytes_stream_through_both_ways(platform, monkeypatch):
    """Bytes arrive intact either way, chunked or with a length. (Flat gateway memory is measured on the
    gunicorn gateway process in tests/system/test_gateway_memory.py.)"""
    admin = sign_in(platform, "admin")
    upstream = StandInService()
    gateway = platform.gateway_app.extensions["footprint.gateway"]
    monkeypatch.setitem(gateway.upstreams, "identity", upstream.url)
    size = 10 * 1024 * 1024
    block = bytes(range(256)) * 256  # 64 KiB
    expected = hashlib.sha256(block * (size // len(block))).hexdigest()

    def body():
        for _ in range(size // len(block)):
            yield block

    url = f"{platform.url}/api/v1/schools/999001/imports/students"
    chunked = urllib3.PoolManager().urlopen("POST", url, body=body(), chunked=True,
                                            headers={**auth(admin), "Content-Type": "text/csv"})
    assert chunked.status == 200 and chunked.json() == {"bytes": size, "sha256": expected}
    with_length = requests.post(url, data=block * (size // len(block)), headers={**auth(admin), "Content-Type": "text/csv"})
    assert with_length.status_code == 200 and with_length.json() == {"bytes": size, "sha256": expected}
    download = requests.get(f"{platform.url}/api/v1/schools/999001/users?size={size}", headers=auth(admin), stream=True)
    assert sum(len(chunk) for chunk in download.iter_content(65536)) == size
    upstream.stop()


def test_services_get_the_address_the_gateway_saw_not_a_forged_one(platform, monkeypatch):
    admin = sign_in(platform, "admin")
    upstream = StandInService()
    monkeypatch.setitem(platform.gateway_app.extensions["footprint.gateway"].upstreams, "identity", upstream.url)
    client_trace = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    seen = requests.get(f"{platform.url}/api/v1/schools/999001/echo-headers",
                        headers={**auth(admin), "X-Forwarded-For": "6.6.6.6", "traceparent": client_trace}).json()
    assert seen["X-Forwarded-For"] == "127.0.0.1" and seen["X-Request-Id"]
    # one traceparent: the client's trace continues, with the gateway's own span as the parent
    assert "," not in seen["Traceparent"] and seen["Traceparent"].startswith("00-" + "ab" * 16)
    assert seen["Traceparent"] != client_trace
    upstream.stop()


class FakeUpstreamResponse:
    status = 200
    headers = {"Content-Type": "application/octet-stream"}

    def __init__(self, blocks: int):
        self.blocks, self.closed, self.released = blocks, False, False

    def stream(self, size, decode_content=False):
        for _ in range(self.blocks):
            yield b"x" * 1024

    def close(self):
        self.closed = True

    def release_conn(self):
        self.released = True


class FakePool:
    def __init__(self, response):
        self.response = response

    def urlopen(self, *args, **kwargs):
        return self.response


def test_an_abandoned_download_never_goes_back_to_the_pool_half_read(platform, monkeypatch):
    """A connection whose response body was not read to the end is closed, not reused: reused, the next
    request through it (another user's) would read the rest of that body as its own response."""
    admin = sign_in(platform, "admin")
    gateway = platform.gateway_app.extensions["footprint.gateway"]
    client = platform.gateway_app.test_client()
    for blocks, read_all in ((50, False), (50, True)):
        upstream = FakeUpstreamResponse(blocks)
        monkeypatch.setattr(gateway, "http", FakePool(upstream))
        response = client.get("/api/v1/schools/999001/users", headers=auth(admin), buffered=False)
        chunks = iter(response.response)
        if read_all:
            assert sum(len(c) for c in chunks) == 50 * 1024
        else:
            next(chunks)  # the client walks away mid-body
        response.close()
        assert upstream.released and upstream.closed is (not read_all)


def test_upstream_down_is_503(platform, monkeypatch):
    gateway = platform.gateway_app.extensions["footprint.gateway"]
    monkeypatch.setitem(gateway.upstreams, "identity", f"http://127.0.0.1:{free_port()}")
    gateway._openapi = None
    response = requests.post(f"{platform.url}/api/v1/auth/login", json={"school": "999001", "username": "a", "password": "b"})
    assert response.status_code == 503 and response.json()["code"] == "upstream_unavailable"
    ready = requests.get(f"{platform.url}/readyz")  # the gateway still serves the other services: degraded, not out
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["service:identity"].startswith("error")
    assert "identity" in requests.get(f"{platform.url}/api/v1/openapi.json").json()["x-footprint-missing-services"]
