"""Id stability: id switches on keyframes for people that are visible throughout, against reference boxes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4+) and b (M, 4+)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = a[:, None, :4], b[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def hungarian(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Optimal one-to-one matching of boxes by IoU, keeping pairs with IoU >= min_iou."""
    ious = iou_matrix(a, b)
    if ious.size == 0:
        return []
    rows, cols = linear_sum_assignment(-ious)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ious[r, c] >= min_iou]


def id_switches(
    reference: Mapping[int, Mapping[str, list[float]]],
    tracked: Mapping[int, np.ndarray],
    min_iou: float = 0.5,
) -> dict[str, object]:
    """Per reference person: the track ids it received on each second, and how often that id changed.

    ``reference``: second -> person name -> [x1, y1, x2, y2];
    ``tracked``: second -> rows [id, x1, y1, x2, y2, ...].
    A second where the person matched no track counts as a miss, not a switch.
    """
    history: dict[str, list[int | None]] = {}
    for second in sorted(reference):
        names = list(reference[second])
        ref = np.array([reference[second][n] for n in names], dtype=np.float64)
        rows = tracked.get(second, np.zeros((0, 6)))
        matched = dict(hungarian(ref, rows[:, 1:5], min_iou))
        for i, name in enumerate(names):
            history.setdefault(name, []).append(int(rows[matched[i], 0]) if i in matched else None)
    switches = {}
    for name, ids in history.items():
        seen = [i for i in ids if i is not None]
        switches[name] = sum(1 for a, b in itertools.pairwise(seen) if a != b)
    return {
        "switches": switches,
        "total": sum(switches.values()),
        "ids": history,
        "misses": {n: ids.count(None) for n, ids in history.items()},
    }
