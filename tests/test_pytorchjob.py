"""Training on Kubernetes as a Kubeflow PyTorchJob: the object the trainer creates (rendered, validated
against the CRD schema from PyPI kubeflow-training's models and against Kubernetes' pod schemas), the
deployment's settings, and a pod that is killed mid-run resuming from its last checkpoint in S3 (real S3,
real mmaction2 training; no cluster runs here, so the operator's part, restarting the pod, is done by the
test)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.trainer import job_state
from services.trainer.pytorchjob import SettingError, TrainingDeployment, example, render

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("k8s_validate", ROOT / "scripts" / "k8s_validate.py")
kv = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(kv)  # type: ignore[union-attr]

GPU = dict(launcher="pytorchjob", image="img:1", namespace="ns")


def test_example_job_validates_and_has_master_and_workers() -> None:
    job = example()
    assert kv.validate_pytorchjob(job) == []
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1  # 2 nodes
    assert job["spec"]["nprocPerNode"] == "2"  # a string in kubeflow.org/v1
    (container,) = replicas["Master"]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"
    assert container["command"] == ["python", "-m", "services.trainer.job_pod", "0123456789ab"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # deploy/k8s/external/networkpolicies.yaml lets avaforge's clients, and only them, reach MinIO
    assert replicas["Master"]["template"]["metadata"]["labels"]["avaforge.io/client"] == "true"


def test_one_cpu_node_has_no_workers_and_no_gpus() -> None:
    job = render("0123456789ab", TrainingDeployment(**GPU))  # type: ignore[arg-type]
    assert kv.validate_pytorchjob(job) == []
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    assert "nvidia.com/gpu" not in json.dumps(job)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("spec", "nprocPerNode"), 2, "is not of type 'string'"),
        (("spec", "pytorchReplicaSpecs", "Master", "replica"), 1, "Additional properties"),
        (("spec", "pytorchReplicaSpecs", "Chief"), {"replicas": 1}, "Master and Worker"),
        (("spec", "pytorchReplicaSpecs", "Master", "replicas"), 2, "Master must have 1 replica"),
        (
            ("spec", "pytorchReplicaSpecs", "Master", "template", "spec", "containers", 0, "name"),
            "x",
            "pytorch",
        ),
        (("spec", "pytorchReplicaSpecs", "Master", "template", "spec", "containers", 0, "imag"), "i", "imag"),
    ],
)
def test_validator_rejects_what_the_operator_would(path: tuple, value: object, expected: str) -> None:
    job = copy.deepcopy(example())
    node = job
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(expected in e for e in kv.validate_pytorchjob(job)), kv.validate_pytorchjob(job)


def test_settings_come_from_the_deployment() -> None:
    env = {
        "AVAFORGE_TRAIN_LAUNCHER": "pytorchjob",
        "AVAFORGE_TRAIN_IMAGE": "img:2",
        "AVAFORGE_TRAIN_NODES": "3",
        "AVAFORGE_TRAIN_NPROC": "4",
        "AVAFORGE_TRAIN_GPUS": "4",
        "AVAFORGE_TRAIN_NAMESPACE": "team",
        "AVAFORGE_S3_ENDPOINT": "minio:9000",
    }
    d = TrainingDeployment.from_env(env)
    assert (d.world_size, d.namespace, d.s3_env) == (12, "team", (("AVAFORGE_S3_ENDPOINT", "minio:9000"),))
    assert TrainingDeployment.from_env({}).launcher == "process"
    for bad, message in [
        ({"AVAFORGE_TRAIN_LAUNCHER": "slurm"}, "AVAFORGE_TRAIN_LAUNCHER"),
        ({"AVAFORGE_TRAIN_LAUNCHER": "pytorchjob"}, "AVAFORGE_TRAIN_IMAGE is required"),
        ({"AVAFORGE_TRAIN_NPROC": "0"}, "AVAFORGE_TRAIN_NPROC"),
    ]:
        with pytest.raises(SettingError, match=message):
            TrainingDeployment.from_env(bad)
    with pytest.raises(ValueError, match="not a training job id"):
        render("../etc", d)


# --- a lost pod resumes from S3 ------------------------------------------------------------------------

ITERS, EVERY = 10, 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pod(store, work: Path) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """One Master pod as the operator starts it (PET_* for torchrun), in a session of its own to kill."""
    from tests.conftest import CREDS

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AVAFORGE_S3_ENDPOINT": f"http://{store.endpoint}",  # plaintext test server (bare = TLS)
        "AVAFORGE_S3_BUCKET": store.bucket,
        "AVAFORGE_S3_ACCESS_KEY": CREDS.access_key,
        "AVAFORGE_S3_SECRET_KEY": CREDS.secret_key,
        "AVAFORGE_CACHE_DIR": str(work),
        "AVAFORGE_TRAIN_CHECKPOINT_EVERY": str(EVERY),
        "AVAFORGE_TRAIN_SYNC_S": "0.2",
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "1",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(_free_port()),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.trainer.job_pod", JOB], env=env, cwd=ROOT, start_new_session=True
    )


JOB = "00000000d00d"


@pytest.mark.slow
def test_killed_pod_resumes_from_its_last_checkpoint_in_s3(
    tmp_path: Path, people_rawframes: Path, s3
) -> None:  # type: ignore[no-untyped-def]
    from avaforge.archive import pack_tree
    from tests.conftest import write_demo_dataset

    _, store = s3
    linked = write_demo_dataset(tmp_path / "ds", people_rawframes, {"train": ["a"], "val": ["b"]})
    dataset = shutil.copytree(linked, tmp_path / "uploaded")  # rawframes copied: an archive holds no links
    ref = store.put("datasets", pack_tree(dataset), ".tar")
    job_state.write_json(
        store, job_state.spec_key(JOB), {"dataset": ref.to_dict(), "preset": "tiny", "iters": ITERS}
    )

    first = _pod(store, tmp_path / "pod1")
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and first.poll() is None:
            state = job_state.read_json(store, job_state.state_key(JOB)) or {}
            if state.get("checkpoint"):
                break
            time.sleep(0.5)
        assert first.poll() is None, "the first pod ended before its first checkpoint was stored"
        os.killpg(first.pid, signal.SIGKILL)  # the node is lost: pod, torchrun and the rank at once
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = state["checkpoint"]["iter"]
    assert killed_at % EVERY == 0 and killed_at < ITERS and "result" not in state

    # A new pod on another node: nothing local survives. Should it fail (this loaded machine's S3 server has
    # timed out once at the end), the operator restarts it in place (restartPolicy OnFailure), as here.
    for _restart in range(3):
        if _pod(store, tmp_path / "pod2").wait(timeout=600) == 0:
            break
    else:
        pytest.fail("the resumed pod failed 3 times")
    state = job_state.read_json(store, job_state.state_key(JOB))
    assert state["resumed_from"] == killed_at
    assert state["progress"]["iter"] == state["progress"]["max_iters"] == ITERS
    assert state["checkpoint"]["iter"] == ITERS
    log = "".join(p.read_text() for p in (tmp_path / "pod2").glob("train-jobs/*/run/*/*.log"))
    assert f"resumed epoch: 0, iter: {killed_at}" in log
    trained = [int(n) for n in __import__("re").findall(r"Iter\(train\) \[\s*(\d+)/", log)]
    assert trained and min(trained) > killed_at and max(trained) == ITERS  # none repeated, none skipped
    assert set(state["result"]) == {"config", "metrics", "checkpoint", "logs"}
