"""The trainer's queue handler: one training job from its dataset in S3, mmaction2 in a thread, progress and
cancel through the job's KV facts, results stored in S3.

KV facts: ``train.<id>`` (spec, cancel flag), ``train.<id>.progress`` (iteration, loss), ``train.<id>.result``
(config, metrics, checkpoint, logs, in S3), ``train.<id>.error``, ``train.<id>.cancelled``.

Where the run happens is the deployment's choice (services/trainer/pytorchjob.py): a child process here with
AVAFORGE_TRAIN_NPROC DDP processes (default), or a Kubeflow PyTorchJob (AVAFORGE_TRAIN_LAUNCHER=pytorchjob)
whose pods share progress, checkpoints and results with this worker through S3 (job_state.py).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from avaforge.archive import pack_tree, unpack_tree
from avaforge.cancel import requested as cancel_requested
from avaforge.storage import ArtifactRef
from services.common import jobs
from services.common.worker import Context
from services.trainer.pytorchjob import TrainingDeployment

K8S_POLL_S = 5.0


class TrainingFailed(RuntimeError):
    """The training run failed (the message names the original error)."""


def _die_with_parent() -> None:
    """In the training process: be killed when the worker dies (a SIGKILLed worker leaves no orphan run)."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _run_training(  # type: ignore[no-untyped-def]
    dataset: Path, preset: str, run_dir: Path, iters: int, progress: Path, cancel: Path, nproc: int = 1
):
    """In the training process: train; the run's files (None when cancelled). Only plain values cross back,
    so the worker never imports torch, mmengine or mmaction2."""
    from avaforge.trainer.hooks import TrainingCancelled
    from avaforge.trainer.train import train

    try:
        result = train(
            dataset, preset, run_dir, iters=iters, progress_file=progress, cancel_file=cancel, nproc=nproc
        )
    except TrainingCancelled:
        return None
    except Exception as exc:
        raise TrainingFailed(f"{type(exc).__name__}: {exc}") from None
    return {"run_dir": result.run_dir, "config": result.config, "checkpoint": result.checkpoint}


def _render_demo(checkpoint: Path, video: Path, out: Path, work: Path) -> None:
    from avaforge.trainer.demo_video import render_demo

    render_demo(checkpoint, video, out, work=work)


def _progress(path: Path) -> dict[str, Any] | None:
    """The progress file as the hook last wrote it (None before its first iteration)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet (the hook replaces it atomically)
        return None


async def train_item(ctx: Context, p: dict[str, Any]) -> None:
    """Run one training job: the dataset from S3, mmaction2 in a process of its own, progress and cancel
    through KV. The run is a child process, not a thread: torch/mmaction2 imports and set-up hold the GIL for
    seconds (a loop stall of 3.9 s was measured), which would starve the queue's progress reports past a
    short ack wait and have the item redelivered to another worker mid-run."""
    job = p["job"]
    spec = await jobs.get(ctx.queue, f"train.{job}")
    if spec is None:
        raise RuntimeError(f"training job {job} has no spec")
    if spec.get("cancel"):  # cancelled before it started: nothing to stop, nothing stored
        await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": None})
        return
    deployment = TrainingDeployment.from_env()
    if deployment.launcher == "pytorchjob":
        await _train_on_kubernetes(ctx, job, spec, deployment)
        return
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # every blocking call in a thread: the loop keeps serving the API and the other items meanwhile
        # streamed to a file (its digest checked at the end), then extracted member by member: a dataset of
        # gigabytes never sits in memory
        tar = await asyncio.to_thread(ctx.store.get_file, ArtifactRef(**spec["dataset"]), tmp / "dataset.tar")
        await asyncio.to_thread(unpack_tree, tar, tmp / "dataset", f"dataset of {job}")
        tar.unlink()
        loop = asyncio.get_running_loop()
        pool = ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent
        )
        try:
            await _train_and_store(ctx, loop, pool, job, spec, tmp, deployment.nproc)
        finally:  # a run still going here was abandoned (the worker stops): end it with the item
            for proc in list((pool._processes or {}).values()):
                proc.kill()
            await asyncio.to_thread(pool.shutdown, True)


async def _train_and_store(  # type: ignore[no-untyped-def]
    ctx: Context, loop, pool: ProcessPoolExecutor, job: str, spec: dict[str, Any], tmp: Path, nproc: int
) -> None:
    progress, cancel = tmp / "progress.json", tmp / "cancel"
    args = (tmp / "dataset", spec["preset"], tmp / "run", spec["iters"], progress, cancel, nproc)
    task = loop.run_in_executor(pool, _run_training, *args)
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
    except Exception as exc:  # a training failure is final: report it, do not retry for hours
        message = str(exc) if isinstance(exc, TrainingFailed) else f"{type(exc).__name__}: {exc}"
        await jobs.put(ctx.queue, f"train.{job}.error", {"message": message})
        return
    if result is None:
        await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": _progress(progress)})
        return
    run, checkpoint = result["run_dir"], result["checkpoint"]
    logs = tmp / "logs"
    for log in run.glob("*/*.log"):
        (logs / log.parent.name).mkdir(parents=True, exist_ok=True)
        (logs / log.parent.name / log.name).write_bytes(log.read_bytes())

    def store(data: bytes, suffix: str) -> dict[str, Any]:
        return ctx.store.put("train", data, suffix).to_dict()

    stored = await asyncio.to_thread(
        lambda: {
            "config": store(result["config"].read_bytes(), ".py"),
            "metrics": store((run / "metrics.json").read_bytes(), ".json"),
            "checkpoint": store(checkpoint.read_bytes(), ".pth"),
            "logs": store(pack_tree(logs), ".tar"),
        }
    )
    if spec.get("demo_video"):
        video = await asyncio.to_thread(ctx.cache.file, ArtifactRef(**spec["demo_video"]), ".mp4")
        out = tmp / "demo.mp4"
        await loop.run_in_executor(pool, _render_demo, checkpoint, video, out, tmp / "demo_work")
        stored["demo"] = await asyncio.to_thread(store, out.read_bytes(), ".mp4")
    await jobs.put(ctx.queue, f"train.{job}.result", stored)


async def _train_on_kubernetes(ctx: Context, job: str, spec: dict[str, Any], d: TrainingDeployment) -> None:
    """The run as a PyTorchJob: spec to S3, the job created, progress and the result read back from S3,
    cancel = delete. A redelivered item (this worker died) finds the job already there and follows it."""
    from services.trainer import job_state, kube, pytorchjob

    pod_spec = {k: spec[k] for k in ("dataset", "preset", "iters")}
    await asyncio.to_thread(job_state.write_json, ctx.store, job_state.spec_key(job), pod_spec)
    api = kube.PyTorchJobs(d.namespace)
    name = pytorchjob.job_name(job)
    await asyncio.to_thread(api.create, pytorchjob.render(job, d))
    seen = None
    while True:
        await asyncio.sleep(K8S_POLL_S)
        state = await asyncio.to_thread(job_state.read_json, ctx.store, job_state.state_key(job)) or {}
        if (now := state.get("progress")) is not None and now != seen:
            seen = now
            await jobs.put(ctx.queue, f"train.{job}.progress", now)
        if state.get("result"):
            break
        current = await jobs.get(ctx.queue, f"train.{job}")
        if cancel_requested() or (current and current.get("cancel")):
            await asyncio.to_thread(api.delete, name)
            await jobs.put(ctx.queue, f"train.{job}.cancelled", {"at": seen})
            return
        status = kube.finished(await asyncio.to_thread(api.get, name))
        if status == "Failed":
            message = f"PyTorchJob {name} failed (its pods' logs say why)"
            await jobs.put(ctx.queue, f"train.{job}.error", {"message": message})
            return
    stored = dict(state["result"])
    if spec.get("demo_video"):  # rendered here, as in the local path, from the stored checkpoint
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            checkpoint = await asyncio.to_thread(ctx.cache.file, ArtifactRef(**stored["checkpoint"]), ".pth")
            video = await asyncio.to_thread(ctx.cache.file, ArtifactRef(**spec["demo_video"]), ".mp4")
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            try:
                await asyncio.get_running_loop().run_in_executor(
                    pool, _render_demo, checkpoint, video, tmp / "demo.mp4", tmp / "demo_work"
                )
            finally:
                await asyncio.to_thread(pool.shutdown, True)
            data = (tmp / "demo.mp4").read_bytes()
            stored["demo"] = await asyncio.to_thread(lambda: ctx.store.put("train", data, ".mp4").to_dict())
    await jobs.put(ctx.queue, f"train.{job}.result", stored)


HANDLERS = {"train": train_item}
