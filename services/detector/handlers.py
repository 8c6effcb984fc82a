"""The detector's work on artifacts (shared by its queue handler and its gRPC API): people in a batch of a
clip's rawframes. Queue items fan out over a clip's frames; the item that completes the last batch merges
them into the clip's detections, which queues the stages that read them."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from typing import Any

from avaforge import cancel, steps
from avaforge.settings import DetectSettings, PipelineSettings
from avaforge.stages.detect import Detections, merge_detections
from avaforge.storage import ArtifactRef, ArtifactStore
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.deployment import DetectorPool
from services.common.worker import Context

# The plan (input size, tiles) of the clips this process has probed: a probe runs the detector large on a
# few frames, so a gRPC client sending one clip's batches one by one pays it once. Keyed by content.
_plans: dict[tuple[str, DetectSettings], str] = {}
_PLANS_KEPT = 256


def plan(cache: LocalCache, detectors: DetectorPool, rawframes: ArtifactRef, s: PipelineSettings) -> str:
    key = (rawframes.digest, s.detect)
    if key not in _plans:
        if len(_plans) >= _PLANS_KEPT:
            _plans.pop(next(iter(_plans)))
        _plans[key] = steps.detect_plan(cache.folder(rawframes), detectors.get(s.detect), s)
    return _plans[key]


def detect(
    store: ArtifactStore,
    cache: LocalCache,
    detectors: DetectorPool,
    rawframes: ArtifactRef,
    frames: list[int],
    s: PipelineSettings,
    clip_plan: str | None = None,
) -> tuple[Detections, ArtifactRef]:
    """People on ``frames`` at the clip's plan (``clip_plan``, or this process's probe of the clip)."""
    clip_plan = clip_plan or plan(cache, detectors, rawframes, s)
    # a cancelled job stops between detector batches (no-op outside a queue item)
    dets = steps.detect_frames(
        cache.folder(rawframes),
        frames,
        detectors.get(s.detect),
        s,
        lambda _: cancel.check("detection"),
        plan=clip_plan,
    )
    return dets, store.put("detections", dets.to_bytes(), ".npz")


async def shared_plan(ctx: Context, job: str, cid: str, rawframes: ArtifactRef, s: PipelineSettings) -> str:
    """The clip's plan, the same for every batch of the clip: the first worker to probe records it (KV create
    fails when a key exists), every other one reads the record, so workers on other hardware (CUDA, another
    CPU) whose probe might round to another size still run the clip at one size."""
    import nats.js.errors

    # apart from the stage's clip facts (<job>.detect.<clip>) and its fan-out parts
    # (<job>.parts.detect.<clip>.<i>), which the gateway and the merge list by prefix
    key = f"{job}.plans.detect.{cid}"
    found = await jobs.get(ctx.queue, key)
    if found is not None:
        return str(found["plan"])
    mine = await asyncio.to_thread(plan, ctx.cache, ctx.detectors, rawframes, s)
    with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):  # another worker was first
        await ctx.queue.jobs.create(key, json.dumps({"plan": mine}).encode())
    recorded = await jobs.get(ctx.queue, key)
    return str(recorded["plan"]) if recorded else mine


async def detect_item(ctx: Context, item: dict[str, Any]) -> None:
    s = PipelineSettings.from_dict(item["settings"])
    job, cid = item["job"], item["clip_id"]
    ingested = await jobs.get(ctx.queue, jobs.fact(job, "ingest", cid))
    if ingested is None:
        raise RuntimeError(f"clip {cid} of job {job} is not ingested yet")
    rawframes = ArtifactRef(**ingested["rawframes"])
    clip_plan = await shared_plan(ctx, job, cid, rawframes, s)
    _, ref = await asyncio.to_thread(
        detect, ctx.store, ctx.cache, ctx.detectors, rawframes, item["frames"], s, clip_plan
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
