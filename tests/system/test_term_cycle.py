"""One school through a whole term, every service a separate process on RabbitMQ, the central database sandbox a
process of its own that fails the first tries:

windows set → an upload outside its window refused, inside accepted → certification → selection (勾選) →
submission of the term (course records, cadres) and of the year (selected outcomes) → receipts (收訖明細), the
student seeing only their own rows, every file's sha256 in them → a dispute (疑義) → the data fixed in records →
a correction with only the changed row → confirmation → final (定案) → every later change refused, in every
service.

Term 11501 (115學年度第1學期) is the term of today's date range, so its windows may lie around now (the city's rules
keep windows near their term).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import requests

from tests.system.test_platform import auth, sign_in, wait_until
from tests.system.test_portfolio_flow import pdf_bytes

SCHOOL = "999001"
TERM, YEAR = "11501", "115"
COURSE = "115999001A1011110001TC1"  # 23 characters
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


class Portal:
    """One signed-in user talking to the gateway."""

    def __init__(self, gateway: str, tokens: dict):
        self.gateway, self.headers = gateway, auth(tokens)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.gateway}{path}", headers={**self.headers, **kwargs.pop("headers", {})},
                                **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs) -> dict:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, (method, path, response.status_code, response.text[:800])
        return response.json() if response.content else {}


def refused(response: requests.Response, status: int, code: str) -> bool:
    return (response.status_code == status and response.headers.get("Content-Type", "").startswith(
        "application/problem+json") and response.json().get("code") == code)


def set_windows(admin: Portal, **windows: tuple[datetime, datetime]) -> None:
    body = {"windows": [{"kind": kind, "starts_at": iso(start), "ends_at": iso(end)}
                        for kind, (start, end) in windows.items()]}
    response = admin.call("PUT", f"/api/v1/scheduling/schools/{SCHOOL}/terms/{TERM}", json=body)
    assert response.status_code in (200, 201), response.text[:800]  # 201 the first time the term is scheduled


def test_a_school_walks_through_a_whole_term(processes):
    gateway = processes.url("gateway")
    admin = Portal(gateway, sign_in(processes, "admin"))
    teacher = Portal(gateway, sign_in(processes, "teacher01"))
    student = Portal(gateway, sign_in(processes, "student01"))
    teacher_id = teacher.ok("GET", "/api/v1/me")["user"]["id"]
    student_id = student.ok("GET", "/api/v1/me")["user"]["id"]
    records = f"/api/v1/records/schools/{SCHOOL}"
    exchange = f"/api/v1/exchange/schools/{SCHOOL}/submissions"
    now = datetime.now(timezone.utc)
    term_end = datetime(2027, 2, 1, tzinfo=timezone(timedelta(hours=8)))

    # ---- the term's records: a section of teacher01's with student01, a grade, a cadre -------------------------
    admin.ok("POST", f"{records}/terms", 201, json={"code": TERM})
    section = admin.ok("POST", f"{records}/sections", 201, json={
        "term": TERM, "course_code": COURSE, "subject_name": "數學", "credits": 4, "category": "部定必修",
        "section_name": "101", "teacher_ids": [teacher_id]})
    enrolment = admin.ok("POST", f"{records}/sections/{section['id']}/enrolments", 201, json={"student_id": student_id})
    admin.ok("PUT", f"{records}/enrolments/{enrolment['id']}/grade", json={"score": 58, "passed": False})
    admin.ok("POST", f"{records}/cadres", 201, json={"student_id": student_id, "term": TERM, "level": "class",
                                                     "unit": "101", "title": "學藝股長"})

    # ---- windows: the outcome upload window has not opened yet → refused; opened → accepted --------------------
    upload_window_end = term_end + timedelta(days=15)
    set_windows(admin, outcome_upload=(now + 2 * DAY, upload_window_end))

    def start_outcome():
        return student.call("POST", "/api/v1/intake/outcomes", json={"section_id": section["id"], "brief": "函數圖形小論文"})

    outside = wait_until(lambda: (lambda r: r if refused(r, 409, "window_closed") else None)(start_outcome()))
    assert outside is not None, "intake never learned the section or the window"
    assert "尚未開始" in outside.json()["message"]["zh-TW"]

    set_windows(admin, outcome_upload=(now - HOUR, upload_window_end))
    created = wait_until(lambda: (lambda r: r if r.status_code == 201 else None)(start_outcome()))
    assert created is not None, "the opened window never reached intake"
    outcome = created.json()

    data = pdf_bytes(256 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    stored = student.ok("PUT", f"/api/v1/intake/outcomes/{outcome['id']}/files/report-11501", 201, data=data,
                        headers={"X-File-Name": quote("函數小論文.pdf"), "X-Content-SHA256": digest,
                                 "Content-Type": "application/octet-stream"})
    assert stored["sha256"] == digest
    student.ok("POST", f"/api/v1/intake/outcomes/{outcome['id']}/submit")

    # ---- certification ----------------------------------------------------------------------------------------
    def certify():
        response = teacher.call("POST", f"/api/v1/certification/outcomes/{outcome['id']}/certify")
        return response if response.status_code == 200 else None

    assert wait_until(certify), "the submitted outcome never reached the teacher's queue"
    assert wait_until(lambda: student.ok("GET", f"/api/v1/intake/outcomes/{outcome['id']}")["status"] == "certified")

    # ---- selection (勾選) inside its window -----------------------------------------------------------------------
    set_windows(admin, outcome_upload=(now - HOUR, upload_window_end), selection=(now - HOUR, now + 3 * DAY + HOUR))

    def select():
        response = student.call("PUT", f"/api/v1/intake/selections/{YEAR}", json={"outcome_ids": [outcome["id"]]})
        return response if response.status_code == 200 else None

    assert wait_until(select), "the selection window never reached intake"

    # ---- submission: the central side fails twice, then answers ----------------------------------------------
    set_windows(admin, outcome_upload=(now - HOUR, upload_window_end), selection=(now - 4 * DAY, now - HOUR),
                submission=(now - HOUR, now + DAY))
    central = processes.central.url
    assert requests.post(f"{central}/_sandbox/faults", json={"mode": "error", "times": 2}, timeout=10).status_code == 201

    def submit(scope: str):
        response = admin.call("POST", exchange, json={"scope": scope, "term": TERM})
        return response.json() if response.status_code in (200, 201) else None

    term_submission = wait_until(lambda: submit("term"))
    assert term_submission, "the submission window never reached the exchange"
    year_submission = admin.ok("POST", exchange, 201, json={"scope": "year", "term": TERM})
    # Intake locked the year's selection on the year's submission.
    assert wait_until(lambda: refused(student.call("PUT", f"/api/v1/intake/selections/{YEAR}",
                                                   json={"outcome_ids": []}), 409, "selection_locked"))

    def received(submission_id: str, version: int = 1):
        view = admin.ok("GET", f"{exchange}/{submission_id}")
        package = next((p for p in view["packages"] if p["version"] == version), None)
        return package if package and package["state"] == "received" else None

    term_package = wait_until(lambda: received(term_submission["submission_id"]), timeout=120)
    year_package = wait_until(lambda: received(year_submission["submission_id"]), timeout=120)
    assert term_package and year_package, admin.ok("GET", f"{exchange}/{term_submission['submission_id']}")
    central_log = requests.get(f"{central}/_sandbox/log", timeout=10).json()["items"]
    assert [entry["outcome"] for entry in central_log].count("error") == 2  # the two refusals, then the retries

    # ---- receipts: the student sees their own rows, with every file's sha256 -------------------------------------
    year_receipts = student.ok("GET", f"{exchange}/{year_submission['submission_id']}/receipts")
    assert {r["student_id"] for r in year_receipts["items"]} == {student_id}
    (mine,) = year_receipts["items"]
    (outcome_row,) = mine["outcomes"]["rows"]
    assert outcome_row["key"] == outcome["id"] and outcome_row["status"] == "received"
    assert outcome_row["sha256"] == [digest]
    term_receipts = student.ok("GET", f"{exchange}/{term_submission['submission_id']}/receipts")
    (term_mine,) = term_receipts["items"]
    assert [row["key"] for row in term_mine["course_records"]["rows"]] == [enrolment["id"]]
    assert term_mine["cadres"]["received"] == 1

    # ---- a dispute in the receipt confirmation window, fixed at the source, corrected -----------------------------
    set_windows(admin, outcome_upload=(now - HOUR, upload_window_end), selection=(now - 6 * DAY, now - 3 * DAY),
                submission=(now - 2 * DAY, datetime.now(timezone.utc) - timedelta(minutes=1)),
                receipt_confirmation=(datetime.now(timezone.utc) - timedelta(minutes=1), now + 4 * DAY))

    def raise_dispute():
        response = student.call("POST", f"{exchange}/{term_submission['submission_id']}/disputes", json={
            "student_id": student_id, "kind": "course_records", "row_key": enrolment["id"],
            "reason": "數學補考已及格，成績應為 60 分"})
        return response.json() if response.status_code == 201 else None

    dispute = wait_until(raise_dispute)
    assert dispute and dispute["state"] == "open", "the receipt confirmation window never reached the exchange"

    admin.ok("PUT", f"{records}/enrolments/{enrolment['id']}/grade", json={"score": 60, "passed": True, "makeup": True})

    def correct():
        response = admin.call("POST", f"{exchange}/{term_submission['submission_id']}/corrections",
                              json={"dispute_ids": [dispute["dispute_id"]]})
        return response.json() if response.status_code in (200, 201) else None

    assert wait_until(correct), "the corrected grade never reached the exchange"
    correction = wait_until(lambda: received(term_submission["submission_id"], 2), timeout=120)
    assert correction and correction["corrects_version"] == 1
    assert correction["rows"].get("course_records") == 1 and not correction["rows"].get("cadres")
    disputes = admin.ok("GET", f"{exchange}/{term_submission['submission_id']}/disputes")["items"]
    assert [(d["dispute_id"], d["state"]) for d in disputes] == [(dispute["dispute_id"], "resolved")]

    # ---- confirmation (收訖明細確認): the student confirms their rows, the school its receipts ----------------------
    for submission in (term_submission, year_submission):
        confirmed = student.ok("POST", f"{exchange}/{submission['submission_id']}/confirmations", 201, json={})
        assert confirmed["student_id"] == student_id and not confirmed["on_behalf"]
        admin.ok("POST", f"{exchange}/{submission['submission_id']}/confirmations", 201, json={})
    receipts = student.ok("GET", f"{exchange}/{term_submission['submission_id']}/receipts?version=2")["items"]
    assert [r["confirmed"]["version"] for r in receipts] == [2]

    # ---- final, and nothing changes any more ------------------------------------------------------------------------
    for submission in (term_submission, year_submission):
        finalised = admin.ok("POST", f"{exchange}/{submission['submission_id']}/final")
        assert finalised["state"] == "final"

    assert wait_until(lambda: refused(admin.call("PUT", f"{records}/enrolments/{enrolment['id']}/grade",
                                                 json={"score": 99, "passed": True}), 409, "term_final"))
    assert wait_until(lambda: refused(admin.call("POST", f"{records}/cadres", json={
        "student_id": student_id, "term": TERM, "level": "club", "unit": "數學社", "title": "社長"}), 409, "term_final"))
    assert wait_until(lambda: refused(student.call("PATCH", f"/api/v1/intake/outcomes/{outcome['id']}",
                                                   json={"brief": "改寫"}), 409, "year_final"))
    assert wait_until(lambda: refused(student.call("POST", "/api/v1/intake/outcomes",
                                                   json={"section_id": section["id"], "brief": "再一件"}),
                                      409, "year_final"))
    assert refused(student.call("POST", f"{exchange}/{term_submission['submission_id']}/disputes", json={
        "student_id": student_id, "kind": "cadres", "row_key": term_mine["cadres"]["rows"][0]["key"],
        "reason": "職稱有誤"}), 409, "submission_final")
    audit = admin.ok("GET", f"{exchange}/{term_submission['submission_id']}")["audit"]
    actions = {entry["action"] for entry in audit}
    assert {"requested", "built", "received", "dispute_raised", "correction_requested", "finalized"} <= actions, actions
