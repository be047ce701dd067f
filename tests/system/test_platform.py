"""The platform as deployed: gateway and identity as separate gunicorn processes, events over RabbitMQ."""
from __future__ import annotations

import time

import requests


def sign_in(procs, username, school="999001", password="footprint-demo"):
    response = requests.post(f"{procs.url('gateway')}/api/v1/auth/login",
                             json={"school": school, "username": username, "password": password}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def auth(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def wait_until(predicate, timeout=60.0):
    """Poll until ``predicate`` returns something truthy. Generous: events cross processes and RabbitMQ, and a
    deadline only costs time when the test fails anyway."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    return predicate()


def test_sign_in_over_http_and_see_me(processes):
    tokens = sign_in(processes, "student01")
    me = requests.get(f"{processes.url('gateway')}/api/v1/me", headers=auth(tokens), timeout=60)
    assert me.status_code == 200
    assert me.json()["user"]["username"] == "student01" and me.json()["school"]["code"] == "999001"


def test_services_verify_tokens_themselves(processes):
    # Straight to identity, around the gateway: still no access without a valid token.
    response = requests.get(f"{processes.url('identity')}/api/v1/schools", timeout=60)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"


def test_tenant_isolation_over_http(processes):
    gateway = processes.url("gateway")
    admin_a, admin_b = sign_in(processes, "admin"), sign_in(processes, "admin", school="999002")
    b_users = requests.get(f"{gateway}/api/v1/schools/999002/users", headers=auth(admin_b), timeout=60).json()["items"]
    for target in (f"/api/v1/users/{b_users[0]['id']}", "/api/v1/schools/999002/users", "/api/v1/schools/999002"):
        response = requests.get(gateway + target, headers=auth(admin_a), timeout=60)
        assert response.status_code == 404 and response.json()["code"] == "not_found", target


def test_bad_input_is_4xx_problem_never_500(processes):
    gateway = processes.url("gateway")
    admin = sign_in(processes, "admin")
    cases = [
        ("POST", "/api/v1/auth/login", b"{oops", "application/json", {}),
        ("POST", "/api/v1/auth/login", b'{"school": 1}', "application/json", {}),
        ("POST", "/api/v1/auth/login", b"x" * (2 * 1024 * 1024), "application/json", {}),
        ("POST", "/api/v1/schools/999001/users", b'{"username": "a b", "roles": "student"}', "application/json", auth(admin)),
        ("GET", "/api/v1/schools/999001/users?limit=-1", b"", "application/json", auth(admin)),
        ("GET", "/api/v1/me", b"", "application/json", {"Authorization": "Bearer a.b.c"}),
        ("POST", "/api/v1/schools/999001/imports/students", b"\x00\x01", "text/csv", auth(admin)),
    ]
    for method, path, body, ctype, headers in cases:
        response = requests.request(method, gateway + path, data=body, headers={**headers, "Content-Type": ctype}, timeout=60)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
        assert response.headers["Content-Type"] == "application/problem+json"
        body = response.json()
        assert body["code"] and body["message"]["zh-TW"] and body["message"]["en"]


def test_deactivation_event_crosses_processes_and_revokes_access(processes):
    gateway = processes.url("gateway")
    admin = sign_in(processes, "admin", school="999002")
    teacher = sign_in(processes, "teacher01", school="999002")
    teacher_id = requests.get(f"{gateway}/api/v1/me", headers=auth(teacher), timeout=60).json()["user"]["id"]
    assert requests.post(f"{gateway}/api/v1/users/{teacher_id}/deactivate", headers=auth(admin),
                         json={"reason": "調校"}, timeout=60).status_code == 200
    # identity's outbox → RabbitMQ → the gateway's consumer → its projection → the token is refused
    def refusal():
        response = requests.get(f"{gateway}/api/v1/schools", headers=auth(teacher), timeout=60)
        return response.json() if response.status_code == 401 else None  # (a 401 Response object is falsy)

    refused = wait_until(refusal)
    assert refused and refused["code"] == "token_revoked"
