"""The gRPC front-ends of the stages, called one after another like a client would, on a real S3 server:
each step's artifact is byte-identical to the embedded runner's."""

import asyncio
import importlib
import io
import json
from pathlib import Path

import grpc
import pytest

from avaforge.archive import pack_dir
from avaforge.formats.actions import ActionList
from avaforge.proto_convert import actions_to_proto, settings_to_proto
from avaforge.runner import autolabel_workdir, prepare
from avaforge.settings import PipelineSettings
from avaforge.stages.detect import Detections, batches_of, frames_to_detect, merge_detections
from avaforge.storage import ArtifactRef
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.process import Deps
from tests.credentials import channel as tls_channel
from tests.stage_workers import BackgroundServer

API_SERVICES = ("ingest", "detector", "tracker", "proposals", "via")

pytestmark = pytest.mark.slow
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}


def test_stage_rpcs_reproduce_the_embedded_runner(s3, videos: Path, tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    _, store = s3
    deps = Deps(store, tmp_path / "cache")
    registrations = []
    for service in API_SERVICES:  # every stage API of the services, each as its own process would build it
        registrations += asyncio.run(importlib.import_module(f"services.{service}.servicer").api(deps))
    running = BackgroundServer("stages", registrations)
    channel = tls_channel(running.port)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for _, _, name in registrations:
            assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == 1  # SERVING
        settings = settings_to_proto(PipelineSettings())
        video = videos / "people_29.97fps_10s.mp4"
        vref = ref_to_proto(store.put("videos", video.read_bytes(), ".mp4"))
        ingest = stages_pb2_grpc.IngestServiceStub(channel)
        (planned,) = ingest.PlanClips(
            stages_pb2.PlanClipsRequest(video=vref, filename=video.name, settings=settings)
        ).clips
        cut = ingest.CutClip(stages_pb2.CutClipRequest(video=vref, clip=planned, settings=settings))
        assert cut.clip.num_frames == 300
        frames = frames_to_detect(300, 10, tuple(range(10)))
        det = stages_pb2_grpc.DetectorServiceStub(channel)
        parts = [
            det.DetectBatch(
                stages_pb2.DetectBatchRequest(rawframes=cut.rawframes, frames=b, settings=settings)
            )
            for b in batches_of(frames, 32)
        ]
        dets = merge_detections(
            [Detections.load(io.BytesIO(store.get(ref_from_proto(p.detections)))) for p in parts]
        )
        dref = ref_to_proto(store.put("detections", dets.to_bytes(), ".npz"))
        tracks = (
            stages_pb2_grpc.TrackerServiceStub(channel)
            .TrackClip(
                stages_pb2.TrackClipRequest(rawframes=cut.rawframes, detections=dref, settings=settings)
            )
            .tracks
        )
        props = (
            stages_pb2_grpc.ProposalsServiceStub(channel)
            .BuildProposals(
                stages_pb2.BuildProposalsRequest(clip=cut.clip, detections=dref, settings=settings)
            )
            .proposals
        )
        via = stages_pb2_grpc.ViaServiceStub(channel)
        exported = via.ExportProject(
            stages_pb2.ExportProjectRequest(
                clip=cut.clip,
                rawframes=cut.rawframes,
                tracks=tracks,
                settings=settings,
                actions=actions_to_proto(ActionList.from_obj(ACTIONS)),
            )
        )

        work = tmp_path / "embedded"
        prepare([video], ActionList.from_obj(ACTIONS), work, PipelineSettings())
        cid = cut.clip.clip_id
        clip = work / "clips" / cid

        def got(ref) -> bytes:  # type: ignore[no-untyped-def]
            return store.get(ArtifactRef(ref.bucket, ref.key, ref.digest, ref.size))

        assert got(cut.rawframes) == pack_dir(clip / "rawframes")
        assert got(dref) == (clip / "detections.npz").read_bytes()
        assert got(tracks) == (clip / "tracks.json").read_bytes()
        assert got(props) == (clip / "proposals.pkl").read_bytes()
        assert got(exported.project) == (work / "via" / cid / f"{cid}.via3.json").read_bytes()
        assert got(exported.archive) == (work / "via" / f"{cid}.zip").read_bytes()

        (finished,) = autolabel_workdir(work)
        fref = ref_to_proto(store.put("finished", finished.read_bytes(), ".json"))
        imported = via.ImportProject(
            stages_pb2.ImportProjectRequest(
                clip=cut.clip,
                tracks=tracks,
                finished=fref,
                settings=settings,
                actions=actions_to_proto(ActionList.from_obj(ACTIONS)),
            )
        )
        labels = json.loads(got(imported.labels))
        assert labels["clip_id"] == cid and len(labels["boxes"]) >= 10 and not imported.unlabelled
        with pytest.raises(grpc.RpcError) as exc:  # a project of another clip
            via.ImportProject(
                stages_pb2.ImportProjectRequest(
                    clip=stages_pb2.ExportProjectRequest().clip.__class__(
                        clip_id="other", num_frames=300, width=426, height=240
                    ),
                    tracks=tracks,
                    finished=fref,
                    settings=settings,
                    actions=actions_to_proto(ActionList.from_obj(ACTIONS)),
                )
            )
        assert (
            exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "project is for clip" in exc.value.details()
        )
    finally:
        channel.close()
        running.stop()
