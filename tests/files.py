"""Small valid files of every accepted kind, built in code (the tests never ship binaries), and an MP4 that
can be streamed without ever being whole in memory."""
from __future__ import annotations

import struct
import zlib


def pdf(body: bytes = b"hello", *, encrypt: bool = False) -> bytes:
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
    return b"".join(mp4_chunks(payload, chunk=payload + 1))


def mp4_chunks(payload: int, chunk: int = 65536):
    """A valid MP4 made on the fly (ftyp, a ``payload``-byte mdat, moov): never whole in the test's memory."""
    yield struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    yield struct.pack(">I4s", 8 + payload, b"mdat")
    left = payload
    block = b"\x00" * chunk
    while left:
        n = min(left, chunk)
        yield block if n == chunk else block[:n]
        left -= n
    yield struct.pack(">I4s", 16, b"moov") + struct.pack(">I4s", 8, b"mvhd")


def mp3() -> bytes:
    return b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + b"\xff\xfb\x90\x64" + b"\x00" * 400
