"""Media storage behind one interface: MinIO/S3 through the ``minio`` SDK, or files on disk.

``MEDIA_URL``: ``s3://KEY:SECRET@HOST:PORT/BUCKET`` (``s3+https://`` for TLS) or ``file:///path``.
Writes stream: bytes go from the request to the store in chunks, never whole in memory, and ``put`` proves
the store kept exactly those bytes (S3: the ETag against an MD5 computed on the way; disk: the byte count
before an atomic rename) or raises. A key becomes
visible to users only when the owning service records it after the upload was complete and verified, so a
failed upload is never half-visible; an object whose upload failed verification is deleted.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote, urlparse

log = logging.getLogger("footprint.storage")
CHUNK = 256 * 1024


class StorageError(Exception):
    pass


class FileMediaStore:
    """Files under a directory; a write lands in ``.partial/`` and is renamed into place when complete."""

    def __init__(self, root: str):
        self.root = Path(root)
        (self.root / ".partial").mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key outside the store: {key}")
        return path

    def put(self, key: str, chunks: Iterable[bytes], length: int | None = None,
            content_type: str = "application/octet-stream") -> int:
        partial = self.root / ".partial" / uuid.uuid4().hex
        written = 0
        try:
            with open(partial, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if length is not None and written != length:
                raise StorageError(f"expected {length} bytes, got {written}")
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return written

    def open(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        if not path.exists():
            raise StorageError(f"missing object {key}")

        def read() -> Iterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return read()

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.exists() else None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def link(self, key: str, expires: int, filename: str | None = None) -> str | None:
        return None  # files on disk are served through the owning service

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageError(f"{self.root} is not a directory")

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class S3MediaStore:
    """MinIO/S3. Known-length uploads stream through a presigned PUT (no part buffering); unknown lengths
    fall back to the SDK's multipart upload (5 MiB parts)."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool = False,
                 public_endpoint: str | None = None, region: str = "us-east-1"):
        from minio import Minio
        import urllib3

        if len(bucket) < 3:
            raise ValueError("bucket names need at least 3 characters")
        self.bucket = bucket
        # Bounded timeouts and retries: the SDK's defaults hang for seconds per call when the store is down,
        # which would stall readiness checks and uploads instead of failing them fast (503).
        http_client = urllib3.PoolManager(maxsize=64, timeout=urllib3.Timeout(connect=2, read=30),
                                          retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                                status_forcelist=(500, 502, 503, 504)))
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                            http_client=http_client)
        # Presigned links carry the host they were signed for: sign browser links with the public host.
        public = urlparse(public_endpoint) if public_endpoint else None
        self.public = Minio(public.netloc, access_key=access_key, secret_key=secret_key, secure=public.scheme == "https",
                            region=region, http_client=http_client) if public else self.client
        self.http = urllib3.PoolManager(maxsize=64, retries=False, timeout=urllib3.Timeout(connect=2, read=60),
                                        blocksize=CHUNK)
        self._ready = False

    def _ensure_bucket(self) -> None:
        if not self._ready:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
            self._ready = True

    def put(self, key: str, chunks: Iterable[bytes], length: int | None = None,
            content_type: str = "application/octet-stream") -> int:
        self._ensure_bucket()
        counted = _Counting(chunks)
        if length is not None:
            url = self.client.presigned_put_object(self.bucket, key, expires=timedelta(minutes=15))
            response = self.http.urlopen("PUT", url, body=counted, headers={"Content-Length": str(length)},
                                         preload_content=True, redirect=False)
            if response.status != 200:
                raise StorageError(f"PUT {key}: {response.status} {response.data[:200]!r}")
            etag = (response.headers.get("ETag") or "").strip('"')
        else:
            etag = self.client.put_object(self.bucket, key, counted, length=-1, part_size=5 * 1024 * 1024,
                                          content_type=content_type).etag.strip('"')
        # Prove the store holds exactly these bytes: a single PUT's ETag is the MD5 of what S3 stored. Where it
        # is not (multipart, some encryption modes), at least compare the stored size.
        if re.fullmatch(r"[0-9a-f]{32}", etag or ""):
            if etag != counted.md5.hexdigest():
                self.delete(key)
                raise StorageError(f"{key}: the store holds other bytes than were sent")
        elif self.size(key) != counted.count:
            self.delete(key)
            raise StorageError(f"{key}: the store holds another size than was sent")
        return counted.count

    def open(self, key: str) -> Iterator[bytes]:
        try:
            response = self.client.get_object(self.bucket, key)
        except Exception as exc:
            raise StorageError(f"missing object {key}: {exc}") from exc

        def read() -> Iterator[bytes]:
            try:
                yield from response.stream(CHUNK)
            finally:
                response.close()
                response.release_conn()

        return read()

    def size(self, key: str) -> int | None:
        try:
            return self.client.stat_object(self.bucket, key).size
        except Exception:
            return None

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, key)

    def link(self, key: str, expires: int, filename: str | None = None) -> str | None:
        headers = {"response-content-disposition": f"attachment; filename*=UTF-8''{_quote(filename)}"} if filename else None
        return self.public.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires),
                                                response_headers=headers)

    def ping(self) -> None:
        self._ensure_bucket()


class _Counting:
    """File-like and iterable view of a chunk iterator that counts what passed (for both upload paths)."""

    def __init__(self, chunks: Iterable[bytes]):
        self._it = iter(chunks)
        self._buffer = b""
        self.count = 0
        self.md5 = hashlib.md5(usedforsecurity=False)  # to compare with the store's ETag, not for security

    def __iter__(self):
        for chunk in self._it:
            self.count += len(chunk)
            self.md5.update(chunk)
            yield chunk

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            self.count += len(chunk)
            self.md5.update(chunk)
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def verified_read(chunks: Iterator[bytes], size: int, sha256: str, on_error) -> Iterator[bytes]:
    """Pass stored bytes through, hashing them. The last chunk is held back until the whole object matched its
    recorded size and sha256: on a mismatch the response is cut short (the client sees a broken transfer,
    never a silently wrong file) and ``on_error`` hears of it."""
    digest, seen, pending = hashlib.sha256(), 0, b""
    try:
        for chunk in chunks:
            digest.update(chunk)
            seen += len(chunk)
            if seen > size:
                break
            if pending:
                yield pending
            pending = chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    if seen != size or digest.hexdigest() != sha256:
        on_error(f"stored bytes do not match their record (size {seen} of {size}, sha256 {digest.hexdigest()})")
        raise IOError("stored file failed verification")
    if pending:
        yield pending


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def media_store(url: str, *, public_url: str | None = None):
    """The store a ``MEDIA_URL`` names."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return FileMediaStore(unquote(parsed.netloc + parsed.path) if parsed.netloc == "." else unquote(parsed.path))
    if parsed.scheme in ("s3", "s3+https"):
        bucket = parsed.path.strip("/")
        return S3MediaStore(f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme.endswith('https') else 9000)}",
                            unquote(parsed.username or ""), unquote(parsed.password or ""), bucket,
                            secure=parsed.scheme == "s3+https", public_endpoint=public_url)
    raise ValueError(f"unsupported MEDIA_URL scheme: {parsed.scheme}")
