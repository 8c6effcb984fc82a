"""Ingest's work on artifacts (shared by its queue handler and its gRPC API): a source video in S3 becomes
clips, each with its 30 fps video and its rawframes tar in S3."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from avaforge import cancel, steps
from avaforge.archive import pack_dir
from avaforge.settings import PipelineSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo, ClipSpec
from avaforge.storage import ArtifactRef, ArtifactStore
from avaforge.video.probe import probe_video
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.limits import VideoLimits
from services.common.worker import Context


def _source(cache: LocalCache, video: ArtifactRef, filename: str) -> Path:
    return cache.file(video, Path(filename).suffix[:16])


def plan(cache: LocalCache, video: ArtifactRef, filename: str, s: PipelineSettings) -> list[ClipSpec]:
    source = _source(cache, video, filename)
    info = probe_video(source)
    VideoLimits.from_env().check(info, filename)  # the deployment's duration / resolution limits
    return steps.plan(source, filename, s, info)


def cut(
    store: ArtifactStore,
    cache: LocalCache,
    video: ArtifactRef,
    filename: str,
    spec: ClipSpec,
    s: PipelineSettings,
) -> tuple[ClipInfo, FramesInfo, ArtifactRef, ArtifactRef]:
    """One clip: its info, frames info, rawframes tar and 30 fps video in the store."""
    with tempfile.TemporaryDirectory() as tmp:
        clip, finfo = steps.ingest_clip(
            _source(cache, video, filename), spec, Path(tmp) / "clip.mp4", Path(tmp) / "rawframes", s
        )
        rawframes = store.put("rawframes", pack_dir(Path(tmp) / "rawframes"), ".tar")
        clip_video = store.put("clips", (Path(tmp) / "clip.mp4").read_bytes(), ".mp4")
    return clip, finfo, rawframes, clip_video


async def ingest_item(ctx: Context, item: dict[str, Any]) -> None:
    s = PipelineSettings.from_dict(item["settings"])
    video, name = ArtifactRef(**item["video"]), item["filename"]
    for spec in await asyncio.to_thread(plan, ctx.cache, video, name, s):
        cancel.check(f"before clip {spec.clip_id}")  # ffmpeg itself is killed when a cancel comes mid-clip
        clip, finfo, rawframes, clip_video = await asyncio.to_thread(
            cut, ctx.store, ctx.cache, video, name, spec, s
        )
        outputs = {
            "clip": clip.to_dict(),
            "frames": finfo.to_dict(),
            "rawframes": rawframes.to_dict(),
            "video": clip_video.to_dict(),
        }
        await jobs.complete(ctx.queue, {**item, "clip_id": clip.clip_id}, "ingest", outputs, finfo)
    await jobs.put(ctx.queue, f"{item['job']}.ingested.{item.get('index', 0):04d}", {"filename": name})


HANDLERS = {"ingest": ingest_item}
