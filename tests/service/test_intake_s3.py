"""The S3 path end to end (moto's S3 server over real HTTP, through the minio SDK): upload, download, presigned
link, sha256 verified at each step; bad and broken uploads leave no object in the bucket."""
from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from services.intake.domain import CHUNK  # the size intake reads a body in
import requests

from tests.conftest import free_port
from tests.service.test_intake_support import (MiB, StreamBody, make_world, mp4_chunks, pdf, png, problem_of, sha,
                                              s3_endpoint, s3_world)  # noqa: F401 (fixtures)


def bucket_objects(world) -> dict[str, bytes]:
    store = world.runtime.state["media"]
    store.ping()  # makes the bucket if no upload did yet
    found = {}
    for obj in store.client.list_objects(store.bucket, recursive=True):
        response = store.client.get_object(store.bucket, obj.object_name)
        try:
            found[obj.object_name] = response.read()
        finally:
            response.close()
            response.release_conn()
    return found


def test_upload_download_and_presigned_link_on_s3(s3_world):
    world = s3_world
    item = world.outcome()
    data = pdf(b"S3 path " * 1000)
    response = world.upload(item, data, "學習成果.pdf", checksum=sha(data))
    assert response.status_code == 201, response.get_data(as_text=True)
    out = response.get_json()
    assert out["sha256"] == sha(data) and out["size"] == len(data)
    [(key, stored)] = bucket_objects(world).items()
    assert key.startswith("999001/s1/") and hashlib.sha256(stored).hexdigest() == sha(data)

    download = world.get(f"/api/v1/intake/files/{out['file_id']}", "t_math")
    assert download.status_code == 200 and download.data == data
    assert download.headers["X-Content-SHA256"] == hashlib.sha256(download.data).hexdigest() == sha(data)

    link = world.get(f"/api/v1/intake/files/{out['file_id']}/link", "t_math").get_json()
    assert link["via"] == "presigned" and link["expires_in"] == 300 and link["sha256"] == sha(data)
    assert int(parse_qs(urlsplit(link["url"]).query)["X-Amz-Expires"][0]) <= 300
    fetched = requests.get(link["url"], timeout=10)
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == link["sha256"]
    assert f"filename*=UTF-8''{quote('學習成果.pdf', safe='')}" in fetched.headers["Content-Disposition"]
    short = world.get(f"/api/v1/intake/files/{out['file_id']}/link?expires=30", "t_math").get_json()
    assert short["expires_in"] == 30 and parse_qs(urlsplit(short["url"]).query)["X-Amz-Expires"] == ["30"]
    problem_of(world.get(f"/api/v1/intake/files/{out['file_id']}/link", "s2"), 403, "forbidden")
    problem_of(world.get(f"/api/v1/intake/files/{out['file_id']}/link", "b_admin"), 404, "not_found")
    assert world.client.get("/readyz").get_json()["checks"]["media"] == "ok"


def test_a_chunked_upload_of_unknown_length_on_s3(s3_world):
    """No Content-Length (the gateway forwards chunked bodies as such): the store's multipart path."""
    world = s3_world
    item = world.outcome()
    size = 6 * MiB
    body = StreamBody(mp4_chunks(size))
    response = world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/s3-chunked", body, length=None,
                                name="影片.mp4")
    assert response.status_code == 201, response.get_data(as_text=True)
    out = response.get_json()
    expected = hashlib.sha256(b"".join(mp4_chunks(size))).hexdigest()
    assert out["sha256"] == expected and out["size"] == size + 48
    download = world.get(f"/api/v1/intake/files/{out['file_id']}")
    assert hashlib.sha256(download.data).hexdigest() == expected == download.headers["X-Content-SHA256"]


@pytest.mark.parametrize("data, status, code", [
    (pdf(encrypt=True), 422, "file_encrypted"),
    (pdf() + b"PK\x03\x04zipped" + b"\x00" * 40, 422, "file_polyglot"),
    (png(b"<?php system($_GET['c']); ?>"), 422, "file_polyglot"),
    (b"MZ\x90\x00" + b"\x00" * 400, 415, "file_type_not_allowed"),
])
def test_bad_files_leave_no_object_on_s3(s3_world, data, status, code):
    item = s3_world.outcome()
    problem_of(s3_world.upload(item, data, "bad.pdf"), status, code)
    assert bucket_objects(s3_world) == {}


def test_checksum_mismatch_leaves_no_object_on_s3(s3_world):
    """The mismatch is known only after the last byte went to S3: the object is deleted again."""
    item = s3_world.outcome()
    problem_of(s3_world.upload(item, pdf(), checksum="a" * 64), 422, "checksum_mismatch")
    assert bucket_objects(s3_world) == {}
    assert s3_world.get(f"/api/v1/intake/outcomes/{item['id']}").get_json()["files"] == []


@pytest.mark.parametrize("length", [None, 6 * MiB])
def test_oversize_stops_mid_stream_and_leaves_no_object_on_s3(s3_world, length):
    item = s3_world.outcome()

    def endless():
        yield pdf()[:200]
        while True:
            yield b"\x00" * 65536

    body = StreamBody(endless())
    problem_of(s3_world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/s3-oversize", body, length=length),
               413, "file_too_large")
    assert body.consumed <= 4 * MiB + 2 * CHUNK
    assert bucket_objects(s3_world) == {}


def test_an_upload_failing_midway_leaves_no_object_on_s3(s3_world):
    item = s3_world.outcome()

    def broken():
        yield from (c for n, c in zip(range(20), mp4_chunks(3 * MiB)))
        raise ConnectionResetError("gone")

    problem_of(s3_world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/s3-broken", StreamBody(broken()),
                                   length=3 * MiB + 48, name="v.mp4"), 422, "file_corrupt")
    assert bucket_objects(s3_world) == {}
    assert s3_world.get(f"/api/v1/intake/outcomes/{item['id']}").get_json()["files"] == []


def test_a_store_gone_down_is_503_and_records_nothing(tmp_path):
    """MinIO went away after start-up (its bucket was known): the streamed PUT fails at once → 503, nothing recorded.
    (``_ready`` skips the SDK's bucket check and ``delete`` is recorded: the minio SDK's default retries take
    seconds against a dead port.)"""
    world = make_world(tmp_path, media_url=f"s3://k:s@127.0.0.1:{free_port()}/intake-nowhere")
    try:
        store = world.runtime.state["media"]
        store._ready = True
        deleted = []
        store.delete = deleted.append
        item = world.outcome()
        problem_of(world.upload(item, pdf()), 503, "storage_unavailable")
        assert world.get(f"/api/v1/intake/outcomes/{item['id']}").get_json()["files"] == []
        assert len(deleted) == 1 and deleted[0].startswith("999001/s1/")  # the half-written key is cleaned up
    finally:
        world.runtime.stop_workers()
