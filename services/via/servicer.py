"""The VIA converter's gRPC API: ExportProject and ImportProject, the same work as its queue handlers."""

from __future__ import annotations

import asyncio

from avaforge.proto_convert import actions_from_proto, settings_from_proto
from avaforge.stages.frames import frames_info
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.common.artifacts import LocalCache
from services.common.convert import (
    clip_from_proto,
    ref_from_proto,
    ref_to_proto,
)
from services.common.process import Deps
from services.common.runtime import Registration
from services.via import handlers

NAME = stages_pb2.DESCRIPTOR.services_by_name["ViaService"].full_name


class ViaServicer(stages_pb2_grpc.ViaServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.store = deps.store
        self.cache = LocalCache(deps.store, deps.cache_root)

    async def ExportProject(self, request, context):  # type: ignore[no-untyped-def]
        s = settings_from_proto(request.settings)
        project, archive = await asyncio.to_thread(
            handlers.export,
            self.store,
            self.cache,
            frames_info(clip_from_proto(request.clip), s.schedule),
            ref_from_proto(request.rawframes),
            ref_from_proto(request.tracks),
            actions_from_proto(request.actions),
            s,
        )
        return stages_pb2.ExportProjectResponse(project=ref_to_proto(project), archive=ref_to_proto(archive))

    async def ImportProject(self, request, context):  # type: ignore[no-untyped-def]
        s = settings_from_proto(request.settings)
        finfo = frames_info(clip_from_proto(request.clip), s.schedule)
        labels, ref = await asyncio.to_thread(
            handlers.import_finished,
            self.store,
            self.cache,
            finfo,
            ref_from_proto(request.tracks),
            ref_from_proto(request.finished),
            f"{finfo.clip_id} (finished)",
            actions_from_proto(request.actions),
            s,
        )
        return stages_pb2.ImportProjectResponse(labels=ref_to_proto(ref), unlabelled=labels.unlabelled)


async def api(deps: Deps) -> list[Registration]:
    return [(stages_pb2_grpc.add_ViaServiceServicer_to_server, ViaServicer(deps), NAME)]
