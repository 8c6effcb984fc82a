"""Artifact store on a real S3 server (SeaweedFS `weed mini`, or MinIO if installed)."""

import time
from pathlib import Path

import pytest

from avaforge.storage import ArtifactRef, S3Store, StorageError, StorageUnavailable
from tests.conftest import CREDS


def test_content_addressed_round_trip_without_duplicates(s3) -> None:
    _, store = s3
    ref = store.put("clips/basketball", b"frame bytes", ".jpg")
    assert ref.key.startswith("clips/basketball/") and ref.key.endswith(".jpg") and ref.size == 11  # bytes
    assert store.get(ref) == b"frame bytes" and store.exists(ref)
    again = store.put("clips/basketball", b"frame bytes", ".jpg")  # a redelivered work item
    stored = list(store.client.list_objects("artifacts", "clips/basketball/", recursive=True))
    assert again == ref and len(stored) == 1
    assert not store.exists(ArtifactRef("artifacts", "clips/none", "0" * 64, 1))
    with pytest.raises(StorageError, match="invalid artifact key"):  # keys never leave the bucket's tree
        store.put("../escape", b"x")


def test_digest_is_verified_on_read(s3) -> None:
    import io

    _, store = s3
    ref = store.put("x", b"original")
    store.client.put_object("artifacts", ref.key, io.BytesIO(b"tampered"), len(b"tampered"))
    with pytest.raises(StorageError, match="content digest"):
        store.get(ref)


def test_credentials_are_required_and_checked(s3) -> None:
    server, store = s3
    ref = store.put("y", b"secret")
    with pytest.raises(StorageError, match="refused the credentials"):
        S3Store(f"127.0.0.1:{server.port}", CREDS.access_key, "wrong-secret", "artifacts").get(ref)
    with pytest.raises(StorageError, match="credentials are required"):
        S3Store(f"127.0.0.1:{server.port}", "", "", "artifacts")
    from minio import Minio
    from minio.error import S3Error

    with pytest.raises(S3Error, match="AccessDenied"):  # anonymous access is rejected by the server
        Minio(f"127.0.0.1:{server.port}", secure=False).get_object("artifacts", ref.key)


def test_unreachable_server_fails_in_bounded_time(tmp_path: Path) -> None:
    from devstack.servers import free_port

    store = S3Store(f"127.0.0.1:{free_port()}", "a", "b", retries=2, timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.put("z", b"data")
    # 3 attempts (retries=2) of at most 0.5 s plus urllib3's backoff (factor 0.2) stay under 3 s; 10 s leaves
    # room for a loaded machine, and a client with minio's default timeouts (minutes) would exceed it
    assert time.monotonic() - start < 10
