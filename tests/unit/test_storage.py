"""Media storage: the same contract on disk and on S3 (moto's S3 server over real HTTP, minio SDK)."""
from __future__ import annotations

import hashlib

import pytest
import requests

from shared.storage import FileMediaStore, StorageError, media_store
from tests.conftest import free_port


@pytest.fixture(scope="module")
def s3_url():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"s3://testing:testing@127.0.0.1:{port}/footprint-media"
    server.stop()


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path, s3_url):
    return media_store(f"file://{tmp_path}/media") if request.param == "file" else media_store(s3_url)


def chunks(n=40, size=65536):
    for i in range(n):
        yield bytes([i % 256]) * size


def test_streamed_put_then_read_back(store):
    expected = hashlib.sha256(b"".join(chunks())).hexdigest()
    assert store.put("999001/a/file.bin", chunks(), length=40 * 65536) == 40 * 65536
    assert hashlib.sha256(b"".join(store.open("999001/a/file.bin"))).hexdigest() == expected
    assert store.size("999001/a/file.bin") == 40 * 65536
    store.delete("999001/a/file.bin")
    assert store.size("999001/a/file.bin") is None


def test_unknown_length_upload(store):
    assert store.put("k/unknown", chunks(100), length=None) == 100 * 65536
    assert store.size("k/unknown") == 100 * 65536


def test_a_failed_upload_leaves_nothing(store):
    def broken():
        yield b"x" * 65536
        raise ConnectionError("client went away")

    with pytest.raises(Exception):
        store.put("k/broken", broken(), length=10 * 65536)
    assert store.size("k/broken") is None


def test_short_body_is_refused(tmp_path):
    store = FileMediaStore(str(tmp_path))
    with pytest.raises(StorageError):
        store.put("k/short", chunks(2), length=3 * 65536)
    assert store.size("k/short") is None and list((tmp_path / ".partial").iterdir()) == []


def test_keys_cannot_escape_the_store(tmp_path):
    with pytest.raises(StorageError):
        FileMediaStore(str(tmp_path / "m")).put("../outside", chunks(1))


def test_presigned_link_downloads(s3_url):
    store = media_store(s3_url)
    store.put("k/linked", chunks(2), length=2 * 65536)
    url = store.link("k/linked", 60, "成果.pdf")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and len(response.content) == 2 * 65536


def test_s3_put_proves_the_stored_bytes_by_etag(s3_url, monkeypatch):
    import shared.storage as storage

    store = media_store(s3_url)
    assert store.put("k/proved", chunks(3), length=3 * 65536) == 3 * 65536  # ETag == MD5 of what was sent

    class WrongDigest:
        def update(self, data):
            pass

        def hexdigest(self):
            return "0" * 32

    original = storage._Counting.__init__

    def counting_with_a_wrong_digest(self, chunks):  # (moto computes its ETag in this process: leave hashlib be)
        original(self, chunks)
        self.md5 = WrongDigest()

    monkeypatch.setattr(storage._Counting, "__init__", counting_with_a_wrong_digest)
    with pytest.raises(StorageError, match="other bytes"):
        store.put("k/unproved", chunks(3), length=3 * 65536)
    assert store.size("k/unproved") is None  # an unproven object is not left behind
