"""Job records in JetStream KV: one key per fact, so concurrent workers never overwrite each other.

Keys (dots separate, all under the job id); ``<stage>`` is a stage name of ``avaforge.pipeline``:
  <job>                       the job spec and its terminal state (gateway)
  <job>.<stage>.<clip>        a clip's outputs of the stage (artifact refs and small values)
  <job>.parts.<stage>.<clip>.<i>  fan-out item i of a batch stage (detect)
  <job>.ingested.<i>          source video i is cut into clips
  <job>.dataset               the dataset (a job-unit stage has no clip part)
  <job>.error                 the stage error that failed the job
  <job>.import_errors.<clip>  why the clip's last uploaded project did not import (the job goes on)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from avaforge import pipeline
from avaforge.queue import WorkQueue
from avaforge.v1 import common_pb2

IMPORT_ERRORS = "import_errors"
REVIEW_LABELS = "review_labels"  # <job>.review_labels.<clip>: a reviewer's pass (the report's agreement)


async def submit_video(
    queue: WorkQueue,
    job_id: str,
    index: int,
    video: dict[str, Any],
    filename: str,
    settings: dict[str, Any],
    actions: dict[str, Any],
) -> None:
    """Queue video ``index`` of a job for ingest, the first stage; the message id makes a resubmit a no-op."""
    await queue.submit(
        "ingest",
        {
            "job": job_id,
            "index": index,
            "video": video,
            "filename": filename,
            "settings": settings,
            "actions": actions,
        },
        msg_id=f"{job_id}.ingest.{index}",
    )


def fact(job: str, stage: str, clip_id: str = "", part: int | None = None) -> str:
    """The KV key of a stage's output for one clip (or for the job, with no clip), or of fan-out item
    ``part`` of a batch stage (kept under ``parts.``: listing a stage's clip facts never meets them)."""
    name = pipeline.stage(stage).name
    if part is not None:
        return f"{job}.parts.{name}.{clip_id}.{part:05d}"
    return f"{job}.{name}" + (f".{clip_id}" if clip_id else "")


async def clip_facts(queue: WorkQueue, job: str, stage: str) -> list[str]:
    """The clip ids that have ``stage``'s output recorded (clip ids may contain dots)."""
    prefix = fact(job, stage) + "."
    return [k[len(prefix) :] for k in await keys(queue, prefix)]


async def parts(queue: WorkQueue, job: str, stage: str, clip_id: str, count: int) -> list[dict[str, Any]]:
    """The ``count`` fan-out items of ``stage`` recorded for one clip, in item order, or [] while any is
    missing. Each is read by its key: a KV key listing (an ordered-consumer watch in nats-py) can come back
    short on a loaded machine, which would leave a finished clip unmerged."""
    found = [await get(queue, fact(job, stage, clip_id, i)) for i in range(count)]
    return [] if any(f is None for f in found) else found  # type: ignore[misc]


async def complete(
    queue: WorkQueue, item: dict[str, Any], stage: str, outputs: dict[str, Any], finfo: Any = None
) -> None:
    """Record ``stage``'s outputs for the item's clip, then queue the stages that ``avaforge.pipeline`` says
    come next (message ids make a repeat of this after a redelivery a no-op). A batch stage next fans out
    as ``pipeline.fan_out`` says, from ``finfo`` (the clip's FramesInfo)."""
    job, cid = item["job"], item.get("clip_id", "")
    await put(queue, fact(job, stage, cid), outputs)
    for nxt in pipeline.then(stage):
        base = {"job": job, "clip_id": cid, "settings": item["settings"], "actions": item["actions"]}
        if nxt.unit != "batch":
            await queue.submit(nxt.name, base, msg_id=fact(job, nxt.name, cid))
            continue
        from avaforge.settings import PipelineSettings

        batches = pipeline.fan_out(nxt.name, finfo, PipelineSettings.from_dict(item["settings"]))
        for i, frames in enumerate(batches):
            part = {**base, "frames": frames, "batch": i, "batches": len(batches)}
            await queue.submit(nxt.name, part, msg_id=fact(job, nxt.name, cid, i))


async def inputs(queue: WorkQueue, item: dict[str, Any], *stages: str) -> list[dict[str, Any]]:
    """The facts of ``stages`` for the item's clip; a missing one is retried (it may not be recorded yet)."""
    out = []
    for stage in stages:
        found = await get(queue, fact(item["job"], stage, item["clip_id"]))
        if found is None:
            raise RuntimeError(f"clip {item['clip_id']} of job {item['job']} has no {stage} output yet")
        out.append(found)
    return out


async def put(queue: WorkQueue, key: str, value: dict[str, Any]) -> None:
    await queue.jobs.put(key, json.dumps(value, sort_keys=True).encode())


async def get(queue: WorkQueue, key: str) -> dict[str, Any] | None:
    import nats.js.errors

    try:
        entry = await queue.jobs.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    return json.loads(entry.value) if entry.value else None


async def keys(queue: WorkQueue, prefix: str) -> list[str]:
    import nats.js.errors

    try:
        return sorted(k for k in await queue.jobs.keys() if k.startswith(prefix))
    except nats.js.errors.NoKeysError:
        return []


TERMINAL_STATES = {
    common_pb2.JOB_STATE_SUCCEEDED,
    common_pb2.JOB_STATE_FAILED,
    common_pb2.JOB_STATE_CANCELLED,
}


async def watch(
    current: Callable[[], Awaitable[Any]], poll_s: float = 0.3, patience_s: float = 60.0
) -> AsyncIterator[Any]:
    """Yield the job message each time it changes, until it reaches a terminal state. A NATS request that
    times out (a busy server) is asked again on the next poll; only ``patience_s`` of nothing but timeouts
    ends the watch with the error."""
    import nats.errors

    last, failing_since = None, None
    while True:
        try:
            job = await current()
        except nats.errors.TimeoutError:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > patience_s:
                raise
            await asyncio.sleep(poll_s)
            continue
        failing_since = None
        blob = job.SerializeToString(deterministic=True)
        if blob != last:
            last = blob
            yield job
        if job.state in TERMINAL_STATES:
            return
        await asyncio.sleep(poll_s)
