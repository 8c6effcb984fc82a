"""Id stability: id switches on keyframes for people that are visible throughout, against reference boxes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from avaforge.boxes import Boxes, iou_matrix

__all__ = ["hungarian", "id_switches", "iou_matrix", "match_boxes"]


def hungarian(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Optimal one-to-one matching of xyxy arrays a (N, 4+) and b (M, 4+) by IoU, keeping IoU >= min_iou."""
    return _assign(iou_matrix(a, b), min_iou)


def match_boxes(a: Boxes, b: Boxes, min_iou: float) -> list[tuple[int, int]]:
    """``hungarian`` on typed boxes: both must be in one coordinate space (and frame size if known)."""
    return _assign(a.iou(b), min_iou)


def _assign(ious: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    if ious.size == 0:
        return []
    rows, cols = linear_sum_assignment(-ious)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ious[r, c] >= min_iou]


def id_switches(
    reference: Mapping[int, Mapping[str, list[float]]],
    tracked: Mapping[int, Boxes],
    min_iou: float = 0.5,
) -> dict[str, object]:
    """Per reference person: the track ids it received on each second, and how often that id changed.

    ``reference``: second -> person name -> [x1, y1, x2, y2];
    ``tracked``: second -> tracked boxes in the reference's space.
    A second where the person matched no track counts as a miss, not a switch.
    """
    history: dict[str, list[int | None]] = {}
    for second in sorted(reference):
        names = list(reference[second])
        ref = np.array([reference[second][n] for n in names], dtype=np.float64)
        boxes = tracked[second] if second in tracked else Boxes.empty(tracked=True)
        matched = dict(hungarian(ref, boxes.xyxy, min_iou))
        for i, name in enumerate(names):
            history.setdefault(name, []).append(int(boxes.tracked_ids[matched[i]]) if i in matched else None)
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
