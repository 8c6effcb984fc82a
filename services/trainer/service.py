"""Training jobs: the gRPC servicer (start, watch, cancel) and the queue worker that runs them.

KV facts: ``train.<id>`` (spec, cancel flag), ``train.<id>.progress`` (iteration, loss), ``train.<id>.result``
(config, metrics, checkpoint, logs, in S3), ``train.<id>.error``, ``train.<id>.cancelled``.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from avaforge.archive import pack_tree, unpack_tree
from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactRef, StorageError
from avaforge.trainer.config import PRESETS
from avaforge.v1 import common_pb2, stages_pb2_grpc
from services.common import jobs
from services.common.convert import ref_from_proto, ref_to_proto


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
        if spec is None:
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


async def train_item(ctx, p: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    """Run one training job: the dataset from S3, mmaction2 in a thread, progress and cancel through KV."""
    from avaforge.trainer.hooks import TrainingCancelled
    from avaforge.trainer.train import train

    job = p["job"]
    spec = await jobs.get(ctx.queue, f"train.{job}")
    if spec is None:
        raise RuntimeError(f"training job {job} has no spec")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        unpack_tree(ctx.store.get(ArtifactRef(**spec["dataset"])), tmp / "dataset", f"dataset of {job}")
        progress, cancel = tmp / "progress.json", tmp / "cancel"
        task = asyncio.create_task(
            asyncio.to_thread(
                train,
                tmp / "dataset",
                spec["preset"],
                tmp / "run",
                iters=spec["iters"],
                progress_file=progress,
                cancel_file=cancel,
            )
        )
        seen = None
        while not task.done():
            await asyncio.sleep(0.5)
            if progress.exists() and progress.read_text() != seen:
                seen = progress.read_text()
                await jobs.put(ctx.queue, f"train.{job}.progress", json.loads(seen))
            current = await jobs.get(ctx.queue, f"train.{job}")
            if current and current.get("cancel"):
                cancel.touch()
        try:
            result = task.result()
        except TrainingCancelled:
            await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": json.loads(progress.read_text())})
            return
        except Exception as exc:  # a training failure is final: report it, do not retry for hours
            await jobs.put(ctx.queue, f"train.{job}.error", {"message": f"{type(exc).__name__}: {exc}"})
            return
        run = result.run_dir
        logs = tmp / "logs"
        for log in run.glob("*/*.log"):
            (logs / log.parent.name).mkdir(parents=True, exist_ok=True)
            (logs / log.parent.name / log.name).write_bytes(log.read_bytes())
        stored = {
            "config": ctx.store.put("train", result.config.read_bytes(), ".py").to_dict(),
            "metrics": ctx.store.put("train", (run / "metrics.json").read_bytes(), ".json").to_dict(),
            "checkpoint": ctx.store.put("train", result.checkpoint.read_bytes(), ".pth").to_dict(),
            "logs": ctx.store.put("train", pack_tree(logs), ".tar").to_dict(),
        }
        if spec.get("demo_video"):
            from avaforge.trainer.demo_video import render_demo

            video = ctx.cache.file(ArtifactRef(**spec["demo_video"]), ".mp4")
            out = tmp / "demo.mp4"
            await asyncio.to_thread(render_demo, result.checkpoint, video, out, work=tmp / "demo_work")
            stored["demo"] = ctx.store.put("train", out.read_bytes(), ".mp4").to_dict()
        await jobs.put(ctx.queue, f"train.{job}.result", stored)
