"""The web portal in a real browser: Playwright scenarios (node, npm ``playwright-core``, Debian's Chromium) against
the embedded platform started here the way ``make run`` starts it (own ports, own var directory).

Each test runs one ``tests/portal/*.mjs`` scenario and asserts its exit code and its report. Screenshots of
every main page land in ``tests/portal/artifacts/`` (git-ignored). Missing Chromium or node modules fail the
tests with what to run; ``make test`` installs both first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.conftest import free_port
from tests.files import jpeg, mp3, mp4, pdf, png

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORD = "footprint-demo"
FIRST_PASSWORD = "first-sign-in-42"
OWN_PASSWORD = "my-own-secret-42"
SCENARIO_TIMEOUT = 180


def _requirements() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (Node 20+ is needed for the portal tests)"
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        return "tests/portal/node_modules is missing: run `make test` (or `npm ci` in tests/portal)"
    if not Path(CHROMIUM).exists():
        return f"Chromium is missing at {CHROMIUM}: run `make test` (or `apt-get install -y chromium fonts-wqy-microhei`)"
    return None


# ---- the platform and the data the scenarios start from ------------------------------------------------------

class Client:
    def __init__(self, base: str):
        self.base = base

    def login(self, school: str, username: str, password: str = PASSWORD) -> dict:
        response = requests.post(f"{self.base}/api/v1/auth/login", timeout=10,
                                 json={"school": school, "username": username, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def call(self, method: str, path: str, auth: dict, expect=(200, 201, 204), **kwargs) -> dict | None:
        response = requests.request(method, f"{self.base}{path}", headers={**auth, **kwargs.pop("headers", {})},
                                    timeout=10, **kwargs)
        assert response.status_code in expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


def eventually(attempt, timeout: float = 30.0, what: str = "condition"):
    """Poll until ``attempt()`` returns something truthy (events travel between services asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def national_id(seed: int) -> str:
    from services.identity.security import normalise_national_id
    from shared.errors import DomainError

    body = f"B1{seed:07d}"
    for last in range(10):
        try:
            return normalise_national_id(f"{body}{last}")
        except DomainError:
            continue
    raise AssertionError("no check digit fits")


def create_student(client: Client, admin: dict, school: str, username: str, number: int) -> dict:
    return client.call("POST", f"/api/v1/schools/{school}/users", admin, json={
        "username": username, "display_name": f"測試學生{number}", "roles": ["student"], "password": FIRST_PASSWORD,
        "student": {"student_no": f"11290{number:02d}", "class_name": "101", "grade": 10, "national_id": national_id(number)}})


def own_password(client: Client, school: str, username: str) -> dict:
    first = client.login(school, username, FIRST_PASSWORD)
    client.call("POST", "/api/v1/auth/password", first,
                json={"current_password": FIRST_PASSWORD, "new_password": OWN_PASSWORD})
    return client.login(school, username, OWN_PASSWORD)


def enrol(client: Client, admin: dict, school: str, section_id: str, student_id: str) -> None:
    path = f"/api/v1/records/schools/{school}/sections/{section_id}/enrolments"
    # records learns of a new user from identity's event: retry until its directory knows the student
    eventually(lambda: requests.post(f"{client.base}{path}", headers=admin, json={"student_id": student_id},
                                     timeout=10).status_code == 201, what="the enrolment")


def submitted_outcome(client: Client, student: dict, section_id: str, brief: str, files: dict[str, bytes]) -> str:
    def start():
        response = requests.post(f"{client.base}/api/v1/intake/outcomes", headers=student, timeout=10,
                                 json={"section_id": section_id, "brief": brief})
        return response.json()["id"] if response.status_code == 201 else None

    outcome = eventually(start, what="intake to know the enrolment")
    for index, (name, data) in enumerate(files.items()):
        client.call("PUT", f"/api/v1/intake/outcomes/{outcome}/files/prepared-{index:04d}", student, data=data,
                    headers={"X-File-Name": quote(name), "Content-Type": "application/octet-stream"})
    client.call("POST", f"/api/v1/intake/outcomes/{outcome}/submit", student)
    return outcome


def picture() -> bytes:
    """A 240×160 gradient PNG, so the teacher's preview screenshot shows something."""
    import struct
    import zlib

    width, height = 240, 160
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x, y + 60, 200 - x // 2)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    missing = _requirements()
    if missing:
        pytest.fail(missing, pytrace=False)  # never a silent skip: CI must install what the portal tests need
    from deploy.embedded import Platform
    from deploy.wsgi import SERVICES

    var_dir = tmp_path_factory.mktemp("portal-var")
    for old in (HERE / "artifacts").glob("*.png"):
        old.unlink()  # the screenshots of this run only
    saved = dict(os.environ)
    env = {f"{name.upper()}_URL": f"http://127.0.0.1:{free_port()}" for name in SERVICES if name != "gateway"}
    env.update({"BUS_URL": "memory://", "FOOTPRINT_VAR_DIR": str(var_dir), "MEDIA_URL": f"file://{var_dir}/media",
                "OUTBOX_POLL_SECONDS": "0.05", "GATEWAY_USER_RATE": "100", "GATEWAY_USER_BURST": "400"})
    os.environ.pop("DOCUMENTS_URL", None)  # no store named: the embedded one under the var directory, as `make run`
    platform = Platform(gateway_port=free_port(), env=env).start()
    try:
        yield platform.url, prepare(Client(platform.url), var_dir)
    finally:
        platform.stop()
        os.environ.clear()
        os.environ.update(saved)


def prepare(client: Client, var_dir: Path) -> dict:
    admin = client.login("999001", "admin")
    teacher_id = client.call("GET", "/api/v1/me", client.login("999001", "teacher01"))["user"]["id"]
    demo_section = eventually(lambda: client.call("GET", "/api/v1/records/schools/999001/sections", admin)["items"],
                              what="the demo section")[0]
    # The journey's student: a new account (first sign-in changes the password) in the demo 國語文 of teacher01.
    journey = create_student(client, admin, "999001", "journey01", 1)
    enrol(client, admin, "999001", demo_section["id"], journey["id"])

    # The teacher's queue: a section of its own with four students who sent outcomes of every file kind.
    section = client.call("POST", "/api/v1/records/schools/999001/sections", admin, json={
        "term": "11201", "course_code": "10400000000000000000ART", "subject_name": "藝術生活", "credits": 2,
        "category": "部定必修", "section_name": "101", "teacher_ids": [teacher_id]})
    outcomes = {}
    kinds = {"cert01": {"作品說明.pdf": pdf(b"Footprint portal preview " * 40), "作品照片.png": picture()},
             "cert02": {"朗讀.mp3": mp3(), "短片.mp4": mp4(4000)},
             "cert03": {"報告.pdf": pdf(b"bulk one")}, "cert04": {"海報.jpg": jpeg()}}
    for number, (username, files) in enumerate(kinds.items(), start=11):
        student = create_student(client, admin, "999001", username, number)
        enrol(client, admin, "999001", section["id"], student["id"])
        auth = own_password(client, "999001", username)
        outcomes[username] = submitted_outcome(client, auth, section["id"], f"{username} 的藝術生活成果", files)
    teacher = client.login("999001", "teacher01")
    # A substitute certifier (代理人) for teacher01 today: teacher02 sees teacher01's queue, marked as such.
    substitute = client.call("POST", "/api/v1/schools/999001/users", admin, json={
        "username": "teacher02", "display_name": "陳代理老師", "roles": ["subject_teacher"], "password": FIRST_PASSWORD})
    own_password(client, "999001", "teacher02")
    today = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    eventually(lambda: requests.post(f"{client.base}/api/v1/certification/substitutes", headers=admin, timeout=10, json={
        "teacher_id": teacher_id, "substitute_id": substitute["id"], "starts_on": today, "ends_on": today}).status_code == 201,
        what="certification to know both teachers")
    for outcome in outcomes.values():
        eventually(lambda: requests.get(f"{client.base}/api/v1/certification/outcomes/{outcome}", headers=teacher,
                                        timeout=10).status_code == 200, what="certification to receive the outcome")

    # Another school's outcome, to open by address from 999001 (the tenant seal).
    other = client.login("999002", "student01")
    other_section = eventually(lambda: client.call("GET", "/api/v1/records/schools/999002/enrolments", other)["items"],
                               what="999002's demo enrolment")[0]["section_id"]
    foreign = eventually(lambda: (lambda r: r.json()["id"] if r.status_code == 201 else None)(
        requests.post(f"{client.base}/api/v1/intake/outcomes", headers=other, timeout=10,
                      json={"section_id": other_section, "brief": "999002 的秘密成果"})), what="999002's outcome")

    # Files the scenarios pick or drop (Playwright reads them from disk).
    files = var_dir / "files"
    files.mkdir()
    (files / "學習單.pdf").write_bytes(pdf(b"journey worksheet " * 2000))
    (files / "補充照片.png").write_bytes(png())
    (files / "影片.mp4").write_bytes(mp4(3 * 1024 * 1024))
    (files / "筆記.txt").write_bytes(b"plain text is not accepted")
    (files / "偽裝.pdf").write_bytes(b"this is not a PDF at all, whatever its name says")
    (files / "太大.pdf").write_bytes(b"%PDF-1.7\n" + b"0" * (9 * 512 * 1024))  # 4.5 MiB, over the 4 MiB limit
    # An enrolment import with good and bad rows (unknown student, malformed course code, unknown course).
    rows = ["學期,學號,課程代碼"]
    rows += ["11201,1120001,10400000000000000000000"]  # already enrolled: unchanged
    rows += [f"11201,99{n:05d},10400000000000000000000" for n in range(40)]  # unknown students
    rows += ["11201,1120001,BAD-CODE", "11201,1120001,99999999999999999999999"]
    (files / "修課名單.csv").write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    return {"files": str(files), "password": PASSWORD, "first_password": FIRST_PASSWORD,
            "journey": {"school": "999001", "username": "journey01", "section_id": demo_section["id"]},
            "teacher": {"school": "999001", "username": "teacher01", "section_id": section["id"],
                        "subject": "藝術生活", "outcomes": outcomes},
            "substitute": {"school": "999001", "username": "teacher02", "password": OWN_PASSWORD},
            "foreign_outcome": foreign, "import_rows": len(rows) - 1, "import_errors": len(rows) - 2}


# ---- the scenarios ------------------------------------------------------------------------------------------

def run_scenario(portal, name: str) -> str:
    url, fixture = portal
    started = time.monotonic()
    result = subprocess.run(["node", str(HERE / f"{name}.mjs")], cwd=HERE, capture_output=True, text=True,
                            timeout=SCENARIO_TIMEOUT,
                            env={**os.environ, "PORTAL_URL": url, "PORTAL_FIXTURE": json.dumps(fixture)})
    output = result.stdout + result.stderr
    print(f"{name}: {time.monotonic() - started:.1f} s\n{output}")
    assert result.returncode == 0, output
    assert f"scenario {name} passed" in result.stdout, output
    return result.stdout


def test_student_journey(portal):
    out = run_scenario(portal, "student_journey")
    for step in ("password changed at first sign-in", "brief counted as the server counts", "type and size refused before upload",
                 "server's refusal shown", "uploaded with progress", "submitted", "returned with the reason",
                 "re-uploaded and resubmitted", "selected", "portfolio exported", "performance recorded with its proof"):
        assert f"ok {step}" in out


def test_teacher_certification(portal):
    out = run_scenario(portal, "teacher_certification")
    for step in ("substitute sees the absent teacher's queue", "queue by course and class", "image and pdf previewed", "certified", "audio and video play",
                 "returned with a reason", "bulk certified", "class portfolios downloaded"):
        assert f"ok {step}" in out


def test_staff_import(portal):
    out = run_scenario(portal, "staff_import")
    for step in ("import finished with progress", "row errors in a table", "windows on a calendar", "status", "users",
                 "windows set by the school admin"):
        assert f"ok {step}" in out


def test_central_submission_receipts_and_disputes(portal):
    out = run_scenario(portal, "exchange_receipts")
    for step in ("term submitted and received", "student raised a dispute on a receipt row",
                 "staff rejected it and the student reads why", "student confirmed the receipt and sees it confirmed",
                 "staff see who confirmed and confirm for the school"):
        assert f"ok {step}" in out


def test_tenant_seal(portal):
    out = run_scenario(portal, "tenant_seal")
    for step in ("staff pages of another school show nothing of it", "another school's outcome shows nothing of it"):
        assert f"ok {step}" in out


def test_language_switch_and_city_admin(portal):
    out = run_scenario(portal, "language_and_city")
    for step in ("english after the switch", "kept after a reload", "server messages in the current language",
                 "city schools side by side"):
        assert f"ok {step}" in out


def test_the_gateway_serves_the_portal_with_its_csp_and_revalidation(portal):
    url, _ = portal
    page = requests.get(f"{url}/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="/js/main.js">' in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-cache" and page.headers["X-Content-Type-Options"] == "nosniff"
    module = requests.get(f"{url}/js/main.js", timeout=10)
    assert module.headers["Content-Type"].startswith("text/javascript")
    again = requests.get(f"{url}/js/main.js", headers={"If-None-Match": module.headers["ETag"]}, timeout=10)
    assert again.status_code == 304  # revalidated, not downloaded again
    for missing in ("/nothing.js", "/../README.md", "/js/../../gateway/app.py"):
        answer = requests.get(f"{url}{missing}", timeout=10)
        assert answer.status_code == 404 and answer.json()["code"] == "not_found", missing
    assert requests.get(f"{url}/api/v1/nothing", timeout=10).json()["code"] == "route_not_found"  # the API is untouched


def test_every_text_has_both_languages():
    """All UI text is in one dictionary per language: the same keys in both, and every key the code asks for."""
    import re

    portal = HERE.parent.parent / "portal" / "js"
    key = re.compile(r"^\s*'([\w.]+)':", re.M)
    zh = key.findall((portal / "i18n" / "zh-TW.js").read_text(encoding="utf-8"))
    en = key.findall((portal / "i18n" / "en.js").read_text(encoding="utf-8"))
    assert len(zh) == len(set(zh)) and len(en) == len(set(en)), "a key is defined twice"
    assert set(zh) == set(en), f"only zh-TW: {sorted(set(zh) - set(en))}; only en: {sorted(set(en) - set(zh))}"
    used = set()
    for source in portal.rglob("*.js"):
        text = source.read_text(encoding="utf-8")
        used |= set(re.findall(r"\bt\('([\w.]+)'", text)) | set(re.findall(r"label: '([\w.]+)'", text))
    assert used - set(zh) == set(), f"asked for but missing: {sorted(used - set(zh))}"
