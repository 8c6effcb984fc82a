"""``JobClips``: the workbench's ``ClipSource`` over one job's artifacts (KV facts + S3), for ``create_app``.

The app calls a ClipSource from its worker threads; the job's facts live in NATS KV, whose client belongs to
the service's event loop, so each KV call is handed to that loop (``run_coroutine_threadsafe``). Rawframes
are fetched once per content digest into the service's cache folder and reused (``LocalCache``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from avaforge.formats.actions import ActionList
from avaforge.settings import PipelineSettings
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.workbench.document import Document
from services.annotate import handlers
from services.common import jobs
from services.common.artifacts import LocalCache

T = TypeVar("T")
CLIPS_TTL_S = 5.0  # a running job gains clips as tracking finishes; the list is re-read at most this often
KV_TIMEOUT_S = 30.0


class JobClips:
    def __init__(
        self,
        queue: Any,  # avaforge.queue.WorkQueue, used on ``loop`` only
        store: ArtifactStore,
        cache: LocalCache,
        spec: dict[str, Any],  # the job's spec (KV <job>), read by the caller, who checked the owner
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.queue, self.store, self.cache, self.spec, self.loop = queue, store, cache, spec, loop
        self.job_id: str = spec["job_id"]
        self._actions = ActionList.from_obj(spec["actions"])
        self._settings = PipelineSettings.from_dict(spec["settings"])
        self._clips: tuple[float, list[str]] = (0.0, [])
        self._inputs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # clip -> (ingest, track) facts
        self._lock = threading.Lock()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(KV_TIMEOUT_S)

    def clip_ids(self) -> list[str]:
        """The clips whose tracks exist (what a document starts from), re-read every CLIPS_TTL_S."""
        with self._lock:
            stamp, ids = self._clips
            if time.monotonic() - stamp > CLIPS_TTL_S:
                ids = self._run(jobs.clip_facts(self.queue, self.job_id, "track"))
                self._clips = (time.monotonic(), ids)
            return ids

    def actions(self) -> ActionList:
        return self._actions

    def _facts(self, clip_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if clip_id not in self._inputs:  # facts of a clip are final once recorded: read once
            item = {"job": self.job_id, "clip_id": clip_id}
            ingested, tracked = self._run(jobs.inputs(self.queue, item, "ingest", "track"))
            self._inputs[clip_id] = (ingested, tracked)
        return self._inputs[clip_id]

    def initial_document(self, clip_id: str) -> Document:
        ingested, tracked = self._facts(clip_id)
        return handlers.initial_document(self.cache, ingested, tracked, self._actions, self._settings)

    def rawframes(self, clip_id: str) -> Path:
        return self.cache.folder(ArtifactRef(**self._facts(clip_id)[0]["rawframes"]))

    def crop_cache(self, clip_id: str) -> Path:
        return self.cache.root / "crops" / self.job_id / clip_id

    def publish(self, clip_id: str, labels: ClipLabels, review: bool) -> None:
        outputs = handlers.labels_outputs(self.store, labels)
        if review:
            self._run(handlers.record_review(self.queue, self.job_id, clip_id, outputs))
        else:
            self._run(handlers.record_labels(self.queue, self.spec, clip_id, outputs))
