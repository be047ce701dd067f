"""Direct uploads: a presigned, create-only PUT straight to the store (moto's S3 server over real HTTP), which
intake reads back and checks — type by bytes, size, sha256 — before the file appears on the item. A refused
file leaves nothing visible and nothing stored; a pending upload never completed is swept."""
from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from gateway.routes import body_limit, service_for
from services.intake import domain
from services.intake.models import MAX_FILES, DirectUpload, Outcome
from shared.storage import CHUNK, media_store, presign_v4_put
from tests.service.test_intake_support import (A, MiB, jpeg, make_world, mp4, mp4_chunks, pdf, png, problem_of, sha,
                                              s3_endpoint, s3_world)  # noqa: F401 (fixtures)

OUTCOMES = "/api/v1/intake/outcomes"


@pytest.fixture
def disk_world(tmp_path):
    world = make_world(tmp_path)
    yield world
    world.runtime.stop_workers()


def bucket(world) -> dict[str, bytes]:
    store = world.runtime.state["media"]
    store.ping()
    found = {}
    for obj in store.client.list_objects(store.bucket, recursive=True):
        with store.fetch(obj.object_name) as fetched:
            found[obj.object_name] = b"".join(fetched)
    return found


def init(world, item: dict, data: bytes, name: str = "成果.pdf", *, kind: str = "document", user: str = "s1",
         route: str = "outcomes", **fields):
    body = {"name": name, "size": len(data), "sha256": sha(data), "kind": kind, **fields}
    return world.client.post(f"/api/v1/intake/{route}/{item['id']}/uploads", headers=world.h(user), json=body)


def put(start: dict, data: bytes):
    return requests.put(start["url"], data=data, headers=start["headers"], timeout=10)


def complete(world, upload_id: str, user: str = "s1"):
    return world.client.post(f"/api/v1/intake/uploads/{upload_id}/complete", headers=world.h(user))


def files_of(world, item: dict, route: str = "outcomes") -> list[dict]:
    return world.get(f"/api/v1/intake/{route}/{item['id']}").get_json()["files"]


def direct_upload(world, item: dict, data: bytes, name: str = "成果.pdf", **kwargs) -> dict:
    start = init(world, item, data, name, **kwargs)
    assert start.status_code == 201, start.get_data(as_text=True)
    start = start.get_json()
    assert put(start, data).status_code == 200
    return start


# ---- the happy path -------------------------------------------------------------------------------------------

def test_the_file_is_visible_only_after_complete_with_its_sha256(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf(b"direct " * 5000)
    response = init(world, item, data, "學習成果.pdf")
    assert response.status_code == 201, response.get_data(as_text=True)
    start = response.get_json()
    assert start["state"] == "pending" and start["direct"] is True and start["method"] == "PUT"
    assert start["complete_url"] == f"/api/v1/intake/uploads/{start['upload_id']}/complete"
    assert 0 < start["expires_in"] <= 600
    query = parse_qs(urlsplit(start["url"]).query)
    assert int(query["X-Amz-Expires"][0]) == start["expires_in"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;host;if-none-match;x-amz-checksum-sha256"]
    assert start["headers"]["Content-Length"] == str(len(data)) and start["headers"]["If-None-Match"] == "*"
    assert world.raw(Outcome, item["id"])["files"] == []

    assert put(start, data).status_code == 200
    [(key, stored)] = bucket(world).items()
    assert key.startswith(f"{A}/s1/") and stored == data
    assert files_of(world, item) == []  # stored, not yet verified: not on the item

    done = complete(world, start["upload_id"])
    assert done.status_code == 201, done.get_data(as_text=True)
    record = done.get_json()
    assert record["sha256"] == sha(data) == done.headers["X-Content-SHA256"] and record["size"] == len(data)
    assert record["name"] == "學習成果.pdf" and record["kind"] == "document" and record["media_type"] == "application/pdf"
    assert record["upload_key"] == start["upload_id"]
    assert files_of(world, item) == [record]
    assert world.raw(Outcome, item["id"])["files"][0]["storage_key"] == key  # the verified object, not a copy
    download = world.get(f"/api/v1/intake/files/{record['file_id']}", "t_math")
    assert download.status_code == 200 and download.data == data

    # The link is create-only: what was verified can no longer be replaced through it.
    assert put(start, pdf(b"replaced " * 5000)[:len(data)]).status_code == 412
    assert bucket(world) == {key: data}


def test_a_performance_takes_a_direct_upload_too_and_media_is_streamed_back(s3_world, monkeypatch):
    world = s3_world
    item = world.performance()
    data = b"".join(mp4_chunks(3 * MiB))
    store = world.runtime.state["media"]
    pulled = []
    fetch = store.fetch

    def counting_fetch(key):
        fetched = fetch(key)
        chunks = fetched._chunks

        def counted():
            for chunk in chunks:
                pulled.append(len(chunk))
                yield chunk
        fetched._chunks = counted()
        return fetched

    monkeypatch.setattr(store, "fetch", counting_fetch)
    start = direct_upload(world, item, data, "影片.mp4", kind="media", route="performances")
    done = complete(world, start["upload_id"])
    assert done.status_code == 201, done.get_data(as_text=True)
    assert done.get_json()["media_type"] == "video/mp4" and done.get_json()["sha256"] == sha(data)
    assert files_of(world, item, "performances")[0]["file_id"] == done.get_json()["file_id"]
    assert sum(pulled) == len(data) and max(pulled) <= CHUNK and len(pulled) >= len(data) // CHUNK  # never whole


def test_complete_twice_is_idempotent(s3_world):
    world = s3_world
    item = world.outcome()
    data = png()
    start = direct_upload(world, item, data, "圖.png")
    first = complete(world, start["upload_id"])
    again = complete(world, start["upload_id"])
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json() == first.get_json()
    assert len(files_of(world, item)) == 1 and len(bucket(world)) == 1
    # an init with the same upload key again: already there, nothing to send
    repeat = init(world, item, data, "圖.png", upload_key=start["upload_id"])
    assert repeat.status_code == 200, repeat.get_data(as_text=True)
    assert repeat.get_json()["state"] == "completed" and repeat.get_json()["url"] is None
    assert repeat.get_json()["file"]["file_id"] == first.get_json()["file_id"]
    problem_of(init(world, item, jpeg(), "x.jpg", upload_key=start["upload_id"]), 409, "conflict")


def test_the_same_upload_key_while_pending_is_the_same_upload(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf()
    first = init(world, item, data, upload_key="key-000001").get_json()
    second = init(world, item, data, upload_key="key-000001").get_json()
    assert second["upload_id"] == first["upload_id"]
    problem_of(init(world, item, pdf(b"other"), upload_key="key-000001"), 409, "conflict")
    assert put(second, data).status_code == 200
    assert complete(world, first["upload_id"]).status_code == 201
    assert [f["upload_key"] for f in files_of(world, item)] == ["key-000001"]


# ---- refusals: the same codes as the streamed path, nothing visible, nothing stored ------------------------------

def assert_nothing(world, item, route="outcomes"):
    assert files_of(world, item, route) == []
    assert bucket(world) == {}


def test_a_wrong_sha256_is_refused_and_the_object_deleted(s3_world):
    """moto does not check the signed x-amz-checksum-sha256 (S3 and MinIO do): intake's own hash catches it."""
    world = s3_world
    item = world.outcome()
    declared, sent = pdf(b"what I said"), pdf(b"what I sent")
    assert len(declared) == len(sent)
    start = init(world, item, declared).get_json()
    assert put(start, sent).status_code == 200
    problem_of(complete(world, start["upload_id"]), 422, "checksum_mismatch")
    assert_nothing(world, item)
    problem_of(complete(world, start["upload_id"]), 422, "checksum_mismatch")  # the same answer again
    assert DirectUpload.objects(id=start["upload_id"]).first().state == "failed"


def test_another_size_than_declared_is_refused(s3_world):
    world = s3_world
    item = world.outcome()
    declared = pdf(b"short")
    start = init(world, item, declared).get_json()
    sent = pdf(b"a longer body than declared")
    assert requests.put(start["url"], data=sent, headers={**start["headers"], "Content-Length": str(len(sent))},
                        timeout=10).status_code == 200  # (S3 and MinIO refuse a length that differs from the signed one)
    problem_of(complete(world, start["upload_id"]), 422, "checksum_mismatch")
    assert_nothing(world, item)


@pytest.mark.parametrize("label, data, name, kind, status, code", [
    ("executable renamed .pdf", b"MZ\x90\x00" + b"\x00" * 400, "report.pdf", "document", 415, "file_type_not_allowed"),
    ("ELF declared as media", b"\x7fELF\x02\x01\x01" + b"\x00" * 400, "v.mp4", "media", 415, "file_type_not_allowed"),
    ("a PDF declared as media", pdf(), "x.mp4", "media", 415, "file_type_not_allowed"),
    ("an MP4 declared as a document", mp4(), "x.pdf", "document", 415, "file_type_not_allowed"),
    ("encrypted PDF", pdf(encrypt=True), "locked.pdf", "document", 422, "file_encrypted"),
    ("PDF with script", pdf(b"<script>alert(1)</script>"), "poly.pdf", "document", 422, "file_polyglot"),
    ("PNG + PHP polyglot", png(b"<?php system($_GET['c']); ?>"), "poly.png", "document", 422, "file_polyglot"),
    ("truncated MP4", mp4()[:-10], "cut.mp4", "media", 422, "file_corrupt"),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_the_type_is_judged_by_the_bytes(s3_world, label, data, name, kind, status, code):
    world = s3_world
    item = world.outcome()
    start = direct_upload(world, item, data, name, kind=kind)
    problem_of(complete(world, start["upload_id"]), status, code)
    assert_nothing(world, item)


def test_oversize_is_refused_before_a_url_and_after_a_lying_put(s3_world):
    world = s3_world
    world.set_policy(document_limit_bytes=64 * 1024)
    item = world.outcome()
    big = pdf(b"x" * (64 * 1024))
    problem_of(init(world, item, big), 413, "file_too_large")
    problem_of(init(world, item, mp4(10 * MiB + 1), "v.mp4", kind="media"), 413, "file_too_large")
    assert DirectUpload.objects(item_id=item["id"]).count() == 0
    small = pdf(b"x" * 1000)
    start = init(world, item, small).get_json()
    assert requests.put(start["url"], data=big, headers={**start["headers"], "Content-Length": str(len(big))},
                        timeout=10).status_code == 200
    problem_of(complete(world, start["upload_id"]), 413, "file_too_large")
    assert_nothing(world, item)


def test_complete_before_the_put_is_refused_and_can_be_tried_again(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf()
    start = init(world, item, data).get_json()
    problem_of(complete(world, start["upload_id"]), 409, "upload_not_received")
    assert files_of(world, item) == []
    assert put(start, data).status_code == 200
    assert complete(world, start["upload_id"]).status_code == 201


def test_nobody_else_can_start_or_complete(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf()
    problem_of(init(world, item, data, user="s2"), 403, "forbidden")       # same school: as the streamed path
    problem_of(init(world, item, data, user="b1"), 404, "not_found")       # another school: not found
    problem_of(init(world, item, data, user="t_math"), 403, "forbidden")   # students only
    start = direct_upload(world, item, data)
    problem_of(complete(world, start["upload_id"], "s2"), 404, "not_found")
    problem_of(complete(world, start["upload_id"], "b1"), 404, "not_found")
    problem_of(complete(world, uuid.uuid4().hex), 404, "not_found")
    assert files_of(world, item) == []
    assert complete(world, start["upload_id"]).status_code == 201  # the owner still can


def test_a_locked_item_refuses(s3_world):
    world = s3_world
    item = world.outcome()
    pending = direct_upload(world, item, jpeg(), "later.jpg")
    first = direct_upload(world, item, pdf())
    assert complete(world, first["upload_id"]).status_code == 201
    assert world.client.post(f"{OUTCOMES}/{item['id']}/submit", headers=world.h("s1")).status_code == 200
    problem_of(init(world, item, png(), "x.png"), 409, "item_locked")
    problem_of(complete(world, pending["upload_id"]), 409, "item_locked")  # sent for certification meanwhile
    assert [f["file_id"] for f in files_of(world, item)] == [complete(world, first["upload_id"]).get_json()["file_id"]]
    assert len(bucket(world)) == 1  # the refused one's bytes are gone


def test_closed_uploads_refuse(s3_world):
    world = s3_world
    item = world.outcome()
    world.set_policy(uploads_open=False)
    problem_of(init(world, item, pdf()), 409, "uploads_closed")


def test_the_file_cap_counts_pending_uploads(s3_world):
    world = s3_world
    item = world.outcome()
    starts = [init(world, item, pdf(bytes([65 + n]) * 10), f"f{n}.pdf") for n in range(MAX_FILES)]
    assert [s.status_code for s in starts] == [201] * MAX_FILES
    problem_of(init(world, item, pdf(b"one more")), 422, "validation_failed")
    done = starts[0].get_json()
    assert put(done, pdf(b"A" * 10)).status_code == 200 and complete(world, done["upload_id"]).status_code == 201
    problem_of(init(world, item, pdf(b"one more")), 422, "validation_failed")


def test_invalid_declarations_are_422(s3_world):
    world = s3_world
    item = world.outcome()
    url = f"{OUTCOMES}/{item['id']}/uploads"
    good = {"name": "a.pdf", "size": 10, "sha256": "a" * 64, "kind": "document"}
    for bad in ({**good, "sha256": "xyz"}, {**good, "kind": "exe"}, {**good, "size": -1}, {**good, "extra": 1},
                {**good, "upload_key": "no spaces"}):
        problem_of(world.client.post(url, headers=world.h("s1"), json=bad), 422, "validation_failed")
    problem_of(world.client.post(url, headers=world.h("s1"), json={**good, "name": "../x.pdf"}), 422, "invalid_file_name")
    problem_of(world.client.post(url, headers=world.h("s1"), json={**good, "size": 0}), 422, "file_empty")


# ---- expiry and the sweep ---------------------------------------------------------------------------------------

def test_pending_uploads_never_completed_are_swept(s3_world):
    world = s3_world
    intake = world.runtime.state["intake"]
    item = world.outcome()
    kept = direct_upload(world, item, pdf(b"kept"))
    assert complete(world, kept["upload_id"]).status_code == 201
    abandoned = direct_upload(world, item, pdf(b"abandoned"))
    never_sent = init(world, item, pdf(b"never sent")).get_json()
    assert len(bucket(world)) == 2
    assert domain.sweep_direct_uploads(intake) == 0  # nothing is due yet

    later = datetime.now(timezone.utc) + timedelta(seconds=domain.DIRECT_URL_SECONDS) + domain.SWEEP_AFTER + timedelta(seconds=1)
    assert domain.sweep_direct_uploads(intake, at=later) == 2
    assert list(bucket(world)) == [world.raw(Outcome, item["id"])["files"][0]["storage_key"]]  # the verified file stays
    assert [f["upload_key"] for f in files_of(world, item)] == [kept["upload_id"]]
    for start in (abandoned, never_sent):
        assert DirectUpload.objects(id=start["upload_id"]).first().state == "expired"
        problem_of(complete(world, start["upload_id"]), 410, "upload_expired")
    assert domain.sweep_direct_uploads(intake, at=later) == 0  # each upload is swept once
    assert complete(world, kept["upload_id"]).status_code == 200


def test_a_late_complete_is_refused_even_before_the_sweep(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf()
    start = direct_upload(world, item, data)
    past = datetime.now(timezone.utc) - timedelta(seconds=domain.DIRECT_URL_SECONDS) - domain.COMPLETE_GRACE
    DirectUpload.objects(id=start["upload_id"]).update_one(set__expires_at=past)
    problem_of(complete(world, start["upload_id"]), 410, "upload_expired")
    assert files_of(world, item) == []


def test_the_sweep_removes_bytes_put_again_after_a_refusal(s3_world):
    world = s3_world
    intake = world.runtime.state["intake"]
    item = world.outcome()
    start = init(world, item, pdf(b"declared")).get_json()
    assert put(start, pdf(b"somethin")).status_code == 200
    problem_of(complete(world, start["upload_id"]), 422, "checksum_mismatch")
    assert put(start, pdf(b"declared")).status_code == 200  # the link still works while the key is empty
    problem_of(complete(world, start["upload_id"]), 422, "checksum_mismatch")  # but the upload is over
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert domain.sweep_direct_uploads(intake, at=later) == 1
    assert_nothing(world, item)


# ---- the disk store, the public host, the signature, the route table ---------------------------------------------

def test_the_disk_store_sends_clients_to_the_streamed_path(disk_world):
    world = disk_world
    item = world.outcome()
    body = problem_of(init(world, item, pdf(), upload_key="stream-0001"), 409, "direct_upload_unavailable")
    assert body["stream_url"] == f"{OUTCOMES}/{item['id']}/files/stream-0001"
    problem_of(init(world, item, pdf(), user="b1"), 404, "not_found")  # the checks come first
    assert world.upload(item, pdf(), key="stream-0001").status_code == 201
    assert DirectUpload.objects.count() == 0


def test_links_carry_the_public_host(s3_endpoint):
    store = media_store(f"s3://{s3_endpoint}/direct-public", public_url="https://media.school.example:9443")
    url, headers = store.presign_put("999001/s1/x", length=10, sha256="ab" * 32, expires=60)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "media.school.example:9443", "/direct-public/999001/s1/x")
    assert headers == {"Content-Length": "10", "If-None-Match": "*",
                       "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex("ab" * 32)).decode()}


def test_the_presigned_put_is_signed_as_s3_expects():
    """The same URL botocore signs for a PUT with these headers; and with no extra header, minio's own."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials
    from minio import Minio

    headers = {"Content-Length": "1234", "If-None-Match": "*", "x-amz-checksum-sha256": "q80="}
    request = botocore.awsrequest.AWSRequest(method="PUT", url="http://127.0.0.1:9000/media/999001/s1/abc",
                                             headers=dict(headers))
    botocore.auth.S3SigV4QueryAuth(botocore.credentials.Credentials("AK", "SK"), "s3", "us-east-1",
                                   expires=600).add_auth(request)
    expected = parse_qs(urlsplit(request.url).query)
    at = datetime.strptime(expected["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    ours = presign_v4_put("http://127.0.0.1:9000", "AK", "SK", "us-east-1", bucket="media", key="999001/s1/abc",
                          headers=headers, expires=600, at=at)
    assert parse_qs(urlsplit(ours).query) == expected
    plain = Minio("127.0.0.1:9000", access_key="AK", secret_key="SK", secure=False, region="us-east-1")
    assert presign_v4_put("http://127.0.0.1:9000", "AK", "SK", "us-east-1", bucket="media", key="999001/s1/abc",
                          headers={}, expires=600, at=at) == plain.get_presigned_url(
        "PUT", "media", "999001/s1/abc", expires=timedelta(seconds=600), request_date=at)


def test_the_gateway_routes_the_new_paths_and_the_api_document_has_them(s3_world):
    for path in ("/api/v1/intake/outcomes/x/uploads", "/api/v1/intake/performances/x/uploads",
                 "/api/v1/intake/uploads/x/complete"):
        assert service_for(path) == "intake" and body_limit(path) == 1024 * 1024  # small JSON, no bytes
    paths = s3_world.client.get("/openapi.json").get_json()["paths"]
    assert {"/api/v1/intake/outcomes/{outcome_id}/uploads", "/api/v1/intake/performances/{performance_id}/uploads",
            "/api/v1/intake/uploads/{upload_id}/complete"} <= set(paths)
    assert paths["/api/v1/intake/uploads/{upload_id}/complete"]["post"]["security"] == [{"bearer": []}]


def test_an_unreachable_store_is_503_and_the_upload_stays_pending(s3_world, monkeypatch):
    world = s3_world
    item = world.outcome()
    data = pdf()
    start = direct_upload(world, item, data)
    store = world.runtime.state["media"]
    real = store.fetch

    def down(key):
        raise ConnectionError("store down")

    monkeypatch.setattr(store, "fetch", down)
    problem_of(complete(world, start["upload_id"]), 503, "storage_unavailable")
    assert DirectUpload.objects(id=start["upload_id"]).first().state == "pending"
    monkeypatch.setattr(store, "fetch", real)
    assert complete(world, start["upload_id"]).status_code == 201
