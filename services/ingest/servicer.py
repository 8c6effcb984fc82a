"""Ingest's gRPC API: PlanClips and CutClip, the same work as its queue handler."""

from __future__ import annotations

import asyncio

from avaforge.proto_convert import settings_from_proto
from avaforge.stages.ingest import ClipSpec
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.common.artifacts import LocalCache
from services.common.convert import clip_spec_to_proto, clip_to_proto, ref_from_proto, ref_to_proto
from services.common.process import Deps
from services.common.runtime import Registration
from services.ingest import handlers

NAME = stages_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


class IngestServicer(stages_pb2_grpc.IngestServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.store = deps.store
        self.cache = LocalCache(deps.store, deps.cache_root)

    async def PlanClips(self, request, context):  # type: ignore[no-untyped-def]
        specs = await asyncio.to_thread(
            handlers.plan,
            self.cache,
            ref_from_proto(request.video),
            request.filename,
            settings_from_proto(request.settings),
        )
        return stages_pb2.PlanClipsResponse(clips=[clip_spec_to_proto(s) for s in specs])

    async def CutClip(self, request, context):  # type: ignore[no-untyped-def]
        c = request.clip
        spec = ClipSpec(c.clip_id, c.video_id, 0, c.start_s, c.length_s)
        clip, _, rawframes, video = await asyncio.to_thread(
            handlers.cut,
            self.store,
            self.cache,
            ref_from_proto(request.video),
            f"{c.video_id}.video",
            spec,
            settings_from_proto(request.settings),
        )
        return stages_pb2.CutClipResponse(
            clip=clip_to_proto(clip), clip_video=ref_to_proto(video), rawframes=ref_to_proto(rawframes)
        )


async def api(deps: Deps) -> list[Registration]:
    return [(stages_pb2_grpc.add_IngestServiceServicer_to_server, IngestServicer(deps), NAME)]
