"""File type by bytes, structure and polyglots — every bad file of the intake issue gets a clear code."""
from __future__ import annotations


import pytest

from shared.errors import DomainError
from shared.filecheck import DOCUMENT, MEDIA, Inspector, clean_file_name, inspect_bytes
from tests.files import jpeg, mp3, mp4, pdf, png

LIMITS = {DOCUMENT: 4 * 1024 * 1024, MEDIA: 10 * 1024 * 1024}


@pytest.mark.parametrize("data, kind, media_type", [
    (pdf(), DOCUMENT, "application/pdf"), (png(), DOCUMENT, "image/png"), (jpeg(), DOCUMENT, "image/jpeg"),
    (mp4(), MEDIA, "video/mp4"), (mp3(), MEDIA, "audio/mpeg"),
])
def test_good_files_pass_and_are_hashed(data, kind, media_type):
    import hashlib

    verdict = inspect_bytes(data, LIMITS)
    assert (verdict.kind, verdict.media_type, verdict.size) == (kind, media_type, len(data))
    assert verdict.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("data, code", [
    (b"", "file_empty"),
    (b"MZ\x90\x00" + b"\x00" * 200, "file_type_not_allowed"),            # an .exe renamed .pdf
    (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "file_type_not_allowed"),
    (b"#!/bin/sh\nrm -rf /\n" + b" " * 50, "file_type_not_allowed"),
    (b"PK\x03\x04" + b"\x00" * 200, "file_type_not_allowed"),             # a zip/docx
    (b"<html><script>alert(1)</script></html>", "file_type_not_allowed"),
    (pdf()[:-30], "file_corrupt"),                                         # truncated PDF
    (pdf(encrypt=True), "file_encrypted"),
    (pdf() + b"PK\x03\x04zipped payload" + b"\x00" * 40, "file_polyglot"),  # PDF + zip
    (pdf(b"<script>alert(1)</script>"), "file_polyglot"),                  # PDF/HTML polyglot
    (png()[:-6], "file_corrupt"),
    (png(b"<?php system($_GET['c']); ?>"), "file_polyglot"),
    (jpeg(b"PK\x03\x04" + b"\x00" * 30), "file_polyglot"),
    (jpeg()[:-2], "file_corrupt"),
    (mp4()[:-10], "file_corrupt"),                                         # truncated MP4
])
def test_bad_files_get_a_clear_code(data, code):
    with pytest.raises(DomainError) as info:
        inspect_bytes(data, LIMITS)
    assert info.value.code == code


def test_oversize_is_stopped_while_streaming_not_after():
    inspector = Inspector(LIMITS)
    inspector.feed(pdf()[:20])
    fed = 20
    with pytest.raises(DomainError) as info:
        while True:
            inspector.feed(b"\x00" * 65536)
            fed += 65536
    assert info.value.code == "file_too_large"
    assert fed <= LIMITS[DOCUMENT]  # stopped at the document limit, not the media one, before the end


def test_media_not_allowed_where_only_documents_are():
    with pytest.raises(DomainError) as info:
        inspect_bytes(mp4(), LIMITS, allowed={DOCUMENT})
    assert info.value.code == "file_type_not_allowed"


@pytest.mark.parametrize("chunk", [1, 7, 13, 4096])
def test_mp4_structure_survives_any_chunking(chunk):
    assert inspect_bytes(mp4(70000), LIMITS, chunk=chunk).media_type == "video/mp4"


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.pdf", "a\\b.pdf", "bad\x00.pdf", "line\nbreak.pdf",
                                  "rtl\u202egpj.exe", "", "  ", "..", "x" * 201, "c:evil.pdf"])
def test_bad_file_names(name):
    with pytest.raises(DomainError) as info:
        clean_file_name(name)
    assert info.value.code == "invalid_file_name"


def test_good_file_names_are_kept():
    assert clean_file_name(" 學習成果 v2 (final).pdf ") == "學習成果 v2 (final).pdf"
