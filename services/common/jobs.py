"""Job records in JetStream KV: one key per fact, so concurrent workers never overwrite each other.

Keys (dots separate, all under the job id):
  <job>                     the job spec and its terminal state (gateway)
  <job>.clip.<clip>         ClipInfo + FramesInfo + rawframes/clip artifacts (ingest)
  <job>.det.<clip>.<i>      detections of fan-out batch i of the clip (detector)
  <job>.track.<clip>        detections + tracks artifacts (tracker)
  <job>.prop.<clip>         proposals artifact (proposals)
  <job>.via.<clip>          VIA project + zip artifacts (via)
  <job>.labels.<clip>       imported labels artifact (via import)
  <job>.dataset             dataset tar artifact (dataset build)
  <job>.error               the stage error that failed the job
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from avaforge.queue import WorkQueue
from avaforge.v1 import common_pb2


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


async def watch(current: Callable[[], Awaitable[Any]], poll_s: float = 0.3) -> AsyncIterator[Any]:
    """Yield the job message each time it changes, until it reaches a terminal state."""
    last = None
    while True:
        job = await current()
        blob = job.SerializeToString(deterministic=True)
        if blob != last:
            last = blob
            yield job
        if job.state in TERMINAL_STATES:
            return
        await asyncio.sleep(poll_s)
