"""The gateway: validates requests, stores uploads, turns a job into work items, and reports job state read
back from the job's KV facts (so it can restart without losing jobs)."""

from __future__ import annotations

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
from avaforge.settings import PipelineSettings
from avaforge.stages.via_import import project_clip_id
from avaforge.storage import ArtifactRef, ArtifactStore, StorageError
from avaforge.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.common import auth, jobs
from services.common.convert import ref_from_proto, ref_to_proto

CHUNK = 1 << 20
_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,200}")


class Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self, queue: WorkQueue, store: ArtifactStore, max_upload_mb: float = 2048) -> None:
        self.queue = queue
        self.store = store
        self.max_upload = int(max_upload_mb * 1024 * 1024)

    async def _abort(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> None:
        await context.abort(code, message)

    async def UploadVideo(self, request_iterator, context):  # type: ignore[no-untyped-def]
        name, parts, size = "", [], 0
        async for chunk in request_iterator:
            name = name or chunk.filename
            size += len(chunk.data)
            if size > self.max_upload:
                await self._abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"upload exceeds {self.max_upload // (1024 * 1024)} MiB",
                )
            parts.append(chunk.data)
        if not _FILENAME.fullmatch(name) or ".." in name:
            await self._abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"invalid video file name {name!r}")
        suffix = "." + name.rsplit(".", 1)[1][:8] if "." in name else ""
        return ref_to_proto(self.store.put("videos", b"".join(parts), suffix.lower()))

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
        job = common_pb2.Job(job_id=job_id)
        if spec:
            job.settings.CopyFrom(settings_to_proto(PipelineSettings.from_dict(spec["settings"])))
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
        spec = await self._spec(request.job_id, context)
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
        data = self.store.get(ArtifactRef(**ref))
        for i in range(0, len(data), CHUNK):
            yield gateway_pb2.DataChunk(data=data[i : i + CHUNK])

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
        ref = self.store.put("finished", request.project, ".via3.json")
        await self.queue.submit(
            "via_import",
            {
                "job": request.job_id,
                "clip_id": clip_id,
                "finished": ref.to_dict(),
                "name": f"{clip_id} (uploaded)",
                "settings": spec["settings"],
                "actions": spec["actions"],
            },
            msg_id=f"{jobs.fact(request.job_id, 'via_import', clip_id)}.{ref.digest}",
        )
        return await self._job(request.job_id)

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
