"""The identity service in-process: sign-in, tokens, roles, tenant isolation and bad input."""
from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import bearer, login

STUDENT = {"student_no": "1120999", "class_name": "102", "grade": 10, "status": "enrolled", "national_id": "F131104093"}


def problem_of(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["message"]["zh-TW"] and body["message"]["en"]
    return body


def test_login_and_me(client):
    tokens = login(client, "999001", "student01")
    assert tokens["must_change_password"] is False and tokens["token_type"] == "Bearer"
    me = client.get("/api/v1/me", headers=bearer(tokens)).get_json()
    assert me["user"]["username"] == "student01" and me["school"]["code"] == "999001"
    assert me["user"]["roles"] == ["student"] and me["city"]["name"] == "臺北市"
    assert me["user"]["student"]["national_id"] == "A1*****789"  # never unmasked


def test_wrong_password_is_401_and_five_failures_lock_the_account(client):
    for _ in range(4):
        problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "teacher01", "password": "nope"}),
                   401, "invalid_credentials")
    problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "teacher01", "password": "nope"}),
               401, "invalid_credentials")
    locked = client.post("/api/v1/auth/login", json={"school": "999001", "username": "teacher01", "password": "footprint-demo"})
    problem_of(locked, 423, "account_locked")
    assert int(locked.headers["Retry-After"]) > 0
    # unknown usernames answer exactly like wrong passwords
    problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "ghost", "password": "x"}),
               401, "invalid_credentials")


def test_initial_password_must_be_changed_first(client):
    admin = login(client, "999001", "admin")
    created = client.post("/api/v1/schools/999001/users", headers=bearer(admin), json={
        "username": "s999", "display_name": "新同學", "roles": ["student"], "password": "initial-pass-1", "student": STUDENT})
    assert created.status_code == 201, created.get_data(as_text=True)
    tokens = login(client, "999001", "s999", "initial-pass-1")
    assert tokens["must_change_password"] is True
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200  # allowed: to show the prompt
    problem_of(client.get("/api/v1/schools", headers=bearer(tokens)), 403, "password_change_required")
    problem_of(client.post("/api/v1/auth/password", headers=bearer(tokens),
                           json={"current_password": "initial-pass-1", "new_password": "short"}), 422, "weak_password")
    assert client.post("/api/v1/auth/password", headers=bearer(tokens),
                       json={"current_password": "initial-pass-1", "new_password": "a-much-better-pass"}).status_code == 204
    fresh = login(client, "999001", "s999", "a-much-better-pass")
    assert fresh["must_change_password"] is False
    assert client.get("/api/v1/schools", headers=bearer(fresh)).status_code == 200
    # the old refresh token died with the password change
    problem_of(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "token_revoked")


def test_refresh_rotates_and_reuse_revokes_the_family(client):
    tokens = login(client, "999001", "teacher01")
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.get_json()
    assert second["refresh_token"] != tokens["refresh_token"]
    problem_of(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "token_revoked")
    # reuse detected: the rotated token is revoked too
    problem_of(client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401, "token_revoked")


def test_logout_revokes_the_refresh_token(client):
    tokens = login(client, "999001", "teacher01")
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens),
                       json={"refresh_token": tokens["refresh_token"]}).status_code == 204
    problem_of(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "token_revoked")


def test_staff_password_reset_gives_a_one_time_password(client):
    admin = login(client, "999001", "admin")
    users = client.get("/api/v1/schools/999001/users?role=student", headers=bearer(admin)).get_json()["items"]
    student_id = users[0]["id"]
    reset = client.post(f"/api/v1/users/{student_id}/password-reset", headers=bearer(admin)).get_json()
    problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "student01",
                                                       "password": "footprint-demo"}), 401, "invalid_credentials")
    assert login(client, "999001", "student01", reset["temporary_password"])["must_change_password"] is True


def test_tenant_isolation_users_of_another_school_are_not_found(client):
    admin_a = login(client, "999001", "admin")
    admin_b = login(client, "999002", "admin")
    b_users = client.get("/api/v1/schools/999002/users", headers=bearer(admin_b)).get_json()["items"]
    b_student = next(u for u in b_users if u["username"] == "student01")
    problem_of(client.get(f"/api/v1/users/{b_student['id']}", headers=bearer(admin_a)), 404, "not_found")
    problem_of(client.get("/api/v1/schools/999002/users", headers=bearer(admin_a)), 404, "not_found")
    problem_of(client.get("/api/v1/schools/999002", headers=bearer(admin_a)), 404, "not_found")
    problem_of(client.patch(f"/api/v1/users/{b_student['id']}", headers=bearer(admin_a), json={"display_name": "x"}),
               404, "not_found")
    problem_of(client.post(f"/api/v1/users/{b_student['id']}/password-reset", headers=bearer(admin_a)), 404, "not_found")
    problem_of(client.post("/api/v1/schools/999002/students/lookup", headers=bearer(admin_a),
                           json={"national_id": "A123456789"}), 404, "not_found")
    problem_of(client.post("/api/v1/schools/999002/users", headers=bearer(admin_a), json={
        "username": "intruder", "display_name": "x", "roles": ["subject_teacher"], "password": "long-enough-pass"}),
        404, "not_found")
    schools = client.get("/api/v1/schools", headers=bearer(admin_a)).get_json()["items"]
    assert [s["code"] for s in schools] == ["999001"]


def test_city_admin_sees_the_schools_of_the_city(client):
    city = login(client, "TPE", "cityadmin")
    codes = [s["code"] for s in client.get("/api/v1/schools", headers=bearer(city)).get_json()["items"]]
    assert codes == ["999001", "999002"]
    created = client.post("/api/v1/schools", headers=bearer(city), json={"code": "123456", "name": "市立新高中"})
    assert created.status_code == 201
    problem_of(client.post("/api/v1/schools", headers=bearer(city), json={"code": "123456", "name": "again"}), 409, "conflict")
    assert client.get("/api/v1/schools/999002/users", headers=bearer(city)).status_code == 200
    admin = login(client, "999001", "admin")
    problem_of(client.post("/api/v1/schools", headers=bearer(admin), json={"code": "654321", "name": "x"}), 403, "forbidden")


def test_role_rules(client):
    student = login(client, "999001", "student01")
    teacher = login(client, "999001", "teacher01")
    problem_of(client.get("/api/v1/schools/999001/users", headers=bearer(student)), 403, "forbidden")
    assert client.get("/api/v1/schools/999001/users", headers=bearer(teacher)).status_code == 200
    problem_of(client.post("/api/v1/schools/999001/users", headers=bearer(teacher), json={
        "username": "x1", "display_name": "x", "roles": ["subject_teacher"], "password": "long-enough-pass"}), 403, "forbidden")
    # a student sees only themself
    others = client.get("/api/v1/schools/999001/users", headers=bearer(teacher)).get_json()["items"]
    teacher_id = next(u["id"] for u in others if u["username"] == "teacher01")
    problem_of(client.get(f"/api/v1/users/{teacher_id}", headers=bearer(student)), 404, "not_found")


def test_registrar_manages_students_only(client, identity_runtime):
    admin = login(client, "999001", "admin")
    created = client.post("/api/v1/schools/999001/users", headers=bearer(admin), json={
        "username": "reg01", "display_name": "註冊組長", "roles": ["registrar"], "password": "registrar-pass-1"})
    assert created.status_code == 201
    client.post("/api/v1/auth/password", headers=bearer(login(client, "999001", "reg01", "registrar-pass-1")),
                json={"current_password": "registrar-pass-1", "new_password": "registrar-pass-2"})
    registrar = login(client, "999001", "reg01", "registrar-pass-2")
    problem_of(client.post("/api/v1/schools/999001/users", headers=bearer(registrar), json={
        "username": "t99", "display_name": "x", "roles": ["subject_teacher"], "password": "long-enough-pass"}), 403, "forbidden")
    ok = client.post("/api/v1/schools/999001/users", headers=bearer(registrar), json={
        "username": "s998", "display_name": "x", "roles": ["student"], "password": "long-enough-pass", "student": STUDENT})
    assert ok.status_code == 201


def test_suspended_student_gets_a_receipts_only_account_and_graduation_deactivates(client):
    admin = login(client, "999001", "admin")
    student_id = client.get("/api/v1/schools/999001/users?role=student", headers=bearer(admin)).get_json()["items"][0]["id"]
    changed = client.patch(f"/api/v1/users/{student_id}", headers=bearer(admin), json={"student": {"status": "suspended"}})
    assert changed.get_json()["receipts_only"] is True
    tokens = login(client, "999001", "student01")
    assert client.get("/api/v1/me", headers=bearer(tokens)).get_json()["user"]["receipts_only"] is True
    problem_of(client.get("/api/v1/schools", headers=bearer(tokens)), 403, "forbidden")
    client.patch(f"/api/v1/users/{student_id}", headers=bearer(admin), json={"student": {"status": "graduated"}})
    problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "student01",
                                                       "password": "footprint-demo"}), 403, "account_inactive")


def test_find_student_by_national_id(client):
    admin = login(client, "999001", "admin")
    found = client.post("/api/v1/schools/999001/students/lookup", headers=bearer(admin), json={"national_id": "a123456789"})
    assert found.status_code == 200 and found.get_json()["username"] == "student01"
    problem_of(client.post("/api/v1/schools/999001/students/lookup", headers=bearer(admin),
                           json={"national_id": "A123456788"}), 422, "invalid_national_id")
    problem_of(client.post("/api/v1/schools/999001/students/lookup", headers=bearer(admin),
                           json={"national_id": "B123456780"}), 404, "not_found")


def test_national_id_is_encrypted_at_rest(client, identity_runtime):
    from services.identity.models import User

    raw = User._get_collection().find_one({"username": "student01", "school": "999001"})
    assert "A123456789" not in repr(raw)


def test_deactivated_user_cannot_sign_in_or_refresh(client):
    admin = login(client, "999001", "admin")
    tokens = login(client, "999001", "teacher01")
    teacher_id = client.get("/api/v1/me", headers=bearer(tokens)).get_json()["user"]["id"]
    assert client.post(f"/api/v1/users/{teacher_id}/deactivate", headers=bearer(admin),
                       json={"reason": "離職"}).status_code == 200
    problem_of(client.post("/api/v1/auth/login", json={"school": "999001", "username": "teacher01",
                                                       "password": "footprint-demo"}), 403, "account_inactive")
    problem_of(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401, "token_revoked")


# ---- bad input: always a 4xx problem, never a 500, never a partial write ----------------------------------

@pytest.mark.parametrize("body, content_type, status, code", [
    ("{not json", "application/json", 400, "malformed_json"),
    ('{"school": 999001, "username": [], "password": "x"}', "application/json", 422, "validation_failed"),
    ('{"school": "999001", "username": "a", "password": "x", "admin": true}', "application/json", 422, "validation_failed"),
    ('["a", "b"]', "application/json", 422, "validation_failed"),
    ('school=999001', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ('{"school": "999001", "username": "a", "password": "' + "x" * 70000 + '"}', "application/json", 413, "payload_too_large"),
    (b'\xff\xfe\x00', "application/json", 400, "malformed_json"),
    (b"[" * 60000, "application/json", 400, "malformed_json"),                     # nested too deep
    (b'{"school": ' + b"1" * 5000 + b"}", "application/json", 400, "malformed_json"),  # int beyond Python's limit
])
def test_bad_login_bodies(client, body, content_type, status, code):
    problem_of(client.post("/api/v1/auth/login", data=body, content_type=content_type), status, code)


def test_bad_tokens_are_401(client, identity_runtime):
    problem_of(client.get("/api/v1/me"), 401, "unauthenticated")
    problem_of(client.get("/api/v1/me", headers={"Authorization": "Bearer not.a.token"}), 401, "invalid_token")
    problem_of(client.get("/api/v1/me", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    keys = identity_runtime.state["identity"].keys
    claims = {"iss": "footprint-identity", "aud": "footprint", "typ": "access", "sub": "x", "sch": "999001",
              "roles": ["school_admin"], "iat": int(time.time()) - 100, "exp": int(time.time()) - 10}
    expired = jwt.encode(claims, keys.private_key, algorithm="EdDSA", headers={"kid": keys.kid})
    problem_of(client.get("/api/v1/me", headers=bearer(expired)), 401, "invalid_token")
    forged = jwt.encode({**claims, "exp": int(time.time()) + 100}, Ed25519PrivateKey.generate(), algorithm="EdDSA",
                        headers={"kid": keys.kid})
    problem_of(client.get("/api/v1/me", headers=bearer(forged)), 401, "invalid_token")
    unsigned = jwt.encode({**claims, "exp": int(time.time()) + 100}, None, algorithm="none")
    problem_of(client.get("/api/v1/me", headers=bearer(unsigned)), 401, "invalid_token")
    hs = jwt.encode({**claims, "exp": int(time.time()) + 100}, "secret" * 8, algorithm="HS256", headers={"kid": keys.kid})
    problem_of(client.get("/api/v1/me", headers=bearer(hs)), 401, "invalid_token")


def test_bad_user_bodies_write_nothing(client, identity_runtime):
    from services.identity.models import User

    admin = login(client, "999001", "admin")
    before = User.objects(school="999001").count()
    cases = [
        {"username": "x y", "display_name": "x", "roles": ["student"], "password": "long-enough-pass", "student": STUDENT},
        {"username": "ok1", "display_name": "x", "roles": ["wizard"], "password": "long-enough-pass"},
        {"username": "ok2", "display_name": "x", "roles": ["student"], "password": "long-enough-pass",
         "student": {**STUDENT, "national_id": "A123456788"}},
        {"username": "ok3", "display_name": "x", "roles": ["student"], "password": "long-enough-pass",
         "student": {**STUDENT, "grade": 9}},
        {"username": "ok4", "display_name": "x", "roles": ["subject_teacher"], "password": "short"},
        {"username": "ok5", "display_name": "x", "roles": ["student"], "password": "long-enough-pass"},
        {"username": "student01", "display_name": "x", "roles": ["subject_teacher"], "password": "long-enough-pass"},
        {"username": "ok6", "display_name": "x", "roles": ["city_admin"], "password": "long-enough-pass"},
    ]
    for body in cases:
        response = client.post("/api/v1/schools/999001/users", headers=bearer(admin), json=body)
        assert 400 <= response.status_code < 500, (body, response.get_data(as_text=True))
        assert response.content_type == "application/problem+json"
    assert User.objects(school="999001").count() == before
    problem_of(client.get("/api/v1/schools/999001/users?limit=100000", headers=bearer(admin)), 422, "validation_failed")
    problem_of(client.get("/api/v1/schools/999001/users?bogus=1", headers=bearer(admin)), 422, "validation_failed")
    problem_of(client.get("/api/v1/nothing-here"), 404, "route_not_found")
    problem_of(client.delete("/api/v1/auth/login"), 405, "method_not_allowed")


def test_openapi_document_covers_the_routes(client):
    document = client.get("/openapi.json").get_json()
    assert {"/api/v1/auth/login", "/api/v1/me", "/api/v1/schools/{code}/imports/{kind}"} <= set(document["paths"])
    login_op = document["paths"]["/api/v1/auth/login"]["post"]
    assert "security" not in login_op and login_op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert document["paths"]["/api/v1/me"]["get"]["security"] == [{"bearer": []}]
    assert "LoginIn" in document["components"]["schemas"]
