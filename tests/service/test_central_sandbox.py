"""The central database sandbox (deploy/central_sandbox.py) keeps the contract of shared/central.py: whole-package
validation, row-level rejections in the four kinds of 收訖明細, idempotent receipt, conflicts, corrections, and the
faults it can be told to inject. One test runs it as its own process over real HTTP, across a restart."""
from __future__ import annotations

import hashlib
import json
import socket
import urllib.error
import urllib.request

import pytest

from deploy.central_sandbox import CentralDatabase, SandboxProcess, create_app
from shared.central import canonical_digest, package_id

SCHOOL, TERM = "999001", "11201"
CODE = "112" + "0" * 5 + "ABCDEFGHIJKLMNO"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pdf(name: str, size: int = 1000) -> dict:
    return {"name": f"{name}.pdf", "media_type": "application/pdf", "size": size, "sha256": sha(name)}


def package(scope: str = "year", version: int = 1, students: list | None = None, corrects: int | None = None) -> dict:
    if students is None:
        students = ([{"student_id": "s1", "outcomes": [{"key": "o1", "course_code": CODE, "title": "專題",
                                                         "brief": "簡述", "files": [pdf("o1")]}],
                      "performances": [{"key": "p1", "category": "competition", "title": "科展",
                                        "files": [pdf("p1")], "links": []}]}]
                    if scope == "year" else
                    [{"student_id": "s1", "cadres": [{"key": "c1", "unit": "班級", "role": "班長"}],
                      "course_records": [{"key": "r1", "course_code": CODE, "name": "國語文", "credits": 4,
                                          "score": 88.0, "passed": True}]}])
    body = {"package_id": package_id(SCHOOL, TERM, scope, version), "school": SCHOOL, "term": TERM, "scope": scope,
            "version": version, "built_at": "2024-01-20T10:00:00+08:00", "corrects_version": corrects,
            "students": students}
    body["package_sha256"] = canonical_digest(body)
    return body


@pytest.fixture
def central():
    db = CentralDatabase()
    return db, create_app(db).test_client()


def test_a_year_package_gets_outcome_and_performance_receipts_with_every_sha256(central):
    _, client = central
    sent = package()
    response = client.post("/central/v1/packages", json=sent)
    assert response.status_code == 201
    receipt = response.get_json()
    student = receipt["students"][0]
    assert set(k for k in student if student[k] is not None) == {"student_id", "outcomes", "performances"}
    assert student["outcomes"]["rows"] == [{"key": "o1", "status": "received", "reason": None,
                                            "sha256": [sha("o1")]}]
    assert student["performances"]["received"] == 1 and receipt["package_sha256"] == sent["package_sha256"]
    assert client.get(f"/central/v1/packages/{sent['package_id']}/receipt").get_json() == receipt


def test_a_term_package_gets_cadre_and_course_record_receipts(central):
    _, client = central
    student = client.post("/central/v1/packages", json=package("term")).get_json()["students"][0]
    assert student["cadres"]["received"] == 1 and student["course_records"]["received"] == 1
    assert student["outcomes"] is None and student["performances"] is None


def test_the_same_package_twice_is_one_receipt_and_a_different_one_under_its_id_is_refused(central):
    _, client = central
    sent = package()
    first = client.post("/central/v1/packages", json=sent).get_json()
    again = client.post("/central/v1/packages", json=sent)
    assert again.status_code == 200 and again.get_json()["receipt_id"] == first["receipt_id"]
    other = package(students=[{"student_id": "s2"}])
    assert client.post("/central/v1/packages", json=other).status_code == 409


def test_rows_the_central_side_cannot_take_are_rejected_in_the_receipt_and_the_rest_received(central):
    _, client = central
    outcomes = [{"key": f"o{i}", "course_code": CODE, "title": "t", "files": [pdf(f"o{i}")]} for i in range(7)]
    outcomes[1]["course_code"] = "SHORT"
    outcomes[2]["files"] = [dict(pdf("x"), sha256="not-hex")]
    outcomes[3]["files"] = [dict(pdf("y"), media_type="application/zip")]
    outcomes[4]["brief"] = "字" * 101
    big = dict(pdf("z"), size=4 * 1024 * 1024 + 1)
    students = [{"student_id": "s1", "outcomes": outcomes,
                 "performances": [{"key": "p1", "category": "c", "title": "t", "files": [big]},
                                  {"key": "p1", "category": "c", "title": "t"}]}]
    student = client.post("/central/v1/packages", json=package(students=students)).get_json()["students"][0]
    reasons = [row["reason"] for row in student["outcomes"]["rows"]]
    assert reasons == [None, "invalid_course_code", "bad_sha256", "file_type_not_allowed", "brief_too_long", None,
                       "cap_exceeded"]  # the seventh is over the national cap of 6
    assert student["outcomes"]["received"] == 2 and student["outcomes"]["rejected"] == 5
    assert [r["reason"] for r in student["performances"]["rows"]] == ["file_too_large", "duplicate_key"]


@pytest.mark.parametrize("change, code", [
    (lambda p: p.update(package_sha256="0" * 64), "digest_mismatch"),
    (lambda p: p.update(school="12"), "malformed_package"),
    (lambda p: p["students"][0].update(cadres=[{"key": "c", "unit": "u", "role": "r"}]), "wrong_kind_for_scope"),
])
def test_a_package_that_is_wrong_as_a_whole_is_422_problem_json(central, change, code):
    _, client = central
    sent = package()
    change(sent)
    if code == "wrong_kind_for_scope":
        sent["package_sha256"] = canonical_digest(sent)
    response = client.post("/central/v1/packages", json=sent)
    assert response.status_code == 422 and response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code and body["message"]["zh-TW"] and body["message"]["en"]
    assert client.get(f"/central/v1/packages/{sent['package_id']}/receipt").status_code == 404


def test_a_correction_needs_the_version_it_corrects(central):
    _, client = central
    assert client.post("/central/v1/packages", json=package(version=2, corrects=1)).get_json()["code"] == \
        "nothing_to_correct"
    client.post("/central/v1/packages", json=package())
    fixed = package(version=2, corrects=1, students=[{"student_id": "s1", "outcomes": [
        {"key": "o1", "course_code": CODE, "title": "專題（更正）", "files": [pdf("o1-fixed")]}]}])
    receipt = client.post("/central/v1/packages", json=fixed).get_json()
    assert receipt["version"] == 2 and receipt["students"][0]["outcomes"]["rows"][0]["sha256"] == [sha("o1-fixed")]
    listed = client.get(f"/central/v1/schools/{SCHOOL}/terms/{TERM}/receipts").get_json()["items"]
    assert [r["version"] for r in listed] == [1, 2]


def test_injected_errors_fail_then_the_sandbox_answers_again(central):
    db, client = central
    assert client.post("/_sandbox/faults", json={"mode": "error", "times": 2}).status_code == 201
    assert [client.post("/central/v1/packages", json=package()).status_code for _ in range(3)] == [503, 503, 201]
    assert client.post("/_sandbox/faults", json={"mode": "nonsense"}).status_code == 422


def test_a_tampered_receipt_differs_from_what_was_sent_in_one_checksum(central):
    _, client = central
    client.post("/_sandbox/faults", json={"mode": "tamper"})
    sent = package()
    receipt = client.post("/central/v1/packages", json=sent).get_json()
    held = receipt["students"][0]["outcomes"]["rows"][0]["sha256"][0]
    assert held != sha("o1") and held[1:] == sha("o1")[1:]
    assert receipt["students"][0]["performances"]["rows"][0]["sha256"] == [sha("p1")]  # only one differs


def test_the_credential_is_required_when_set():
    client = create_app(CentralDatabase(token="secret")).test_client()
    assert client.post("/central/v1/packages", json=package()).status_code == 401
    ok = client.post("/central/v1/packages", json=package(), headers={"Authorization": "Bearer secret"})
    assert ok.status_code == 201


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_as_its_own_process_a_late_answer_was_still_received_and_receipts_survive_a_restart(tmp_path):
    sandbox = SandboxProcess(free_port(), data_dir=tmp_path / "central").start()
    try:
        post(f"{sandbox.url}/_sandbox/faults", {"mode": "timeout", "delay_seconds": 3})
        sent = package()
        with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
            post(f"{sandbox.url}/central/v1/packages", sent, timeout=0.5)
        status, first = post(f"{sandbox.url}/central/v1/packages", sent)  # the client's retry
        assert status == 200  # it had been received: the retry gets that receipt, not a second one
    finally:
        sandbox.stop()
    sandbox = SandboxProcess(sandbox.port, data_dir=tmp_path / "central").start()
    try:
        with urllib.request.urlopen(f"{sandbox.url}/central/v1/packages/{sent['package_id']}/receipt") as response:
            assert json.loads(response.read())["receipt_id"] == first["receipt_id"]
        assert post(f"{sandbox.url}/central/v1/packages", sent)[0] == 200
    finally:
        sandbox.stop()


def test_the_log_keeps_the_traceparent_each_package_arrived_with(central):
    db, client = central
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    assert client.post("/central/v1/packages", json=package(), headers={"traceparent": traceparent}).status_code == 201
    assert client.post("/central/v1/packages", json=package("term")).status_code == 201
    assert [entry["traceparent"] for entry in db.log] == [traceparent, None]
