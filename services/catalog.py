"""Every deployable process of avaforge: what it runs, on which image, on which gRPC port.

This table is the contract between the code and ``deploy/k8s``: the tests render the Kubernetes overlays and
check that each entry has a Deployment running exactly this command, a Service, gRPC probes on this port and
the image kind given here, and that every runnable module and queue stage in ``services/`` has an entry.
The processes' own defaults (``AVAFORGE_GRPC_PORT`` when unset) come from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

GATEWAY_PORT = 50050  # the only port reachable from outside the cluster
STAGE_PORT = 50051  # every other gRPC server: stage APIs, and health of the queue workers
TRAINER_PORT = 50056
METRICS_PORT = 9100  # Prometheus /metrics

ImageKind = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class Deployable:
    name: str  # Deployment and Service name in deploy/k8s
    args: tuple[str, ...]  # ``python -m <args>``
    image: ImageKind
    grpc_port: int = STAGE_PORT
    env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        return ["python", "-m", *self.args]


def _stage_api(stage: str) -> Deployable:
    return Deployable(stage, ("services.stage_rpc",), "cpu", env={"AVAFORGE_STAGE_SERVICES": stage})


def _worker(name: str, *stages: str, image: ImageKind = "cpu") -> Deployable:
    return Deployable(f"worker-{name}", ("services.worker", *stages), image)


DEPLOYABLES: tuple[Deployable, ...] = (
    Deployable("gateway", ("services.gateway",), "cpu", GATEWAY_PORT),
    _stage_api("ingest"),
    Deployable("detector", ("services.detector",), "cpu"),  # a Triton client: the GPU work runs in Triton
    _stage_api("tracker"),
    _stage_api("proposals"),
    _stage_api("via"),
    Deployable("trainer", ("services.trainer",), "cpu", TRAINER_PORT),
    _worker("ingest", "ingest"),
    _worker("detect", "detect"),  # scaled on JetStream lag (KEDA) or CPU (HPA)
    _worker("track", "track"),
    _worker("proposals", "proposals"),
    _worker("via", "via", "via_import"),
    _worker("dataset", "dataset"),
    _worker("train", "train", image="gpu"),
)


def by_name(name: str) -> Deployable:
    for d in DEPLOYABLES:
        if d.name == name:
            return d
    raise KeyError(name)
