"""The annotate service's work on a job's artifacts: a clip's first workbench document (its frames info and
tracks, as the VIA export reads them, with autolabel's suggestions) and publishing saved labels as the
clip's ``via_import`` output, exactly as an imported finished VIA project is recorded, so that the dataset
stage (``avaforge remote build``) builds from them. The service runs no queue stage (``HANDLERS`` is empty).
"""

from __future__ import annotations

from typing import Any

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.settings import PipelineSettings
from avaforge.stages import autolabel
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.workbench.document import Document, build_document
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.worker import Handler

HANDLERS: dict[str, Handler] = {}


def initial_document(
    cache: LocalCache,
    ingested: dict[str, Any],
    tracked: dict[str, Any],
    actions: ActionList,
    s: PipelineSettings,
) -> Document:
    """The tracked boxes of every labelled second (those the VIA export gets), with autolabel's suggestions
    when the action list has autolabel's actions (``avaforge autolabel``'s heuristic, computed here)."""
    finfo = FramesInfo.from_dict(ingested["frames"])
    tracks = Tracks.load(cache.file(ArtifactRef(**tracked["tracks"]), ".json"))
    try:
        suggestions = autolabel.suggest(finfo, tracks, actions, s.autolabel, s.via.min_score)
    except FormatError:  # the job's actions lack autolabel's walk/still actions: no suggestions
        suggestions = None
    return build_document(finfo, tracks, s.via.min_score, suggestions, [a.id for a in actions])


def labels_outputs(store: ArtifactStore, labels: ClipLabels) -> dict[str, Any]:
    """The labels artifact and the fact's value, as ``services.via.handlers.via_import_item`` records them."""
    ref = store.put("labels", labels.to_bytes(), ".json")
    return {"labels": ref.to_dict(), "unlabelled": labels.unlabelled}


async def record_labels(queue: Any, spec: dict[str, Any], clip_id: str, outputs: dict[str, Any]) -> None:
    """The clip's labels become the job's: its ``via_import`` fact (what the dataset stage reads); a failed
    upload's import error for the clip is cleared, as a good upload clears it."""
    item = {
        "job": spec["job_id"],
        "clip_id": clip_id,
        "settings": spec["settings"],
        "actions": spec["actions"],
    }
    await jobs.complete(queue, item, "via_import", outputs)
    error_key = f"{spec['job_id']}.{jobs.IMPORT_ERRORS}.{clip_id}"
    if await jobs.get(queue, error_key) is not None:
        await queue.jobs.delete(error_key)


async def record_review(queue: Any, job_id: str, clip_id: str, outputs: dict[str, Any]) -> None:
    await jobs.put(queue, f"{job_id}.{jobs.REVIEW_LABELS}.{clip_id}", outputs)
