"""Streaming uploads and downloads: S3 multipart under a temporary key while the digest is computed, then the
content key; reads that check the digest at the end; a gateway that never holds an artifact whole (its peak
RSS measured from /proc while 2 GB go up and down through it), refuses a bad name on the first chunk and an
oversize upload as soon as it crosses the limit, leaving nothing behind in S3."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from avaforge.archive import pack_tree, pack_tree_file, unpack_tree
from avaforge.client import GatewayClient
from avaforge.formats.actions import ActionList
from avaforge.proto_convert import actions_to_proto
from avaforge.queue import WorkQueue
from avaforge.storage import CHUNK, PART_SIZE, S3Store, StorageError, UploadTooLarge
from avaforge.v1 import gateway_pb2
from devstack.servers import free_port, nats_server, wait_port
from services.common import jobs
from services.common.convert import ref_from_proto
from tests.conftest import CREDS

REPO = Path(__file__).resolve().parents[1]


def random_chunks(total: int, seed: int = 0, size: int = CHUNK) -> Iterator[bytes]:
    """``total`` bytes of reproducible noise (S3 cannot compress or dedupe it), made a chunk at a time."""
    block = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    for i in range(0, total, size):
        n = min(size, total - i)
        yield (i.to_bytes(8, "little") + block)[:n]  # the offset makes every chunk differ


def digest_of(chunks: Iterator[bytes]) -> tuple[str, int]:
    sha, n = hashlib.sha256(), 0
    for c in chunks:
        sha.update(c)
        n += len(c)
    return sha.hexdigest(), n


def leftovers(store: S3Store) -> tuple[list[str], list[str]]:
    """Streamed objects left under their upload keys, and multipart uploads not completed nor aborted."""
    objects = [
        o.object_name
        for o in store.client.list_objects(store.bucket, recursive=True)
        if "/streamed/" in o.object_name
    ]
    uploads = store.client._list_multipart_uploads(store.bucket).uploads  # no public call lists them
    return objects, [u.object_name for u in uploads]


def test_put_stream_is_content_addressed_and_reads_back_verified(s3, tmp_path: Path) -> None:
    _, store = s3
    total = 2 * PART_SIZE + 12345  # three multipart parts, the last one short
    digest, size = digest_of(random_chunks(total, seed=1))
    ref = store.put_stream("videos", random_chunks(total, seed=1), ".mp4")
    assert (ref.key, ref.digest, ref.size) == (f"videos/{digest}.mp4", digest, size)
    assert store.put_stream("videos", random_chunks(total, seed=1), ".mp4") == ref  # same bytes, same key
    assert leftovers(store) == ([], [])
    assert digest_of(store.get_stream(ref)) == (digest, size)
    assert digest_of(iter([store.get_file(ref, tmp_path / "v.mp4").read_bytes()])) == (digest, size)
    assert not (tmp_path / ".v.mp4.partial").exists()
    # put_file: the same content from disk gets the same reference
    assert store.put_file("videos", tmp_path / "v.mp4", ".mp4") == ref
    # a changed object fails the read at its end, and get_file keeps nothing
    store.client.put_object(store.bucket, ref.key, io.BytesIO(b"x" * 10), 10)
    with pytest.raises(StorageError, match="content digest"):
        store.get_file(ref, tmp_path / "w.mp4")
    assert not (tmp_path / "w.mp4").exists() and not (tmp_path / ".w.mp4.partial").exists()
    store.delete(ref)
    assert not store.exists(ref)
    # past copy_max the bytes stay under their upload key; the reference still pins and checks them
    big = S3Store(store.endpoint, CREDS.access_key, CREDS.secret_key, store.bucket, copy_max=PART_SIZE)
    kept = big.put_stream("videos", random_chunks(total, seed=1), ".mp4")
    assert "/streamed/" in kept.key and (kept.digest, kept.size) == (digest, size)
    assert digest_of(big.get_stream(kept)) == (digest, size)
    big.delete(kept)
    assert leftovers(store) == ([], [])


def test_oversize_stream_is_aborted_when_it_crosses_the_limit(s3) -> None:
    _, store = s3
    consumed = []

    def endless() -> Iterator[bytes]:
        for chunk in random_chunks(1 << 40, seed=2):
            consumed.append(len(chunk))
            yield chunk

    with pytest.raises(UploadTooLarge) as exc:
        store.put_stream("videos", endless(), ".mp4", max_size=PART_SIZE + 1)
    assert exc.value.limit == PART_SIZE + 1
    # read one chunk past the limit, no more: PART_SIZE / CHUNK chunks fit, the next crosses
    assert len(consumed) == PART_SIZE // CHUNK + 1
    assert leftovers(store) == ([], [])


def test_dataset_tar_streams_through_a_file(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.bin").write_bytes(os.urandom(3 * CHUNK + 7))
    (root / "top.txt").write_text("hello")
    tar = pack_tree_file(root, tmp_path / "ds.tar")
    assert tar.read_bytes() == pack_tree(root)  # one writer: the file and the bytes are the same tar
    assert unpack_tree(tar, tmp_path / "out") == 2
    assert (tmp_path / "out" / "a" / "b" / "x.bin").read_bytes() == (root / "a" / "b" / "x.bin").read_bytes()


def _gateway(s3_port: int, nats_port: int, max_upload_mb: float, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "AVAFORGE_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",  # plaintext test server
        "AVAFORGE_S3_ACCESS_KEY": CREDS.access_key,
        "AVAFORGE_S3_SECRET_KEY": CREDS.secret_key,
        "AVAFORGE_S3_BUCKET": "artifacts",
        "AVAFORGE_GRPC_PORT": str(port),
        "AVAFORGE_METRICS_PORT": "0",
        "AVAFORGE_BIND": "127.0.0.1",
        "AVAFORGE_MAX_UPLOAD_MB": str(max_upload_mb),
        # as in the images (docker/cpu.Dockerfile): two malloc arenas, not one per thread that streamed a
        # chunk, so the memory a transfer frees is reused (peak 265-280 MB measured with it; 415 once without,
        # under load)
        "MALLOC_ARENA_MAX": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_port(port, timeout=60, proc=proc, log=log)
    return proc, port


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), from the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def nats(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = nats_server(tmp_path / "nats").start()
    yield server
    server.stop()


def test_gateway_checks_the_name_on_the_first_chunk_and_refuses_oversize_at_once(s3, nats, tmp_path) -> None:
    server, store = s3
    proc, port = _gateway(server.port, nats.port, 20, tmp_path / "gateway.log")
    try:
        client = GatewayClient(f"127.0.0.1:{port}", timeout_s=60)

        def endless(name: str) -> Iterator[gateway_pb2.UploadChunk]:
            # never ends: a gateway that checked the name (or the size) only after the last chunk would hang
            for i, chunk in enumerate(random_chunks(1 << 40, seed=3)):
                yield gateway_pb2.UploadChunk(filename=name if i == 0 else "", data=chunk)

        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as exc:
            client.stub.UploadVideo(endless("../../etc/passwd.mp4"), timeout=60)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "passwd" in exc.value.details()
        with pytest.raises(grpc.RpcError) as exc:
            client.stub.UploadVideo(endless("big.mp4"), timeout=60)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "AVAFORGE_MAX_UPLOAD_MB=20 MiB" in exc.value.details(), exc.value.details()
        assert time.monotonic() - began < 30
        time.sleep(0.5)  # the abort of the multipart upload runs after the status is sent
        assert leftovers(store) == ([], [])
        # a good upload still works, and the gateway answers with its content reference
        ref = client.upload_video(_write(tmp_path / "small.mp4", random_chunks(3 * CHUNK, seed=4)))
        assert (ref.digest, ref.size) == digest_of(random_chunks(3 * CHUNK, seed=4))
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)


def _write(path: Path, chunks: Iterator[bytes]) -> Path:
    with path.open("wb") as f:
        for c in chunks:
            f.write(c)
    return path


@pytest.mark.slow
def test_two_gigabytes_up_and_down_through_the_gateway_under_300_mb(s3, nats, tmp_path: Path) -> None:
    """2 GiB of generated bytes (never held: made a chunk at a time) up through UploadVideo and down through
    DownloadDataset of a job whose dataset fact names them; the gateway process's peak RSS stays under 300 MB.
    The data is deleted at the end with DeleteJob."""
    server, store = s3
    total = 2 << 30
    proc, port = _gateway(server.port, nats.port, 2100, tmp_path / "gateway.log")
    try:
        client = GatewayClient(f"127.0.0.1:{port}", timeout_s=600)
        idle_mb = peak_rss_mb(proc.pid)

        def upload() -> Iterator[gateway_pb2.UploadChunk]:
            for i, chunk in enumerate(random_chunks(total, seed=5)):
                yield gateway_pb2.UploadChunk(filename="big.mp4" if i == 0 else "", data=chunk)

        began = time.monotonic()
        ref = client.stub.UploadVideo(upload(), timeout=600)
        up_s = time.monotonic() - began
        assert (ref.digest, ref.size) == digest_of(random_chunks(total, seed=5))
        job = client.stub.SubmitJob(
            gateway_pb2.SubmitJobRequest(
                videos=[ref],
                filenames=["big.mp4"],
                actions=actions_to_proto(ActionList.from_flat(["walk"], "body")),
            )
        )

        async def record_dataset() -> None:  # what the dataset worker records when it has stored the tar
            queue = await WorkQueue.connect(f"nats://127.0.0.1:{nats.port}")
            await jobs.put(
                queue,
                jobs.fact(job.job_id, "dataset"),
                {
                    "dataset": {"bucket": ref.bucket, "key": ref.key, "digest": ref.digest, "size": ref.size},
                    "summary": {},
                },
            )
            await queue.close()

        asyncio.run(record_dataset())
        began = time.monotonic()
        chunks = client.stub.DownloadDataset(gateway_pb2.GetJobRequest(job_id=job.job_id), timeout=600)
        assert digest_of(c.data for c in chunks) == (ref.digest, total)
        down_s = time.monotonic() - began
        peak = peak_rss_mb(proc.pid)
        print(
            f"2 GiB: up {up_s:.0f} s, down {down_s:.0f} s, gateway peak RSS {peak:.0f} MB",
            f"(at start {idle_mb:.0f} MB)",
        )
        assert peak < 300, f"gateway peak RSS {peak:.0f} MB"
        deleted = client.delete(job.job_id)
        assert deleted.artifacts_deleted == 1 and deleted.artifacts_shared == 0
        assert not store.exists(ref_from_proto(ref))
        client.close()
    finally:
        proc.terminate()
        proc.wait(30)
        for obj in store.client.list_objects(store.bucket, "videos/", recursive=True):  # never leave 2 GB
            store.client.remove_object(store.bucket, obj.object_name)


def test_video_duration_and_resolution_limits_are_checked_before_cutting(
    s3, videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avaforge.formats.errors import FormatError
    from avaforge.settings import PipelineSettings
    from services.common.artifacts import LocalCache
    from services.ingest.handlers import plan

    _, store = s3
    name = "people_1080p_vfr_2.6s.mp4"  # 1920x1080, 2.6 s (tests/media.py: a 4x upscale of a vtest crop)
    ref = store.put_file("videos", videos / name, ".mp4")
    cache = LocalCache(store, tmp_path / "cache")
    assert len(plan(cache, ref, name, PipelineSettings())) == 1  # the defaults accept it
    monkeypatch.setenv("AVAFORGE_MAX_VIDEO_DURATION_S", "2")
    with pytest.raises(
        FormatError, match=r"duration 2\.\d s exceeds the limit AVAFORGE_MAX_VIDEO_DURATION_S=2 s"
    ):
        plan(cache, ref, name, PipelineSettings())
    monkeypatch.delenv("AVAFORGE_MAX_VIDEO_DURATION_S")
    monkeypatch.setenv("AVAFORGE_MAX_VIDEO_HEIGHT", "720")
    with pytest.raises(
        FormatError, match="resolution 1920x1080 exceeds the limit AVAFORGE_MAX_VIDEO_HEIGHT=720"
    ):
        plan(cache, ref, name, PipelineSettings())
    assert not list((tmp_path / "cache").rglob("*.partial"))
