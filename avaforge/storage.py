"""Artifact storage: content-addressed objects in S3 (through the ``minio`` SDK).

Keys are derived from content (``<prefix>/<sha256>[suffix]``), so writing the same bytes twice — e.g. when a
queue redelivers an item — stores one object, and a reference (bucket, key, digest) pins exact bytes: reads
verify the digest. S3 errors become ``StorageError`` (bad credentials, missing object...) or
``StorageUnavailable`` (server unreachable after a bounded number of retries), each naming the object.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import asdict, dataclass
from typing import Protocol

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,1023}")


class StorageError(RuntimeError):
    """An artifact could not be stored or read (and retrying will not help)."""


class StorageUnavailable(StorageError):
    """The store did not answer within the bounded retries: retry the work item later."""


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
        retries: int = 3,
        timeout_s: float = 5.0,
    ) -> None:
        import urllib3
        from minio import Minio

        if not access_key or not secret_key:
            raise StorageError(
                "S3 credentials are required (AVAFORGE_S3_ACCESS_KEY / AVAFORGE_S3_SECRET_KEY)"
            )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s * 6),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self.endpoint = endpoint
        self.bucket = bucket
        self.client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http
        )

    @classmethod
    def from_env(cls, bucket: str | None = None) -> S3Store:
        env = os.environ
        return cls(
            env.get("AVAFORGE_S3_ENDPOINT", "127.0.0.1:9000"),
            env.get("AVAFORGE_S3_ACCESS_KEY", ""),
            env.get("AVAFORGE_S3_SECRET_KEY", ""),
            bucket or env.get("AVAFORGE_S3_BUCKET", "avaforge"),
            secure=env.get("AVAFORGE_S3_SECURE", "0") == "1",
        )

    def _call(self, what: str, fn):  # type: ignore[no-untyped-def]
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        try:
            return fn()
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise StorageError(f"{what}: no such artifact ({exc.code})") from None
            if exc.code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StorageError(f"{what}: S3 refused the credentials ({exc.code})") from None
            raise StorageError(f"{what}: {exc.code}: {exc.message}") from None
        except (HTTPError, OSError) as exc:
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
