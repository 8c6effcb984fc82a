"""One step per stage of ``avaforge.pipeline``, on local files: the only place a stage's work is composed.

The embedded runner calls these on its work folder; the services call them on inputs fetched from S3 into
their cache. Each step takes the whole ``PipelineSettings`` and picks its own sections, so a caller never
repeats how a stage is parameterised (which frames to detect, the tracker's frame rate, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from avaforge.detection import Detector, sizing
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import video_id_from_filename
from avaforge.formats.proposals import Proposals
from avaforge.report import write_report
from avaforge.settings import PipelineSettings
from avaforge.stages import dataset, detect, frames, ingest, proposals, track, via_export, via_import
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo, ClipSpec
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels
from avaforge.tracking.embedder import Embedder
from avaforge.video.probe import VideoInfo, probe_video

Progress = Callable[[int], None] | None
Suggestions = Mapping[tuple[int, int], tuple[int, ...]] | None


def plan(
    source: str | Path, filename: str, s: PipelineSettings, info: VideoInfo | None = None
) -> list[ClipSpec]:
    """The clips of a source video (``filename`` names the video id)."""
    info = info or probe_video(source)
    return ingest.plan_clips(info, s.cut.plan, video_id_from_filename(filename))


def ingest_clip(
    source: str | Path, spec: ClipSpec, clip_path: Path, rawframes: Path, s: PipelineSettings
) -> tuple[ClipInfo, FramesInfo]:
    """Cut one clip at 30 fps and decode its rawframes, in one ffmpeg pass."""
    return frames.cut_with_frames(source, spec, clip_path, rawframes, s.cut, s.frames, s.schedule)


def frames_to_detect(finfo: FramesInfo, s: PipelineSettings) -> list[int]:
    return detect.frames_to_detect(finfo.num_frames, s.detect.tracking_fps, finfo.keyframe_seconds)


def detect_plan(rawframes: Path, detector: Detector, s: PipelineSettings) -> str:
    """The clip's detector input (size, tiles) as a tag, from a probe of a few of its frames: decided once
    per clip, then given to every ``detect_frames`` call of the clip (the services share it between the
    workers of a clip's batches, so hardware with other rounding cannot split a clip between two plans)."""
    return sizing.plan_for_clip(detector, rawframes, s.detect).tag


def detect_frames(
    rawframes: Path,
    frame_numbers: list[int],
    detector: Detector,
    s: PipelineSettings,
    progress: Progress = None,
    plan: str | None = None,
) -> Detections:
    """People on ``frame_numbers`` at the clip's ``plan`` (``detect_plan``; None: decided here)."""
    sized = sizing.SizedDetector(detector, sizing.parse_tag(plan or detect_plan(rawframes, detector, s)))
    return detect.detect_clip(rawframes, frame_numbers, sized, s.detect.batch, progress)


def track_clip(
    rawframes: Path, dets: Detections, s: PipelineSettings, embedder: Embedder, progress: Progress = None
) -> Tracks:
    fps = 30 / detect.detection_stride(s.detect.tracking_fps)  # the rate the tracker sees boxes at
    return track.track_clip(rawframes, dets, s.track, fps, embedder, progress)


def build_proposals(finfo: FramesInfo, dets: Detections, s: PipelineSettings) -> Proposals:
    return proposals.build_proposals(finfo, dets, s.proposals)


def export_via(
    finfo: FramesInfo,
    tracks: Tracks,
    actions: ActionList,
    rawframes: Path,
    out_dir: Path,
    s: PipelineSettings,
) -> via_export.ViaExport:
    """The clip's VIA 3 project, keyframe images and annotator zip under ``out_dir``."""
    keyframes = via_export.keyframes_for_via(finfo, tracks, s.via)
    return via_export.export_via(finfo, keyframes, actions, rawframes, out_dir)


def import_project(
    data: bytes,
    where: str,
    finfo: FramesInfo,
    tracks: Tracks,
    actions: ActionList,
    s: PipelineSettings,
    suggestions: Suggestions = None,
) -> ClipLabels:
    return via_import.import_project(data, where, finfo, tracks, actions, s.imports, suggestions)


def build_dataset(
    bundles: list[dataset.ClipBundle], actions: ActionList, s: PipelineSettings, out: Path
) -> dataset.BuildResult:
    """The AVA files of every labelled clip, validated, with the HTML report."""
    result = dataset.build_dataset(bundles, actions, s.dataset, out)
    result.summary["report"] = str(write_report(result.out))
    return result
