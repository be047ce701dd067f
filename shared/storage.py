"""Media storage behind one interface: MinIO/S3 through the ``minio`` SDK, or files on disk.

``MEDIA_URL``: ``s3://KEY:SECRET@HOST:PORT/BUCKET`` (``s3+https://`` for TLS) or ``file:///path``.
Writes stream: bytes go from the request to the store in chunks, never whole in memory, and ``put`` proves
the store kept exactly those bytes (S3: the ETag against an MD5 computed on the way; disk: the byte count
before an atomic rename) or raises. A key becomes
visible to users only when the owning service records it after the upload was complete and verified, so a
failed upload is never half-visible; an object whose upload failed verification is deleted.

Direct uploads (S3 only): ``presign_put`` signs a PUT that a client sends straight to the store, for one
key, one length and one sha256, create-only (``If-None-Match: *``): the owning service then reads the object
back (``fetch``), checks it and only then records it. The disk store has no such URL (``presign_put`` is None).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote, unquote, urlparse

log = logging.getLogger("footprint.storage")
CHUNK = 256 * 1024


class StorageError(Exception):
    pass


class MissingObject(StorageError):
    """The store answered and has no object under that key."""


class Fetched:
    """A stored object being read: its size as the store reports it, then its bytes in chunks. Close it (or use
    it as a context manager) to give the connection back."""

    def __init__(self, size: int, chunks: Iterator[bytes], close=None):
        self.size = size
        self._chunks = chunks
        self._close = close

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> "Fetched":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def fetch(self, key: str) -> Fetched:
        path = self._path(key)
        try:
            f = open(path, "rb")
        except FileNotFoundError as exc:
            raise MissingObject(f"missing object {key}") from exc

        def read() -> Iterator[bytes]:
            while chunk := f.read(CHUNK):
                yield chunk

        return Fetched(os.fstat(f.fileno()).st_size, read(), f.close)

    def presign_put(self, key: str, *, length: int, sha256: str, expires: int) -> None:
        return None  # no URL reaches a directory: clients upload through the owning service

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
        self._signing = (f"{public.scheme}://{public.netloc}" if public else f"{'https' if secure else 'http'}://{endpoint}",
                         access_key, secret_key, region)
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

    def fetch(self, key: str) -> Fetched:
        """The object as stored, streamed (CHUNK at a time, never whole in memory); MissingObject if absent."""
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise MissingObject(f"missing object {key}") from exc
            raise StorageError(f"GET {key}: {exc}") from exc
        except Exception as exc:
            raise StorageError(f"GET {key}: {type(exc).__name__}: {exc}") from exc

        def close() -> None:
            response.close()
            response.release_conn()

        return Fetched(int(response.headers.get("Content-Length", "-1")), response.stream(CHUNK), close)

    def presign_put(self, key: str, *, length: int, sha256: str, expires: int) -> tuple[str, dict[str, str]]:
        """A presigned PUT (SigV4, query-string auth, signed for the public endpoint) and the headers the client
        must send with it. Signed headers, so S3/MinIO refuse the request if any differs or is missing:
        ``Content-Length`` (exactly the declared size), ``If-None-Match: *`` (create-only: once the object
        exists the URL cannot replace it, so what was verified stays what is stored) and
        ``x-amz-checksum-sha256`` (the store refuses bytes with another sha256; the owning service still hashes
        every byte itself when it verifies)."""
        self._ensure_bucket()
        headers = {"Content-Length": str(length), "If-None-Match": "*",
                   "x-amz-checksum-sha256": base64.b64encode(bytes.fromhex(sha256)).decode()}
        return presign_v4_put(*self._signing, bucket=self.bucket, key=key, headers=headers, expires=expires), headers

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


def _uri(value: str, *, safe: str = "") -> str:
    return quote(value, safe="-_.~" + safe)


def presign_v4_put(base: str, access_key: str, secret_key: str, region: str, *, bucket: str, key: str,
                   headers: dict[str, str], expires: int, at: datetime | None = None) -> str:
    """AWS Signature V4 in the query string (path-style ``base/bucket/key``) for a PUT whose ``headers`` are
    signed along with the host. (The minio SDK presigns with the host as the only signed header.)"""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    amz_date, day = at.strftime("%Y%m%dT%H%M%SZ"), at.strftime("%Y%m%d")
    parsed = urlparse(base)
    scope = f"{day}/{region}/s3/aws4_request"
    signed = {"host": parsed.netloc, **{name.lower(): " ".join(str(value).split()) for name, value in headers.items()}}
    names = ";".join(sorted(signed))
    path = f"/{_uri(bucket)}/{_uri(key, safe='/')}"
    query = {"X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": f"{access_key}/{scope}",
             "X-Amz-Date": amz_date, "X-Amz-Expires": str(int(expires)), "X-Amz-SignedHeaders": names}
    canonical_query = "&".join(f"{_uri(k)}={_uri(v)}" for k, v in sorted(query.items()))
    canonical = "\n".join(["PUT", path, canonical_query, "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)), names,
                           "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = f"AWS4{secret_key}".encode()
    for part in (day, region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{parsed.scheme}://{parsed.netloc}{path}?{canonical_query}&X-Amz-Signature={signature}"


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
