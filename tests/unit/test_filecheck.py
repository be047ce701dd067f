"""File type by bytes, structure and polyglots — every bad file of the intake issue gets a clear code."""
from __future__ import annotations

import struct
import zlib

import pytest

from shared.errors import DomainError
from shared.filecheck import DOCUMENT, MEDIA, Inspector, clean_file_name, inspect_bytes

LIMITS = {DOCUMENT: 4 * 1024 * 1024, MEDIA: 10 * 1024 * 1024}


def pdf(body: bytes = b"hello", *, encrypt=False) -> bytes:
    objects = b"1 0 obj << /Type /Catalog >> endobj\n" + b"2 0 obj << /Length 5 >> stream\n" + body + b"\nendstream endobj\n"
    trailer = b"trailer << /Root 1 0 R" + (b" /Encrypt 3 0 R" if encrypt else b"") + b" >>\n"
    return b"%PDF-1.7\n" + objects + b"xref\n0 3\n" + trailer + b"startxref\n9\n%%EOF\n"


def png(extra: bytes = b"") -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"") + extra


def jpeg(extra: bytes = b"") -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x11" * 100 + b"\xff\xd9" + extra


def mp4(payload: int = 1000) -> bytes:
    ftyp = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    mdat = struct.pack(">I4s", 8 + payload, b"mdat") + b"\x00" * payload
    moov = struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 8, b"mvhd")
    return ftyp + mdat + moov


def mp3() -> bytes:
    return b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x64" + b"\x00" * 400


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
