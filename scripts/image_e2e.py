"""The CPU image end to end (part of ``make image-cpu-local``): NATS and an S3 server on this machine, every
CPU-image process of services/catalog.py in its own container (read-only root filesystem, non-root, host
network), and a real video submitted through the gateway until its VIA project is ready. Detection runs in the
detector workers' containers on the baked ONNX export (no Triton here).

    IMAGE=localhost/avaforge-cpu:0.1.0 .venv/bin/python scripts/image_e2e.py
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avaforge.client import GatewayClient  # noqa: E402
from avaforge.devstack.servers import S3Credentials, free_port, nats_server, s3_server, wait_port  # noqa: E402
from avaforge.formats.actions import ActionList  # noqa: E402
from avaforge.storage import S3Store  # noqa: E402
from avaforge.v1 import common_pb2  # noqa: E402
from services.catalog import DEPLOYABLES  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "videos" / "handshake_2p_1080p_2.6s.mp4"


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


def main() -> int:
    image = os.environ["IMAGE"]
    state = Path(tempfile.mkdtemp(prefix="avaforge-image-e2e-"))
    creds = S3Credentials("imagecheck", secrets.token_urlsafe(16))
    nats = nats_server(state, free_port()).start()
    s3 = s3_server(state, creds, free_port()).start()
    S3Store(f"127.0.0.1:{s3.port}", creds.access_key, creds.secret_key).wait_ready()
    env = {
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"127.0.0.1:{s3.port}",
        "AVAFORGE_S3_ACCESS_KEY": creds.access_key,
        "AVAFORGE_S3_SECRET_KEY": creds.secret_key,
        "AVAFORGE_METRICS_PORT": "0",  # host network: no two containers on one metrics port
    }
    started: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        for d in (d for d in DEPLOYABLES if d.image == "cpu"):
            port = free_port()
            name = f"avaforge-e2e-{d.name}-{os.getpid()}"
            run = podman(
                "run", "-d", "--rm", "--read-only", "--network", "host", "--name", name,
                "--tmpfs", "/var/cache/avaforge:rw,U",  # U: owned by the image user (fsGroup)
                *(f"-e={k}={v}" for k, v in {**env, **d.env, "AVAFORGE_GRPC_PORT": str(port)}.items()),
                image, *d.args,
            )  # fmt: skip
            if run.returncode != 0:
                raise RuntimeError(f"{d.name}: {run.stderr.strip()}")
            started[name] = port
        gateway = started[next(n for n in started if "-gateway-" in n)]
        wait_port(gateway, 60)
        for name in started:  # the image's own HEALTHCHECK, in every container
            deadline = time.monotonic() + 90
            while podman("healthcheck", "run", name).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} never became healthy:\n{podman('logs', name).stderr[-1500:]}")
                time.sleep(1)
        print(f"{len(started)} containers healthy after {time.monotonic() - t0:.1f} s")
        client = GatewayClient(f"127.0.0.1:{gateway}", timeout_s=600)
        t1 = time.monotonic()
        job = client.submit([VIDEO], ActionList.load(ROOT / "examples" / "actions.yaml"))
        job = client.wait(job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS)
        if job.state != common_pb2.JOB_STATE_AWAITING_LABELS:
            raise RuntimeError(f"job {job.job_id}: {common_pb2.JobState.Name(job.state)}: {job.error}")
        archive = client.download_via(job.job_id, job.clips[0].clip_id, state / "via.zip")
        with zipfile.ZipFile(archive) as zf:
            (project_name,) = [n for n in zf.namelist() if n.endswith(".json")]
            project = json.load(io.BytesIO(zf.read(project_name)))
        regions = sum(1 for m in project["metadata"].values() if m.get("xy"))
        print(
            f"job {job.job_id}: {len(job.clips)} clip(s), {project_name}: {regions} person boxes, "
            f"{time.monotonic() - t1:.1f} s through the containers"
        )
        client.close()
        if regions == 0:
            raise RuntimeError("the VIA project has no person boxes")
        return 0
    except RuntimeError as exc:
        print(f"image e2e: {exc}", file=sys.stderr)
        return 1
    finally:
        for name in started:
            podman("rm", "-f", "-t", "5", name)
        nats.stop()
        s3.stop()


if __name__ == "__main__":
    sys.exit(main())
