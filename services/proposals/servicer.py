"""The proposal builder's gRPC API: BuildProposals, the same work as its queue handler."""

from __future__ import annotations

import asyncio

from avaforge.proto_convert import settings_from_proto
from avaforge.stages.frames import frames_info
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.common.convert import clip_from_proto, ref_from_proto, ref_to_proto
from services.common.process import Deps
from services.common.runtime import Registration
from services.proposals import handlers

NAME = stages_pb2.DESCRIPTOR.services_by_name["ProposalsService"].full_name


class ProposalsServicer(stages_pb2_grpc.ProposalsServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.store = deps.store

    async def BuildProposals(self, request, context):  # type: ignore[no-untyped-def]
        s = settings_from_proto(request.settings)
        finfo = frames_info(clip_from_proto(request.clip), s.schedule)
        ref = await asyncio.to_thread(
            handlers.proposals, self.store, finfo, ref_from_proto(request.detections), s
        )
        return stages_pb2.BuildProposalsResponse(proposals=ref_to_proto(ref))


async def api(deps: Deps) -> list[Registration]:
    return [(stages_pb2_grpc.add_ProposalsServiceServicer_to_server, ProposalsServicer(deps), NAME)]
