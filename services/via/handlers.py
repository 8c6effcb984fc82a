"""The VIA converter's work on artifacts (shared by its queue handlers and its gRPC API): export a clip's VIA
project, import a finished one, and build the AVA dataset of a job from every imported clip (with the review
pass of each clip a second annotator reviewed in the workbench, for the report's agreement)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from avaforge import steps
from avaforge.archive import pack_tree_file
from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.proposals import read_proposals
from avaforge.settings import PipelineSettings
from avaforge.stages.dataset import ClipBundle
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo
from avaforge.stages.track import Tracks
from avaforge.stages.via_import import ClipLabels
from avaforge.storage import ArtifactRef, ArtifactStore
from services.common import jobs
from services.common.artifacts import LocalCache
from services.common.worker import Context


def export(
    store: ArtifactStore,
    cache: LocalCache,
    finfo: FramesInfo,
    rawframes: ArtifactRef,
    tracks: ArtifactRef,
    actions: ActionList,
    s: PipelineSettings,
) -> tuple[ArtifactRef, ArtifactRef]:
    """The clip's VIA project and annotator zip."""
    with tempfile.TemporaryDirectory() as tmp:
        out = steps.export_via(
            finfo, Tracks.load(cache.file(tracks, ".json")), actions, cache.folder(rawframes), Path(tmp), s
        )
        return store.put("via", out.project.read_bytes(), ".via3.json"), store.put(
            "via", out.archive.read_bytes(), ".zip"
        )


def import_finished(
    store: ArtifactStore,
    cache: LocalCache,
    finfo: FramesInfo,
    tracks: ArtifactRef,
    finished: ArtifactRef,
    name: str,
    actions: ActionList,
    s: PipelineSettings,
    suggestions: steps.Suggestions = None,
) -> tuple[ClipLabels, ArtifactRef]:
    labels = steps.import_project(
        store.get(finished), name, finfo, Tracks.load(cache.file(tracks, ".json")), actions, s, suggestions
    )
    return labels, store.put("labels", labels.to_bytes(), ".json")


async def via_item(ctx: Context, item: dict[str, Any]) -> None:
    s, actions = PipelineSettings.from_dict(item["settings"]), ActionList.from_obj(item["actions"])
    ingested, tracked = await jobs.inputs(ctx.queue, item, "ingest", "track")
    project, archive = await asyncio.to_thread(
        export,
        ctx.store,
        ctx.cache,
        FramesInfo.from_dict(ingested["frames"]),
        ArtifactRef(**ingested["rawframes"]),
        ArtifactRef(**tracked["tracks"]),
        actions,
        s,
    )
    await jobs.complete(ctx.queue, item, "via", {"project": project.to_dict(), "archive": archive.to_dict()})


async def via_import_item(ctx: Context, item: dict[str, Any]) -> None:
    """Import an uploaded project. A project that does not import (the annotator's mistake; the gateway's
    check on arrival catches it first) is recorded for its clip under ``<job>.import_errors.<clip>`` and the
    item is done: the job goes on, and a corrected upload of the clip clears the record."""
    s, actions = PipelineSettings.from_dict(item["settings"]), ActionList.from_obj(item["actions"])
    ingested, tracked = await jobs.inputs(ctx.queue, item, "ingest", "track")
    error_key = f"{item['job']}.{jobs.IMPORT_ERRORS}.{item['clip_id']}"
    try:
        labels, ref = await asyncio.to_thread(
            import_finished,
            ctx.store,
            ctx.cache,
            FramesInfo.from_dict(ingested["frames"]),
            ArtifactRef(**tracked["tracks"]),
            ArtifactRef(**item["finished"]),
            item.get("name", "finished project"),
            actions,
            s,
            {(t, p): tuple(a) for t, p, a in item["suggestions"]} if item.get("suggestions") else None,
        )
    except FormatError as exc:
        error = {"clip_id": item["clip_id"], "message": exc.message, "where": exc.where or ""}
        await jobs.put(ctx.queue, error_key, {**error, "upload_digest": item["finished"]["digest"]})
        return
    await jobs.complete(
        ctx.queue, item, "via_import", {"labels": ref.to_dict(), "unlabelled": labels.unlabelled}
    )
    if await jobs.get(ctx.queue, error_key) is not None:
        await ctx.queue.jobs.delete(error_key)


async def dataset_item(ctx: Context, item: dict[str, Any]) -> None:
    s, actions = PipelineSettings.from_dict(item["settings"]), ActionList.from_obj(item["actions"])
    job = item["job"]
    bundles = []
    for cid in await jobs.clip_facts(ctx.queue, job, "via_import"):
        ingested, imported, props = await jobs.inputs(
            ctx.queue, {"job": job, "clip_id": cid}, "ingest", "via_import", "proposals"
        )
        folder = await asyncio.to_thread(ctx.cache.folder, ArtifactRef(**ingested["rawframes"]))
        reviewed = await jobs.get(ctx.queue, f"{job}.{jobs.REVIEW_LABELS}.{cid}")  # the annotate service's
        review = (
            ClipLabels.load(ctx.cache.file(ArtifactRef(**reviewed["labels"]), ".json")) if reviewed else None
        )
        bundles.append(
            ClipBundle(
                ClipInfo.from_dict(ingested["clip"]),
                FramesInfo.from_dict(ingested["frames"]),
                folder,
                read_proposals(ctx.cache.file(ArtifactRef(**props["proposals"]), ".pkl")),
                ClipLabels.load(ctx.cache.file(ArtifactRef(**imported["labels"]), ".json")),
                review,  # its agreement with the labels goes into the report, as the embedded build's
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        result = await asyncio.to_thread(steps.build_dataset, bundles, actions, s, Path(tmp) / "dataset")
        tar = await asyncio.to_thread(pack_tree_file, result.out, Path(tmp) / "dataset.tar")
        ref = await asyncio.to_thread(ctx.store.put_file, "datasets", tar, ".tar")  # streamed, never whole
    summary = {k: v for k, v in result.summary.items() if k != "report"}  # a path in a deleted temp dir
    await jobs.complete(ctx.queue, item, "dataset", {"dataset": ref.to_dict(), "summary": summary})


HANDLERS = {"via": via_item, "via_import": via_import_item, "dataset": dataset_item}
