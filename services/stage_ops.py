"""Stage functions on artifacts: fetch inputs from the store, call ``avaforge.stages``, store the outputs.

Shared by the queue workers (``pipeline_workers``) and the stages' gRPC front-ends (``stage_rpc``), so both
transports run exactly the same steps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from avaforge.archive import pack_dir
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import video_id_from_filename
from avaforge.formats.proposals import dumps as dump_proposals
from avaforge.settings import PipelineSettings
from avaforge.stages import frames, ingest, proposals, track, via_export, via_import
from avaforge.stages.detect import Detections, detection_stride
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo, ClipSpec
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.tracking.embedder import Embedder
from avaforge.video.probe import probe_video
from services.common.artifacts import LocalCache


def plan(cache: LocalCache, video: ArtifactRef, filename: str, settings: PipelineSettings) -> list[ClipSpec]:
    src = cache.file(video, Path(filename).suffix[:16])
    return ingest.plan_clips(probe_video(src), settings.cut.plan, video_id_from_filename(filename))


def cut(
    store: ArtifactStore,
    cache: LocalCache,
    video: ArtifactRef,
    filename: str,
    spec: ClipSpec,
    settings: PipelineSettings,
) -> tuple[ClipInfo, FramesInfo, ArtifactRef, ArtifactRef]:
    """Cut one clip and its rawframes in one pass; returns them with the rawframes tar and the clip video."""
    src = cache.file(video, Path(filename).suffix[:16])
    with tempfile.TemporaryDirectory() as tmp:
        clip, finfo = frames.cut_with_frames(
            src,
            spec,
            Path(tmp) / "clip.mp4",
            Path(tmp) / "rawframes",
            settings.cut,
            settings.frames,
            settings.schedule,
        )
        rawframes = store.put("rawframes", pack_dir(Path(tmp) / "rawframes"), ".tar")
        clip_video = store.put("clips", (Path(tmp) / "clip.mp4").read_bytes(), ".mp4")
    return clip, finfo, rawframes, clip_video


def track_clip(
    store: ArtifactStore,
    cache: LocalCache,
    rawframes: ArtifactRef,
    dets: Detections,
    settings: PipelineSettings,
    embedder: Embedder,
) -> tuple[Tracks, ArtifactRef]:
    fps = 30 / detection_stride(settings.detect.tracking_fps)
    tracks = track.track_clip(cache.folder(rawframes), dets, settings.track, fps, embedder)
    return tracks, store.put("tracks", tracks.to_bytes(), ".json")


def build_proposals(
    store: ArtifactStore, finfo: FramesInfo, dets: Detections, settings: PipelineSettings
) -> ArtifactRef:
    return store.put(
        "proposals", dump_proposals(proposals.build_proposals(finfo, dets, settings.proposals)), ".pkl"
    )


def export_via(
    store: ArtifactStore,
    cache: LocalCache,
    finfo: FramesInfo,
    rawframes: ArtifactRef,
    tracks: Tracks,
    settings: PipelineSettings,
    actions: ActionList,
) -> tuple[ArtifactRef, ArtifactRef]:
    """The clip's VIA project and annotator zip."""
    keyframes = via_export.keyframes_for_via(finfo, tracks, settings.via)
    with tempfile.TemporaryDirectory() as tmp:
        out = via_export.export_via(finfo, keyframes, actions, cache.folder(rawframes), Path(tmp))
        return (
            store.put("via", out.project.read_bytes(), ".via3.json"),
            store.put("via", out.archive.read_bytes(), ".zip"),
        )


def import_via(
    store: ArtifactStore,
    finfo: FramesInfo,
    tracks: Tracks,
    finished: ArtifactRef,
    name: str,
    settings: PipelineSettings,
    actions: ActionList,
) -> tuple[ClipLabels, ArtifactRef]:
    labels = via_import.import_project(store.get(finished), name, finfo, tracks, actions, settings.imports)
    return labels, store.put("labels", labels.to_bytes(), ".json")
