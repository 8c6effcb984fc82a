"""The tracker's work on artifacts (shared by its queue handler and its gRPC API)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

from avaforge import cancel, steps
from avaforge.settings import PipelineSettings
from avaforge.stages.detect import Detections
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.tracking.embedder import Embedder
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.worker import Context


def track(
    store: ArtifactStore,
    cache: LocalCache,
    rawframes: ArtifactRef,
    detections: ArtifactRef,
    s: PipelineSettings,
    embedder: Embedder,
) -> ArtifactRef:
    dets = Detections.load(io.BytesIO(store.get(detections)))
    # a cancelled job stops between frames (no-op outside a queue item)
    tracks = steps.track_clip(cache.folder(rawframes), dets, s, embedder, lambda _: cancel.check("tracking"))
    return store.put("tracks", tracks.to_bytes(), ".json")


async def track_item(ctx: Context, item: dict[str, Any]) -> None:
    s = PipelineSettings.from_dict(item["settings"])
    ingested, detected = await jobs.inputs(ctx.queue, item, "ingest", "detect")
    ref = await asyncio.to_thread(
        track,
        ctx.store,
        ctx.cache,
        ArtifactRef(**ingested["rawframes"]),
        ArtifactRef(**detected["detections"]),
        s,
        ctx.embedder(s),
    )
    await jobs.complete(ctx.queue, item, "track", {"tracks": ref.to_dict()})


HANDLERS = {"track": track_item}
