"""Training as a Kubeflow Training Operator PyTorchJob (kubeflow.org/v1): the deployment's settings and the
object the trainer service creates for one training job.

One Master pod and ``nodes - 1`` Worker pods, each running ``python -m services.trainer.job_pod <job>``
(dataset and last checkpoint from S3, then torchrun; see job_pod.py). The operator gives every pod torchrun's
arguments as ``PET_*`` variables (PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, PET_MASTER_ADDR,
PET_MASTER_PORT) because ``nprocPerNode`` is set. The pods never call the Kubernetes API and need no token;
they reach S3 only. Schema: deploy/k8s/schemas/kubeflow-pytorchjob-v1.json (``make k8s-validate``).

Deployment settings (the trainer's environment, never a job's):
  AVAFORGE_TRAIN_LAUNCHER          process (default: a child process of the worker) | pytorchjob
  AVAFORGE_TRAIN_NPROC             processes per pod (or per worker, launcher process); default 1
  AVAFORGE_TRAIN_NODES             pods of a PyTorchJob (1 Master + N-1 Workers); default 1
  AVAFORGE_TRAIN_GPUS              GPUs per pod (nvidia.com/gpu); default 0 (CPU, gloo)
  AVAFORGE_TRAIN_IMAGE             the job pods' image (required for pytorchjob)
  AVAFORGE_TRAIN_S3_SECRET         Secret with the S3 access-key/secret-key; default avaforge-s3-trainer
  AVAFORGE_TRAIN_CHECKPOINT_EVERY  iterations between checkpoints (stored in S3); default 500
  AVAFORGE_TRAIN_NAMESPACE         default: the pod's own namespace (its service account's)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services.common.catalog import CONTAINER_SECURITY, POD_SECURITY

LAUNCHERS = ("process", "pytorchjob")
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The S3 settings the pods need, passed on from the trainer's own environment (its ConfigMap's name is
# hashed by kustomize, so the pods cannot reference it).
S3_SETTINGS = ("AVAFORGE_S3_ENDPOINT", "AVAFORGE_S3_BUCKET", "AVAFORGE_S3_SECURE")
MASTER_PORT = 23456  # the operator's default for PyTorchJob
POD_LABEL = "avaforge.io/training-job"
WORK = "/var/cache/avaforge"


class SettingError(ValueError):
    """A deployment setting is missing or invalid (the message names it)."""


def _int(env: Mapping[str, str], name: str, default: int, least: int) -> int:
    raw = env.get(name) or str(default)
    if not re.fullmatch(r"\d+", raw) or int(raw) < least:
        raise SettingError(f"{name}={raw!r}: give a whole number >= {least}")
    return int(raw)


@dataclass(frozen=True)
class TrainingDeployment:
    launcher: Literal["process", "pytorchjob"] = "process"
    nproc: int = 1
    nodes: int = 1
    gpus: int = 0
    image: str = ""
    namespace: str = "default"
    s3_secret: str = "avaforge-s3-trainer"
    checkpoint_every: int = 500
    s3_env: tuple[tuple[str, str], ...] = ()

    @property
    def world_size(self) -> int:
        return self.nodes * self.nproc

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TrainingDeployment:
        launcher = env.get("AVAFORGE_TRAIN_LAUNCHER") or "process"
        if launcher not in LAUNCHERS:
            raise SettingError(f"AVAFORGE_TRAIN_LAUNCHER={launcher!r}: choose one of {', '.join(LAUNCHERS)}")
        image = env.get("AVAFORGE_TRAIN_IMAGE", "")
        if launcher == "pytorchjob" and not image:
            raise SettingError("AVAFORGE_TRAIN_IMAGE is required with AVAFORGE_TRAIN_LAUNCHER=pytorchjob")
        namespace = env.get("AVAFORGE_TRAIN_NAMESPACE") or (
            SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else "default"
        )
        return cls(
            launcher=launcher,  # type: ignore[arg-type]
            nproc=_int(env, "AVAFORGE_TRAIN_NPROC", 1, 1),
            nodes=_int(env, "AVAFORGE_TRAIN_NODES", 1, 1),
            gpus=_int(env, "AVAFORGE_TRAIN_GPUS", 0, 0),
            image=image,
            namespace=namespace,
            s3_secret=env.get("AVAFORGE_TRAIN_S3_SECRET") or "avaforge-s3-trainer",
            checkpoint_every=_int(env, "AVAFORGE_TRAIN_CHECKPOINT_EVERY", 500, 1),
            s3_env=tuple((k, env[k]) for k in S3_SETTINGS if env.get(k)),
        )


def job_name(job_id: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{12}", job_id):  # the trainer's own ids; a name is DNS-1123
        raise ValueError(f"not a training job id: {job_id!r}")
    return f"avaforge-train-{job_id}"


def _pod_template(job_id: str, d: TrainingDeployment) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in d.s3_env]
    env += [
        {
            "name": f"AVAFORGE_S3_{part.upper()}_KEY",
            "valueFrom": {"secretKeyRef": {"name": d.s3_secret, "key": f"{part}-key"}},
        }
        for part in ("access", "secret")
    ]
    env += [
        {"name": "AVAFORGE_TRAIN_CHECKPOINT_EVERY", "value": str(d.checkpoint_every)},
        {"name": "AVAFORGE_CACHE_DIR", "value": WORK},
    ]
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": str(4 * max(1, d.nproc)), "memory": "16Gi"},
        "limits": {"cpu": str(8 * max(1, d.nproc)), "memory": "32Gi"},
    }
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": POD_SECURITY,
        "containers": [
            {
                "name": "pytorch",  # the operator finds its container by this name
                "image": d.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-m", "services.trainer.job_pod", job_id],
                "env": env,
                "ports": [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}],
                "resources": resources,
                "securityContext": CONTAINER_SECURITY,
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "work", "mountPath": WORK},
                    {"name": "shm", "mountPath": "/dev/shm"},  # NCCL and DataLoader workers share through it
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "work", "emptyDir": {"sizeLimit": "50Gi"}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        ],
    }
    if d.gpus:
        for part in ("requests", "limits"):
            resources[part]["nvidia.com/gpu"] = str(d.gpus)
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    labels = {
        "app.kubernetes.io/part-of": "avaforge",
        "app.kubernetes.io/component": "training",
        "avaforge.io/client": "true",  # MinIO's NetworkPolicy admits avaforge's clients (deploy/k8s/external)
        POD_LABEL: job_id,
    }
    return {"metadata": {"labels": labels}, "spec": spec}


def render(job_id: str, d: TrainingDeployment) -> dict[str, Any]:
    """The PyTorchJob of one training job. restartPolicy OnFailure: a pod that fails is restarted by the
    operator and resumes from the last checkpoint in S3 (a lost node's pod is recreated the same way)."""
    replica = {"restartPolicy": "OnFailure", "template": _pod_template(job_id, d)}
    replicas: dict[str, Any] = {"Master": {"replicas": 1, **replica}}
    if d.nodes > 1:
        replicas["Worker"] = {"replicas": d.nodes - 1, **replica}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {
            "name": job_name(job_id),
            "namespace": d.namespace,
            "labels": {"app.kubernetes.io/part-of": "avaforge", POD_LABEL: job_id},
        },
        "spec": {
            "nprocPerNode": str(d.nproc),
            "pytorchReplicaSpecs": replicas,
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 5, "ttlSecondsAfterFinished": 3600},
        },
    }


def example() -> dict[str, Any]:
    """What ``make k8s-validate`` checks: two GPU pods of two processes each."""
    d = TrainingDeployment(
        launcher="pytorchjob",
        nproc=2,
        nodes=2,
        gpus=2,
        image="registry.example.com/avaforge/avaforge-gpu:0.1.0",
        namespace="avaforge",
        s3_env=(("AVAFORGE_S3_ENDPOINT", "minio.minio.svc.cluster.local:9000"),),
    )
    return render("0123456789ab", d)
