"""Embedded runner: chains the stage functions over a local work folder, reusing finished stages.

Each stage of each clip is keyed by a digest of its inputs (upstream keys, source digest, model version) and
its settings; a stage whose key and outputs are already there is skipped, so re-running a command only does
new work. The runner sequences and caches; every transformation lives in ``avaforge.stages``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from avaforge import pipeline, steps
from avaforge.detection import Detector, make_detector
from avaforge.detection.model_files import file_digest, resolve_weights
from avaforge.detection.risk import clip_risk_line
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import video_id_from_filename
from avaforge.formats.errors import FormatError, read_bytes
from avaforge.formats.proposals import read_proposals, write_proposals
from avaforge.formats.via3 import build_project, dumps_project
from avaforge.fsutil import atomic_write_bytes
from avaforge.settings import PipelineSettings, digest
from avaforge.stages import autolabel, dataset, ingest, via_export, via_import
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo
from avaforge.stages.track import Tracks
from avaforge.tracking.embedder import Embedder, make_embedder
from avaforge.video.probe import probe_video
from avaforge.workdir import ClipPaths, Workdir

Bar = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


@contextmanager
def no_bar(_desc: str, _total: int) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


@dataclass
class PrepareResult:
    workdir: Path
    clips: list[str] = field(default_factory=list)
    projects: list[Path] = field(default_factory=list)
    archives: list[Path] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # "clip:stage" skipped because finished
    warnings: list[str] = field(default_factory=list)
    recall_risk: list[str] = field(default_factory=list)  # per clip: people per keyframe, small boxes
    timings: dict[str, float] = field(default_factory=dict)


class _Models:
    """Detector and embedder are loaded once, on first use."""

    def __init__(self, settings: PipelineSettings) -> None:
        self.settings = settings
        self._detector: Detector | None = None
        self._embedder: Embedder | None = None
        self._weights_digest: str | None = None

    @property
    def weights_digest(self) -> str:
        """The detector's model version for artifact keys, without loading the model."""
        if self._weights_digest is None:
            self._weights_digest = file_digest(resolve_weights(self.settings.detect.weights))
        return self._weights_digest

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = make_detector(self.settings.detect)
        return self._detector

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings.track.embedder)
        return self._embedder


def prepare(
    videos: list[str | Path],
    actions: ActionList,
    workdir: str | Path,
    settings: PipelineSettings,
    bar: Bar = no_bar,
) -> PrepareResult:
    """Stages 1-6 for every video: clips, frames, detections, tracks, proposals, VIA projects."""
    wd = Workdir(Path(workdir))
    wd.root.mkdir(parents=True, exist_ok=True)
    result = PrepareResult(wd.root)
    infos = [probe_video(v) for v in videos]  # every input is checked before any work starts
    ids = [video_id_from_filename(str(v)) for v in videos]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise FormatError(f"several inputs map to the same video id {dup}; rename them", "prepare")
    models = _Models(settings)
    manifest_videos = []
    for video, info, video_id in zip(videos, infos, ids, strict=True):
        source_digest = file_digest(Path(video))
        specs = steps.plan(video, str(video), settings, info)
        manifest_videos.append(
            {
                "path": str(Path(video).resolve()),
                "video_id": video_id,
                "sha256": source_digest,
                "clips": [s.clip_id for s in specs],
            }
        )
        for spec in specs:
            _prepare_clip(wd, video, source_digest, spec, actions, settings, models, bar, result)
    wd.write_manifest(
        {
            "version": 1,
            "settings": settings.to_dict(),
            "actions": actions.to_dict(),
            "videos": manifest_videos,
        }
    )
    return result


def _stage(
    paths: ClipPaths,
    stage: str,
    key: str,
    outputs: list[Path],
    result: PrepareResult,
    clip_id: str,
    run: Callable[[], None],
) -> None:
    """Run one stage unless its key and outputs are there already."""
    if paths.stage_keys().get(stage) == key and all(p.exists() for p in outputs):
        result.reused.append(f"{clip_id}:{stage}")
        return
    start = time.perf_counter()
    run()
    result.timings[stage] = result.timings.get(stage, 0.0) + time.perf_counter() - start
    paths.set_stage_key(stage, key)


def _stage_key(
    name: str, keys: dict[str, str], settings: PipelineSettings, actions: ActionList, *extra: object
) -> str:
    """A stage's cache key: its upstream stages' keys (``pipeline.upstream``), its settings sections and any
    input digests (``extra``). Fields that decide where or in what batches a stage runs are left out."""
    sections = []
    for section in pipeline.stage(name).settings:
        if section == "actions":
            sections.append(actions.to_dict())
        elif section == "detect":
            sections.append(
                {k: v for k, v in vars(settings.detect).items() if k not in ("batch", "triton_url")}
            )
        else:
            sections.append(getattr(settings, section))
    return digest(name, [keys[u.name] for u in pipeline.upstream(name)], sections, *extra)


def _prepare_clip(
    wd: Workdir,
    video: str | Path,
    source_digest: str,
    spec: ingest.ClipSpec,
    actions: ActionList,
    settings: PipelineSettings,
    models: _Models,
    bar: Bar,
    result: PrepareResult,
) -> None:
    """Every automatic stage of ``avaforge.pipeline`` on one clip, in table order."""
    paths = wd.clip(spec.clip_id)
    paths.root.mkdir(parents=True, exist_ok=True)
    cid, s = spec.clip_id, settings
    keys: dict[str, str] = {}
    via_out = via_export.export_paths(wd.via, cid)

    def run_ingest() -> None:
        clip, finfo = steps.ingest_clip(video, spec, paths.clip, paths.rawframes, s)
        atomic_write_bytes(paths.clip_json, json.dumps(clip.to_dict(), indent=1).encode())
        atomic_write_bytes(paths.frames_json, json.dumps(finfo.to_dict(), indent=1).encode())

    def finfo() -> FramesInfo:
        return FramesInfo.from_dict(json.loads(paths.frames_json.read_text()))

    def run_detect() -> None:
        todo = steps.frames_to_detect(finfo(), s)
        with bar(f"detect {cid}", len(todo)) as advance:
            steps.detect_frames(paths.rawframes, todo, models.detector, s, advance).save(paths.detections)

    def run_track() -> None:
        dets = Detections.load(paths.detections)
        with bar(f"track  {cid}", len(dets.frames)) as advance:
            steps.track_clip(paths.rawframes, dets, s, models.embedder, advance).save(paths.tracks)

    def run_proposals() -> None:
        write_proposals(paths.proposals, steps.build_proposals(finfo(), Detections.load(paths.detections), s))

    def run_via() -> None:
        steps.export_via(finfo(), Tracks.load(paths.tracks), actions, paths.rawframes, wd.via, s)

    # stage -> (how it runs here, input digests beyond its upstream keys); the files it leaves: wd.outputs
    local: dict[str, tuple[Callable[[], None], tuple[object, ...]]] = {
        "ingest": (run_ingest, (source_digest, spec)),
        "detect": (run_detect, (models.weights_digest,)),
        "track": (run_track, ()),
        "proposals": (run_proposals, ()),
        "via": (run_via, ()),
    }
    for st in pipeline.automatic():
        run, extra = local[st.name]
        keys[st.name] = _stage_key(st.name, keys, s, actions, *extra)
        _stage(paths, st.name, keys[st.name], wd.outputs(cid, st.name), result, cid, run)
        if st.name == "ingest" and not finfo().labelled_seconds:
            clip = ClipInfo.from_dict(json.loads(paths.clip_json.read_text()))
            result.warnings.append(
                f"clip {cid} is {clip.length_s:.2f} s long: shorter than the context margins "
                f"({s.schedule.margin_start_s:g} s + {s.schedule.margin_end_s:g} s): "
                "it has no labelled seconds"
            )
    dets = Detections.load(paths.detections)
    result.recall_risk.append(clip_risk_line(cid, finfo(), dets, s))
    result.clips.append(cid)
    result.projects.append(via_out.project)
    result.archives.append(via_out.archive)


def _load_clip(wd: Workdir, clip_id: str) -> tuple[ClipPaths, ClipInfo, FramesInfo, Tracks]:
    paths = wd.clip(clip_id)
    if not paths.tracks.exists():
        raise FormatError(f"clip {clip_id} is not prepared (run `avaforge prepare`)", str(paths.root))
    clip = ClipInfo.from_dict(json.loads(paths.clip_json.read_text()))
    finfo = FramesInfo.from_dict(json.loads(paths.frames_json.read_text()))
    return paths, clip, finfo, Tracks.load(paths.tracks)


def autolabel_workdir(workdir: str | Path) -> list[Path]:
    """Write a finished-looking VIA project per clip with heuristic ticks (``autolabel/<clip>.via3.json``)."""
    wd = Workdir(Path(workdir))
    settings, actions = wd.settings(), wd.actions()
    out = []
    for cid in wd.clip_ids():
        _, _, finfo, tr = _load_clip(wd, cid)
        sugg = autolabel.suggest(finfo, tr, actions, settings.autolabel, settings.via.min_score)
        kfs = via_export.keyframes_for_via(finfo, tr, settings.via, prefill=sugg)
        path = wd.autolabel / f"{cid}.via3.json"
        atomic_write_bytes(path, dumps_project(build_project(cid, kfs, actions)))
        atomic_write_bytes(
            wd.suggestions(cid), json.dumps([[t, p, list(a)] for (t, p), a in sorted(sugg.items())]).encode()
        )
        out.append(path)
    return out


def _suggestions(wd: Workdir, clip_id: str) -> dict[tuple[int, int], tuple[int, ...]] | None:
    path = wd.suggestions(clip_id)
    if not path.exists():
        return None
    return {(t, p): tuple(a) for t, p, a in json.loads(path.read_text())}


def import_finished(
    workdir: str | Path, files: list[str | Path], propagate: bool | None = None
) -> list[Path]:
    """Read finished VIA projects (any order, any names) into ``labels/<clip>.json``."""
    wd = Workdir(Path(workdir))
    settings, actions = wd.settings(), wd.actions()
    if propagate is not None:
        settings = PipelineSettings.from_dict(
            {**settings.to_dict(), "imports": {**vars(settings.imports), "propagate": propagate}}
        )
    known = set(wd.clip_ids())
    parsed = []
    for f in files:  # parse everything first: one bad file fails the import before anything is written
        data = read_bytes(f)
        cid = via_import.project_clip_id(data, str(f))
        if cid not in known:
            raise FormatError(
                f"project is for clip {cid!r}, which is not in this work folder {sorted(known)}", str(f)
            )
        _, _, finfo, tr = _load_clip(wd, cid)
        parsed.append(steps.import_project(data, str(f), finfo, tr, actions, settings, _suggestions(wd, cid)))
    out = []
    for labels in parsed:
        labels.save(wd.labels(labels.clip_id))
        out.append(wd.labels(labels.clip_id))
    return out


def build(workdir: str | Path, out: str | Path) -> dataset.BuildResult:
    """Stage 8 from every imported clip, then the report."""
    wd = Workdir(Path(workdir))
    settings, actions = wd.settings(), wd.actions()
    bundles = []
    for cid in wd.clip_ids():
        if not wd.labels(cid).exists():
            continue
        paths, clip, finfo, _ = _load_clip(wd, cid)
        review = wd.review_labels(cid)
        bundles.append(
            dataset.ClipBundle(
                clip,
                finfo,
                paths.rawframes,
                read_proposals(paths.proposals),
                via_import.ClipLabels.load(wd.labels(cid)),
                via_import.ClipLabels.load(review) if review.exists() else None,
            )
        )
    return steps.build_dataset(bundles, actions, settings, Path(out))
