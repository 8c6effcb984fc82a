"""gRPC adapter of the detect stage: fetch rawframes (cached by digest), detect, store the result."""

from __future__ import annotations

from pathlib import Path

import grpc

from avaforge.formats.timeline import rawframe_name
from avaforge.proto_convert import settings_from_proto
from avaforge.stages.detect import detect_clip
from avaforge.storage import ArtifactStore
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc
from services.common.artifacts import LocalCache
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.deployment import DetectorPool
from services.common.server import Metrics, RpcError, rpc

SERVICE = "detector"
METRICS = Metrics.create(SERVICE)
FULL_NAME = stages_pb2.DESCRIPTOR.services_by_name["DetectorService"].full_name
MAX_FRAMES = 256


class DetectorServicer(stages_pb2_grpc.DetectorServiceServicer):
    def __init__(self, store: ArtifactStore, cache_dir: Path) -> None:
        self.store = store
        self.cache = LocalCache(store, cache_dir)
        self.detectors = DetectorPool()

    @rpc(SERVICE, METRICS, "DetectBatch")
    def DetectBatch(self, request: stages_pb2.DetectBatchRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        settings = settings_from_proto(request.settings)
        frames = list(request.frames)
        if not frames or len(frames) > MAX_FRAMES:
            raise RpcError(
                grpc.StatusCode.INVALID_ARGUMENT, f"a batch needs 1..{MAX_FRAMES} frames, got {len(frames)}"
            )
        folder = self.cache.folder(ref_from_proto(request.rawframes))
        missing = [f for f in frames if f < 1 or not (folder / rawframe_name(f)).exists()]
        if missing:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"frames {missing[:5]} are not in the clip")
        dets = detect_clip(folder, frames, self.detectors.get(settings.detect), settings.detect.batch)
        stored = self.store.put("detections", dets.to_bytes(), ".npz")
        METRICS.items.labels(SERVICE, "done").inc()
        return stages_pb2.DetectBatchResponse(
            frames=[
                common_pb2.FrameBoxes(
                    frame=f,
                    boxes=[common_pb2.Box(x1=b[0], y1=b[1], x2=b[2], y2=b[3], score=b[4]) for b in boxes],
                )
                for f, boxes in zip(dets.frames, dets.boxes, strict=True)
            ],
            model_version=dets.model_version,
            detections=ref_to_proto(stored),
        )
