"""``make up`` / ``make down``: the local stack as real processes (NATS, S3, Triton, the services)."""

import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from avaforge.storage import S3Store, StorageUnavailable
from devstack.servers import free_port, free_ports, wait_port

REPO = Path(__file__).resolve().parents[1]  # python -m devstack runs from the repository root


def _stack_env(tmp_path: Path) -> dict[str, str]:
    nats, s3, triton, gateway = free_ports(10)[:4]  # the gateway's services: +2..+6
    env = {
        **os.environ,
        "AVAFORGE_STACK_DIR": str(tmp_path),
        "AVAFORGE_NATS_PORT": str(nats),
        "AVAFORGE_S3_PORT": str(s3),
        "AVAFORGE_TRITON_PORT": str(triton),
        "AVAFORGE_GATEWAY_PORT": str(gateway),
    }
    env.pop("AVAFORGE_S3_ACCESS_KEY", None)
    env.pop("AVAFORGE_S3_SECRET_KEY", None)
    return env


def _devstack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack", command], env=env, capture_output=True, text=True, cwd=REPO
    )


@pytest.mark.slow
def test_make_up_and_down_start_and_stop_the_stack(tmp_path: Path) -> None:
    env = _stack_env(tmp_path / "stack")
    scratch = tmp_path / "tmp"  # the stack's processes' $TMPDIR: what they leave there after down is a leak
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    up = _devstack("up", env)
    try:
        assert up.returncode == 0, up.stderr
        outside = json.loads((tmp_path / "stack" / "leftovers.json").read_text())
        assert any(glob.glob(pattern) for pattern in outside)  # the S3 server's sockets in /tmp
        stack_env = tmp_path / "stack" / "stack.env"
        values = dict(line.split("=", 1) for line in stack_env.read_text().splitlines())
        assert stack_env.stat().st_mode & 0o077 == 0  # credentials readable by the owner only
        assert values["AVAFORGE_GATEWAY"] == f"127.0.0.1:{env['AVAFORGE_GATEWAY_PORT']}"
        store = S3Store(
            values["AVAFORGE_S3_ENDPOINT"],
            values["AVAFORGE_S3_ACCESS_KEY"],
            values["AVAFORGE_S3_SECRET_KEY"],
            values["AVAFORGE_S3_BUCKET"],
            ca=values["AVAFORGE_TLS_CA"],
        )
        assert values["AVAFORGE_S3_ENDPOINT"].startswith("https://") and store.secure  # S3 and NATS: TLS
        assert values["AVAFORGE_NATS_URL"].startswith("tls://")
        ref = store.put("smoke", b"up")
        assert store.get(ref) == b"up"
        import tritonclient.grpc as grpcclient

        assert grpcclient.InferenceServerClient(values["AVAFORGE_TRITON_URL"]).is_model_ready(
            "person_detector"
        )
        _assert_gateway_needs_tls_and_a_token(values, tmp_path / "stack")
        pids = json.loads((tmp_path / "stack" / "pids.json").read_text())
        detector_env = Path(f"/proc/{pids['worker-detect-0']}/environ").read_bytes().split(b"\0")
        assert b"AVAFORGE_DETECT_BACKEND=triton" in detector_env  # detection runs on the stack's Triton
        _assert_annotate_serves_https_with_a_token(values)
    finally:
        down = _devstack("down", env)
    assert down.returncode == 0 and not (tmp_path / "stack" / "pids.json").exists()
    with pytest.raises(StorageUnavailable):
        S3Store(values["AVAFORGE_S3_ENDPOINT"], "a", "b", retries=0, timeout_s=0.5).put("x", b"y")
    # ONNX Runtime keeps one fixed-name session-id file in $TMPDIR (rewritten, never multiplied).
    assert sorted(p.name for p in scratch.iterdir() if p.name != ".ses") == []
    assert not any(glob.glob(pattern) for pattern in outside)


def _assert_annotate_serves_https_with_a_token(values: dict[str, str]) -> None:
    from services.common.probe import check_https

    port = int(values["AVAFORGE_ANNOTATE_URL"].rsplit(":", 1)[1])
    assert port == int(values["AVAFORGE_GATEWAY"].rsplit(":", 1)[1]) + 7
    assert (
        check_https(
            port, env={"AVAFORGE_TLS_CA": values["AVAFORGE_CA"], "AVAFORGE_TOKEN": values["AVAFORGE_TOKEN"]}
        )
        == 200
    )
    assert check_https(port, env={"AVAFORGE_TLS_CA": values["AVAFORGE_CA"]}) == 401


def _assert_gateway_needs_tls_and_a_token(values: dict[str, str], state: Path) -> None:
    """The stack's gateway speaks TLS with the CA and user token of stack.env; they are the owner's only."""
    import grpc

    from avaforge.client import GatewayClient
    from avaforge.v1 import gateway_pb2

    for name in ("user", "admin", "service"):
        assert (state / "auth" / f"{name}.token").stat().st_mode & 0o077 == 0
    assert (state / "auth" / "user.token").read_text().strip() == values["AVAFORGE_TOKEN"]
    user = GatewayClient(
        values["AVAFORGE_GATEWAY"], 30, ca=values["AVAFORGE_CA"], token=values["AVAFORGE_TOKEN"]
    )
    assert list(user.stub.ListJobs(gateway_pb2.ListJobsRequest(), timeout=30).jobs) == []
    user.close()
    for ca, token, code in (
        (values["AVAFORGE_CA"], None, grpc.StatusCode.UNAUTHENTICATED),
        (None, values["AVAFORGE_TOKEN"], grpc.StatusCode.UNAVAILABLE),  # plaintext against TLS
    ):
        anon = GatewayClient(values["AVAFORGE_GATEWAY"], 30, ca=ca, token=token)
        with pytest.raises(grpc.RpcError) as err:
            anon.stub.ListJobs(gateway_pb2.ListJobsRequest(), timeout=30)
        assert err.value.code() == code
        anon.close()


def test_up_names_a_taken_port_and_starts_nothing(tmp_path: Path) -> None:
    env = _stack_env(tmp_path)
    stage_port = int(env["AVAFORGE_GATEWAY_PORT"]) + 4
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", stage_port))
        holder.listen()
        up = _devstack("up", env)
    assert up.returncode == 1
    assert f"{stage_port} (proposals; set AVAFORGE_GATEWAY_PORT, which it follows at +4)" in up.stderr
    assert not (tmp_path / "pids.json").exists() and not (tmp_path / "nats.log").exists()


def test_a_server_that_dies_before_listening_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; print('Failed to bind to address 0.0.0.0:1'); sys.exit(3)"],
            stdout=out,
        )
        with pytest.raises(RuntimeError, match=r"(?s)exited with code 3 .*Failed to bind to address"):
            wait_port(free_port(), 30, proc, log)


def test_a_service_cache_is_the_configured_one_or_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.common.cache import cache_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("AVAFORGE_CACHE_DIR", raising=False)
    with cache_dir("worker") as private:
        assert private.parent == tmp_path and private.name.startswith("avaforge-worker-")
        (private / "clip.mp4").write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("AVAFORGE_CACHE_DIR", str(tmp_path / "operator"))
    with cache_dir("worker") as configured:
        configured.mkdir()
    assert configured == tmp_path / "operator" and configured.is_dir()
