"""The upload pipeline: every bad file is a clear 4xx with NOTHING stored; good files are kept with their sha256;
bodies stream (oversize stops mid-stream, memory stays flat); retries are idempotent; failures leave nothing."""
from __future__ import annotations

import hashlib
import tracemalloc
from urllib.parse import quote

import pytest

from services.intake.domain import CHUNK  # the size intake reads a body in

from services.intake.models import Outcome, Performance
from tests.service.test_intake_support import (MiB, StreamBody, jpeg, mp3, mp4, mp4_chunks, pdf, png, problem_of, sha,
                                               world)  # noqa: F401 (fixture)


def assert_nothing_kept(world, item: dict, model=Outcome):
    assert world.objects() == [], world.objects()
    assert world.partials() == []
    raw = world.raw(model, item["id"])
    assert raw["files"] == [] and raw.get("retired_files", []) == []
    assert world.get(f"/api/v1/intake/{'outcomes' if model is Outcome else 'performances'}/{item['id']}").get_json()["files"] == []


# ---- bad files ------------------------------------------------------------------------------------------------

BAD_FILES = [
    ("executable renamed .pdf", b"MZ\x90\x00" + b"\x00" * 400, "report.pdf", 415, "file_type_not_allowed"),
    ("ELF renamed .png", b"\x7fELF\x02\x01\x01" + b"\x00" * 400, "photo.png", 415, "file_type_not_allowed"),
    ("zip renamed .pdf", b"PK\x03\x04" + b"\x00" * 400, "essay.pdf", 415, "file_type_not_allowed"),
    ("html renamed .jpg", b"<html><script>alert(1)</script></html>", "x.jpg", 415, "file_type_not_allowed"),
    ("truncated PDF", pdf()[:-30], "truncated.pdf", 422, "file_corrupt"),
    ("encrypted PDF", pdf(encrypt=True), "locked.pdf", 422, "file_encrypted"),
    ("PDF + zip polyglot", pdf() + b"PK\x03\x04zipped payload" + b"\x00" * 40, "poly.pdf", 422, "file_polyglot"),
    ("PDF with script", pdf(b"<script>alert(1)</script>"), "poly2.pdf", 422, "file_polyglot"),
    ("PNG + PHP polyglot", png(b"<?php system($_GET['c']); ?>"), "poly.png", 422, "file_polyglot"),
    ("JPEG + zip polyglot", jpeg(b"PK\x03\x04" + b"\x00" * 30), "poly.jpg", 422, "file_polyglot"),
    ("truncated PNG", png()[:-6], "cut.png", 422, "file_corrupt"),
    ("truncated MP4", mp4()[:-10], "cut.mp4", 422, "file_corrupt"),
    ("zero bytes", b"", "empty.pdf", 422, "file_empty"),
]


@pytest.mark.parametrize("label, data, name, status, code", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_every_bad_file_is_refused_and_nothing_is_kept(world, label, data, name, status, code):
    item = world.outcome()
    problem_of(world.upload(item, data, name), status, code)
    assert_nothing_kept(world, item)


@pytest.mark.parametrize("label, data, name, status, code", BAD_FILES[:8], ids=[b[0] for b in BAD_FILES[:8]])
def test_bad_files_streamed_without_a_length_are_refused_too(world, label, data, name, status, code):
    item = world.outcome()
    body = StreamBody(data[i:i + 100] for i in range(0, len(data), 100))
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/chunked-01", body, length=None, name=name),
               status, code)
    assert_nothing_kept(world, item)


def test_an_empty_chunked_body_is_file_empty(world):
    item = world.outcome()
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/empty-0001", StreamBody([]), length=None),
               422, "file_empty")
    assert_nothing_kept(world, item)


def test_bad_files_on_performances_too(world):
    item = world.performance()
    problem_of(world.upload(item, b"MZ\x90\x00" + b"\x00" * 300, "proof.pdf", kind="performances"), 415,
               "file_type_not_allowed")
    problem_of(world.upload(item, png(b"<?php echo 1; ?>"), "proof.png", kind="performances"), 422, "file_polyglot")
    assert_nothing_kept(world, item, Performance)


@pytest.mark.parametrize("header", [
    quote("../../x.pdf", safe=""), "../../x.pdf", quote("..\\..\\x.pdf", safe=""), quote("a/b.pdf", safe=""),
    "a%0Ab.pdf", "bad%00.pdf", "tab%09name.pdf", quote("rtl\u202egpj.exe", safe=""), "%FF%FE.pdf", "..", "%2E%2E",
    quote("x" * 201, safe=""), quote("c:evil.pdf", safe=""),
])
def test_bad_file_names_are_refused_before_anything_is_stored(world, header):
    item = world.outcome()
    response = world.client.put(f"/api/v1/intake/outcomes/{item['id']}/files/name-test-1", data=pdf(),
                                headers=world.h("s1", **{"X-File-Name": header}), content_type="application/pdf")
    problem_of(response, 422, "invalid_file_name")
    assert_nothing_kept(world, item)


def test_a_missing_file_name_is_refused(world):
    item = world.outcome()
    problem_of(world.upload(item, pdf(), name=None), 422, "invalid_file_name")
    assert_nothing_kept(world, item)


def test_checksum_mismatch_keeps_nothing(world):
    item = world.outcome()
    body = problem_of(world.upload(item, pdf(), checksum="0" * 64), 422, "checksum_mismatch")
    assert sha(pdf()) in body["detail"]
    assert_nothing_kept(world, item)
    problem_of(world.upload(item, pdf(), checksum="not-a-checksum"), 422, "validation_failed")
    assert_nothing_kept(world, item)


def test_a_bad_upload_key_is_refused(world):
    item = world.outcome()
    problem_of(world.upload(item, pdf(), key="short"), 422, "validation_failed")
    problem_of(world.upload(item, pdf(), key="has.dots.in.it"), 422, "validation_failed")
    assert_nothing_kept(world, item)


# ---- good files -----------------------------------------------------------------------------------------------

GOOD = [
    (pdf(), "學習成果.pdf", "document", "application/pdf", "學習成果.pdf"),
    (png(), "圖表.png", "document", "image/png", "圖表.png"),
    (jpeg(), "photo.JPEG", "document", "image/jpeg", "photo.JPEG"),
    (mp3(), "口說.mp3", "media", "audio/mpeg", "口說.mp3"),
    (mp4(5000), "實驗影片.mp4", "media", "video/mp4", "實驗影片.mp4"),
    # the type is decided by the bytes, never by the name or Content-Type; the name gets the true extension
    (png(), "not-really.pdf", "document", "image/png", "not-really.pdf.png"),
]


@pytest.mark.parametrize("data, name, kind, media_type, stored_name", GOOD, ids=[g[1] for g in GOOD])
def test_good_files_are_kept_with_their_sha256(world, data, name, kind, media_type, stored_name):
    item = world.outcome()
    response = world.upload(item, data, name, checksum=sha(data), headers={"Content-Type": "application/x-msdownload"})
    assert response.status_code == 201, response.get_data(as_text=True)
    out = response.get_json()
    assert (out["kind"], out["media_type"], out["size"], out["sha256"], out["name"]) == \
           (kind, media_type, len(data), sha(data), stored_name)
    assert response.headers["X-Content-SHA256"] == sha(data)
    assert response.headers["Location"] == f"/api/v1/intake/files/{out['file_id']}"
    [stored] = world.objects()
    assert stored.read_bytes() == data
    assert stored.relative_to(world.media).parts[:2] == ("999001", "s1")  # <school>/<student>/<random>
    assert world.partials() == []
    files = world.get(f"/api/v1/intake/outcomes/{item['id']}").get_json()["files"]
    assert [(f["file_id"], f["sha256"]) for f in files] == [(out["file_id"], sha(data))]
    download = world.get(f"/api/v1/intake/files/{out['file_id']}")
    assert download.status_code == 200 and download.data == data
    assert download.headers["X-Content-SHA256"] == sha(data) == hashlib.sha256(download.data).hexdigest()
    assert download.headers["Content-Type"].startswith(media_type)
    assert f"filename*=UTF-8''{quote(stored_name, safe='')}" in download.headers["Content-Disposition"]
    assert download.headers["X-Content-Type-Options"] == "nosniff"


def test_media_may_be_larger_than_the_document_limit(world):
    item = world.outcome()
    body = StreamBody(mp4_chunks(6 * MiB))
    response = world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/video-0001", body, length=None, name="v.mp4")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["size"] == 6 * MiB + 48 and response.get_json()["kind"] == "media"


def test_the_schools_own_limits_apply(world):
    world.set_policy(document_limit_bytes=64 * 1024, media_limit_bytes=128 * 1024)
    item = world.outcome()
    problem_of(world.upload(item, pdf(b"x" * 70000), "big.pdf"), 413, "file_too_large")
    problem_of(world.upload(item, mp4(140000), "big.mp4"), 413, "file_too_large")
    assert_nothing_kept(world, item)
    assert world.upload(item, pdf(b"x" * 60000), "ok.pdf").status_code == 201
    assert world.upload(item, mp4(120000), "ok.mp4").status_code == 201


def test_at_most_five_files_per_item(world):
    item = world.outcome()
    for n in range(5):
        assert world.upload(item, pdf(b"file %d" % n), f"{n}.pdf").status_code == 201
    problem_of(world.upload(item, pdf(b"sixth"), "6.pdf"), 422, "validation_failed")
    assert len(world.objects()) == 5


# ---- streaming and memory -------------------------------------------------------------------------------------

def oversize_pdf():
    yield pdf()[:200]
    while True:
        yield b"\x00" * 65536


def test_oversize_is_stopped_while_streaming(world):
    item = world.outcome()
    body = StreamBody(oversize_pdf())  # endless: the service must stop reading, not wait for the end
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/endless-01", body, length=None), 413,
               "file_too_large")
    assert 4 * MiB < body.consumed <= 4 * MiB + 2 * CHUNK, body.consumed  # the document limit, not the media one
    assert_nothing_kept(world, item)


def test_oversize_with_a_declared_length_stops_at_the_limit(world):
    item = world.outcome()
    body = StreamBody(oversize_pdf())
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/declared-1", body, length=8 * MiB), 413,
               "file_too_large")
    assert body.consumed <= 4 * MiB + 2 * CHUNK
    assert_nothing_kept(world, item)


def test_a_declared_length_over_every_limit_is_refused_before_reading(world):
    item = world.outcome()
    body = StreamBody(oversize_pdf())
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/declared-2", body, length=11 * MiB), 413,
               "file_too_large")
    assert body.consumed == 0
    assert_nothing_kept(world, item)


def test_an_upload_that_fails_midway_leaves_nothing(world):
    item = world.outcome()

    def broken():
        yield pdf()[:100]
        for _ in range(10):
            yield b"\x00" * 65536
        raise ConnectionResetError("the student's wifi dropped")

    body = StreamBody(broken())
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/broken-001", body, length=None), 422,
               "file_corrupt")
    assert body.consumed >= 2 * CHUNK  # it failed midway (the read that hit the error counts nothing), not before
    assert_nothing_kept(world, item)


def test_a_body_shorter_than_its_content_length_leaves_nothing(world):
    item = world.outcome()
    data = pdf(b"x" * 300_000)
    body = StreamBody([data[:200_000]])  # the client disconnects after 200 kB of the promised bytes
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/short-0001", body, length=len(data)), 422,
               "file_corrupt")
    assert_nothing_kept(world, item)


def test_a_store_failure_is_503_and_leaves_nothing(world, monkeypatch):
    from shared.storage import StorageError

    item = world.outcome()
    store = world.runtime.state["media"]
    real_put = store.put

    def failing_put(key, chunks, length=None, content_type=""):
        def first_part():
            for n, chunk in enumerate(chunks):
                if n == 3:
                    raise StorageError("disk full")
                yield chunk
        return real_put(key, first_part(), length=length, content_type=content_type)

    monkeypatch.setattr(store, "put", failing_put)
    body = StreamBody(mp4_chunks(1 * MiB))
    problem_of(world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/store-fail", body, length=None,
                                name="v.mp4"), 503, "storage_unavailable")
    assert_nothing_kept(world, item)


def test_a_store_that_cannot_prove_it_kept_the_bytes_is_not_recorded(world, monkeypatch):
    from shared.storage import StorageError

    item = world.outcome()
    store = world.runtime.state["media"]

    def unproven(key, chunks, length=None, content_type=None):
        for _ in chunks:  # the whole body went out...
            pass
        raise StorageError("the store holds other bytes than were sent")  # ...but the store's proof failed

    monkeypatch.setattr(store, "put", unproven)
    problem_of(world.upload(item, pdf()), 503, "storage_unavailable")
    assert_nothing_kept(world, item)


def test_a_failure_while_recording_deletes_the_object(world, monkeypatch):
    from services.intake import domain

    item = world.outcome()

    def locked_meanwhile(*args, **kwargs):
        raise domain.DomainError("item_locked")

    monkeypatch.setattr(domain, "_record", locked_meanwhile)
    problem_of(world.upload(item, pdf()), 409, "item_locked")
    assert_nothing_kept(world, item)


def test_upload_and_download_memory_stays_flat(world):
    """A ~9.5 MiB video goes in and out; Python's peak allocation during each request stays far below it."""
    item = world.outcome()
    size = int(9.5 * MiB)
    world.upload(item, pdf(), "warm-up.pdf")  # first-use allocations (imports, indexes) out of the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        body = StreamBody(mp4_chunks(size))
        response = world.put_stream(f"/api/v1/intake/outcomes/{item['id']}/files/memory-test", body, length=None,
                                    name="v.mp4")
        upload_peak = tracemalloc.get_traced_memory()[1] - base
        assert response.status_code == 201, response.get_data(as_text=True)
        file_id = response.get_json()["file_id"]
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        download = world.client.get(f"/api/v1/intake/files/{file_id}", headers=world.h("s1"), buffered=False)
        digest, received = hashlib.sha256(), 0
        for chunk in download.response:
            digest.update(chunk)
            received += len(chunk)
        download.close()
        download_peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert body.consumed == size + 48 == received
    assert digest.hexdigest() == response.get_json()["sha256"] == download.headers["X-Content-SHA256"]
    assert upload_peak < 2 * MiB, f"upload peak {upload_peak / MiB:.2f} MiB"
    assert download_peak < 2 * MiB, f"download peak {download_peak / MiB:.2f} MiB"


# ---- idempotent retries ---------------------------------------------------------------------------------------

def test_a_retried_upload_is_idempotent(world):
    item = world.outcome()
    first = world.upload(item, pdf(), "a.pdf", key="retry-key-1")
    assert first.status_code == 201
    again = world.upload(item, pdf(), "a.pdf", key="retry-key-1")
    assert again.status_code == 200 and again.get_json() == first.get_json()
    assert len(world.objects()) == 1 and world.partials() == []
    problem_of(world.upload(item, pdf(b"other content"), "a.pdf", key="retry-key-1"), 409, "conflict")
    problem_of(world.upload(item, pdf(), "a.pdf", key="retry-key-1", checksum="f" * 64), 422, "checksum_mismatch")
    assert len(world.objects()) == 1
    assert [f["file_id"] for f in world.get(f"/api/v1/intake/outcomes/{item['id']}").get_json()["files"]] == \
           [first.get_json()["file_id"]]
    # the same key on another item is another upload
    other = world.outcome(brief="第二件")
    assert world.upload(other, pdf(), "a.pdf", key="retry-key-1").status_code == 201
    assert len(world.objects()) == 2


def test_a_retry_after_submission_still_answers_the_recorded_file(world):
    item = world.outcome()
    first = world.upload(item, pdf(), key="before-submit")
    assert world.client.post(f"/api/v1/intake/outcomes/{item['id']}/submit", headers=world.h("s1")).status_code == 200
    again = world.upload(item, pdf(), key="before-submit")
    assert again.status_code == 200 and again.get_json()["file_id"] == first.get_json()["file_id"]
    problem_of(world.upload(item, pdf(b"new"), key="after-submit"), 409, "item_locked")
    assert len(world.objects()) == 1


# ---- downloads ------------------------------------------------------------------------------------------------

def test_download_headers_and_link_on_the_disk_store(world):
    item = world.outcome()
    out = world.upload(item, pdf(), '學習 "成果";.pdf').get_json()
    download = world.get(f"/api/v1/intake/files/{out['file_id']}")
    disposition = download.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=\"")
    assert "filename*=UTF-8''%E5%AD%B8%E7%BF%92%20%22%E6%88%90%E6%9E%9C%22%3B.pdf" in disposition
    assert download.headers["Content-Length"] == str(len(pdf()))
    assert download.headers["Cache-Control"] == "private, no-store"
    link = world.get(f"/api/v1/intake/files/{out['file_id']}/link").get_json()
    assert link == {"file_id": out["file_id"], "via": "stream", "url": f"/api/v1/intake/files/{out['file_id']}",
                    "expires_in": None, "name": out["name"], "size": len(pdf()), "sha256": sha(pdf())}
    problem_of(world.get(f"/api/v1/intake/files/{out['file_id']}/link?expires=301"), 422, "validation_failed")
    problem_of(world.get("/api/v1/intake/files/nope"), 404, "not_found")


def test_a_stored_file_that_no_longer_matches_is_never_served_whole(world):
    item = world.outcome()
    data = mp4(300_000)
    out = world.upload(item, data, "v.mp4").get_json()
    [stored] = world.objects()
    stored.write_bytes(data[:-1] + b"\x01")  # bit rot on the disk
    response = world.client.get(f"/api/v1/intake/files/{out['file_id']}", headers=world.h("s1"), buffered=False)
    received = 0
    with pytest.raises(IOError):
        for chunk in response.response:
            received += len(chunk)
    assert received < len(data)  # the last chunk was held back: the client sees a broken transfer


def test_a_missing_object_is_503(world):
    item = world.outcome()
    out = world.upload(item, pdf()).get_json()
    for path in world.objects():
        path.unlink()
    problem_of(world.get(f"/api/v1/intake/files/{out['file_id']}"), 503, "storage_unavailable")


def test_readiness_checks_the_media_store(world):
    ready = world.client.get("/readyz").get_json()
    assert ready["checks"]["media"] == "ok"
    import shutil

    shutil.rmtree(world.media)
    response = world.client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["media"].startswith("error")
