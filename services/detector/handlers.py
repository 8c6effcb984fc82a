"""The detector's work on artifacts (shared by its queue handler and its gRPC API): people in a batch of a
clip's rawframes. Queue items fan out over a clip's frames; the item that completes the last batch merges
them into the clip's detections, which queues the stages that read them."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from avaforge import cancel, steps
from avaforge.settings import PipelineSettings
from avaforge.stages.detect import Detections, merge_detections
from avaforge.storage import ArtifactRef, ArtifactStore
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.deployment import DetectorPool
from services.common.worker import Context


def detect(
    store: ArtifactStore,
    cache: LocalCache,
    detectors: DetectorPool,
    rawframes: ArtifactRef,
    frames: list[int],
    s: PipelineSettings,
) -> tuple[Detections, ArtifactRef]:
    # a cancelled job stops between detector batches (no-op outside a queue item)
    dets = steps.detect_frames(
        cache.folder(rawframes), frames, detectors.get(s.detect), s, lambda _: cancel.check("detection")
    )
    return dets, store.put("detections", dets.to_bytes(), ".npz")


async def detect_item(ctx: Context, item: dict[str, Any]) -> None:
    s = PipelineSettings.from_dict(item["settings"])
    job, cid = item["job"], item["clip_id"]
    ingested = await jobs.get(ctx.queue, jobs.fact(job, "ingest", cid))
    if ingested is None:
        raise RuntimeError(f"clip {cid} of job {job} is not ingested yet")
    rawframes = ArtifactRef(**ingested["rawframes"])
    _, ref = await asyncio.to_thread(
        detect, ctx.store, ctx.cache, ctx.detectors, rawframes, item["frames"], s
    )
    await jobs.put(ctx.queue, jobs.fact(job, "detect", cid, item["batch"]), ref.to_dict())
    parts = await jobs.parts(ctx.queue, job, "detect", cid, item["batches"])
    if not parts:
        return
    # the last batch in: merge (any worker that sees all parts merges the same bytes; ids dedup the rest)
    loaded = [Detections.load(io.BytesIO(ctx.store.get(ArtifactRef(**p)))) for p in parts]
    merged = ctx.store.put("detections", merge_detections(loaded).to_bytes(), ".npz")
    await jobs.complete(ctx.queue, item, "detect", {"detections": merged.to_dict()})


HANDLERS = {"detect": detect_item}
