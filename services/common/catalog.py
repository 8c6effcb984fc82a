"""Every deployable process of avaforge: what it runs, on which image, on which gRPC port.

This table is the contract between the code and ``deploy/k8s``: the tests render the Kubernetes overlays and
check that each entry has a Deployment running exactly this command, a Service, probes on this port and
the image kind given here, and that every service folder and every stage of ``avaforge.pipeline`` has an
entry.
The processes' own defaults (``AVAFORGE_GRPC_PORT`` when unset) come from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GATEWAY_PORT = 50050  # the only port reachable from outside the cluster
STAGE_PORT = 50051  # every other gRPC server: stage APIs, and health of the queue workers
TRAINER_PORT = 50056
ANNOTATE_PORT = 8443  # the annotation workbench (HTTPS, not gRPC)
METRICS_PORT = 9100  # Prometheus /metrics

ImageKind = Literal["cpu", "gpu"]
Protocol = Literal["grpc", "https"]


@dataclass(frozen=True)
class Deployable:
    name: str  # Deployment and Service name in deploy/k8s
    args: tuple[str, ...]  # ``python -m <args>``
    image: ImageKind
    grpc_port: int = STAGE_PORT  # its port (AVAFORGE_GRPC_PORT), gRPC or, for protocol "https", HTTPS
    env: dict[str, str] = field(default_factory=dict)
    protocol: Protocol = "grpc"  # "https": an HTTP API (probed on /healthz), not a gRPC server
    replicas: int = 1  # the Deployment's; the queue workers scale on lag (KEDA/HPA) from there

    @property
    def command(self) -> list[str]:
        return ["python", "-m", *self.args]


def _api(service: str, port: int = STAGE_PORT) -> Deployable:
    return Deployable(service, (f"services.{service}",), "cpu", port)


def _worker(name: str, service: str, *stages: str, image: ImageKind = "cpu") -> Deployable:
    """A queue worker of ``service`` for ``stages`` of ``avaforge.pipeline`` (none named: all of them)."""
    return Deployable(f"worker-{name}", (f"services.{service}", "work", *stages), image)


DEPLOYABLES: tuple[Deployable, ...] = (
    _api("gateway", GATEWAY_PORT),
    _api("ingest"),
    _api("detector"),  # detection itself runs in Triton when the deployment says so (AVAFORGE_DETECT_BACKEND)
    _api("tracker"),
    _api("proposals"),
    _api("via"),
    _api("trainer", TRAINER_PORT),
    # the workbench; AVAFORGE_PROBE: the images' HEALTHCHECK (a bare ``services.common.probe``) asks /healthz.
    # Two replicas: a revision is claimed with a conditional S3 write, so replicas cannot overwrite each other
    # (avaforge/workbench/revisions.py); a pod drained or restarted leaves the page working.
    Deployable(
        "annotate",
        ("services.annotate",),
        "cpu",
        ANNOTATE_PORT,
        {"AVAFORGE_PROBE": "https"},
        "https",
        replicas=2,
    ),
    _worker("ingest", "ingest"),
    _worker("detect", "detector"),  # scaled on JetStream lag (KEDA) or CPU (HPA)
    _worker("track", "tracker"),
    _worker("proposals", "proposals"),
    _worker("via", "via", "via", "via_import"),
    _worker("dataset", "via", "dataset"),  # its own pods: a build holds a whole dataset on disk
    _worker("train", "trainer", image="gpu"),
)


def by_name(name: str) -> Deployable:
    for d in DEPLOYABLES:
        if d.name == name:
            return d
    raise KeyError(name)


# Every avaforge pod and container, services and training jobs alike (restricted Pod Security Standard):
# a non-root user, the runtime's seccomp profile, no privilege escalation, a read-only root, no capabilities.
POD_SECURITY: dict[str, object] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, object] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}
