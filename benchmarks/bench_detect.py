"""Detection recall on the hand-labelled benchmark (``benchmarks/detect_labels``): per input configuration,
recall and precision at IoU 0.5 on clear people, recall on hard ones, ms per frame.

``make bench-detect`` runs every configuration on every set; ``--sets`` / ``--configs`` pick a subset.
A configuration is a fixed input size (``960``), tiles (``640t2x2``) or ``auto`` (the per-clip plan of
``avaforge.detection.sizing``: a probe on 4 of the set's frames, as prepare does on a clip).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from avaforge.detection import make_detector
from avaforge.detection.sizing import InputPlan, SizedDetector, parse_tag, plan_input, probe_heights
from avaforge.settings import DetectSettings, ViaSettings
from avaforge.tracking.metrics import hungarian
from benchmarks.detect_frames import frames_for, label_sets

MATCH_IOU = 0.5
HEIGHT_BINS = (0, 64, 80, 96, 112, 10_000)  # person height in network-input pixels


def score_frame(dets: np.ndarray, labels: list[list], min_score: float) -> dict[str, int]:
    """Counts for one frame: clear people found/missed, hard found, false boxes (IoU 0.5, one-to-one)."""
    dets = dets[dets[:, 4] >= min_score]
    gt = np.array([r[:4] for r in labels], dtype=np.float64).reshape(-1, 4)
    tags = [r[4] for r in labels]
    pairs = hungarian(dets, gt, MATCH_IOU)
    matched = {g: d for d, g in pairs}
    out = {"clear": tags.count("clear"), "hard": tags.count("hard"), "tp": 0, "hard_tp": 0}
    for g, tag in enumerate(tags):
        if g in matched:
            out["tp" if tag == "clear" else "hard_tp" if tag == "hard" else "ignored"] = (
                out.get("tp" if tag == "clear" else "hard_tp" if tag == "hard" else "ignored", 0) + 1
            )
    out["fp"] = len(dets) - len(pairs)
    return out


def evaluate(
    detector, images: list[np.ndarray], labels: list[list[list]], plan: InputPlan, min_scores: list[float]
) -> dict:
    sized = SizedDetector(detector, plan)
    start = time.perf_counter()
    boxes: list[np.ndarray] = []
    for i in range(0, len(images), 8):
        boxes += sized.detect(images[i : i + 8])
    ms = 1000 * (time.perf_counter() - start) / len(images)
    res: dict = {"plan": plan.tag, "ms_per_frame": round(ms, 1), "frames": len(images)}
    for ms_ in min_scores:
        tot: dict[str, int] = defaultdict(int)
        for b, lab in zip(boxes, labels, strict=True):
            for k, v in score_frame(b, lab, ms_).items():
                tot[k] += v
        res[f"score>={ms_:g}"] = {
            **tot,
            "recall": round(tot["tp"] / max(tot["clear"], 1), 3),
            "precision": round(tot["tp"] / max(tot["tp"] + tot["fp"], 1), 3),
            "hard_recall": round(tot["hard_tp"] / max(tot["hard"], 1), 3),
        }
    # recall of clear people by their height in the network input (where the detector stops finding them)
    h, w = images[0].shape[:2]
    scale = plan.min_source_px((h, w), 1.0) ** -1
    bins: dict[str, list[int]] = {}
    for b, lab in zip(boxes, labels, strict=True):
        clear = [r for r in lab if r[4] == "clear"]
        gt = np.array([r[:4] for r in clear], dtype=np.float64).reshape(-1, 4)
        found = {g for _, g in hungarian(b[b[:, 4] >= min_scores[0]], gt, MATCH_IOU)}
        for g, r in enumerate(clear):
            hh = (r[3] - r[1]) * scale
            lo = max(x for x in HEIGHT_BINS if x <= hh)
            bins.setdefault(str(lo), [0, 0])
            bins[str(lo)][0] += g in found
            bins[str(lo)][1] += 1
    res["clear_found_by_net_height"] = bins
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", nargs="*", default=None)
    ap.add_argument("--configs", nargs="*", default=["640", "960", "1024", "1280", "640t2x2", "auto"])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    settings = DetectSettings()
    detector = make_detector(replace(settings, auto_size=False))
    min_scores = [settings.conf, ViaSettings().min_score]
    results = []
    for name, spec in label_sets().items():
        if args.sets and name not in args.sets:
            continue
        paths = frames_for(name, spec)
        images = [cv2.imread(str(p)) for p in paths.values()]
        labels = [spec["frames"][str(f)] for f in paths]
        for config in args.configs:
            if config == "auto":
                probe = images[:: max(1, len(images) // settings.probe_frames)][: settings.probe_frames]
                plan = plan_input(images[0].shape[:2], probe_heights(detector, probe, settings), settings)
            else:
                plan = parse_tag(config)
            r = {"set": name, "config": config, **evaluate(detector, images, labels, plan, min_scores)}
            results.append(r)
            a, v = r[f"score>={min_scores[0]:g}"], r[f"score>={min_scores[1]:g}"]
            print(
                f"{name:14s} {config:8s} {r['plan']:9s} recall {a['recall']:.3f} prec {a['precision']:.3f} "
                f"hard {a['hard_recall']:.3f} | @{min_scores[1]:g} recall {v['recall']:.3f} "
                f"prec {v['precision']:.3f} | {r['ms_per_frame']:7.1f} ms/frame "
                f"| {r['clear_found_by_net_height']}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
