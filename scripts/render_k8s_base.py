"""Write deploy/k8s/base/services.yaml: a Deployment, a Service and a PodDisruptionBudget for every entry of
services/common/catalog.py, so the manifests cannot drift from the code (commands, images, gRPC ports).

    .venv/bin/python scripts/render_k8s_base.py [--check]      (make k8s-manifests)

Hand-written parts (infrastructure, policies, overlays) live beside it; tests/test_deploy_k8s.py fails when
this file is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.common.catalog import (  # noqa: E402
    CONTAINER_SECURITY,
    DEPLOYABLES,
    METRICS_PORT,
    POD_SECURITY,
    Deployable,
)

OUT = ROOT / "deploy" / "k8s" / "base" / "services.yaml"
# Secrets the operator creates (README "Run on Kubernetes"; templates in deploy/k8s/secrets), never rendered
# here. Each service has its own S3 access key and NATS user: no root credential in pods.
S3_SECRET = "avaforge-s3-{service}"
S3_KEYS = ("access-key", "secret-key")
NATS_SECRET = "avaforge-nats-{service}"  # key "password"; the user is the service's name
AUTH_SECRET = "avaforge-auth"  # tls.crt, tls.key, ca.crt, tokens.json (hashes), service.token
AUTH_DIR = "/etc/avaforge/auth"
AUTH_ENV = {
    "AVAFORGE_TLS_CERT": f"{AUTH_DIR}/tls.crt",
    "AVAFORGE_TLS_KEY": f"{AUTH_DIR}/tls.key",
    "AVAFORGE_TOKENS": f"{AUTH_DIR}/tokens.json",
    "AVAFORGE_TLS_CA": f"{AUTH_DIR}/ca.crt",  # the probe, NATS and S3 clients check certificates with it
    "AVAFORGE_TOKEN_FILE": f"{AUTH_DIR}/service.token",  # the probe calls as the service principal
}
TRITON_CLIENTS = {"detector", "worker-detect"}

# requests / limits: cpu, memory. Workers that decode video or run models get more; APIs are thin.
RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "gateway": ("250m", "512Mi", "2", "2Gi"),
    "detector": ("250m", "1Gi", "2", "2Gi"),
    "trainer": ("100m", "256Mi", "1", "1Gi"),
    "worker-ingest": ("1", "1Gi", "4", "4Gi"),
    "worker-detect": ("500m", "1Gi", "2", "2Gi"),
    "worker-track": ("1", "2Gi", "2", "4Gi"),
    "worker-dataset": ("500m", "1Gi", "2", "4Gi"),
    "worker-train": ("4", "16Gi", "8", "32Gi"),
}
DEFAULT_RESOURCES = ("250m", "512Mi", "1", "1Gi")
GRACE_S = {"worker-train": 300, "worker-ingest": 120, "worker-dataset": 120}  # finish the item in hand


def labels(d: Deployable) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": d.name,
        "app.kubernetes.io/part-of": "avaforge",
        "app.kubernetes.io/component": "worker" if d.name.startswith("worker-") else "api",
        "avaforge.io/client": "true",  # may reach NATS and S3 (NetworkPolicies)
    }
    if d.name in TRITON_CLIENTS:
        out["avaforge.io/triton-client"] = "true"
    return out


def selector(d: Deployable) -> dict[str, str]:
    return {"app.kubernetes.io/name": d.name, "app.kubernetes.io/part-of": "avaforge"}


def service_of(d: Deployable) -> str:
    """The service folder a deployable runs (``services.<service>``): whose credentials it gets."""
    return d.args[0].split(".")[1]


def probe_command(d: Deployable) -> list[str]:
    """The health check of the process on its port: gRPC health, or ``GET /healthz`` for an HTTPS API."""
    https = ["--https"] if d.protocol == "https" else []
    return ["python", "-m", "services.common.probe", *https, str(d.grpc_port)]


def container(d: Deployable) -> dict[str, Any]:
    cpu_req, mem_req, cpu_lim, mem_lim = RESOURCES.get(d.name, DEFAULT_RESOURCES)
    service = service_of(d)
    env = [
        {"name": "AVAFORGE_GRPC_PORT", "value": str(d.grpc_port)},
        {"name": "AVAFORGE_METRICS_PORT", "value": str(METRICS_PORT)},
        *({"name": k, "value": v} for k, v in sorted(d.env.items())),
        *({"name": k, "value": v} for k, v in AUTH_ENV.items()),
        *(
            {
                "name": f"AVAFORGE_S3_{key.upper().replace('-', '_')}",
                "valueFrom": {"secretKeyRef": {"name": S3_SECRET.format(service=service), "key": key}},
            }
            for key in S3_KEYS
        ),
        # the thread budget (services/common/threads.py): the container's own CPU limit, in millicores
        {
            "name": "AVAFORGE_CPU_LIMIT_MILLI",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
        },
        {"name": "AVAFORGE_NATS_USER", "value": service},
        {
            "name": "AVAFORGE_NATS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": NATS_SECRET.format(service=service), "key": "password"}},
        },
    ]
    # exec, not Kubernetes' gRPC/HTTP probes: those send no token (and the gRPC one speaks no TLS)
    probe = {"exec": {"command": probe_command(d)}}
    return {
        "name": d.name,
        "image": f"avaforge-{d.image}",
        "imagePullPolicy": "IfNotPresent",
        "command": d.command,
        "env": env,
        "envFrom": [{"configMapRef": {"name": "settings"}}],
        "ports": [
            {"name": d.protocol, "containerPort": d.grpc_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # startup: models load and S3/NATS connect before the health service answers
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 36},
        "readinessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 3},
        "resources": {
            "requests": {"cpu": cpu_req, "memory": mem_req},
            "limits": {"cpu": cpu_lim, "memory": mem_lim},
        },
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "cache", "mountPath": "/var/cache/avaforge"},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
        ],
    }


def deployment(d: Deployable) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": d.name, "labels": labels(d)},
        "spec": {
            "replicas": d.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(d)},
            "template": {
                "metadata": {
                    "labels": labels(d),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                    },
                },
                "spec": {
                    "serviceAccountName": "services",
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": GRACE_S.get(d.name, 45),
                    "securityContext": POD_SECURITY,
                    "containers": [container(d)],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                        {"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}},
                        # readable by the pod's group (fsGroup) only
                        {"name": "auth", "secret": {"secretName": AUTH_SECRET, "defaultMode": 0o440}},
                    ],
                },
            },
        },
    }


def service(d: Deployable) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": d.name, "labels": labels(d)},
        "spec": {
            "selector": selector(d),
            "ports": [
                {
                    "name": d.protocol,
                    "port": d.grpc_port,
                    "targetPort": d.protocol,
                    "appProtocol": d.protocol,
                },
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def pdb(d: Deployable) -> dict[str, Any]:
    # maxUnavailable, not minAvailable: a single replica must not block node drains
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": d.name, "labels": labels(d)},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(d)}},
    }


def render() -> str:
    docs = [doc for d in DEPLOYABLES for doc in (deployment(d), service(d), pdb(d))]
    head = "# Generated from services/common/catalog.py by scripts/render_k8s_base.py (make k8s-manifests).\n"
    return head + yaml.safe_dump_all(docs, sort_keys=False, width=120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the committed file differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run make k8s-manifests", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"{OUT}: {len(DEPLOYABLES)} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
