"""The typed core: one validated box type used from detection to the dataset.

``Boxes`` holds the N boxes of one frame: ``xyxy`` float64 (N, 4), ``score`` float64 (N,), an optional
``track_id`` int64 (N,), the coordinate ``space`` ("pixels" or "normalised" to [0, 1]) and, when known, the
frame ``size`` (width, height) that converts between the two. It is validated on construction (shapes,
dtypes, finite values, x1 <= x2 and y1 <= y2, normalised boxes inside [0, 1]) and immutable (read-only
arrays), so code that receives one never re-checks it. The file formats keep their own layouts (detections
.npz, tracks .json, proposals .pkl, VIA JSON, AVA csv): they convert at the edge with ``to_rows``/
``from_rows``, which move the same float64 values and so keep the bytes on disk unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

Space = Literal["pixels", "normalised"]
SPACES: tuple[Space, ...] = ("pixels", "normalised")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)  # own the memory: a view would let the caller change a validated box
    a.setflags(write=False)
    return a


def _integral(arr: np.ndarray) -> bool:
    return bool(np.isfinite(arr).all() and (arr == np.round(arr)).all())


def _numeric(name: str, value: object, dtype: type) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} has dtype {arr.dtype}, expected numbers")
    if dtype is np.int64 and arr.dtype.kind == "f" and arr.size and not _integral(arr):
        raise ValueError(f"{name} holds non-integer values")
    return arr.astype(dtype, copy=False)


@dataclass(frozen=True, eq=False)
class Boxes:
    xyxy: np.ndarray
    score: np.ndarray
    space: Space = "pixels"
    size: tuple[int, int] | None = None  # (width, height) of the frame, needed to change space
    track_id: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = _numeric("xyxy", self.xyxy, np.float64)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise ValueError(f"xyxy has shape {xyxy.shape}, expected (N, 4)")
        n = len(xyxy)
        score = _numeric("score", self.score, np.float64).reshape(-1)
        if score.shape != (n,):
            raise ValueError(f"score has shape {score.shape}, expected ({n},)")
        if not (np.isfinite(xyxy).all() and np.isfinite(score).all()):
            raise ValueError("boxes contain NaN or infinity")
        if ((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])).any():
            raise ValueError("a box has x2 < x1 or y2 < y1")
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r} is not one of {SPACES}")
        if self.space == "normalised" and n and (xyxy.min() < 0.0 or xyxy.max() > 1.0):
            raise ValueError(f"normalised boxes outside [0, 1] (min {xyxy.min():.4g}, max {xyxy.max():.4g})")
        if self.size is not None:
            w, h = self.size
            if int(w) != w or int(h) != h or w <= 0 or h <= 0:
                raise ValueError(f"frame size {self.size} must be two positive integers (width, height)")
            object.__setattr__(self, "size", (int(w), int(h)))
        ids = None
        if self.track_id is not None:
            ids = _numeric("track_id", self.track_id, np.int64).reshape(-1)
            if ids.shape != (n,):
                raise ValueError(f"track_id has shape {ids.shape}, expected ({n},)")
        object.__setattr__(self, "xyxy", _readonly(xyxy))
        object.__setattr__(self, "score", _readonly(score))
        object.__setattr__(self, "track_id", None if ids is None else _readonly(ids))

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def empty(
        cls, space: Space = "pixels", size: tuple[int, int] | None = None, tracked: bool = False
    ) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0), space, size, np.zeros(0, np.int64) if tracked else None)

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray | Sequence[Sequence[float]],
        space: Space = "pixels",
        size: tuple[int, int] | None = None,
    ) -> Boxes:
        """From rows ``[x1, y1, x2, y2, score]`` (detector output, detections.npz, proposals)."""
        arr = _numeric("rows", rows, np.float64)
        arr = arr.reshape(0, 5) if arr.size == 0 else arr
        if arr.ndim != 2 or arr.shape[1] != 5:
            raise ValueError(f"rows have shape {arr.shape}, expected (N, 5) [x1, y1, x2, y2, score]")
        return cls(arr[:, :4], arr[:, 4], space, size)

    @staticmethod
    def concat(parts: Sequence[Boxes]) -> Boxes:
        """One Boxes from several of the same space, size and trackedness (e.g. boxes gathered per second)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        tracked = first.track_id is not None
        for p in parts[1:]:
            if (p.space, p.size, p.track_id is not None) != (first.space, first.size, tracked):
                raise ValueError("cannot concatenate boxes of different space, frame size or trackedness")
        return Boxes(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            first.space,
            first.size,
            np.concatenate([p.track_id for p in parts]) if tracked else None,  # type: ignore[misc]
        )

    # ---- views for the file formats ------------------------------------------------------------------------

    def to_rows(self) -> np.ndarray:
        """float64 (N, 5) ``[x1, y1, x2, y2, score]`` (a new array): the rows .npz and .pkl files store."""
        return np.concatenate([self.xyxy, self.score[:, None]], axis=1)

    # ---- queries -------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def widths(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @property
    def tracked_ids(self) -> np.ndarray:
        """The track ids; raises if these boxes are untracked (detections, proposals)."""
        if self.track_id is None:
            raise ValueError("these boxes carry no track ids")
        return self.track_id

    def iou(self, other: Boxes) -> np.ndarray:
        """(len(self), len(other)) IoU; both must be in the same space (and frame size when pixels)."""
        if self.space != other.space:
            raise ValueError(f"IoU of {self.space} and {other.space} boxes")
        if None not in (self.size, other.size) and self.size != other.size:
            raise ValueError(f"IoU of boxes from frames of size {self.size} and {other.size}")
        return iou_matrix(self.xyxy, other.xyxy)

    # ---- transformations (each returns a new Boxes) --------------------------------------------------------

    def select(self, index: np.ndarray | Sequence[int] | slice) -> Boxes:
        """The boxes picked by a boolean mask, an index array or a slice, in that order."""
        index = np.asarray(index) if not isinstance(index, slice) else index
        if isinstance(index, np.ndarray) and index.dtype.kind not in "bi":
            index = index.astype(np.int64)  # [] from an empty list comes as float64
        ids = None if self.track_id is None else self.track_id[index]
        return Boxes(self.xyxy[index], self.score[index], self.space, self.size, ids)

    def with_min_score(self, min_score: float) -> Boxes:
        return self.select(self.score >= min_score)

    def with_min_side(self, px: float) -> Boxes:
        """Boxes whose width and height are both at least ``px`` (in this space's units)."""
        return self.select((self.widths >= px) & (self.heights >= px))

    def by_score(self) -> Boxes:
        """Highest score first; equal scores keep their order."""
        return self.select(np.argsort(-self.score, kind="stable"))

    def with_size(self, size: tuple[int, int]) -> Boxes:
        """The same boxes with the frame size set; a different size already set is an error."""
        if self.size is not None and self.size != tuple(size):
            raise ValueError(f"frame size is {self.size}, not {tuple(size)}")
        return replace(self, size=(int(size[0]), int(size[1])))

    def with_track_ids(self, ids: np.ndarray | Sequence[int]) -> Boxes:
        return replace(self, track_id=np.asarray(ids, dtype=np.int64))

    def _scale(self) -> np.ndarray:
        if self.size is None:
            raise ValueError("the frame size is unknown; set it with with_size((width, height))")
        w, h = self.size
        return np.array([w, h, w, h], dtype=np.float64)

    def to_normalised(self) -> Boxes:
        """Divided by the frame size and clipped to [0, 1] (a box past the frame ends at its edge)."""
        if self.space == "normalised":
            return self
        xyxy = (self.xyxy / self._scale()).clip(0.0, 1.0)
        return Boxes(xyxy, self.score, "normalised", self.size, self.track_id)

    def to_pixels(self) -> Boxes:
        if self.space == "pixels":
            return self
        return Boxes(self.xyxy * self._scale(), self.score, "pixels", self.size, self.track_id)

    def __repr__(self) -> str:
        tracked = "" if self.track_id is None else ", tracked"
        return f"Boxes({len(self)} {self.space}, size={self.size}{tracked})"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4+) and b (M, 4+); columns past the 4th are ignored."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a, b = a[:, None, :4], b[None, :, :4]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)
