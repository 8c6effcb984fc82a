"""Deleting a job: its KV facts, and the artifacts that only it references.

Artifacts are content-addressed, so two jobs on the same video (or any identical output: a re-run, the same
clip cut twice) share S3 objects. An artifact of the job is deleted only when no fact of any other job names
the same key: the facts (spec + every stage output, fan-out parts included) are the complete list of what a
job references, and every fact is scanned (bounded by the KV retention limit). The job's workbench files (the
annotate service's revisions and clip assignments under ``annotate/<job>/``) are the job's alone and go too.
Not covered: an upload that is
not yet part of any job (``UploadVideo`` then ``SubmitJob``) - SubmitJob checks that the video still exists
and answers NOT_FOUND, so the client uploads it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from avaforge.queue import WorkQueue
from avaforge.storage import ArtifactRef, ArtifactStore, StorageError
from avaforge.workbench.revisions import delete_prefix, job_prefix
from services.common import jobs

log = logging.getLogger("avaforge.gateway.lifecycle")
_REF_FIELDS = {"bucket", "key", "digest", "size"}


def artifact_refs(value: Any) -> Iterator[ArtifactRef]:
    """Every artifact reference inside a fact (any depth of dicts and lists)."""
    if isinstance(value, dict):
        if value.keys() >= _REF_FIELDS:
            yield ArtifactRef(**{k: value[k] for k in _REF_FIELDS})
            return
        for v in value.values():
            yield from artifact_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from artifact_refs(v)


def job_of(key: str) -> str:
    return key.split(".", 1)[0]


@dataclass
class Deleted:
    artifacts_deleted: int
    artifacts_shared: int
    facts_deleted: int
    workbench_files: int = 0  # the annotate service's revisions and assignments of the job


async def delete_job(queue: WorkQueue, store: ArtifactStore, job_id: str) -> Deleted:
    """Remove the job's facts, then its artifacts no other job references. Facts go first: a job half
    deleted by a crash is gone for its owner, and a second delete finds what is left of it."""
    facts: dict[str, dict[str, Any]] = {}
    others: set[str] = set()
    for key in await jobs.keys(queue, ""):
        value = await jobs.get(queue, key)
        if value is None:
            continue
        if job_of(key) == job_id:
            facts[key] = value
        else:
            others.update(ref.key for ref in artifact_refs(value))
    mine = {ref.key: ref for value in facts.values() for ref in artifact_refs(value)}
    for key in facts:
        await queue.jobs.purge(key)
    deleted = shared = 0
    for key, ref in sorted(mine.items()):
        if key in others:
            shared += 1
            continue
        try:
            await asyncio.to_thread(store.delete, ref)
            deleted += 1
        except StorageError as exc:  # e.g. already gone after an interrupted delete
            log.warning("job %s: artifact %s not deleted: %s", job_id, key, exc)
    workbench = await asyncio.to_thread(delete_prefix, store, job_prefix(job_id))
    log.info(
        "job %s deleted: %d facts, %d artifacts, %d workbench files", job_id, len(facts), deleted, workbench
    )
    return Deleted(deleted, shared, len(facts), workbench)
