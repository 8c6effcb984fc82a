"""The detector service over real gRPC with a real S3 server: same boxes as in process, health,
reflection, metrics, and clear status codes for bad requests (the service keeps serving)."""

import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from avaforge.archive import pack_dir
from avaforge.detection import make_detector
from avaforge.settings import DetectSettings, PipelineSettings
from avaforge.stages.detect import Detections
from avaforge.steps import detect_frames
from avaforge.v1 import common_pb2, settings_pb2, stages_pb2, stages_pb2_grpc
from devstack.servers import free_port
from services.common.convert import ref_to_proto
from services.common.process import Deps
from services.detector.servicer import NAME, DetectorServicer
from tests.credentials import channel as tls_channel
from tests.stage_workers import BackgroundServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector(s3, tmp_path_factory: pytest.TempPathFactory, people_rawframes: Path):  # type: ignore[no-untyped-def]
    _, store = s3
    servicer = DetectorServicer(Deps(store, tmp_path_factory.mktemp("cache")))
    mport = free_port()
    running = BackgroundServer(
        "detector", [(stages_pb2_grpc.add_DetectorServiceServicer_to_server, servicer, NAME)], mport
    )
    channel = tls_channel(running.port)
    rawframes = store.put("rawframes", pack_dir(people_rawframes), ".tar")
    yield stages_pb2_grpc.DetectorServiceStub(channel), channel, ref_to_proto(rawframes), mport, store
    channel.close()
    running.stop()


def test_detect_batch_matches_the_in_process_stage(detector, people_rawframes: Path) -> None:
    stub, _, rawframes, _, store = detector
    frames = [1, 31, 61, 64]
    reply = stub.DetectBatch(stages_pb2.DetectBatchRequest(rawframes=rawframes, frames=frames))
    # the per-clip plan (input size from the probe) as the embedded runner composes it
    local = detect_frames(people_rawframes, frames, make_detector(DetectSettings()), PipelineSettings())
    assert [f.frame for f in reply.frames] == frames
    stored = store.get(__import__("services.common.convert", fromlist=["x"]).ref_from_proto(reply.detections))
    assert stored == local.to_bytes()  # byte-identical to the embedded stage
    boxes = Detections.load(__import__("io").BytesIO(stored)).boxes
    for got, expected in zip(reply.frames, boxes, strict=True):
        np.testing.assert_allclose(
            [[b.x1, b.y1, b.x2, b.y2, b.score] for b in got.boxes], expected.to_rows(), rtol=1e-5
        )
    assert reply.model_version.startswith("yolo11n-pose.pt:")


def test_health_reflection_and_metrics(detector) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, channel, _, mport, _ = detector
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=NAME))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"avaforge.v1.DetectorService", "grpc.health.v1.Health"} <= names
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    assert 'avaforge_requests_total{rpc="DetectBatch",service="detector"}' in metrics


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        ({"frames": [99999]}, grpc.StatusCode.INVALID_ARGUMENT, "not in the clip"),
        ({"frames": []}, grpc.StatusCode.INVALID_ARGUMENT, "1..256 frames"),
        (
            {
                "frames": [1],
                "settings": settings_pb2.JobSettings(detect=settings_pb2.DetectSettings(conf=1.5)),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "settings.detect.conf: must be in (0.0, 1.0), got 1.5",
        ),
        (
            {
                "frames": [1],
                "rawframes": common_pb2.ArtifactRef(
                    bucket="artifacts", key="rawframes/missing.tar", digest="0" * 64, size=1
                ),
            },
            grpc.StatusCode.NOT_FOUND,
            "no such artifact",
        ),
        (
            {
                "frames": [1],
                "rawframes": common_pb2.ArtifactRef(bucket="other", key="a/b", digest="0" * 64, size=1),
            },
            grpc.StatusCode.FAILED_PRECONDITION,
            "is not this store's",
        ),
        (
            {
                "frames": [1],
                "rawframes": common_pb2.ArtifactRef(
                    bucket="artifacts", key="../../etc/passwd", digest="0" * 64, size=1
                ),
            },
            grpc.StatusCode.FAILED_PRECONDITION,
            "invalid artifact key",
        ),
    ],
)
def test_bad_requests_get_clear_status_codes_and_the_service_keeps_serving(
    detector, request_fields, code, message
) -> None:
    stub, _, rawframes, _, _ = detector
    fields = {"rawframes": rawframes, **request_fields}
    with pytest.raises(grpc.RpcError) as exc:
        stub.DetectBatch(stages_pb2.DetectBatchRequest(**fields))
    assert exc.value.code() == code and message in exc.value.details()
    ok = stub.DetectBatch(stages_pb2.DetectBatchRequest(rawframes=rawframes, frames=[1]))
    assert ok.frames[0].frame == 1
