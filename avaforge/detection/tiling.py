"""Detection on overlapping tiles of a frame, merged back into one set of boxes per frame.

For sources much larger than the network input: each tile is letterboxed at the detector's size, so people
keep more pixels than in one whole-frame pass. Tiles overlap so that a person cut by one tile's border is
whole in its neighbour; the merge prefers whole boxes, drops the cut copies they contain, and joins the two
halves of a person larger than the overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

EDGE_PX = 2.0  # a box this close to a tile border that is not a frame border is cut by the tile
CONTAINED = 0.6  # a cut box this much inside (intersection / its own area) a whole kept box is its copy
JOINED = 0.3  # two cut boxes sharing this much of the later one's area are the two halves of one person


def tile_windows(h: int, w: int, rows: int, cols: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """``rows x cols`` equal windows ``(x0, y0, x1, y1)`` covering the frame, neighbours overlapping by
    ``overlap`` of a window's size."""
    windows = []
    tw = w if cols == 1 else math.ceil(w / (cols - (cols - 1) * overlap))
    th = h if rows == 1 else math.ceil(h / (rows - (rows - 1) * overlap))
    for r in range(rows):
        for c in range(cols):
            x0 = 0 if cols == 1 else round(c * (w - tw) / (cols - 1))
            y0 = 0 if rows == 1 else round(r * (h - th) / (rows - 1))
            windows.append((x0, y0, x0 + tw, y0 + th))
    return windows


def _cut_by_tile(box: np.ndarray, win: tuple[int, int, int, int], h: int, w: int) -> bool:
    x0, y0, x1, y1 = win
    return bool(
        (x0 > 0 and box[0] - x0 < EDGE_PX)
        or (y0 > 0 and box[1] - y0 < EDGE_PX)
        or (x1 < w and x1 - box[2] < EDGE_PX)
        or (y1 < h and y1 - box[3] < EDGE_PX)
    )


def _overlaps(box: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU of ``box`` with each kept box, and the share of ``box``'s own area inside each."""
    iw = np.clip(np.minimum(box[2], kept[:, 2]) - np.maximum(box[0], kept[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], kept[:, 3]) - np.maximum(box[1], kept[:, 1]), 0, None)
    inter = iw * ih
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    areas = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9), inter / area


def merge_tiles(
    per_tile: list[np.ndarray], windows: list[tuple[int, int, int, int]], hw: tuple[int, int], iou: float
) -> np.ndarray:
    """Tile-local (N, 5) boxes -> one frame's (M, 5) boxes without duplicates.

    Whole boxes go first (by score), then boxes cut by a tile border: a cut box inside a kept box is dropped;
    a cut box meeting another cut box across the seam is joined to it (a person larger than the overlap)."""
    h, w = hw
    rows: list[tuple[bool, np.ndarray]] = []
    for boxes, win in zip(per_tile, windows, strict=True):
        for b in boxes:
            shifted = b.copy()
            shifted[[0, 2]] += win[0]
            shifted[[1, 3]] += win[1]
            rows.append((_cut_by_tile(shifted, win, h, w), shifted))
    rows.sort(key=lambda r: (r[0], -r[1][4]))
    kept: list[np.ndarray] = []
    kept_cut: list[bool] = []
    for cut, box in rows:
        if kept:
            ious, inside = _overlaps(box, np.array(kept))
            if (ious > iou).any():
                continue
            if cut:
                cut_kept = np.array(kept_cut)
                hit = np.nonzero((~cut_kept & (inside > CONTAINED)) | (cut_kept & (inside > JOINED)))[0]
                if hit.size:
                    j = int(hit[0])
                    if kept_cut[j]:  # two halves of one person: their union, the better score
                        k = kept[j]
                        kept[j] = np.array(
                            [
                                min(k[0], box[0]),
                                min(k[1], box[1]),
                                max(k[2], box[2]),
                                max(k[3], box[3]),
                                max(k[4], box[4]),
                            ]
                        )
                    continue
        kept.append(box)
        kept_cut.append(cut)
    return np.array(kept, dtype=np.float64).reshape(-1, 5)


def detect_tiled(
    run: Callable[[list[np.ndarray]], list[np.ndarray]],
    images: list[np.ndarray],
    rows: int,
    cols: int,
    overlap: float,
    iou: float,
) -> list[np.ndarray]:
    """``run`` (same-sized crops -> per crop boxes) over every tile of every image, merged per image."""
    if not images:
        return []
    h, w = images[0].shape[:2]
    windows = tile_windows(h, w, rows, cols, overlap)
    crops = [im[y0:y1, x0:x1] for im in images for (x0, y0, x1, y1) in windows]
    boxes = run(crops)
    n = len(windows)
    return [merge_tiles(boxes[i * n : (i + 1) * n], windows, (h, w), iou) for i in range(len(images))]
