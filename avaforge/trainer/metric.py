"""Frame-mAP@0.5 with mmaction2's own AVA evaluation code, per class, in bounded memory.

mmaction2's ``ava_eval`` prints per-class AP but returns only the means, writes its temporary csv into the
current directory and opens a 32-process pool. ``evaluate_csv`` runs the same functions (``read_csv``,
``tpfp_single``, ``compute_precision_recall``, ``compute_average_precision``) serially and returns every
class's AP and number of ground-truth boxes; a class with no ground truth is reported as such (AP None).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from mmaction.evaluation.functional import ava_utils
from mmaction.evaluation.functional.ava_evaluation import metrics as ava_metrics
from mmaction.evaluation.metrics.ava_metric import AVAMetric
from mmaction.registry import METRICS


def evaluate_csv(
    result_file: str, label_file: str, ann_file: str, exclude_file: str | None
) -> dict[str, Any]:
    """AVA frame-mAP@0.5 of a prediction csv, overall and per class (mmaction2's algorithm)."""
    with open(label_file) as fh:
        categories, whitelist = ava_utils.read_labelmap(fh)
    with open(ann_file) as fh:
        gt_boxes, gt_labels, _ = ava_utils.read_csv(fh, whitelist)
    excluded = set()
    if exclude_file:
        with open(exclude_file) as fh:
            excluded = set(ava_utils.read_exclusions(fh))
    with open(result_file) as fh:
        boxes, labels, scores = ava_utils.read_csv(fh, whitelist)
    all_gt = np.concatenate(list(gt_labels.values())) if gt_labels else np.zeros(0)
    gt_count = {k: int(np.sum(all_gt == k)) for k in whitelist}
    per_class_scores: dict[int, list[np.ndarray]] = defaultdict(list)
    per_class_tpfp: dict[int, list[np.ndarray]] = defaultdict(list)
    for key in gt_boxes:
        if key in excluded:
            continue
        score, tpfp = ava_utils.tpfp_single(
            (gt_boxes[key], gt_labels[key], boxes[key], labels[key], scores[key])
        )
        for k in score:
            per_class_scores[k].append(score[k])
            per_class_tpfp[k].append(tpfp[k])
    names = {c["id"]: c["name"] for c in categories}
    per_class: dict[str, dict[str, Any]] = {}
    aps = []
    for k in sorted(whitelist):
        ap: float | None = None
        if k in per_class_scores:
            precision, recall = ava_metrics.compute_precision_recall(
                np.concatenate(per_class_scores[k]), np.concatenate(per_class_tpfp[k]), gt_count[k]
            )
            value = float(ava_metrics.compute_average_precision(precision, recall))
            aps.append(value)
            ap = None if math.isnan(value) else value
        per_class[names[k]] = {
            "id": k,
            "ap": ap,
            "gt_boxes": gt_count[k],
            "note": "no ground truth in this split" if gt_count[k] == 0 else "",
        }
    overall = float(np.nanmean(aps)) if aps and not np.isnan(aps).all() else float("nan")
    return {"mAP@0.5IOU": overall, "per_class": per_class}


@METRICS.register_module()
class AvaforgeAVAMetric(AVAMetric):
    """AVAMetric via ``evaluate_csv``; the full result goes to ``<out_dir>/<prefix>_last_eval.json``."""

    def __init__(self, *args: Any, out_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out_dir = out_dir

    def compute_metrics(self, results: list) -> dict:
        out_dir = Path(self.out_dir) if self.out_dir else Path(tempfile.gettempdir())
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, csv_path = tempfile.mkstemp(prefix="ava_results_", suffix=".csv", dir=out_dir)
        os.close(fd)
        try:
            ava_utils.results2csv(results, csv_path, self.custom_classes)
            full = evaluate_csv(csv_path, self.label_file, self.ann_file, self.exclude_file)
        finally:
            os.unlink(csv_path)
        (out_dir / f"{self.prefix or 'mAP'}_last_eval.json").write_text(json.dumps(full, indent=1))
        return {"overall": full["mAP@0.5IOU"]}
