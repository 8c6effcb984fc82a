"""The detector's gRPC API: DetectBatch, the same work as its queue handler."""

from __future__ import annotations

import asyncio

import grpc

from avaforge.formats.timeline import rawframe_name
from avaforge.proto_convert import settings_from_proto
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc
from services.common.artifacts import LocalCache
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.deployment import DetectorPool
from services.common.process import Deps
from services.common.runtime import Registration, RpcError
from services.detector import handlers

NAME = stages_pb2.DESCRIPTOR.services_by_name["DetectorService"].full_name
MAX_FRAMES = 256


class DetectorServicer(stages_pb2_grpc.DetectorServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.store = deps.store
        self.cache = LocalCache(deps.store, deps.cache_root)
        self.detectors = DetectorPool()

    async def DetectBatch(self, request: stages_pb2.DetectBatchRequest, context):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        frames = list(request.frames)
        if not frames or len(frames) > MAX_FRAMES:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT, f"a batch needs 1..{MAX_FRAMES} frames, got {len(frames)}"
            )
        rawframes = ref_from_proto(request.rawframes)
        folder = await asyncio.to_thread(self.cache.folder, rawframes)
        missing = [f for f in frames if f < 1 or not (folder / rawframe_name(f)).exists()]
        if missing:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"frames {missing[:5]} are not in the clip")
        dets, stored = await asyncio.to_thread(
            handlers.detect, self.store, self.cache, self.detectors, rawframes, frames, settings
        )
        return stages_pb2.DetectBatchResponse(
            frames=[
                common_pb2.FrameBoxes(
                    frame=f,
                    boxes=[
                        common_pb2.Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3], score=b[4])
                        for b in boxes.to_rows()
                    ],
                )
                for f, boxes in zip(dets.frames, dets.boxes, strict=True)
            ],
            model_version=dets.model_version,
            detections=ref_to_proto(stored),
        )


async def api(deps: Deps) -> list[Registration]:
    return [(stages_pb2_grpc.add_DetectorServiceServicer_to_server, DetectorServicer(deps), NAME)]
