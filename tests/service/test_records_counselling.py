"""課程諮詢紀錄: private visibility, central=false, and attachments that are stored whole or not at all."""
from __future__ import annotations

import hashlib
import io

import pytest

from tests.service.test_records_support import (TOKENS, base, client, h, pdf, png, problem_of, records,  # noqa: F401
                                                stored_files, uid)


@pytest.fixture
def record(client) -> str:
    response = client.post(f"{base()}/counselling", headers=h("counsellor"), json={
        "student_id": uid("student01"), "date": "2024-05-02", "time": "12:30", "place": "輔導室",
        "content": "想選資訊相關的加深加廣選修", "advice": "建議修習程式設計"})
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["central"] is False and body["counsellor_id"] == uid("counsellor") and body["student_no"] == "1120001"
    return body["id"]


def upload(client, record_id: str, data: bytes, name: str = "諮詢紀錄.pdf", who: str = "counsellor", **kwargs):
    return client.post(f"{base()}/counselling/{record_id}/attachments", query_string={"name": name}, data=data,
                       content_type=kwargs.pop("content_type", "application/pdf"), headers=h(who), **kwargs)


def test_only_the_student_the_counsellor_and_the_office_see_a_record(client, record):
    url = f"{base()}/counselling/{record}"
    for who in ("student01", "counsellor", "office"):
        response = client.get(url, headers=h(who))
        assert response.status_code == 200, who
        assert response.get_json()["central"] is False and response.get_json()["advice"] == "建議修習程式設計"
    for who in ("student02", "counsellor2"):
        problem_of(client.get(url, headers=h(who)), 404, "not_found")
    # the student's own homeroom and subject teacher, and staff of other offices, may not read counselling at all
    for who in ("teacher01", "teacher02", "registrar", "affairs", "admin", "cityadmin"):
        problem_of(client.get(url, headers=h(who)), 403, "forbidden")
    problem_of(client.get(url, headers=h("office", "999002")), 404, "not_found")

    def listed(who, query=""):
        response = client.get(f"{base()}/counselling{query}", headers=h(who))
        assert response.status_code == 200, (who, response.get_data(as_text=True))
        return [r["id"] for r in response.get_json()["items"]]

    assert listed("student01") == [record] and listed("counsellor") == [record] and listed("office") == [record]
    assert listed("student02") == [] and listed("counsellor2") == []
    assert listed("counsellor2", f"?student_id={uid('student01')}") == []
    problem_of(client.get(f"{base()}/counselling?student_id={uid('student01')}", headers=h("student02")), 404)
    problem_of(client.get(f"{base()}/counselling", headers=h("teacher01")), 403, "forbidden")


def test_only_its_counsellor_changes_a_record(client, record):
    url = f"{base()}/counselling/{record}"
    changed = client.patch(url, headers=h("counsellor"), json={"advice": "先修程式設計，再選資料結構", "time": "13:00"})
    assert changed.status_code == 200 and changed.get_json()["time"] == "13:00"
    problem_of(client.patch(url, headers=h("counsellor2"), json={"advice": "x"}), 404, "not_found")
    for who in ("office", "student01", "admin"):
        problem_of(client.patch(url, headers=h(who), json={"advice": "x"}), 403, "forbidden")
    problem_of(client.patch(url, headers=h("counsellor"), json={"time": "25:00"}), 422, "validation_failed")
    problem_of(client.patch(url, headers=h("counsellor"), json={"central": True}), 422, "validation_failed")
    assert client.get(url, headers=h("office")).get_json()["advice"] == "先修程式設計，再選資料結構"


def test_a_good_attachment_is_stored_and_served_to_those_who_see_the_record(client, records, record):
    data = pdf(b"counselling notes")
    response = upload(client, record, data)
    assert response.status_code == 201, response.get_data(as_text=True)
    (attachment,) = response.get_json()["attachments"]
    assert attachment["name"] == "諮詢紀錄.pdf" and attachment["media_type"] == "application/pdf"
    assert attachment["size"] == len(data) and attachment["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(stored_files(records)) == 1
    url = f"{base()}/counselling/{record}/attachments/{attachment['file_id']}"
    for who in ("student01", "office", "counsellor"):
        download = client.get(url, headers=h(who))
        assert download.status_code == 200 and download.get_data() == data, who
        assert download.content_type == "application/pdf" and download.headers["X-Content-Type-Options"] == "nosniff"
        assert "filename*=UTF-8''%E8%AB%AE" in download.headers["Content-Disposition"]
    problem_of(client.get(url, headers=h("student02")), 404, "not_found")
    problem_of(client.get(url, headers=h("teacher01")), 403, "forbidden")
    problem_of(client.get(f"{base()}/counselling/{record}/attachments/nope", headers=h("student01")), 404, "not_found")
    # an image, judged by its bytes whatever it is called
    picture = upload(client, record, png(), name="白板.jpg", content_type="application/octet-stream")
    assert picture.status_code == 201 and picture.get_json()["attachments"][1]["media_type"] == "image/png"
    # only its counsellor removes one; the object goes too
    problem_of(client.delete(url, headers=h("office")), 403, "forbidden")
    problem_of(client.delete(url, headers=h("counsellor2")), 404, "not_found")
    assert client.delete(url, headers=h("counsellor")).status_code == 204
    problem_of(client.get(url, headers=h("student01")), 404, "not_found")
    assert len(stored_files(records)) == 1


BAD_FILES = [
    (b"MZ\x90\x00" + b"\x00" * 500, "setup.pdf", 415, "file_type_not_allowed"),        # an .exe renamed .pdf
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 500, "a.pdf", 415, "file_type_not_allowed"),
    (b"<html><script>alert(1)</script></html>" + b" " * 50, "a.pdf", 415, "file_type_not_allowed"),
    (pdf()[:-30], "truncated.pdf", 422, "file_corrupt"),
    (b"", "empty.pdf", 422, "file_empty"),
    (pdf() + b"PK\x03\x04" + b"\x00" * 100, "polyglot.pdf", 422, "file_polyglot"),
    (b"%PDF-1.7\n" + b"0" * (4 * 1024 * 1024), "huge.pdf", 413, "file_too_large"),
    (pdf(), "../../etc/passwd", 422, "invalid_file_name"),
    (pdf(), "a\x00.pdf", 422, "invalid_file_name"),
]


@pytest.mark.parametrize("data, name, status, code", BAD_FILES)
def test_a_bad_attachment_leaves_nothing_stored_or_referenced(client, records, record, data, name, status, code):
    problem_of(upload(client, record, data, name=name), status, code)
    assert stored_files(records) == []
    assert client.get(f"{base()}/counselling/{record}", headers=h("counsellor")).get_json()["attachments"] == []


def _principal(who: str):
    return TOKENS.verifier.verify(h(who)["Authorization"].split()[1])


def test_oversize_without_a_declared_length_is_cut_off_mid_stream(records, record):
    from services.records import domain
    from shared.errors import DomainError

    stream = io.BytesIO(b"%PDF-1.7\n" + b"0" * (8 * 1024 * 1024))
    with pytest.raises(DomainError) as failure:
        domain.add_attachment(_principal("counsellor"), "999001", record, name="big.pdf", stream=stream,
                              content_length=None, store=records.state["media"])
    assert failure.value.code == "file_too_large"
    assert stream.tell() <= 4 * 1024 * 1024 + 64 * 1024  # it stopped reading at the limit
    assert stored_files(records) == []


def test_an_attachment_is_never_half_visible(records, record):
    from services.records import domain
    from services.records.models import CounsellingRecord

    data = pdf(b"x" * 300_000)
    seen = []

    class Watching(io.BytesIO):
        def read(self, size=-1):
            seen.append(len(CounsellingRecord.objects(id=record).first().attachments))
            return super().read(size)

    domain.add_attachment(_principal("counsellor"), "999001", record, name="a.pdf", stream=Watching(data),
                          content_length=len(data), store=records.state["media"])
    assert len(seen) > 3 and set(seen) == {0}  # while streaming the record referred to nothing
    assert len(CounsellingRecord.objects(id=record).first().attachments) == 1


def test_an_upload_that_ends_early_or_a_store_that_fails_leaves_nothing(records, record, monkeypatch):
    from services.records import domain
    from shared.errors import DomainError

    data = pdf()
    with pytest.raises(DomainError) as short:
        domain.add_attachment(_principal("counsellor"), "999001", record, name="a.pdf", stream=io.BytesIO(data),
                              content_length=len(data) + 100, store=records.state["media"])
    assert short.value.code == "file_corrupt" and stored_files(records) == []

    store = records.state["media"]

    def broken(key, chunks, length=None, content_type=None):
        for _ in chunks:
            raise OSError("disk full")

    monkeypatch.setattr(store, "put", broken)
    with pytest.raises(DomainError) as down:
        domain.add_attachment(_principal("counsellor"), "999001", record, name="a.pdf", stream=io.BytesIO(data),
                              content_length=len(data), store=store)
    assert down.value.code == "storage_unavailable" and stored_files(records) == []


def test_who_may_attach(client, records, record):
    problem_of(upload(client, record, pdf(), who="counsellor2"), 404, "not_found")
    for who in ("office", "student01", "teacher01"):
        problem_of(upload(client, record, pdf(), who=who), 403, "forbidden")
    problem_of(client.post(f"{base()}/counselling/{record}/attachments", data=pdf(), content_type="application/pdf",
                           headers=h("counsellor")), 422, "validation_failed")  # no name
    for n in range(5):
        assert upload(client, record, pdf(bytes([65 + n]) * 5), name=f"{n}.pdf").status_code == 201
    problem_of(upload(client, record, pdf(), name="6.pdf"), 409, "conflict")
    assert len(stored_files(records)) == 5



def test_a_dropped_attachment_upload_is_the_clients_error_not_the_stores(records, record):
    """The client went away mid-body: 422 file_corrupt (upload again), never 503 storage_unavailable."""
    from services.records import domain
    from shared.errors import DomainError

    class Dropping(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 1000:
                raise ConnectionResetError("the counsellor's wifi dropped")
            return super().read(min(size, 1024) if size and size > 0 else 1024)

    data = pdf(b"x" * 300_000)
    with pytest.raises(DomainError) as dropped:
        domain.add_attachment(_principal("counsellor"), "999001", record, name="a.pdf", stream=Dropping(data),
                              content_length=len(data), store=records.state["media"])
    assert dropped.value.code == "file_corrupt" and stored_files(records) == []


def test_attachments_are_named_by_what_they_are_and_checked_on_the_way_out(client, records, record):
    response = upload(client, record, pdf(), name="notes.exe")
    assert response.status_code == 201, response.get_data(as_text=True)
    attachment = response.get_json()["attachments"][-1]
    assert attachment["name"] == "notes.exe.pdf"  # the bytes are a PDF: it downloads as one
    url = f"{base()}/counselling/{record}/attachments/{attachment['file_id']}"
    good = client.get(url, headers=h("counsellor"))
    assert good.status_code == 200 and good.headers["X-Content-SHA256"] == attachment["sha256"]
    # the stored object is damaged behind Footprint's back: the download is cut short, never served wrong
    store = records.state["media"]
    from services.records.models import CounsellingRecord

    key = next(a.key for a in CounsellingRecord.objects(id=record).first().attachments if a.file_id == attachment["file_id"])
    store.put(key, iter([b"%PDF-1.7 tampered"]))
    with pytest.raises(IOError):
        client.get(url, headers=h("counsellor")).get_data()
