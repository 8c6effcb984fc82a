"""Dense proposals pkl: ``{"{video_id},{timestamp:04d}": float64 array (N, 5) [x1, y1, x2, y2, score]}``.

Boxes and scores are normalised to [0, 1]. A keyframe with no person is an array of shape (0, 5), never
(0,) (mmaction2 indexes ``[:, 4]``). Every labelled keyframe needs a key: mmaction2 silently substitutes the
whole frame for a missing key.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avaforge.boxes import Boxes
from avaforge.formats.ava_csv import check_video_id, proposal_key
from avaforge.formats.errors import FormatError, Problem, Severity, read_bytes
from avaforge.fsutil import atomic_write_bytes

Proposals = dict[str, np.ndarray]

_KEY = re.compile(r"(?P<video>[^,]+),(?P<ts>\d{4,})")


def parse_key(key: str) -> tuple[str, int]:
    """Split ``"video,0002"`` into ("video", 2); the timestamp has at least 4 digits, as mmaction2 writes."""
    m = _KEY.fullmatch(key) if isinstance(key, str) else None
    if not m:
        raise FormatError(f"proposal key {key!r} is not 'video_id,SSSS'")
    return m["video"], int(m["ts"])


def check_array(key: str, value: Any) -> list[Problem]:
    """Everything that makes a proposal array unusable by mmaction2, as problems."""

    def err(code: str, msg: str) -> list[Problem]:
        return [Problem(Severity.ERROR, code, msg, f"proposals[{key!r}]")]

    if not isinstance(value, np.ndarray):
        return err("proposal-type", f"value is {type(value).__name__}, expected numpy.ndarray")
    if value.dtype != np.float64:
        hint = " (scores stored as strings?)" if value.dtype.kind in "USO" else ""
        return err("proposal-dtype", f"dtype {value.dtype}, expected float64{hint}")
    if value.ndim != 2 or value.shape[1] != 5:
        return err("proposal-shape", f"shape {value.shape}, expected (N, 5); an empty keyframe is (0, 5)")
    if value.size == 0:
        return []
    if not np.isfinite(value).all():
        return err("proposal-nonfinite", "contains NaN or infinity")
    if value.min() < 0 or value.max() > 1:
        return err("proposal-range", f"values outside [0, 1] (min {value.min():.4g}, max {value.max():.4g})")
    if ((value[:, 0] >= value[:, 2]) | (value[:, 1] >= value[:, 3])).any():
        return err("proposal-inverted", "a box has x1>=x2 or y1>=y2")
    return []


def normalise(proposals: Mapping[str, Any]) -> Proposals:
    """Return a checked copy with float64 (N, 5) arrays, raising FormatError on the first bad entry."""
    out: Proposals = {}
    for key in sorted(proposals):
        video_id, _ = parse_key(key)
        check_video_id(video_id, f"proposal key {key!r}")
        raw = proposals[key]
        value = raw if isinstance(raw, np.ndarray) and raw.dtype == np.float64 else _as_float_array(key, raw)
        if value.size == 0:
            value = np.zeros((0, 5), dtype=np.float64)
        problems = check_array(key, value)
        if problems:
            raise FormatError(problems[0].message, problems[0].where)
        out[key] = value
    return out


def _as_float_array(key: str, raw: Any) -> np.ndarray:
    arr = np.asarray(raw)
    if arr.dtype.kind not in "fiu":
        raise FormatError(
            f"values of dtype {arr.dtype} are not numbers (scores stored as strings?)", f"proposals[{key!r}]"
        )
    return arr.astype(np.float64)


def from_boxes(video_id: str, by_second: Mapping[int, Boxes]) -> Proposals:
    """Checked proposals of one video from its normalised boxes per keyframe second."""
    if any(b.space != "normalised" for b in by_second.values()):
        raise ValueError("proposals are normalised boxes; convert with Boxes.to_normalised()")
    return normalise({proposal_key(video_id, t): b.to_rows() for t, b in by_second.items()})


def to_boxes(proposals: Proposals, key: str) -> Boxes:
    """The normalised boxes stored under ``key`` (none when the key is absent)."""
    return Boxes.from_rows(proposals[key], "normalised") if key in proposals else Boxes.empty("normalised")


def dumps(proposals: Mapping[str, Any]) -> bytes:
    return pickle.dumps(normalise(proposals), protocol=4)


def write_proposals(path: str | Path, proposals: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, dumps(proposals))


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Loads dicts of numpy arrays and nothing else: a dataset file must not be able to run code."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("collections", "OrderedDict"),
            ("builtins", "set"),
            ("_codecs", "encode"),  # protocol-2 pickles (AVA's own files) store array bytes this way
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a proposals file")


def loads_raw(data: bytes, where: str) -> dict[Any, Any]:
    """Unpickle a proposals file without checking its entries (the validator reports those)."""
    if not data:
        raise FormatError("empty file", where)
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise FormatError(f"not a proposals pickle: {exc}", where) from None
    if not isinstance(obj, dict):
        raise FormatError(f"top level is {type(obj).__name__}, expected dict", where)
    return obj


def read_proposals(path: str | Path) -> Proposals:
    """Read a proposals pkl strictly (no silent repair); the first bad entry raises FormatError."""
    p = Path(path)
    raw = loads_raw(read_bytes(p), str(p))
    for key in sorted(raw, key=str):
        try:
            check_video_id(parse_key(key)[0])
        except FormatError as exc:
            raise FormatError(exc.message, f"{p}: proposals[{key!r}]") from None
        problems = check_array(key, raw[key])
        if problems:
            raise FormatError(problems[0].message, f"{p}: {problems[0].where}")
    return dict(raw)
