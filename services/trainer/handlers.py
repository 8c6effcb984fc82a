"""The trainer's queue handler: one training job from its dataset in S3, mmaction2 in a thread, progress and
cancel through the job's KV facts, results stored in S3.

KV facts: ``train.<id>`` (spec, cancel flag), ``train.<id>.progress`` (iteration, loss), ``train.<id>.result``
(config, metrics, checkpoint, logs, in S3), ``train.<id>.error``, ``train.<id>.cancelled``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

from avaforge.archive import pack_tree, unpack_tree
from avaforge.storage import ArtifactRef
from services.common import jobs
from services.common.worker import Context


async def train_item(ctx: Context, p: dict[str, Any]) -> None:
    """Run one training job: the dataset from S3, mmaction2 in a thread, progress and cancel through KV."""
    # The first import loads torch and mmaction2 (seconds, more under load): in a thread, or the loop stalls
    # and the API and health RPCs beside it time out on NATS (nats: timeout).
    await asyncio.to_thread(importlib.import_module, "avaforge.trainer.train")
    from avaforge.trainer.hooks import TrainingCancelled
    from avaforge.trainer.train import train

    job = p["job"]
    spec = await jobs.get(ctx.queue, f"train.{job}")
    if spec is None:
        raise RuntimeError(f"training job {job} has no spec")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # every blocking call in a thread: the loop keeps serving the API and the other items meanwhile
        data = await asyncio.to_thread(ctx.store.get, ArtifactRef(**spec["dataset"]))
        await asyncio.to_thread(unpack_tree, data, tmp / "dataset", f"dataset of {job}")
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

        def store(data: bytes, suffix: str) -> dict[str, Any]:
            return ctx.store.put("train", data, suffix).to_dict()

        stored = await asyncio.to_thread(
            lambda: {
                "config": store(result.config.read_bytes(), ".py"),
                "metrics": store((run / "metrics.json").read_bytes(), ".json"),
                "checkpoint": store(result.checkpoint.read_bytes(), ".pth"),
                "logs": store(pack_tree(logs), ".tar"),
            }
        )
        if spec.get("demo_video"):
            from avaforge.trainer.demo_video import render_demo

            video = await asyncio.to_thread(ctx.cache.file, ArtifactRef(**spec["demo_video"]), ".mp4")
            out = tmp / "demo.mp4"
            await asyncio.to_thread(render_demo, result.checkpoint, video, out, work=tmp / "demo_work")
            stored["demo"] = await asyncio.to_thread(store, out.read_bytes(), ".mp4")
        await jobs.put(ctx.queue, f"train.{job}.result", stored)


HANDLERS = {"train": train_item}
