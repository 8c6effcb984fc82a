"""TLS to NATS and S3: a real nats-server and a real S3 server (SeaweedFS, or MinIO if installed) with
certificates from one CA (``python -m devstack.certs ... --server``); the queue and the store work over TLS
with the CA and refuse a server they cannot verify (no CA, a foreign CA); a plaintext client is refused by
the TLS port, and a TLS client never talks plaintext to a server without TLS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from avaforge.queue import QueueTlsError, WorkQueue
from avaforge.storage import S3Store, StorageError, StorageUnavailable
from devstack import certs as devstack_certs
from devstack.certs import make_credentials
from devstack.servers import Server, ServerTls, nats_server, s3_server
from tests.conftest import CREDS


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate each for NATS and S3, as README "Run on Kubernetes" makes them (one run)."""
    out = tmp_path_factory.mktemp("backend") / "auth"
    servers = ["--server", "nats=localhost,127.0.0.1", "--server", "s3=localhost,127.0.0.1"]
    assert devstack_certs.main([str(out), *servers]) == 0
    return out


@pytest.fixture(scope="module")
def ca(certs: Path) -> Path:
    return certs / "ca.crt"


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA with a certificate for the same names: a server it signed is not ours."""
    return make_credentials(tmp_path_factory.mktemp("foreign") / "auth", {}).ca


@pytest.fixture(scope="module")
def nats_tls(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Server]:
    tls = ServerTls(certs / "nats.crt", certs / "nats.key")
    server = nats_server(tmp_path_factory.mktemp("nats-tls"), tls=tls).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3_tls(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Server]:
    tls = ServerTls(certs / "s3.crt", certs / "s3.key")
    server = s3_server(tmp_path_factory.mktemp("s3-tls"), CREDS, tls=tls).start()
    yield server
    server.stop()


def _connect(url: str, ca: Path | None = None) -> None:
    """Connect, put a work item through the queue and take it back; raises what the connect raises."""

    async def run() -> None:
        queue = await asyncio.wait_for(WorkQueue.connect(url, ca=ca), 20)
        try:
            await queue.submit("tlscheck", {"job": "j1"}, msg_id=f"tls-{url}")
            seen: list[dict] = []
            stop = asyncio.Event()

            async def handler(payload: dict) -> None:
                seen.append(payload)
                stop.set()

            assert await queue.work("tlscheck", handler, stop) == 1
            assert seen == [{"job": "j1"}]
        finally:
            await queue.close()

    asyncio.run(run())


def test_queue_over_tls(nats_tls: Server, ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _connect(f"tls://127.0.0.1:{nats_tls.port}", ca)
    monkeypatch.setenv("AVAFORGE_TLS_CA", str(ca))  # as the services get it
    _connect(f"tls://localhost:{nats_tls.port}")


def test_queue_refuses_what_it_cannot_verify(
    nats_tls: Server, ca: Path, foreign_ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AVAFORGE_TLS_CA", raising=False)
    url = f"tls://127.0.0.1:{nats_tls.port}"
    with pytest.raises(QueueTlsError, match=r"certificate was not accepted .*AVAFORGE_TLS_CA"):
        _connect(url)  # the system's trust store does not know the test CA
    with pytest.raises(QueueTlsError, match="certificate was not accepted"):
        _connect(url, foreign_ca)
    # a plaintext client: the server waits for a TLS handshake, then closes
    with pytest.raises(QueueTlsError, match=r"closed the connection: a TLS-first port\? \(use tls://\)"):
        _connect(f"nats://127.0.0.1:{nats_tls.port}", ca)
    plain = nats_server(tmp_path / "plain").start()
    try:  # a tls:// client starts with the handshake: a plaintext server never sees its credentials
        with pytest.raises(QueueTlsError, match=r"TLS handshake failed .*is this a TLS port"):
            _connect(f"tls://gateway:secret@127.0.0.1:{plain.port}", ca)
        _connect(f"nats://127.0.0.1:{plain.port}")  # plaintext, chosen by the URL
    finally:
        plain.stop()
    with pytest.raises(ValueError, match="expected tls://"):
        _connect(f"http://127.0.0.1:{nats_tls.port}", ca)


def _store(endpoint: str, ca: Path | None = None, **kw: object) -> S3Store:
    return S3Store(endpoint, CREDS.access_key, CREDS.secret_key, "tlscheck", ca=ca, retries=0, **kw)  # type: ignore[arg-type]


def test_store_over_tls(s3_tls: Server, ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(f"https://127.0.0.1:{s3_tls.port}", ca)
    store.wait_ready()
    ref = store.put("tls", b"over TLS")
    assert store.get(ref) == b"over TLS"
    streamed = store.put_stream("tls", iter([b"a" * 1000, b"b" * 1000]))
    assert b"".join(store.get_stream(streamed)) == b"a" * 1000 + b"b" * 1000
    # as the services configure it: a bare endpoint is TLS, the CA from AVAFORGE_TLS_CA
    for key, value in {
        "AVAFORGE_S3_ENDPOINT": f"localhost:{s3_tls.port}",
        "AVAFORGE_S3_ACCESS_KEY": CREDS.access_key,
        "AVAFORGE_S3_SECRET_KEY": CREDS.secret_key,
        "AVAFORGE_TLS_CA": str(ca),
    }.items():
        monkeypatch.setenv(key, value)
    from_env = S3Store.from_env("tlscheck")
    assert from_env.secure
    assert from_env.get(ref) == b"over TLS"


def test_store_refuses_what_it_cannot_verify(
    s3_tls: Server, s3: tuple[Server, S3Store], ca: Path, foreign_ca: Path
) -> None:
    ref = _store(f"https://127.0.0.1:{s3_tls.port}", ca).put("tls", b"x")
    for wrong in (None, foreign_ca):
        with pytest.raises(StorageError, match=r"certificate was not accepted .*AVAFORGE_TLS_CA") as err:
            _store(f"https://127.0.0.1:{s3_tls.port}", wrong).get(ref)
        assert not isinstance(err.value, StorageUnavailable)  # a setting to fix, not a server to wait for
    with pytest.raises(StorageError, match=r"not S3.*plaintext to a TLS port"):
        _store(f"http://127.0.0.1:{s3_tls.port}").get(ref)
    plain, _ = s3  # the plaintext S3 server of tests/conftest.py
    with pytest.raises(StorageError, match="TLS handshake failed"):
        _store(f"https://127.0.0.1:{plain.port}", ca).get(ref)
    with pytest.raises(ValueError, match="expected https://"):
        _store(f"ftp://127.0.0.1:{s3_tls.port}", ca)
