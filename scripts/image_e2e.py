"""The CPU image end to end (part of ``make image-cpu-local``).

NATS and an S3 server run on this machine; every CPU-image process of services/common/catalog.py runs in its
own container (read-only root filesystem, non-root, host network). Two real videos go through the gateway to
VIA projects; the embedded runner on this machine prepares and autolabels the same videos and its finished
projects are uploaded; the containers build the dataset, and every AVA file and rawframe must be
byte-identical to the embedded build. Detection runs in the detector workers' containers on the baked ONNX
export (no Triton here).

    IMAGE=localhost/avaforge-cpu:0.1.0 [GPU_IMAGE=localhost/avaforge-gpu:0.1.0] \
        .venv/bin/python scripts/image_e2e.py

With GPU_IMAGE, worker-train runs from the GPU image (on the CPU here) and trains the tiny preset for 3
iterations on the dataset the containers built, started through the trainer API container.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from avaforge.archive import pack_tree  # noqa: E402
from avaforge.client import GatewayClient  # noqa: E402
from avaforge.dataset_layout import DatasetLayout  # noqa: E402
from avaforge.formats.actions import ActionList  # noqa: E402
from avaforge.runner import autolabel_workdir, build, import_finished, prepare  # noqa: E402
from avaforge.settings import PipelineSettings  # noqa: E402
from avaforge.storage import S3Store  # noqa: E402
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc  # noqa: E402
from devstack.servers import S3Credentials, free_port, nats_server, s3_server, wait_port  # noqa: E402
from services.common.catalog import DEPLOYABLES  # noqa: E402
from services.common.convert import ref_to_proto  # noqa: E402
from tests import media  # noqa: E402

VIDEOS = (media.PEOPLE_2997, media.PEOPLE_28)  # two segments of vtest.avi, made by tests/media.py
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


def train(target: str, store: S3Store, dataset: Path) -> None:
    """A tiny training run: trainer API container -> queue -> worker-train container (GPU image, CPU here)."""
    t0 = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        stub = stages_pb2_grpc.TrainerServiceStub(channel)
        ref = ref_to_proto(store.put("datasets", pack_tree(dataset), ".tar"))
        job = stub.StartTraining(stages_pb2.StartTrainingRequest(dataset=ref, preset="tiny", iters=3))
        last = job
        for last in stub.WatchTraining(stages_pb2.WatchTrainingRequest(job_id=job.job_id), timeout=900):
            if last.state in (common_pb2.JOB_STATE_SUCCEEDED, common_pb2.JOB_STATE_FAILED):
                break
    if last.state != common_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"training {job.job_id}: {common_pb2.JobState.Name(last.state)}: {last.error}")
    print(f"training job {job.job_id}: {last.progress[0].done} iterations in {time.monotonic() - t0:.1f} s")


def main() -> int:
    image = os.environ["IMAGE"]
    gpu_image = os.environ.get("GPU_IMAGE")  # also run worker-train from it and train on the built dataset
    state = Path(tempfile.mkdtemp(prefix="avaforge-image-e2e-"))
    videos = [media.make(name, state / "videos") for name in VIDEOS]
    creds = S3Credentials("imagecheck", secrets.token_urlsafe(16))
    nats = nats_server(state, free_port()).start()
    s3 = s3_server(state, creds, free_port()).start()
    env = {
        "AVAFORGE_NATS_URL": f"nats://127.0.0.1:{nats.port}",
        "AVAFORGE_S3_ENDPOINT": f"http://127.0.0.1:{s3.port}",  # plaintext test server
        "AVAFORGE_S3_ACCESS_KEY": creds.access_key,
        "AVAFORGE_S3_SECRET_KEY": creds.secret_key,
        "AVAFORGE_METRICS_PORT": "0",  # host network: no two containers on one metrics port
        "AVAFORGE_S3_CREATE_BUCKET": "1",  # as in the overlays: the gateway makes the bucket of a fresh S3
        "AVAFORGE_BIND": "127.0.0.1",  # host network, no TLS here: loopback only (services/common/auth.py)
    }
    started: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        for d in (d for d in DEPLOYABLES if d.image == "cpu" or gpu_image):
            port = free_port()
            name = f"avaforge-e2e-{d.name}-{os.getpid()}"
            run = podman(
                "run", "-d", "--rm", "--read-only", "--network", "host", "--name", name,
                "--tmpfs", "/var/cache/avaforge:rw,U",  # U: owned by the image user (fsGroup)
                *(f"-e={k}={v}" for k, v in {**env, **d.env, "AVAFORGE_GRPC_PORT": str(port)}.items()),
                gpu_image if d.image == "gpu" else image, *d.args,
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
        client = GatewayClient(f"127.0.0.1:{gateway}", timeout_s=900)
        t1 = time.monotonic()
        job = client.submit(videos, ACTIONS)
        job = client.wait(job.job_id, common_pb2.JOB_STATE_AWAITING_LABELS)
        if job.state != common_pb2.JOB_STATE_AWAITING_LABELS:
            raise RuntimeError(f"job {job.job_id}: {common_pb2.JobState.Name(job.state)}: {job.error}")
        print(f"job {job.job_id}: {len(job.clips)} clips ready to label after {time.monotonic() - t1:.1f} s")
        # the same videos through the embedded runner on this machine; its autolabelled projects go to the job
        work = state / "embedded"
        prepare(videos, ActionList.from_obj(ACTIONS), work, PipelineSettings())
        projects = autolabel_workdir(work)
        for project in projects:
            client.upload_finished(job.job_id, project)
        import_finished(work, projects)
        embedded = build(work, state / "embedded_dataset").out
        while not [
            p for p in client.get(job.job_id).progress if p.stage == "import" and p.done == len(videos)
        ]:
            time.sleep(0.5)
        client.build(job.job_id)
        done = client.wait(job.job_id, common_pb2.JOB_STATE_SUCCEEDED)
        if done.state != common_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"build: {common_pb2.JobState.Name(done.state)}: {done.error}")
        served = client.download_dataset(job.job_id, state / "served_dataset")
        client.close()
        files = DatasetLayout(embedded).content_files()
        compared = len(files)
        differ = [
            str(rel)
            for rel in files
            if not (served / rel).is_file() or (served / rel).read_bytes() != (embedded / rel).read_bytes()
        ]
        print(
            f"dataset built through the containers in {time.monotonic() - t1:.1f} s: {compared} files "
            f"compared with the embedded runner, {len(differ)} differ {differ[:5]}"
        )
        if differ or compared < 600:
            return 1
        if gpu_image:
            trainer = started[next(n for n in started if "-trainer-" in n)]
            train(
                f"127.0.0.1:{trainer}",
                S3Store(env["AVAFORGE_S3_ENDPOINT"], creds.access_key, creds.secret_key),
                served,
            )
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
