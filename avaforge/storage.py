"""Artifact storage: content-addressed objects in S3 (through the ``minio`` SDK).

Keys are derived from content (``<prefix>/<sha256>[suffix]``), so writing the same bytes twice — e.g. when a
queue redelivers an item — stores one object, and a reference (bucket, key, digest) pins exact bytes: reads
verify the digest. Large artifacts stream both ways (``put_stream``/``put_file``,
``get_stream``/``get_file``): an upload of unknown length goes to S3 as a multipart upload under a unique
key while its digest is computed, then (up to ``copy_max``) is copied server-side to its content key; a read
yields chunks and checks the digest at the end. S3 errors become ``StorageError`` (bad credentials, missing
object...) or ``StorageUnavailable`` (server unreachable after a bounded number of retries), each naming
the object.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from avaforge import tls

CHUNK = 1 << 20  # read/write granularity of streamed artifacts
PART_SIZE = 16 << 20  # S3 multipart part: what one streamed upload holds in memory (5 MiB is S3's minimum)
COPY_MAX = 256 << 20  # streamed uploads up to this size move to their content key by a server-side copy
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,1023}")


class StorageError(RuntimeError):
    """An artifact could not be stored or read (and retrying will not help)."""


class StorageUnavailable(StorageError):
    """The store did not answer within the bounded retries: retry the work item later."""


class UploadTooLarge(StorageError):
    """A streamed upload crossed its size limit (its partial multipart upload is aborted)."""

    def __init__(self, limit: int, received: int) -> None:
        super().__init__(f"upload exceeds the size limit of {limit} bytes ({received} bytes received so far)")
        self.limit, self.received = limit, received


@dataclass(frozen=True)
class ArtifactRef:
    bucket: str
    key: str
    digest: str  # sha256 hex of the content
    size: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key.split("/") or "//" in key:
        raise StorageError(f"invalid artifact key {key!r}")
    return key


def content_key(prefix: str, data: bytes, suffix: str = "") -> tuple[str, str]:
    digest = hashlib.sha256(data).hexdigest()
    return check_key(f"{prefix.strip('/')}/{digest}{suffix}"), digest


class ArtifactStore(Protocol):
    bucket: str

    def put(self, prefix: str, data: bytes, suffix: str = "") -> ArtifactRef: ...

    def get(self, ref: ArtifactRef) -> bytes: ...

    def exists(self, ref: ArtifactRef) -> bool: ...

    def put_stream(
        self, prefix: str, chunks: Iterable[bytes], suffix: str = "", max_size: int | None = None
    ) -> ArtifactRef: ...

    def put_file(self, prefix: str, path: str | Path, suffix: str = "") -> ArtifactRef: ...

    def get_stream(self, ref: ArtifactRef) -> Iterator[bytes]: ...

    def get_file(self, ref: ArtifactRef, dest: str | Path) -> Path: ...

    def delete(self, ref: ArtifactRef) -> None: ...


class _HashingReader:
    """A file-like view of an iterator of byte chunks that hashes and counts what it hands out and stops at
    ``max_size`` (raising ``UploadTooLarge``, which makes the S3 SDK abort the multipart upload)."""

    def __init__(self, chunks: Iterable[bytes], max_size: int | None) -> None:
        self.chunks = iter(chunks)
        self.max_size = max_size
        self.sha = hashlib.sha256()
        self.size = 0
        self.pending = b""

    def read(self, n: int = -1) -> bytes:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return b""
            self.size += len(chunk)
            if self.max_size is not None and self.size > self.max_size:
                raise UploadTooLarge(self.max_size, self.size)
            self.sha.update(chunk)
            self.pending = bytes(chunk)
        n = len(self.pending) if n is None or n < 0 else n
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


def file_digest(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _verified(ref: ArtifactRef, data: bytes) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != ref.digest:
        raise StorageError(
            f"{ref.bucket}/{ref.key}: content digest {digest[:12]} != reference {ref.digest[:12]}"
        )
    return data


class S3Store:
    """Any S3 server (MinIO in production, SeaweedFS here) through the ``minio`` SDK; credentials required."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str = "avaforge",
        *,
        secure: bool = False,
        ca: tls.Ca | None = None,
        retries: int = 3,
        timeout_s: float = 5.0,
        copy_max: int = COPY_MAX,
    ) -> None:
        import urllib3
        from minio import Minio

        if not access_key or not secret_key:
            raise StorageError(
                "S3 credentials are required (AVAFORGE_S3_ACCESS_KEY / AVAFORGE_S3_SECRET_KEY)"
            )
        # ``https://``/``http://`` in the endpoint decide; a bare HOST:PORT takes ``secure``
        endpoint, secure = tls.split_url(endpoint, "https", "http", "https" if secure else "http")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s * 6),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            ssl_context=tls.client_context(ca) if secure else None,  # the chain and the host name are checked
        )
        self.endpoint = endpoint
        self.secure = secure
        self.bucket = bucket
        self.copy_max = copy_max
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )

    @classmethod
    def from_env(cls, bucket: str | None = None) -> S3Store:
        """``AVAFORGE_S3_ENDPOINT``: ``https://HOST:PORT`` or a bare ``HOST:PORT`` is TLS, verified against
        ``AVAFORGE_TLS_CA`` (else the system's trust store); ``http://HOST:PORT`` is plaintext, chosen
        explicitly."""
        env = os.environ
        return cls(
            env.get("AVAFORGE_S3_ENDPOINT", "127.0.0.1:9000"),
            env.get("AVAFORGE_S3_ACCESS_KEY", ""),
            env.get("AVAFORGE_S3_SECRET_KEY", ""),
            bucket or env.get("AVAFORGE_S3_BUCKET", "avaforge"),
            secure=True,
            ca=tls.ca_from_env(env),
        )

    def _call(self, what: str, fn):  # type: ignore[no-untyped-def]
        from minio.error import InvalidResponseError, S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except InvalidResponseError as exc:  # not S3 speaking: e.g. plaintext sent to a TLS port
            body = " ".join(str(exc._body or "").split())[:120]  # minio keeps no public copy
            raise StorageError(
                f"{what}: S3 server {self.endpoint} answered HTTP {exc._code} that is not S3"
                + (f": {body}" if body else "")
                + ("" if self.secure else " (plaintext to a TLS port? use https://)")
            ) from None
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise StorageError(f"{what}: no such artifact ({exc.code})") from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(f"{what}: S3 refused the credentials ({exc.code})") from None
            raise StorageError(f"{what}: {exc.code}: {exc.message}") from None
        except (HTTPError, OSError) as exc:
            why = tls.describe(exc)
            if why is not None:  # a setting to fix, not a server to wait for
                raise StorageError(f"{what}: S3 server {self.endpoint}: {why}") from None
            raise StorageUnavailable(
                f"{what}: S3 server {self.endpoint} unreachable ({type(exc).__name__})"
            ) from None

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Create the bucket, waiting for a server that listens before it can serve (SeaweedFS's filer)."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ensure_bucket()
                return
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def ensure_bucket(self) -> None:
        where = f"bucket {self.bucket}"
        if not self._call(where, lambda: self.client.bucket_exists(self.bucket)):
            self._call(where, lambda: self.client.make_bucket(self.bucket))

    def put(self, prefix: str, data: bytes, suffix: str = "") -> ArtifactRef:
        key, digest = content_key(prefix, data, suffix)
        ref = ArtifactRef(self.bucket, key, digest, len(data))
        self._call(
            f"{self.bucket}/{key}",
            lambda: self.client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), metadata={"sha256": digest}
            ),
        )
        return ref

    def put_stream(
        self, prefix: str, chunks: Iterable[bytes], suffix: str = "", max_size: int | None = None
    ) -> ArtifactRef:
        """Store chunks as they come (multipart, one part in memory); the reference pins their digest.

        The digest is only known at the end, so the bytes go to ``<prefix>/streamed/<uuid><suffix>`` first.
        Then: content already stored -> the streamed copy is dropped and the content key returned (dedup);
        up to ``copy_max`` bytes -> copied server-side to ``<prefix>/<sha256><suffix>``; larger -> kept where
        it is (a server-side copy of gigabytes takes minutes on some S3 servers), still verified by its
        digest on every read. Exceptions of ``chunks`` (or a crossed ``max_size``) abort the upload: nothing
        stays."""
        from minio.commonconfig import REPLACE, CopySource

        streamed = check_key(f"{prefix.strip('/')}/streamed/{uuid.uuid4().hex}{suffix}")
        reader = _HashingReader(chunks, max_size)
        try:
            self._call(
                f"{self.bucket}/{streamed}",
                lambda: self.client.put_object(
                    self.bucket, streamed, reader, -1, part_size=PART_SIZE, num_parallel_uploads=1
                ),
            )
            digest = reader.sha.hexdigest()
            ref = ArtifactRef(
                self.bucket, check_key(f"{prefix.strip('/')}/{digest}{suffix}"), digest, reader.size
            )
            if not self.exists(ref):
                if ref.size > self.copy_max:
                    return ArtifactRef(self.bucket, streamed, digest, reader.size)
                source = CopySource(self.bucket, streamed)
                self._call(
                    f"{self.bucket}/{ref.key}",
                    lambda: self.client.copy_object(
                        self.bucket, ref.key, source, metadata={"sha256": digest}, metadata_directive=REPLACE
                    ),
                )
        except BaseException:
            self._remove(streamed)
            raise
        self._remove(streamed)
        return ref

    def put_file(self, prefix: str, path: str | Path, suffix: str = "") -> ArtifactRef:
        """A local file under its content key, read twice (digest, then upload) and never held whole."""
        path = Path(path)
        digest = file_digest(path)
        key = check_key(f"{prefix.strip('/')}/{digest}{suffix}")
        ref = ArtifactRef(self.bucket, key, digest, path.stat().st_size)
        if not self.exists(ref):
            with open(path, "rb") as f:
                self._call(
                    f"{self.bucket}/{key}",
                    lambda: self.client.put_object(
                        self.bucket,
                        key,
                        f,
                        ref.size,
                        metadata={"sha256": digest},
                        part_size=PART_SIZE,
                        num_parallel_uploads=1,
                    ),
                )
        return ref

    def _remove(self, key: str) -> None:
        with contextlib.suppress(StorageError):  # best effort: a leftover temporary object is only space
            self._call(f"{self.bucket}/{key}", lambda: self.client.remove_object(self.bucket, key))

    def delete(self, ref: ArtifactRef) -> None:
        ref = self._checked(ref)
        self._call(f"{ref.bucket}/{ref.key}", lambda: self.client.remove_object(ref.bucket, ref.key))

    def get_stream(self, ref: ArtifactRef) -> Iterator[bytes]:
        """The artifact in chunks of up to ``CHUNK`` bytes; the digest is checked when the last one is read
        (a mismatch raises there: write to a temporary file and keep it only when the stream ends cleanly)."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        ref = self._checked(ref)
        where = f"{ref.bucket}/{ref.key}"
        resp = self._call(where, lambda: self.client.get_object(ref.bucket, ref.key))
        sha, size = hashlib.sha256(), 0
        try:
            for chunk in resp.stream(CHUNK):
                sha.update(chunk)
                size += len(chunk)
                yield chunk
        except (S3Error, HTTPError, OSError) as exc:
            raise StorageUnavailable(f"{where}: read interrupted ({type(exc).__name__})") from None
        finally:
            resp.close()
            resp.release_conn()
        if sha.hexdigest() != ref.digest or size != ref.size:
            raise StorageError(
                f"{where}: content digest {sha.hexdigest()[:12]} ({size} bytes) != reference "
                f"{ref.digest[:12]} ({ref.size} bytes)"
            )

    def get_file(self, ref: ArtifactRef, dest: str | Path) -> Path:
        """The artifact streamed into ``dest`` (through a ``.partial`` file: a failed read leaves nothing)."""
        dest = Path(dest)
        # unique per call: two workers sharing a cache may fetch the same artifact at once
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in self.get_stream(ref):
                    f.write(chunk)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _checked(self, ref: ArtifactRef) -> ArtifactRef:
        """References come from requests: only this store's bucket and well-formed keys are served."""
        if ref.bucket != self.bucket:
            raise StorageError(f"{ref.bucket}/{ref.key}: bucket {ref.bucket!r} is not this store's")
        check_key(ref.key)
        return ref

    def get(self, ref: ArtifactRef) -> bytes:
        ref = self._checked(ref)

        def read() -> bytes:
            resp = self.client.get_object(ref.bucket, ref.key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return _verified(ref, self._call(f"{ref.bucket}/{ref.key}", read))

    def exists(self, ref: ArtifactRef) -> bool:
        from minio.error import S3Error

        ref = self._checked(ref)
        try:
            self._call(f"{ref.bucket}/{ref.key}", lambda: self.client.stat_object(ref.bucket, ref.key))
        except StorageError as exc:
            if isinstance(exc, StorageUnavailable) or "no such artifact" not in str(exc):
                raise
            return False
        except S3Error:
            return False
        return True
