"""Dataset: write every AVA file for mmaction2 from the labelled clips, split train/val by video, validate.

The dataset is assembled in a temporary folder next to ``out`` and only replaces ``out`` after the validator
passes, so a failed build never damages a good dataset (the rejected one is kept as ``<out>.rejected``); the
replacement is one atomic exchange (``swap_in``): the old dataset stays whole until the new one is complete.
Train and val are split by source video with a seeded shuffle; the seed's "val = train" is impossible. With
a single source video the split falls back to clips (reported: val then comes from the same video).
Person ids are renumbered per clip (= AVA video) contiguously from 0 in order of appearance.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avaforge.boxes import Boxes
from avaforge.dataset_layout import SPLITS, DatasetLayout
from avaforge.formats.actions import ActionList
from avaforge.formats.ava_csv import AvaRow, proposal_key, write_excluded, write_rows
from avaforge.formats.errors import FormatError
from avaforge.formats.pbtxt import write_pbtxt
from avaforge.formats.proposals import Proposals, to_boxes, write_proposals
from avaforge.formats.timeline import write_included_timestamps
from avaforge.fsutil import atomic_write_bytes, link_or_copy
from avaforge.provenance import PROVENANCE_FILE, sources_per_action
from avaforge.settings import DatasetSettings
from avaforge.stages.frames import FramesInfo
from avaforge.stages.ingest import ClipInfo
from avaforge.stages.via_import import ClipLabels
from avaforge.validation import ValidationReport, validate_dataset
from avaforge.workbench.agreement import agreement


@dataclass
class ClipBundle:
    clip: ClipInfo
    frames: FramesInfo
    frame_dir: Path
    proposals: Proposals
    labels: ClipLabels
    review: ClipLabels | None = None  # a second annotator's pass: its agreement goes into the report


@dataclass
class BuildResult:
    out: Path
    report: ValidationReport
    summary: dict[str, Any] = field(default_factory=dict)


def split_clips(bundles: list[ClipBundle], settings: DatasetSettings) -> tuple[dict[str, str], str]:
    """clip id -> split, and the split unit ("video", or "clip" when there is a single source video)."""
    videos = sorted({b.clip.video_id for b in bundles})
    unit = "video" if len(videos) >= 2 else "clip"
    groups = videos if unit == "video" else sorted(b.clip.clip_id for b in bundles)
    rng = random.Random(settings.seed)
    shuffled = groups[:]
    rng.shuffle(shuffled)
    n_val = (
        min(len(groups) - 1, max(1, math.floor(len(groups) * settings.val_ratio + 0.5)))
        if len(groups) > 1
        else 0
    )
    val = set(shuffled[:n_val])
    key = (lambda b: b.clip.video_id) if unit == "video" else (lambda b: b.clip.clip_id)
    return {b.clip.clip_id: ("val" if key(b) in val else "train") for b in bundles}, unit


def clip_rows(bundle: ClipBundle) -> list[AvaRow]:
    """AVA rows of one clip with person ids renumbered 0.. in order of first appearance."""
    order = sorted(bundle.labels.boxes, key=lambda b: (b.second, b.box[0], b.box[1]))
    renumber: dict[int, int] = {}
    rows = []
    for b in order:
        pid = renumber.setdefault(b.person_id, len(renumber))
        x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in b.box)
        rows.extend(AvaRow(bundle.clip.clip_id, b.second, x1, y1, x2, y2, a, pid) for a in b.actions)
    return rows


def build_dataset(
    bundles: list[ClipBundle], actions: ActionList, settings: DatasetSettings, out: str | Path
) -> BuildResult:
    out = Path(out)
    if not bundles:
        raise FormatError("no labelled clips to build a dataset from (run `avaforge import` first)", str(out))
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    layout = DatasetLayout(tmp)
    layout.annotations.mkdir(parents=True)
    assignment, unit = split_clips(bundles, settings)
    if "val" not in assignment.values():
        raise FormatError(
            f"{len(bundles)} labelled clip(s) cannot make both a train and a val split; cut the video into "
            "clips (e.g. --plan windows) or add videos",
            str(out),
        )
    write_pbtxt(layout.action_list, actions.pbtxt_items())
    write_included_timestamps(
        layout.included_timestamps, {t for b in bundles for t in b.frames.labelled_seconds}
    )
    summary: dict[str, Any] = {"split_unit": unit, "splits": {}, "excluded": [], "gt_added_to_proposals": 0}
    for split in SPLITS:
        members = [b for b in bundles if assignment[b.clip.clip_id] == split]
        rows = [r for b in members for r in clip_rows(b)]
        proposals: dict[str, np.ndarray] = {}
        excluded: list[tuple[str, int]] = []
        for b in members:
            proposals.update(b.proposals)
        gt_by_key: dict[str, set[tuple[float, ...]]] = defaultdict(set)
        for r in rows:
            gt_by_key[r.key].add(r.box)
        for key, boxes in sorted(gt_by_key.items()):
            if len(to_boxes(proposals, key)):
                continue
            if split == "train":  # mmaction2 adds GT to the proposals in training anyway
                gt = Boxes(np.array(sorted(boxes)), np.ones(len(boxes)), "normalised")
                proposals[key] = gt.to_rows()
                summary["gt_added_to_proposals"] += len(boxes)
            else:  # evaluation must not see GT as proposals; mmaction2 fails on an empty keyframe: exclude it
                video, ts = key.rsplit(",", 1)
                excluded.append((video, int(ts)))
                summary["excluded"].append(key)
        for b in members:
            for t in b.frames.labelled_seconds:
                proposals.setdefault(proposal_key(b.clip.clip_id, t), np.zeros((0, 5)))
        write_rows(layout.csv(split), rows)
        write_excluded(layout.excluded(split), excluded)
        write_proposals(layout.proposals(split), proposals)
        summary["splits"][split] = sorted(b.clip.clip_id for b in members)
    for b in bundles:
        _link_tree(b.frame_dir, layout.frame_dir(b.clip.clip_id))
    sources = Counter(box.source for b in bundles for box in b.labels.boxes)
    coverage = {
        "labelled": sum(len(b.labels.boxes) for b in bundles),
        "unlabelled": sum(len(b.labels.unlabelled) for b in bundles),
    }
    reviewed = {
        b.clip.clip_id: agreement(b.labels.boxes, b.review.boxes, actions).to_dict()
        for b in sorted(bundles, key=lambda b: b.clip.clip_id)
        if b.review is not None
    }
    summary.update(sources=dict(sources), coverage=coverage)
    if reviewed:
        summary["agreement"] = reviewed
    atomic_write_bytes(
        layout.annotations / PROVENANCE_FILE,
        json.dumps(
            {
                "split_unit": unit,
                "sources": dict(sources),
                "coverage": coverage,
                "splits": summary["splits"],
                "sources_per_action": sources_per_action(
                    (x for b in bundles for x in b.labels.boxes), actions
                ),
                "actions": actions.to_dict(),
                "agreement": reviewed,
            },
            indent=1,
        ).encode(),
    )
    report = validate_dataset(tmp, actions=actions)
    if not report.ok:
        rejected = out.with_name(f"{out.name}.rejected")
        shutil.rmtree(rejected, ignore_errors=True)
        os.replace(tmp, rejected)
        raise FormatError(
            f"the built dataset fails validation ({len(report.errors)} errors, kept in {rejected}):\n"
            + "\n".join(str(p) for p in report.errors[:20]),
            str(out),
        )
    swap_in(tmp, out)
    report.dataset = str(out)
    return BuildResult(out, report, summary)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_in(new: Path, out: Path) -> None:
    """Replace the folder ``out`` with the complete folder ``new``: readers see the old dataset or the new
    one, never none (an atomic exchange, then the old one is removed from its new place). Without
    RENAME_EXCHANGE, the old is renamed aside first: ``out`` is missing only between two renames."""
    if not out.exists():
        os.replace(new, out)
        return
    if not _exchange(new, out):
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(new, out)
        new = old
    shutil.rmtree(new)  # now the old dataset


def _link_tree(src: Path, dst: Path) -> None:
    """Rawframes into the dataset: hard links (no copy) when on one file system, else copies."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.listdir(src)):
        link_or_copy(src / entry, dst / entry)
