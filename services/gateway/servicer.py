"""The gateway: validates requests, stores uploads, turns a job into work items, and reports job state read
back from the job's KV facts (so it can restart without losing jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from avaforge import pipeline
from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.proto_convert import (
    actions_from_proto,
    actions_to_proto,
    settings_from_proto,
    settings_to_proto,
)
from avaforge.queue import WorkQueue
from avaforge.settings import ImportSettings, PipelineSettings, job_part
from avaforge.stages.frames import FramesInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import import_project, project_clip_id
from avaforge.storage import ArtifactRef, ArtifactStore, StorageError
from avaforge.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.common import auth, jobs
from services.common.convert import ref_from_proto, ref_to_proto
from services.gateway import lifecycle
from services.gateway.streams import ChunkFeed, iterate_in_thread

CHUNK = 1 << 20
CHECKS_KEPT = 32  # clips whose parsed upload-check inputs stay in memory (tracks: ~1 MB a minute of video)
_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,200}")


class Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, queue: WorkQueue, store: ArtifactStore, max_upload_mb: float = 2048) -> None:
        self.queue = queue
        self.store = store
        self.max_upload = int(max_upload_mb * 1024 * 1024)
        self._checks: dict[str, tuple[FramesInfo, Tracks, ActionList, ImportSettings]] = {}

    async def _abort(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
        await context.abort(code, message)

    async def UploadVideo(self, request_iterator, context):  # type: ignore[no-untyped-def]
        """Streamed to S3 as it arrives: the name is checked on the first chunk, and an upload that crosses
        the size limit is refused at once (its partial multipart upload aborted)."""
        chunks = aiter(request_iterator)
        first = await anext(chunks, None)
        name = first.filename if first is not None else ""
        if not _FILENAME.fullmatch(name) or ".." in name:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid video file name {name!r}")
        suffix = "." + name.rsplit(".", 1)[1][:8] if "." in name else ""
        feed = ChunkFeed()
        stored = asyncio.ensure_future(
            asyncio.to_thread(self.store.put_stream, "videos", feed.chunks(), suffix.lower(), self.max_upload)
        )
        size, too_large = 0, False
        try:
            chunk = first
            while chunk is not None:
                size += len(chunk.data)
                if size > self.max_upload:
                    too_large = True
                    break
                if not await feed.put(chunk.data, stored):
                    break  # storing failed: its error is raised below
                chunk = await anext(chunks, None)
            if too_large:
                feed.abort()
            else:
                await feed.end(stored)
            ref = await stored
        except BaseException:  # client gone, cancelled, S3 error: nothing stays behind in S3
            feed.abort()
            with contextlib.suppress(BaseException):
                await stored
            if not too_large:
                raise
        if too_large:
            await self._abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"video {name!r} exceeds the upload size limit AVAFORGE_MAX_UPLOAD_MB="
                f"{self.max_upload / (1 << 20):g} MiB ({size} bytes received so far)",
            )
        return ref_to_proto(ref)

    async def SubmitJob(self, request, context):  # type: ignore[no-untyped-def]
        if not request.videos or len(request.videos) != len(request.filenames):
            await self._abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "give one file name per uploaded video"
            )
        for name in request.filenames:
            if not _FILENAME.fullmatch(name) or ".." in name:
                await self._abort(
                    context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid video file name {name!r}"
                )
        try:
            actions = actions_from_proto(request.actions)
            settings = settings_from_proto(request.settings)
        except FormatError as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        for video in request.videos:
            try:
                exists = self.store.exists(ref_from_proto(video))
            except StorageError as exc:
                await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            if not exists:
                await self._abort(context, grpc.StatusCode.NOT_FOUND, f"video {video.key} was not uploaded")
        job_id = uuid.uuid4().hex[:12]
        spec = {
            "job_id": job_id,
            "owner": auth.current().name,
            "created": time.time(),
            "videos": [ref_from_proto(v).to_dict() for v in request.videos],
            "filenames": list(request.filenames),
            "settings": settings.to_dict(),
            "actions": actions.to_dict(),
            "cancelled": False,
        }
        await jobs.put(self.queue, job_id, spec)
        for i, (video, name) in enumerate(zip(spec["videos"], spec["filenames"], strict=True)):
            await jobs.submit_video(self.queue, job_id, i, video, name, spec["settings"], spec["actions"])
        return await self._job(job_id)

    async def _spec(self, job_id: str, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        """The job's spec, if the caller may see it: its owner, an admin or the service principal. Another
        principal's job answers exactly as an unknown one (NOT_FOUND), so job ids cannot be probed."""
        spec = await jobs.get(self.queue, job_id) if re.fullmatch(r"[0-9a-f]{12}", job_id) else None
        if spec is None or not auth.current().owns(spec.get("owner")):
            await self._abort(context, grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return spec  # type: ignore[return-value]

    async def _job(self, job_id: str) -> common_pb2.Job:
        """The job as its facts show it: progress per stage of ``avaforge.pipeline``, then its state."""
        spec = await jobs.get(self.queue, job_id) or {}
        facts = await jobs.keys(self.queue, f"{job_id}.")
        job = common_pb2.Job(job_id=job_id, owner=spec.get("owner", ""), created=spec.get("created", 0.0))
        if spec:
            job.settings.CopyFrom(settings_to_proto(job_part(PipelineSettings.from_dict(spec["settings"]))))
            job.actions.CopyFrom(actions_to_proto(ActionList.from_obj(spec["actions"])))

        def clip_ids(stage: str) -> list[str]:  # clip facts only: fan-out parts live under ``parts.``
            prefix = jobs.fact(job_id, stage) + "."
            return [k[len(prefix) :] for k in facts if k.startswith(prefix)]

        ingested = clip_ids("ingest")
        for cid in ingested:
            info = (await jobs.get(self.queue, jobs.fact(job_id, "ingest", cid)) or {})["clip"]
            job.clips.add(
                clip_id=info["clip_id"],
                video_id=info["video_id"],
                start_s=info["start_s"],
                length_s=info["length_s"],
                num_frames=info["num_frames"],
                width=info["width"],
                height=info["height"],
            )
        n_videos, n_clips = len(spec.get("videos", [])), len(ingested)

        def clips_done(stage: str) -> int:
            return len(clip_ids(stage))

        videos_done = sum(1 for k in facts if k.startswith(f"{job_id}.ingested."))
        for st in pipeline.STAGES:
            if not st.progress:
                continue
            if st.unit == "video":
                job.progress.add(stage=st.progress, done=videos_done, total=n_videos)
            else:
                job.progress.add(stage=st.progress, done=clips_done(st.name), total=n_clips)
        automatic_done = all(
            clips_done(st.name) == n_clips for st in pipeline.automatic() if st.unit != "video"
        )
        for key in (k for k in facts if k.startswith(f"{job_id}.{jobs.IMPORT_ERRORS}.")):
            job.import_errors.add(**(await jobs.get(self.queue, key) or {}))
        error = await jobs.get(self.queue, f"{job_id}.error")
        if error:
            job.state = common_pb2.JOB_STATE_FAILED
            job.error.CopyFrom(common_pb2.StageError(**error))
        elif spec.get("cancelled"):
            job.state = common_pb2.JOB_STATE_CANCELLED
        elif jobs.fact(job_id, "dataset") in facts:
            job.state = common_pb2.JOB_STATE_SUCCEEDED
        elif n_videos and videos_done == n_videos and automatic_done:
            job.state = common_pb2.JOB_STATE_AWAITING_LABELS
        else:
            job.state = common_pb2.JOB_STATE_RUNNING if facts else common_pb2.JOB_STATE_QUEUED
        return job

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        await self._spec(request.job_id, context)
        return await self._job(request.job_id)

    async def WatchJob(self, request, context) -> AsyncIterator[common_pb2.Job]:  # type: ignore[no-untyped-def]
        await self._spec(request.job_id, context)
        async for job in jobs.watch(lambda: self._job(request.job_id)):
            yield job

    async def CancelJob(self, request, context):  # type: ignore[no-untyped-def]
        """Flag the job cancelled: its queued items are dropped, its running items stopped (ingest's ffmpeg is
        killed; detection and tracking stop between frames); it is CANCELLED from now on. A finished or failed
        job keeps its state. Stored outputs stay (content-addressed, maybe shared with other jobs)."""
        spec = await self._spec(request.job_id, context)
        job = await self._job(request.job_id)
        if job.state in jobs.TERMINAL_STATES:
            return job
        await jobs.put(self.queue, request.job_id, {**spec, "cancelled": True})
        return await self._job(request.job_id)

    async def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        ids = [k for k in await jobs.keys(self.queue, "") if "." not in k]
        specs = [await jobs.get(self.queue, k) for k in ids]
        caller = auth.current()
        ordered = sorted((s for s in specs if s and caller.owns(s.get("owner"))), key=lambda s: -s["created"])
        if request.limit:
            ordered = ordered[: request.limit]
        return gateway_pb2.ListJobsResponse(jobs=[await self._job(s["job_id"]) for s in ordered])

    async def _stream(self, ref: dict[str, Any]) -> AsyncIterator[gateway_pb2.DataChunk]:
        """An artifact from S3 chunk by chunk (never whole in memory); its digest is checked at the end."""
        artifact = ArtifactRef(**ref)
        async for data in iterate_in_thread(lambda: self.store.get_stream(artifact)):
            yield gateway_pb2.DataChunk(data=data)

    async def DownloadViaArchive(self, request, context):  # type: ignore[no-untyped-def]
        await self._spec(request.job_id, context)
        via = await jobs.get(self.queue, jobs.fact(request.job_id, "via", request.clip_id))
        if via is None:
            await self._abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no VIA project for clip {request.clip_id!r} in job {request.job_id}",
            )
        async for chunk in self._stream(via["archive"]):  # type: ignore[index]
            yield chunk

    async def UploadFinishedProject(self, request, context):  # type: ignore[no-untyped-def]
        """Checked on arrival with the import's own code (frames info from KV, tracks from S3): a bad project
        is INVALID_ARGUMENT naming the region and the problem, and nothing is queued."""
        spec = await self._spec(request.job_id, context)
        if len(request.project) > self.max_upload:
            await self._abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "project too large")
        try:
            clip_id = project_clip_id(request.project, "uploaded project")
        except FormatError as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if await jobs.get(self.queue, jobs.fact(request.job_id, "via", clip_id)) is None:
            await self._abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"project is for clip {clip_id!r}, which is not part of job {request.job_id}",
            )
        frames, tracks, actions, imports = await self._check_inputs(request.job_id, clip_id, spec)
        try:
            await asyncio.to_thread(
                import_project, request.project, f"{clip_id} (uploaded)", frames, tracks, actions, imports
            )
        except FormatError as exc:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        ref = self.store.put("finished", request.project, ".via3.json")
        await self.queue.submit(
            "via_import",
            {
                "job": request.job_id,
                "clip_id": clip_id,
                "finished": ref.to_dict(),
                "name": f"{clip_id} (uploaded)",
                # autolabel's ticks the project started from: equal labels are machine-made (provenance)
                "suggestions": [[x.second, x.person_id, sorted(x.action_ids)] for x in request.suggestions],
                "settings": spec["settings"],
                "actions": spec["actions"],
            },
            msg_id=f"{jobs.fact(request.job_id, 'via_import', clip_id)}.{ref.digest}",
        )
        return await self._job(request.job_id)

    async def _check_inputs(
        self, job_id: str, clip_id: str, spec: dict[str, Any]
    ) -> tuple[FramesInfo, Tracks, ActionList, ImportSettings]:
        """What the check of an uploaded project reads: the clip's frames info and tracks, the job's actions
        and import settings. Parsed in a thread (tracks take tens of ms) and kept for the clip's next uploads:
        the key names the job and the clip's content-addressed tracks and frames, none of which change."""
        item = {"job": job_id, "clip_id": clip_id}
        ingested, tracked = await jobs.inputs(self.queue, item, "ingest", "track")
        frames = json.dumps(ingested["frames"], sort_keys=True)
        key = f"{job_id}/{clip_id}/{tracked['tracks']['digest']}/{frames}"
        if (found := self._checks.pop(key, None)) is None:

            def parse() -> tuple[FramesInfo, Tracks, ActionList, ImportSettings]:
                return (
                    FramesInfo.from_dict(ingested["frames"]),
                    Tracks.from_bytes(self.store.get(ArtifactRef(**tracked["tracks"]))),
                    ActionList.from_obj(spec["actions"]),
                    PipelineSettings.from_dict(spec["settings"]).imports,
                )

            found = await asyncio.to_thread(parse)
        self._checks[key] = found  # the most recently used last
        while len(self._checks) > CHECKS_KEPT:
            self._checks.pop(next(iter(self._checks)))
        return found

    async def BuildDataset(self, request, context):  # type: ignore[no-untyped-def]
        spec = await self._spec(request.job_id, context)
        labels = await jobs.clip_facts(self.queue, request.job_id, "via_import")
        if not labels:
            await self._abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "no finished project imported yet"
            )
        await self.queue.submit(
            "dataset",
            {"job": request.job_id, "settings": spec["settings"], "actions": spec["actions"]},
            msg_id=f"{jobs.fact(request.job_id, 'dataset')}.{len(labels)}",
        )
        return await self._job(request.job_id)

    async def DownloadDataset(self, request, context):  # type: ignore[no-untyped-def]
        await self._spec(request.job_id, context)
        ds = await jobs.get(self.queue, jobs.fact(request.job_id, "dataset"))
        if ds is None:
            await self._abort(context, grpc.StatusCode.FAILED_PRECONDITION, "the dataset is not built yet")
        async for chunk in self._stream(ds["dataset"]):  # type: ignore[index]
            yield chunk

    async def DeleteJob(self, request, context):  # type: ignore[no-untyped-def]
        """A job that is not running: its facts and the artifacts no other job references (lifecycle.py)."""
        await self._spec(request.job_id, context)
        job = await self._job(request.job_id)
        if job.state in (common_pb2.JOB_STATE_QUEUED, common_pb2.JOB_STATE_RUNNING):
            await self._abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {request.job_id} is {common_pb2.JobState.Name(job.state)}: cancel it before deleting",
            )
        done = await lifecycle.delete_job(self.queue, self.store, request.job_id)
        return gateway_pb2.DeleteJobResponse(
            job_id=request.job_id,
            artifacts_deleted=done.artifacts_deleted,
            artifacts_shared=done.artifacts_shared,
            facts_deleted=done.facts_deleted,
            workbench_files_deleted=done.workbench_files,
        )
