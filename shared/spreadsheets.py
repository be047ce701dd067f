"""Reading the spreadsheets school staff keep: CSV (UTF-8 with or without BOM, or Big5/CP950 as Excel saves
it in Taiwan) or XLSX (the first sheet), as rows of text cells. Any unreadable file is 422 invalid_import_file.
"""
from __future__ import annotations

import csv
import io
import tempfile
from typing import IO, Iterator

from shared.errors import DomainError


class NumericCell(str):
    """A cell Excel stored as a number (a long course code typed as a number has lost digits)."""

    digits: int = 0


def xlsx_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        text = str(int(value)) if isinstance(value, int) or value.is_integer() else str(value)
        cell = NumericCell(text)
        cell.digits = len(text.lstrip("-").split(".")[0])
        return cell
    if hasattr(value, "date") and hasattr(value, "isoformat"):
        return value.date().isoformat() if hasattr(value, "hour") else value.isoformat()
    return str(value)


def read_rows(stream: IO[bytes]) -> Iterator[list[str]]:
    head = stream.read(4)
    stream.seek(0)
    if head == b"PK\x03\x04":
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(stream, read_only=True, data_only=True)
            sheet = workbook.worksheets[0]
        except Exception as exc:
            raise DomainError("invalid_import_file", f"xlsx: {exc}") from exc
        try:
            for values in sheet.iter_rows(values_only=True):
                yield [xlsx_cell(v) for v in values]
        except DomainError:
            raise
        except Exception as exc:
            raise DomainError("invalid_import_file", f"xlsx: {exc}") from exc
        finally:
            workbook.close()
        return
    raw = stream.read()
    for encoding in ("utf-8-sig", "cp950"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DomainError("invalid_import_file", "the CSV is neither UTF-8 nor Big5")
    if "\x00" in text:
        raise DomainError("invalid_import_file", "binary content")
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise DomainError("invalid_import_file", f"csv: {exc}") from exc


def spool_upload(stream: IO[bytes], content_length: int | None, max_bytes: int) -> tuple[IO[bytes], int]:
    """Take an uploaded spreadsheet off the request: in memory up to 1 MiB, then on disk (an XLSX is a zip and
    needs a seekable file; a large file never sits in memory). The caller closes the returned file."""
    if content_length is not None and content_length > max_bytes:
        raise DomainError("payload_too_large", f"at most {max_bytes} bytes")
    spool = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    try:
        size = 0
        while chunk := stream.read(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise DomainError("payload_too_large", f"at most {max_bytes} bytes")
            spool.write(chunk)
        if size == 0:
            raise DomainError("invalid_import_file", "the file is empty")
        spool.seek(0)
        return spool, size
    except BaseException:
        spool.close()
        raise
