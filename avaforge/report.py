"""Dataset report: HTML page + PNG plots of class balance, per-video counts, boxes per keyframe, track
lengths and label coverage (and which labels are machine-made), read back from the written dataset; tables of
who made each action's labels and, for clips a second annotator reviewed, the agreement per clip and group."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import cv2
import matplotlib.pyplot as plt
import numpy as np

from avaforge.dataset_layout import SPLITS, DatasetLayout
from avaforge.formats.ava_csv import read_rows
from avaforge.formats.pbtxt import read_pbtxt
from avaforge.formats.proposals import parse_key, read_proposals
from avaforge.fsutil import atomic_write_bytes
from avaforge.provenance import read_provenance

# A detector box scored below WEAK_SCORE is a person the detector barely finds (small, blurred, occluded): its
# neighbours of the same kind are likely missed. On the detection benchmark (make bench-detect), people found
# near the network's size limit score 0.1-0.4; people well above it score 0.7-0.9.
WEAK_SCORE = 0.4
WEAK_SHARE = 0.2  # warn when this share of boxes is weak


def detector_boxes(layout: DatasetLayout) -> tuple[np.ndarray, np.ndarray]:
    """Heights (pixels) and scores of every proposal box of the dataset's keyframes."""
    heights: list[float] = []
    scores: list[float] = []
    frame_h: dict[str, int] = {}
    for split in SPLITS:
        path = layout.proposals(split)
        if not path.exists():
            continue
        for key, boxes in read_proposals(path).items():
            video = parse_key(key)[0]
            if video not in frame_h:
                first = next(iter(sorted(layout.frame_dir(video).glob("*.jpg"))), None)
                image = cv2.imread(str(first)) if first else None
                frame_h[video] = image.shape[0] if image is not None else 1
            heights += list((boxes[:, 3] - boxes[:, 1]) * frame_h[video])
            scores += list(boxes[:, 4])
    return np.array(heights), np.array(scores)


def detector_warning(scores: np.ndarray) -> str | None:
    weak = float(np.mean(scores < WEAK_SCORE)) if len(scores) else 0.0
    if weak <= WEAK_SHARE:
        return None
    return (
        f"warning: {100 * weak:.0f}% of the detector's boxes score below {WEAK_SCORE:g}: many people sit at "
        "the detector's limits (small, occluded or blurred), so others like them were probably missed; check "
        "the VIA projects for people without a box, or raise detect.min_person_px / max_imgsz"
    )


def _bar(ax: Any, labels: list[str], series: dict[str, list[int]], title: str) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
    ax.set_xticks(
        [x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, rotation=30, ha="right"
    )
    ax.set_title(title)
    ax.legend()


def write_report(dataset: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``report/index.html`` and its PNGs into the dataset; returns the HTML path."""
    layout = DatasetLayout(Path(dataset))
    out = layout.root / "report"
    out.mkdir(exist_ok=True)
    names = dict(read_pbtxt(layout.action_list))
    rows = {s: read_rows(layout.csv(s)) for s in SPLITS}
    provenance = read_provenance(layout.annotations)
    figures: list[tuple[str, str]] = []

    def save(fig: Any, name: str, caption: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        figures.append((name, caption))

    ids = sorted(names)
    per_class = {s: Counter(r.action_id for r in rows[s]) for s in SPLITS}
    fig, ax = plt.subplots(figsize=(8, 4))
    _bar(
        ax, [names[i] for i in ids], {s: [per_class[s][i] for i in ids] for s in SPLITS}, "actions per class"
    )
    save(fig, "actions_per_class.png", "Rows per action and split (class balance).")

    per_video: dict[str, Counter[str]] = defaultdict(Counter)
    for s in SPLITS:
        for r in rows[s]:
            per_video[r.video_id][names.get(r.action_id, str(r.action_id))] += 1
    videos = sorted(per_video)
    fig, ax = plt.subplots(figsize=(max(6, len(videos) * 0.6), 4))
    _bar(ax, videos, {names[i]: [per_video[v][names[i]] for v in videos] for i in ids}, "actions per video")
    save(fig, "actions_per_video.png", "Rows per video (clip) and action.")

    boxes_per_kf: Counter[int] = Counter()
    person_seconds: dict[tuple[str, int], set[int]] = defaultdict(set)
    for s in SPLITS:
        keyframes: dict[tuple[str, int], set[tuple[float, ...]]] = defaultdict(set)
        for r in rows[s]:
            keyframes[(r.video_id, r.timestamp)].add(r.box)
            person_seconds[(r.video_id, r.person_id)].add(r.timestamp)
        for boxes in keyframes.values():
            boxes_per_kf[len(boxes)] += 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    ks = sorted(boxes_per_kf)
    axes[0].bar([str(k) for k in ks], [boxes_per_kf[k] for k in ks])
    axes[0].set_title("labelled boxes per keyframe")
    lengths = Counter(len(v) for v in person_seconds.values())
    ls = sorted(lengths)
    axes[1].bar([str(k) for k in ls], [lengths[k] for k in ls])
    axes[1].set_title("labelled keyframes per person (track length)")
    save(
        fig,
        "boxes_and_tracks.png",
        "Boxes per labelled keyframe, and how many keyframes each person is labelled on.",
    )

    sources = Counter(provenance.get("sources", {}))
    coverage = provenance.get("coverage", {})
    if sources or coverage:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].bar(
            list(sources),
            list(sources.values()),
            color=["tab:blue", "tab:orange", "tab:purple", "tab:green"][: len(sources)],
        )
        axes[0].set_title("label source (boxes)")
        cov = {k: coverage.get(k, 0) for k in ("labelled", "unlabelled")}
        axes[1].bar(list(cov), list(cov.values()), color=["tab:green", "tab:red"])
        axes[1].set_title("label coverage (boxes in VIA)")
        save(
            fig,
            "label_coverage.png",
            "Who made the labels (machine = autolabel or model suggestions left unchanged, suggestion = "
            "a machine suggestion a person accepted, propagated = carried forward) "
            "and how many boxes in the VIA projects were labelled.",
        )

    heights, scores = detector_boxes(layout)
    if len(scores):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        axes[0].hist(heights, bins=30)
        axes[0].set_title("detected box height (px)")
        axes[1].hist(scores, bins=20, range=(0, 1))
        axes[1].axvline(WEAK_SCORE, color="tab:red")
        axes[1].set_title("detector score")
        save(
            fig,
            "detector_boxes.png",
            f"Heights and scores of the detector's boxes on the keyframes; boxes left of the red line "
            f"(score < {WEAK_SCORE:g}) are people the detector barely finds.",
        )
    warning = detector_warning(scores)

    total = sum(len(r) for r in rows.values())
    top = per_class["train"] + per_class["val"]
    dominant = max(top.items(), key=lambda kv: kv[1]) if top else None
    facts = [
        f"{len(rows['train'])} train rows, {len(rows['val'])} val rows, {len(videos)} videos (clips)",
        f"split unit: {provenance.get('split_unit', '?')}",
    ]
    if dominant and total:
        facts.append(
            f"most frequent action: {names.get(dominant[0])} ({100 * dominant[1] / total:.0f} % of rows)"
        )
    if sources.get("machine"):
        facts.append(
            f"{sources['machine']} boxes carry machine-made labels (autolabel, unchanged by a person)"
        )
    if sources.get("suggestion"):
        facts.append(f"{sources['suggestion']} boxes carry machine suggestions a person accepted")
    if warning:
        facts.append(warning)
    for key, value in (extra or {}).items():
        facts.append(f"{key}: {value}")
    body = "".join(f"<li>{html.escape(f)}</li>" for f in facts)
    body += _sources_table(provenance.get("sources_per_action", {})) + _agreement_table(
        provenance.get("agreement", {})
    )
    imgs = "".join(
        f'<figure><img src="{n}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
        for n, c in figures
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>avaforge dataset report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}figure{margin:1em 0}"
        "img{max-width:100%}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>"
        f"<h1>Dataset report</h1><p>{html.escape(str(layout.root))}</p><ul>{body}</ul>{imgs}</body></html>"
    )
    path = out / "index.html"
    atomic_write_bytes(path, page.encode())
    return path


def _table(caption: str, header: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{cells}</tr>{body}</table>"


def _sources_table(per_action: dict[str, dict[str, int]]) -> str:
    if not per_action:
        return ""
    kinds = sorted({k for counts in per_action.values() for k in counts})
    rows = [[name, *(str(counts.get(k, 0)) for k in kinds)] for name, counts in per_action.items()]
    return _table("Labels per action by source", ["action", *kinds], rows)


def _agreement_table(per_clip: dict[str, Any]) -> str:
    """Reviewed clips: kappa (exclusive groups) or per-action F1 (multi-select), matched/unmatched boxes."""
    if not per_clip:
        return ""
    rows = []
    for clip, result in sorted(per_clip.items()):
        boxes = f"{result['matched']} matched, {result['unmatched_a']} + {result['unmatched_b']} unmatched"
        for g in result["groups"]:
            if g["exclusive"]:
                value = f"kappa {_num(g['kappa'])} (observed {_num(g['observed'])})"
            else:
                per = ", ".join(f"{name} {_num(v)}" for name, v in g["f1"].items())
                value = f"macro F1 {_num(g['macro_f1'])} ({per})"
            rows.append([clip, g["group"], value, boxes])
    return _table(
        "Agreement with the second annotator's review (boxes matched at IoU >= 0.5)",
        ["clip", "group", "agreement", "boxes"],
        rows,
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
