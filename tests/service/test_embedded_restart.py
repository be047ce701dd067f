"""`make run` keeps its data: the embedded platform stopped and started again on the same ./var still has every
account, outcome, file and certification, and does not seed the demo over what changed meanwhile."""
from __future__ import annotations

import hashlib
import os
import time

import requests

from tests.conftest import free_port
from tests.files import pdf


def start_platform(var_dir):
    from deploy.embedded import Platform
    from deploy.wsgi import SERVICES

    env = {f"{name.upper()}_URL": f"http://127.0.0.1:{free_port()}" for name in SERVICES if name != "gateway"}
    env.update({"BUS_URL": "memory://", "FOOTPRINT_VAR_DIR": str(var_dir), "MEDIA_URL": f"file://{var_dir}/media",
                "OUTBOX_POLL_SECONDS": "0.05"})
    os.environ.pop("DOCUMENTS_URL", None)  # no store named: the embedded one under the var directory
    return Platform(gateway_port=free_port(), env=env).start()


def sign_in(platform, username, password, school="999001"):
    return requests.post(f"{platform.url}/api/v1/auth/login", timeout=60,
                         json={"school": school, "username": username, "password": password})


def auth(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def eventually(call, timeout=120.0):  # generous: it only costs time when the test fails anyway
    deadline = time.monotonic() + timeout
    while True:
        result = call()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_a_restart_keeps_everything_and_does_not_seed_again(tmp_path):
    saved = dict(os.environ)
    data = pdf(b"Footprint outcome kept across restarts. " * 500)
    digest = hashlib.sha256(data).hexdigest()
    try:
        first = start_platform(tmp_path)
        try:
            assert first.seed and first.docstore is not None
            student = sign_in(first, "student01", "footprint-demo").json()
            changed = requests.post(f"{first.url}/api/v1/auth/password", headers=auth(student), timeout=60,
                                    json={"current_password": "footprint-demo", "new_password": "my-own-secret-1"})
            assert changed.status_code in (200, 204), changed.text
            student = sign_in(first, "student01", "my-own-secret-1").json()
            sections = eventually(lambda: requests.get(f"{first.url}/api/v1/records/schools/999001/enrolments",
                                                       headers=auth(student), timeout=60).json().get("items"))
            section_id = sections[0]["section_id"]
            created = eventually(lambda: (lambda r: r if r.status_code == 201 else None)(
                requests.post(f"{first.url}/api/v1/intake/outcomes", headers=auth(student), timeout=60,
                              json={"section_id": section_id, "brief": "重啟前的成果"})))
            outcome = created.json()["id"]
            stored = requests.put(f"{first.url}/api/v1/intake/outcomes/{outcome}/files/before-restart", data=data,
                                  headers={**auth(student), "X-File-Name": "report.pdf", "X-Content-SHA256": digest,
                                           "Content-Type": "application/octet-stream"}, timeout=60)
            assert stored.status_code == 201, stored.text
            submitted = requests.post(f"{first.url}/api/v1/intake/outcomes/{outcome}/submit", headers=auth(student),
                                      timeout=60)
            assert submitted.status_code == 200, submitted.text
            teacher = sign_in(first, "teacher01", "footprint-demo").json()
            queued = eventually(lambda: requests.get(f"{first.url}/api/v1/certification/outcomes/{outcome}",
                                                     headers=auth(teacher), timeout=60).status_code == 200)
            assert queued
            certified = requests.post(f"{first.url}/api/v1/certification/outcomes/{outcome}/certify",
                                      headers=auth(teacher), json={}, timeout=60)
            assert certified.status_code == 200, certified.text
        finally:
            first.stop()

        second = start_platform(tmp_path)
        try:
            assert second.seed is False and second.demo is None  # the store was not empty: no seed over it
            assert sign_in(second, "student01", "footprint-demo").status_code == 401  # the changed password stays
            student = sign_in(second, "student01", "my-own-secret-1").json()
            item = requests.get(f"{second.url}/api/v1/intake/outcomes/{outcome}", headers=auth(student), timeout=60).json()
            assert [f["sha256"] for f in item["files"]] == [digest]
            # The certification event may have been in certification's outbox at the stop: it is relayed now.
            status = eventually(lambda: requests.get(f"{second.url}/api/v1/intake/outcomes/{outcome}",
                                                     headers=auth(student), timeout=60).json()["status"] == "certified")
            assert status
            download = requests.get(f"{second.url}/api/v1/intake/files/{item['files'][0]['file_id']}",
                                    headers=auth(student), timeout=60)
            assert download.status_code == 200 and hashlib.sha256(download.content).hexdigest() == digest
        finally:
            second.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
