"""The proposal builder's work on artifacts (shared by its queue handler and its gRPC API)."""

from __future__ import annotations

import io
from typing import Any

from avaforge import steps
from avaforge.formats.proposals import dumps as dump_proposals
from avaforge.settings import PipelineSettings
from avaforge.stages.detect import Detections
from avaforge.stages.frames import FramesInfo
from avaforge.storage import ArtifactRef, ArtifactStore
from services.common import jobs
from services.common.worker import Context


def proposals(
    store: ArtifactStore, finfo: FramesInfo, detections: ArtifactRef, s: PipelineSettings
) -> ArtifactRef:
    dets = Detections.load(io.BytesIO(store.get(detections)))
    return store.put("proposals", dump_proposals(steps.build_proposals(finfo, dets, s)), ".pkl")


async def proposals_item(ctx: Context, item: dict[str, Any]) -> None:
    s = PipelineSettings.from_dict(item["settings"])
    ingested, detected = await jobs.inputs(ctx.queue, item, "ingest", "detect")
    finfo = FramesInfo.from_dict(ingested["frames"])
    ref = proposals(ctx.store, finfo, ArtifactRef(**detected["detections"]), s)
    await jobs.complete(ctx.queue, item, "proposals", {"proposals": ref.to_dict()})


HANDLERS = {"proposals": proposals_item}
