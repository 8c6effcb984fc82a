"""The trainer's queue handler: one training job from its dataset in S3, mmaction2 in a thread, progress and
cancel through the job's KV facts, results stored in S3.

KV facts: ``train.<id>`` (spec, cancel flag), ``train.<id>.progress`` (iteration, loss), ``train.<id>.result``
(config, metrics, checkpoint, logs, in S3), ``train.<id>.error``, ``train.<id>.cancelled``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from avaforge.archive import pack_tree, unpack_tree
from avaforge.cancel import requested as cancel_requested
from avaforge.storage import ArtifactRef
from services.common import jobs
from services.common.worker import Context

# Imported by the worker before it takes an item (``services.common.worker.run``): torch, mmengine and
# mmaction2 take 5-40 s to import on a loaded machine, holding the GIL for seconds at a time (measured: the
# event loop stalled 3.9 s while a thread imported them), which would starve the queue's progress reports
# past a short ack wait and have the item redelivered to another worker mid-run. The plugin comes first: it
# guards mmaction2's missing module and installs the RoIAlign adapter before mmaction2 is imported.
PRELOAD = (
    "avaforge.trainer.plugin",
    "avaforge.trainer.train",
    "mmengine.runner",
    "mmaction.models",
    "mmaction.datasets",
    "mmaction.datasets.transforms",
    "mmaction.engine",
    "mmaction.evaluation",
    "mmaction.visualization",
    "avaforge.trainer.demo_video",
)


def _training() -> tuple[Any, type[Exception]]:
    """mmaction2's training entry (imports torch and mmengine: seconds, so never on the event loop, where they
    would hold back the queue's progress reports past a short ack wait)."""
    from avaforge.trainer.hooks import TrainingCancelled
    from avaforge.trainer.train import train

    return train, TrainingCancelled


def _progress(path: Path) -> dict[str, Any] | None:
    """The progress file as the hook last wrote it (None before its first iteration)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (the hook replaces it atomically)
        return None


async def train_item(ctx: Context, p: dict[str, Any]) -> None:
    """Run one training job: the dataset from S3, mmaction2 in a thread, progress and cancel through KV."""
    train, TrainingCancelled = await asyncio.to_thread(_training)
    job = p["job"]
    spec = await jobs.get(ctx.queue, f"train.{job}")
    if spec is None:
        raise RuntimeError(f"training job {job} has no spec")
    if spec.get("cancel"):  # cancelled before it started: nothing to stop, nothing stored
        await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": None})
        return
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
            if (now := _progress(progress)) is not None and now != seen:
                seen = now
                await jobs.put(ctx.queue, f"train.{job}.progress", now)
            current = await jobs.get(ctx.queue, f"train.{job}")
            if cancel_requested() or (current and current.get("cancel")):
                cancel.touch()  # the progress hook stops the run after this iteration
        try:
            result = task.result()
        except TrainingCancelled:
            await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": _progress(progress)})
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
