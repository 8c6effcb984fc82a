"""The trainer's gRPC API: start, watch and cancel training jobs (``handlers.train_item`` runs them; the KV
facts are listed there)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import grpc

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactRef, StorageError
from avaforge.trainer.config import PRESETS
from avaforge.v1 import common_pb2, stages_pb2, stages_pb2_grpc
from services.common import auth, jobs
from services.common.convert import ref_from_proto, ref_to_proto
from services.common.process import Deps
from services.common.runtime import Registration

NAME = stages_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


async def training_job(queue: WorkQueue, job_id: str) -> common_pb2.Job:
    spec = await jobs.get(queue, f"train.{job_id}") or {}
    progress = await jobs.get(queue, f"train.{job_id}.progress")
    job = common_pb2.Job(job_id=job_id, training=_training_spec(spec) if spec else None)
    job.progress.add(stage="train", done=(progress or {}).get("iter", 0), total=spec.get("iters", 0))
    error = await jobs.get(queue, f"train.{job_id}.error")
    if error:
        job.state = common_pb2.JOB_STATE_FAILED
        job.error.CopyFrom(common_pb2.StageError(stage="train", message=error["message"], where=job_id))
    elif await jobs.get(queue, f"train.{job_id}.cancelled"):
        job.state = common_pb2.JOB_STATE_CANCELLED
    elif await jobs.get(queue, f"train.{job_id}.result"):
        job.state = common_pb2.JOB_STATE_SUCCEEDED
    else:
        job.state = common_pb2.JOB_STATE_RUNNING if progress else common_pb2.JOB_STATE_QUEUED
    return job


def _training_spec(spec: dict[str, Any]) -> common_pb2.TrainingSpec:
    demo = spec.get("demo_video")
    return common_pb2.TrainingSpec(
        dataset=ref_to_proto(ArtifactRef(**spec["dataset"])),
        preset=spec["preset"],
        iters=spec["iters"],
        demo_video=ref_to_proto(ArtifactRef(**demo)) if demo else None,
    )


class TrainerServicer(stages_pb2_grpc.TrainerServiceServicer):
    def __init__(self, queue: WorkQueue, store) -> None:  # type: ignore[no-untyped-def]
        self.queue = queue
        self.store = store

    async def _known(self, job_id: str, context) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        spec = (
            await jobs.get(self.queue, f"train.{job_id}") if re.fullmatch(r"[0-9a-f]{12}", job_id) else None
        )
        if spec is None or not auth.current().owns(spec.get("owner")):  # another's job: as an unknown one
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no training job {job_id!r}")
        return spec  # type: ignore[return-value]

    async def StartTraining(self, request, context):  # type: ignore[no-untyped-def]
        if request.preset not in PRESETS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown preset {request.preset!r}; choose from {sorted(PRESETS)}",
            )
        if request.iters <= 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "iters must be > 0")
        try:
            exists = self.store.exists(ref_from_proto(request.dataset))
        except StorageError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not exists:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"dataset {request.dataset.key} was not uploaded")
        demo = ref_from_proto(request.demo_video) if request.HasField("demo_video") else None
        if demo is not None and not self.store.exists(demo):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"demo video {demo.key} was not uploaded")
        job_id = uuid.uuid4().hex[:12]
        spec = {
            "job_id": job_id,
            "owner": auth.current().name,
            "created": time.time(),
            "dataset": ref_from_proto(request.dataset).to_dict(),
            "preset": request.preset,
            "iters": request.iters,
            "cancel": False,
            "demo_video": demo.to_dict() if demo else None,
        }
        await jobs.put(self.queue, f"train.{job_id}", spec)
        await self.queue.submit("train", {"job": job_id}, msg_id=f"train.{job_id}")
        return await training_job(self.queue, job_id)

    async def WatchTraining(self, request, context):  # type: ignore[no-untyped-def]
        await self._known(request.job_id, context)
        async for job in jobs.watch(lambda: training_job(self.queue, request.job_id)):
            yield job

    async def CancelTraining(self, request, context):  # type: ignore[no-untyped-def]
        spec = await self._known(request.job_id, context)
        await jobs.put(self.queue, f"train.{request.job_id}", {**spec, "cancel": True})
        return await training_job(self.queue, request.job_id)


async def api(deps: Deps) -> list[Registration]:
    return [
        (
            stages_pb2_grpc.add_TrainerServiceServicer_to_server,
            TrainerServicer(await deps.queue(), deps.store),
            NAME,
        )
    ]
