"""The pipeline, declared once: every stage, what it reads and writes, which settings key its output, which
service runs it, how it fans out, and what comes next.

The embedded runner (``avaforge.runner``) walks this table in order over a local work folder; the queue
workers (``services/<service>/handlers.py``) run one stage per work item and queue the stages that this
table says come next; the gateway derives a job's progress and state from it. Adding a stage means: a row
here, its step in ``avaforge.steps``, and its handler in the service that runs it.

This module is pure data (no heavy imports) so that the gateway can read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from avaforge.settings import PipelineSettings
    from avaforge.stages.frames import FramesInfo

# per video: one item a source video; per clip: one item a clip; batch: a clip split in fan-out items;
# job: one item for the whole job.
Unit = Literal["video", "clip", "batch", "job"]
# auto: queued when its inputs exist; upload: a person's finished project arrives; request: the user asks.
Trigger = Literal["auto", "upload", "request"]


@dataclass(frozen=True)
class Stage:
    name: str
    service: str  # the folder under services/ whose workers run it
    unit: Unit
    reads: tuple[str, ...]  # artifacts it needs (each written by exactly one earlier stage, or "video")
    writes: tuple[str, ...]  # artifacts it produces, recorded as the stage's fact
    settings: tuple[str, ...]  # PipelineSettings sections that, with its inputs, key its output
    trigger: Trigger = "auto"
    fanout: int = 0  # unit "batch": frames per work item (a multiple of the detector batch, 8)
    progress: str = ""  # label of the stage in a job's progress ("" = not reported)


STAGES: tuple[Stage, ...] = (
    # cut + frames in one ffmpeg pass (one decode of the source gives both, byte-identical to two passes)
    Stage(
        "ingest",
        "ingest",
        "video",
        reads=("video",),
        writes=("clip", "rawframes"),
        settings=("cut", "frames", "schedule"),
        progress="ingest",
    ),
    Stage(
        "detect",
        "detector",
        "batch",
        reads=("rawframes",),
        writes=("detections",),
        settings=("detect",),
        fanout=32,
        progress="detect",
    ),
    Stage("track", "tracker", "clip", ("rawframes", "detections"), ("tracks",), ("track",), progress="track"),
    Stage(
        "proposals",
        "proposals",
        "clip",
        ("clip", "detections"),
        ("proposals",),
        ("proposals",),
        progress="proposals",
    ),
    Stage(
        "via",
        "via",
        "clip",
        ("clip", "rawframes", "tracks"),
        ("project", "archive"),
        ("via", "actions"),
        progress="via",
    ),
    Stage(
        "via_import",
        "via",
        "clip",
        ("clip", "tracks", "finished"),
        ("labels",),
        ("imports", "actions"),
        trigger="upload",
        progress="import",
    ),
    Stage(
        "dataset",
        "via",  # the VIA converter writes the AVA files from the imported labels
        "job",
        ("clip", "rawframes", "proposals", "labels"),
        ("dataset",),
        ("dataset", "actions"),
        trigger="request",
    ),
)

BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    return BY_NAME[name]


def producer(artifact: str) -> Stage | None:
    """The stage that writes ``artifact`` (None for the job's inputs: videos and finished projects)."""
    for s in STAGES:
        if artifact in s.writes:
            return s
    return None


def upstream(name: str) -> list[Stage]:
    """The stages whose outputs ``name`` reads, in table order."""
    found = {p.name for a in stage(name).reads if (p := producer(a)) is not None}
    return [s for s in STAGES if s.name in found]


def trigger_of(name: str) -> Stage | None:
    """The stage whose completion queues ``name``: the last of its producers in table order (auto only)."""
    ups = upstream(name)
    return ups[-1] if stage(name).trigger == "auto" and ups else None


def then(name: str) -> list[Stage]:
    """The stages queued when ``name`` completes (for a fanned-out stage: when its last item completes)."""
    return [s for s in STAGES if (t := trigger_of(s.name)) is not None and t.name == name]


def fan_out(name: str, finfo: FramesInfo, settings: PipelineSettings) -> list[list[int]]:
    """The work items of batch stage ``name`` for one clip: the frames it detects on (the detect stage's
    frame rule), in slices of the stage's ``fanout`` frames."""
    if stage(name).unit != "batch":
        raise ValueError(f"stage {name} does not fan out")
    # heavy (OpenCV): only a worker completing the stage before a batch stage fans out, never the gateway
    from avaforge.stages.detect import batches_of, frames_to_detect

    frames = frames_to_detect(finfo.num_frames, settings.detect.tracking_fps, finfo.keyframe_seconds)
    return batches_of(frames, stage(name).fanout)


def automatic() -> list[Stage]:
    """The stages that run with no person involved, in the order the embedded ``prepare`` runs them."""
    return [s for s in STAGES if s.trigger == "auto"]


def for_service(service: str) -> list[Stage]:
    return [s for s in STAGES if s.service == service]


def services() -> list[str]:
    return list(dict.fromkeys(s.service for s in STAGES))


def _check() -> None:
    """The table is a DAG in table order and every artifact has one writer (fails at import otherwise)."""
    seen: set[str] = {"video", "finished"}
    for s in STAGES:
        if missing := set(s.reads) - seen:
            raise ValueError(f"stage {s.name} reads {sorted(missing)} before any stage writes it")
        if dup := seen & set(s.writes):
            raise ValueError(f"stage {s.name} writes {sorted(dup)}, already written by another stage")
        if (s.unit == "batch") != (s.fanout > 0):
            raise ValueError(f"stage {s.name}: a fan-out size goes with unit 'batch' and only with it")
        seen |= set(s.writes)


_check()
