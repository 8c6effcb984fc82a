"""The tracker's gRPC API: TrackClip, the same work as its queue handler."""

from __future__ import annotations

import asyncio

from avaforge.proto_convert import settings_from_proto
from avaforge.tracking.embedder import Embedder, make_embedder
from avaforge.v1 import stages_pb2, stages_pb2_grpc
from services.common.artifacts import LocalCache
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.deployment import deployed_embedder
from services.common.process import Deps
from services.common.runtime import Registration
from services.tracker import handlers

NAME = stages_pb2.DESCRIPTOR.services_by_name["TrackerService"].full_name


class TrackerServicer(stages_pb2_grpc.TrackerServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.store = deps.store
        self.cache = LocalCache(deps.store, deps.cache_root)
        self._embedders: dict[str, Embedder] = {}

    async def TrackClip(self, request, context):  # type: ignore[no-untyped-def]
        s = settings_from_proto(request.settings)
        kind = deployed_embedder()  # the deployment's choice, never the job's
        embedder = self._embedders.get(kind) or self._embedders.setdefault(kind, make_embedder(kind))
        ref = await asyncio.to_thread(
            handlers.track,
            self.store,
            self.cache,
            ref_from_proto(request.rawframes),
            ref_from_proto(request.detections),
            s,
            embedder,
        )
        return stages_pb2.TrackClipResponse(tracks=ref_to_proto(ref))


async def api(deps: Deps) -> list[Registration]:
    return [(stages_pb2_grpc.add_TrackerServiceServicer_to_server, TrackerServicer(deps), NAME)]
