"""gRPC front-ends of the ingest, tracker, proposals and VIA stages (the detector has its own module):
each RPC runs the same ``stage_ops`` step the queue workers run.

``python -m services.stage_rpc`` serves them (AVAFORGE_STAGE_SERVICES selects which, default all) with health,
reflection, metrics and graceful stop.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import grpc

from avaforge.proto_convert import actions_from_proto, settings_from_proto
from avaforge.stages.detect import Detections
from avaforge.stages.frames import frames_info
from avaforge.stages.ingest import ClipInfo, ClipSpec
from avaforge.stages.track import Tracks
from avaforge.storage import ArtifactStore, S3Store
from avaforge.tracking.embedder import Embedder, make_embedder
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc
from services import stage_ops
from services.common.artifacts import LocalCache
from services.common.cache import cache_dir
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.server import Metrics, configure_logging, rpc, serve, stop_on_signals

METRICS = Metrics.create("stages")


def clip_to_proto(clip: ClipInfo) -> common_pb2.Clip:
    return common_pb2.Clip(
        clip_id=clip.clip_id,
        video_id=clip.video_id,
        start_s=clip.start_s,
        length_s=clip.length_s,
        num_frames=clip.num_frames,
        width=clip.width,
        height=clip.height,
    )


def clip_from_proto(msg: common_pb2.Clip) -> ClipInfo:
    return ClipInfo(
        msg.clip_id, msg.video_id, "", msg.start_s, msg.length_s, msg.num_frames, msg.width, msg.height
    )


class _Base:
    def __init__(self, store: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.cache = LocalCache(store, cache_dir)

    def _detections(self, ref: common_pb2.ArtifactRef) -> Detections:
        return Detections.load(io.BytesIO(self.store.get(ref_from_proto(ref))))

    def _tracks(self, ref: common_pb2.ArtifactRef) -> Tracks:
        return Tracks.load(self.cache.file(ref_from_proto(ref), ".json"))


class IngestServicer(_Base, stages_pb2_grpc.IngestServiceServicer):
    @rpc("ingest", METRICS, "PlanClips")
    def PlanClips(self, request, context):  # type: ignore[no-untyped-def]
        specs = stage_ops.plan(
            self.cache, ref_from_proto(request.video), request.filename, settings_from_proto(request.settings)
        )
        return stages_pb2.PlanClipsResponse(
            clips=[
                common_pb2.Clip(
                    clip_id=s.clip_id,
                    video_id=s.video_id,
                    start_s=s.start_s,
                    length_s=s.length_s,
                    num_frames=s.target_frames,
                )
                for s in specs
            ]
        )

    @rpc("ingest", METRICS, "CutClip")
    def CutClip(self, request, context):  # type: ignore[no-untyped-def]
        c = request.clip
        spec = ClipSpec(c.clip_id, c.video_id, 0, c.start_s, c.length_s)
        clip, _, rawframes, video = stage_ops.cut(
            self.store,
            self.cache,
            ref_from_proto(request.video),
            f"{c.video_id}.video",
            spec,
            settings_from_proto(request.settings),
        )
        return stages_pb2.CutClipResponse(
            clip=clip_to_proto(clip), clip_video=ref_to_proto(video), rawframes=ref_to_proto(rawframes)
        )


class TrackerServicer(_Base, stages_pb2_grpc.TrackerServiceServicer):
    def __init__(self, store: ArtifactStore, cache_dir: Path) -> None:
        super().__init__(store, cache_dir)
        self._embedders: dict[str, Embedder] = {}

    @rpc("tracker", METRICS, "TrackClip")
    def TrackClip(self, request, context):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        kind = settings.track.embedder
        embedder = self._embedders.setdefault(kind, make_embedder(kind))
        _, ref = stage_ops.track_clip(
            self.store,
            self.cache,
            ref_from_proto(request.rawframes),
            self._detections(request.detections),
            settings,
            embedder,
        )
        return stages_pb2.TrackClipResponse(tracks=ref_to_proto(ref))


class ProposalsServicer(_Base, stages_pb2_grpc.ProposalsServiceServicer):
    @rpc("proposals", METRICS, "BuildProposals")
    def BuildProposals(self, request, context):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        finfo = frames_info(clip_from_proto(request.clip), settings.schedule)
        ref = stage_ops.build_proposals(self.store, finfo, self._detections(request.detections), settings)
        return stages_pb2.BuildProposalsResponse(proposals=ref_to_proto(ref))


class ViaServicer(_Base, stages_pb2_grpc.ViaServiceServicer):
    @rpc("via", METRICS, "ExportProject")
    def ExportProject(self, request, context):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        finfo = frames_info(clip_from_proto(request.clip), settings.schedule)
        project, archive = stage_ops.export_via(
            self.store,
            self.cache,
            finfo,
            ref_from_proto(request.rawframes),
            self._tracks(request.tracks),
            settings,
            actions_from_proto(request.actions),
        )
        return stages_pb2.ExportProjectResponse(project=ref_to_proto(project), archive=ref_to_proto(archive))

    @rpc("via", METRICS, "ImportProject")
    def ImportProject(self, request, context):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        finfo = frames_info(clip_from_proto(request.clip), settings.schedule)
        labels, ref = stage_ops.import_via(
            self.store,
            finfo,
            self._tracks(request.tracks),
            ref_from_proto(request.finished),
            f"{finfo.clip_id} (finished)",
            settings,
            actions_from_proto(request.actions),
        )
        return stages_pb2.ImportProjectResponse(labels=ref_to_proto(ref), unlabelled=labels.unlabelled)


SERVICES = {
    "ingest": (IngestServicer, stages_pb2_grpc.add_IngestServiceServicer_to_server, "IngestService"),
    "tracker": (TrackerServicer, stages_pb2_grpc.add_TrackerServiceServicer_to_server, "TrackerService"),
    "proposals": (
        ProposalsServicer,
        stages_pb2_grpc.add_ProposalsServiceServicer_to_server,
        "ProposalsService",
    ),
    "via": (ViaServicer, stages_pb2_grpc.add_ViaServiceServicer_to_server, "ViaService"),
}


def register(names: list[str], store: ArtifactStore, cache_dir: Path):  # type: ignore[no-untyped-def]
    """A registration callback for ``serve`` and the full names of the chosen services."""
    chosen = [SERVICES[n] for n in names]

    def add(server: grpc.Server) -> None:
        for cls, adder, _ in chosen:
            adder(cls(store, cache_dir), server)

    full = [stages_pb2.DESCRIPTOR.services_by_name[name].full_name for _, _, name in chosen]
    return add, full


def main() -> None:
    configure_logging()
    names = [n for n in os.environ.get("AVAFORGE_STAGE_SERVICES", ",".join(SERVICES)).split(",") if n]
    with cache_dir("stages") as cache:
        add, full = register(names, S3Store.from_env(), cache)
        running = serve("stages", add, full, metrics=METRICS)
        with stop_on_signals(running):
            pass


if __name__ == "__main__":
    main()
