"""Queue workers of the stage services (ingest, detect, track, proposals, via): each takes a work item,
fetches its input artifacts, calls the same stage function as the embedded runner, stores the outputs,
records them in the job's KV keys, and enqueues what comes next. Detection fans out in batches; the
tracker starts when every batch of a clip is in.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avaforge.archive import pack_tree
from avaforge.detection import Detector
from avaforge.formats.actions import ActionList
from avaforge.formats.proposals import read_proposals
from avaforge.queue import WorkQueue
from avaforge.report import write_report
from avaforge.settings import PipelineSettings
from avaforge.stages import dataset, detect
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.tracking.embedder import Embedder, make_embedder
from services import stage_ops
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.deployment import DetectorPool

FANOUT = 32  # frames per detect item: a multiple of the detector batch (8), see detect.batches_of


def _ref(d: dict[str, Any]) -> ArtifactRef:
    return ArtifactRef(**d)


@dataclass
class Context:
    queue: WorkQueue
    store: ArtifactStore
    cache: LocalCache
    detectors: DetectorPool
    _embedders: dict[str, Embedder]

    @classmethod
    def create(cls, queue: WorkQueue, store: ArtifactStore, cache_dir: Path) -> Context:
        return cls(queue, store, LocalCache(store, cache_dir), DetectorPool(), {})

    def detector(self, s: PipelineSettings) -> Detector:
        return self.detectors.get(s.detect)

    def embedder(self, s: PipelineSettings) -> Embedder:
        if s.track.embedder not in self._embedders:
            self._embedders[s.track.embedder] = make_embedder(s.track.embedder)
        return self._embedders[s.track.embedder]


async def _clip_facts(ctx: Context, job: str, cid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ingest and tracking recorded for a clip; later stages only run after both."""
    record = await jobs.get(ctx.queue, f"{job}.clip.{cid}")
    tr = await jobs.get(ctx.queue, f"{job}.track.{cid}")
    if record is None or tr is None:
        raise RuntimeError(f"clip {cid} of job {job} is not ingested and tracked yet")
    return record, tr


def _common(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("job", "settings", "actions")}


async def ingest_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    video, job = _ref(p["video"]), p["job"]
    for spec in await asyncio.to_thread(stage_ops.plan, ctx.cache, video, p["filename"], settings):
        clip, finfo, rawframes, clip_video = await asyncio.to_thread(
            stage_ops.cut, ctx.store, ctx.cache, video, p["filename"], spec, settings
        )
        cid = clip.clip_id
        await jobs.put(
            ctx.queue,
            f"{job}.clip.{cid}",
            {
                "clip": clip.to_dict(),
                "frames": finfo.to_dict(),
                "rawframes": rawframes.to_dict(),
                "video": clip_video.to_dict(),
            },
        )
        todo = detect.frames_to_detect(finfo.num_frames, settings.detect.tracking_fps, finfo.keyframe_seconds)
        parts = detect.batches_of(todo, FANOUT)
        for i, part in enumerate(parts):
            await ctx.queue.submit(
                "detect",
                {
                    **_common(p),
                    "clip_id": cid,
                    "rawframes": rawframes.to_dict(),
                    "frames": part,
                    "batch": i,
                    "batches": len(parts),
                },
                msg_id=f"{job}.{cid}.det.{i}",
            )
    await jobs.put(ctx.queue, f"{job}.ingested.{p.get('index', 0):04d}", {"filename": p["filename"]})


async def detect_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    folder = await asyncio.to_thread(ctx.cache.folder, _ref(p["rawframes"]))
    dets = await asyncio.to_thread(
        detect.detect_clip, folder, p["frames"], ctx.detector(settings), settings.detect.batch
    )
    ref = ctx.store.put("detections", dets.to_bytes(), ".npz")
    job, cid = p["job"], p["clip_id"]
    await jobs.put(ctx.queue, f"{job}.det.{cid}.{p['batch']:05d}", ref.to_dict())
    if len(await jobs.keys(ctx.queue, f"{job}.det.{cid}.")) == p["batches"]:
        await ctx.queue.submit("track", {**_common(p), "clip_id": cid}, msg_id=f"{job}.{cid}.track")


async def track_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    job, cid = p["job"], p["clip_id"]
    record = await jobs.get(ctx.queue, f"{job}.clip.{cid}")
    if record is None:
        raise RuntimeError(f"clip {cid} of job {job} is not ingested yet")
    parts = [
        Detections.load(io.BytesIO(ctx.store.get(_ref(await jobs.get(ctx.queue, k)))))  # type: ignore[arg-type]
        for k in await jobs.keys(ctx.queue, f"{job}.det.{cid}.")
    ]
    dets = detect.merge_detections(parts)
    dets_ref = ctx.store.put("detections", dets.to_bytes(), ".npz")
    _, tracks_ref = await asyncio.to_thread(
        stage_ops.track_clip,
        ctx.store,
        ctx.cache,
        _ref(record["rawframes"]),
        dets,
        settings,
        ctx.embedder(settings),
    )
    await jobs.put(
        ctx.queue, f"{job}.track.{cid}", {"detections": dets_ref.to_dict(), "tracks": tracks_ref.to_dict()}
    )
    for stage in ("proposals", "via"):
        await ctx.queue.submit(stage, {**_common(p), "clip_id": cid}, msg_id=f"{job}.{cid}.{stage}")


async def proposals_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    job, cid = p["job"], p["clip_id"]
    record, tr = await _clip_facts(ctx, job, cid)
    dets = Detections.load(io.BytesIO(ctx.store.get(_ref(tr["detections"]))))
    ref = stage_ops.build_proposals(ctx.store, FramesInfo.from_dict(record["frames"]), dets, settings)
    await jobs.put(ctx.queue, f"{job}.prop.{cid}", ref.to_dict())


async def via_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    job, cid = p["job"], p["clip_id"]
    record, tr = await _clip_facts(ctx, job, cid)
    tracks = Tracks.load(ctx.cache.file(_ref(tr["tracks"]), ".json"))
    project, archive = await asyncio.to_thread(
        stage_ops.export_via,
        ctx.store,
        ctx.cache,
        FramesInfo.from_dict(record["frames"]),
        _ref(record["rawframes"]),
        tracks,
        settings,
        ActionList.from_obj(p["actions"]),
    )
    await jobs.put(
        ctx.queue, f"{job}.via.{cid}", {"project": project.to_dict(), "archive": archive.to_dict()}
    )


async def via_import_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    job, cid = p["job"], p["clip_id"]
    record, tr = await _clip_facts(ctx, job, cid)
    tracks = Tracks.load(ctx.cache.file(_ref(tr["tracks"]), ".json"))
    labels, ref = stage_ops.import_via(
        ctx.store,
        FramesInfo.from_dict(record["frames"]),
        tracks,
        _ref(p["finished"]),
        p.get("name", "finished project"),
        settings,
        ActionList.from_obj(p["actions"]),
    )
    await jobs.put(
        ctx.queue, f"{job}.labels.{cid}", {"labels": ref.to_dict(), "unlabelled": labels.unlabelled}
    )


async def dataset_item(ctx: Context, p: dict[str, Any]) -> None:
    settings = PipelineSettings.from_dict(p["settings"])
    actions = ActionList.from_obj(p["actions"])
    job = p["job"]
    bundles = []
    for key in await jobs.keys(ctx.queue, f"{job}.labels."):
        cid = key.rsplit(".labels.", 1)[1]
        record = await jobs.get(ctx.queue, f"{job}.clip.{cid}")
        labels = await jobs.get(ctx.queue, key)
        props = await jobs.get(ctx.queue, f"{job}.prop.{cid}")
        assert record is not None and labels is not None and props is not None
        folder = await asyncio.to_thread(ctx.cache.folder, _ref(record["rawframes"]))
        bundles.append(
            dataset.ClipBundle(
                ClipInfo.from_dict(record["clip"]),
                FramesInfo.from_dict(record["frames"]),
                folder,
                read_proposals(ctx.cache.file(_ref(props), ".pkl")),
                ClipLabels.load(ctx.cache.file(_ref(labels["labels"]), ".json")),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = await asyncio.to_thread(
            dataset.build_dataset, bundles, actions, settings.dataset, Path(tmp) / "dataset"
        )
        await asyncio.to_thread(write_report, result.out)
        ref = ctx.store.put("datasets", await asyncio.to_thread(pack_tree, result.out), ".tar")
    await jobs.put(ctx.queue, f"{job}.dataset", {"dataset": ref.to_dict(), "summary": result.summary})


HANDLERS = {
    "ingest": ingest_item,
    "detect": detect_item,
    "track": track_item,
    "proposals": proposals_item,
    "via": via_item,
    "via_import": via_import_item,
    "dataset": dataset_item,
}


async def record_failure(queue: WorkQueue, dead: dict[str, Any]) -> None:
    """A dead-lettered item fails its job with the stage's error message."""
    job = dead.get("payload", {}).get("job")
    if job:
        where = dead["payload"].get("filename") or dead["payload"].get("clip_id") or ""
        await jobs.put(
            queue, f"{job}.error", {"stage": dead["stage"], "message": dead["error"], "where": where}
        )
