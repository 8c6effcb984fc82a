"""Job settings a service cannot be abused with: the job message has no model file, backend or address; the
deployment sets them from its environment; every field's type and range is one rule, applied alike by the
YAML loader and the gateway, which answers INVALID_ARGUMENT naming the field before anything is queued."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.proto_convert import actions_to_proto, settings_from_proto
from avaforge.settings import DEPLOYMENT_FIELDS, DetectSettings, PipelineSettings, TrackSettings
from avaforge.v1 import common_pb2, gateway_pb2, settings_pb2
from services.common import jobs
from services.common.deployment import deployed
from tests.gateway_stack import GatewayStack

# (YAML mapping, proto message, the field named, part of the message); each value just outside its rule
BAD = [
    ({"detect": {"imgsz": 336}}, {"detect": {"imgsz": 336}}, "settings.detect.imgsz", "multiple of 32"),
    ({"detect": {"imgsz": 1952}}, {"detect": {"imgsz": 1952}}, "settings.detect.imgsz", "[320, 1920]"),
    ({"detect": {"conf": 0}}, {"detect": {"conf": 0.0}}, "settings.detect.conf", "(0.0, 1.0)"),
    ({"detect": {"iou": 1.0}}, {"detect": {"iou": 1.0}}, "settings.detect.iou", "(0.0, 1.0)"),
    (
        {"detect": {"tracking_fps": 30.5}},
        {"detect": {"tracking_fps": 30.5}},
        "settings.detect.tracking_fps",
        "",
    ),
    (
        {"detect": {"conf": float("nan")}},
        {"detect": {"conf": float("nan")}},
        "settings.detect.conf",
        "finite",
    ),
    ({"detect": {"batch": 17}}, {"detect": {"batch": 17}}, "settings.detect.batch", "[1, 16]"),
    ({"cut": {"crf": 52}}, {"cut": {"crf": 52}}, "settings.cut.crf", "[0, 51]"),
    ({"cut": {"preset": "x; rm"}}, {"cut": {"preset": "x; rm"}}, "settings.cut.preset", "one of"),
    (
        {"frames": {"jpeg_qscale": 1}},
        {"frames": {"jpeg_qscale": 1}},
        "settings.frames.jpeg_qscale",
        "[2, 31]",
    ),
    (
        {"cut": {"plan": {"window_s": 0}}},
        {"cut": {"plan": {"window_s": 0.0}}},
        "settings.cut.plan.window_s",
        "(0.0",
    ),
    (
        {"cut": {"plan": {"segments": [[-1, 5]]}}},
        {"cut": {"plan": {"segments": [{"start_s": -1, "length_s": 5}]}}},
        "settings.cut.plan.segments",
        "segment 0",
    ),
    (
        {"schedule": {"margin_end_s": -0.5}},
        {"schedule": {"margin_end_s": -0.5}},
        "settings.schedule.margin_end_s",
        "[0.0, 60.0]",
    ),
    ({"track": {"n_init": 0}}, {"track": {"n_init": 0}}, "settings.track.n_init", "[1, 30]"),
    ({"imports": {"match_iou": 0}}, {"imports": {"match_iou": 0.0}}, "settings.imports.match_iou", ""),
    ({"dataset": {"seed": -1}}, {"dataset": {"seed": -1}}, "settings.dataset.seed", ""),
    (
        {"autolabel": {"walk_action": ""}},
        {"autolabel": {"walk_action": ""}},
        "settings.autolabel.walk_action",
        "",
    ),
]
IDS = [f"{b[2].removeprefix('settings.')}" + (f"-{i}" if i else "") for i, b in enumerate(BAD)]


@pytest.mark.parametrize(("mapping", "message", "where", "text"), BAD, ids=IDS)
def test_the_yaml_loader_and_the_proto_reject_the_same_values(
    mapping: dict[str, Any], message: dict[str, Any], where: str, text: str
) -> None:
    with pytest.raises(FormatError) as from_yaml:
        PipelineSettings.from_dict(mapping)
    with pytest.raises(FormatError) as from_proto:
        settings_from_proto(settings_pb2.JobSettings(**_proto(message)))
    assert from_yaml.value.where == from_proto.value.where == where
    assert text in from_yaml.value.message and text in from_proto.value.message


def _proto(message: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for section, fields in message.items():
        field = settings_pb2.JobSettings.DESCRIPTOR.fields_by_name[section]
        cls = getattr(settings_pb2, field.message_type.name)
        if section == "cut" and "plan" in fields:
            plan = dict(fields["plan"])
            if "segments" in plan:
                plan["segments"] = [settings_pb2.ClipSegment(**s) for s in plan["segments"]]
            fields = {**fields, "plan": settings_pb2.ClipPlan(**plan)}
        out[section] = cls(**fields)
    return out


def test_the_edges_of_each_range_are_accepted() -> None:
    edges = {
        "detect": {"imgsz": 320, "tracking_fps": 30.0, "batch": 16, "max_det": 1},
        "cut": {"crf": 51, "preset": "placebo"},
        "frames": {"jpeg_qscale": 31},
        "imports": {"match_iou": 1.0},
        "track": {"max_cosine_distance": 2.0},
    }
    settings = PipelineSettings.from_dict(edges)
    assert settings.detect.imgsz == 320 and settings.cut.crf == 51


def test_the_job_message_has_no_model_file_backend_or_address() -> None:
    detect = settings_pb2.DetectSettings.DESCRIPTOR
    track = settings_pb2.TrackSettings.DESCRIPTOR
    names = {f"detect.{n}" for n in detect.fields_by_name} | {f"track.{n}" for n in track.fields_by_name}
    assert names & DEPLOYMENT_FIELDS == set()
    assert sorted(DEPLOYMENT_FIELDS) == [
        "detect.backend",
        "detect.precision",
        "detect.triton_model",
        "detect.triton_url",
        "detect.triton_version",
        "detect.weights",
        "track.embedder",
    ]


def test_the_deployment_sets_its_fields_whatever_the_job_says() -> None:
    job = PipelineSettings(
        detect=DetectSettings(backend="ultralytics", weights="/tmp/evil.pt", triton_url="evil:1", imgsz=960),
        track=TrackSettings(embedder="torch", n_init=5),
    )
    env = {"AVAFORGE_DETECT_BACKEND": "triton", "AVAFORGE_TRITON_URL": "triton:8001"}
    got = deployed(job, env)
    assert (got.detect.backend, got.detect.weights, got.detect.triton_url) == ("triton", None, "triton:8001")
    assert got.track.embedder == "onnx"
    assert (got.detect.imgsz, got.track.n_init) == (960, 5)  # the job's own choices stay
    plain = deployed(job, {})
    assert (plain.detect.backend, plain.detect.weights, plain.detect.triton_url) == (
        "onnx",
        None,
        DetectSettings().triton_url,
    )
    with pytest.raises(ValueError, match="AVAFORGE_TRACK_EMBEDDER='gpu'"):
        deployed(job, {"AVAFORGE_TRACK_EMBEDDER": "gpu"})


# ---- the gateway ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(s3, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A gateway on a real nats-server and S3, no stage workers: the queue shows what a job submitted."""
    _, store = s3
    stack = GatewayStack(store, tmp_path_factory.mktemp("job_settings"), secure=False)
    try:
        video = store.put("videos", b"not looked at before the settings are checked", ".mp4")
        channel = grpc.insecure_channel(f"127.0.0.1:{stack.port}")
        yield {"channel": channel, "queue": stack.queue, "loop": stack.loop, "video": video}
        channel.close()
    finally:
        stack.close()


def _request(gw: dict[str, Any], settings: settings_pb2.JobSettings) -> gateway_pb2.SubmitJobRequest:
    v = gw["video"]
    return gateway_pb2.SubmitJobRequest(
        videos=[common_pb2.ArtifactRef(bucket=v.bucket, key=v.key, digest=v.digest, size=v.size)],
        filenames=["a.mp4"],
        actions=actions_to_proto(ActionList.from_flat(["stand", "walk"])),
        settings=settings,
    )


def _submit_raw(gw: dict[str, Any], body: bytes) -> bytes:
    call = gw["channel"].unary_unary("/avaforge.v1.GatewayService/SubmitJob")
    return call(body, timeout=30)  # type: ignore[no-any-return]


def _nothing_queued(gw: dict[str, Any]) -> None:
    assert gw["loop"].run(gw["queue"].pending("ingest")) == 0
    assert gw["loop"].run(jobs.keys(gw["queue"], "")) == []


@pytest.mark.parametrize(("mapping", "message", "where", "text"), BAD[:6], ids=IDS[:6])
def test_out_of_range_settings_are_invalid_argument_naming_the_field_and_queue_nothing(
    gateway: dict[str, Any], mapping: dict[str, Any], message: dict[str, Any], where: str, text: str
) -> None:
    request = _request(gateway, settings_pb2.JobSettings(**_proto(message)))
    with pytest.raises(grpc.RpcError) as exc:
        _submit_raw(gateway, request.SerializeToString())
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details().startswith(f"{where}: ") and text in exc.value.details()
    _nothing_queued(gateway)


@pytest.mark.parametrize(
    ("field", "number", "value"),
    [("weights", 2, b"/tmp/evil.pt"), ("triton_url", 9, b"evil:8001"), ("triton_model", 10, b"x")],
)
def test_a_job_asking_for_weights_or_a_triton_address_is_refused(
    gateway: dict[str, Any], field: str, number: int, value: bytes
) -> None:
    """An old client (or anyone) still sending the removed fields: the bytes on the wire as that client's
    DetectSettings.<field> would encode them; the gateway refuses instead of silently dropping them."""
    detect = bytes([number << 3 | 2, len(value)]) + value  # field <number>, length-delimited
    settings = bytes([4 << 3 | 2, len(detect)]) + detect  # JobSettings.detect = 4
    body = _request(gateway, settings_pb2.JobSettings()).SerializeToString()
    body += bytes([6 << 3 | 2, len(settings)]) + settings  # SubmitJobRequest.settings = 6 (merged)
    with pytest.raises(grpc.RpcError) as exc:
        _submit_raw(gateway, body)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "settings.detect" in exc.value.details() and f"[{number}]" in exc.value.details()
    _nothing_queued(gateway)


def test_a_job_asking_for_a_backend_is_refused(gateway: dict[str, Any]) -> None:
    detect = bytes([1 << 3 | 0, 3])  # the old DetectSettings.backend = DETECT_BACKEND_TRITON (varint 3)
    settings = bytes([4 << 3 | 2, len(detect)]) + detect
    body = _request(gateway, settings_pb2.JobSettings()).SerializeToString()
    body += bytes([6 << 3 | 2, len(settings)]) + settings
    with pytest.raises(grpc.RpcError) as exc:
        _submit_raw(gateway, body)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "[1]" in exc.value.details()
    _nothing_queued(gateway)


def test_a_valid_job_is_queued_with_the_deployment_fields_at_their_defaults(gateway: dict[str, Any]) -> None:
    request = _request(gateway, settings_pb2.JobSettings(detect=settings_pb2.DetectSettings(imgsz=960)))
    job = common_pb2.Job.FromString(_submit_raw(gateway, request.SerializeToString()))
    assert settings_from_proto(job.settings).detect.imgsz == 960
    spec = gateway["loop"].run(jobs.get(gateway["queue"], job.job_id))
    assert spec["settings"]["detect"]["weights"] is None and spec["settings"]["detect"]["backend"] == "onnx"
    assert gateway["loop"].run(gateway["queue"].pending("ingest")) == 1
