"""Run mmaction2's AVA models on mmcv-lite: an ``mmcv._ext`` whose RoIAlign is torchvision's.

mmcv-lite ships no compiled ops, and ``mmcv.ops`` (imported by mmdet's models, which mmaction2's AVA
detector and RoI head build on) fails on ``import mmcv._ext``. This module registers an ``mmcv._ext`` in which
``roi_align_forward``/``roi_align_backward`` (the only compiled ops the AVA models call) run
``torchvision.ops.roi_align`` and its backward kernel: both implement Detectron's RoIAlign, the algorithm
mmcv's kernel implements (bilinear sampling, ``aligned`` half-pixel offset, adaptive or fixed sampling ratio,
average pooling); ``tests/test_roi_align.py`` checks them numerically against an independent reference.
Every other op name resolves to a function that raises, naming the op and that it needs full mmcv. Nothing
is installed or patched on disk, and a full mmcv (with its real ``_ext``) is used untouched when present.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

EXT = "mmcv._ext"


def roi_align_forward(
    input: torch.Tensor,
    rois: torch.Tensor,
    output: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    *,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    if pool_mode != 1:
        raise NotImplementedError("RoIAlign with pool_mode='max' needs full mmcv (avaforge maps 'avg' only)")
    from torchvision.ops import roi_align

    output.copy_(
        roi_align(input, rois, (aligned_height, aligned_width), spatial_scale, sampling_ratio, aligned)
    )


def roi_align_backward(
    grad_output: torch.Tensor,
    rois: torch.Tensor,
    argmax_y: torch.Tensor,
    argmax_x: torch.Tensor,
    grad_input: torch.Tensor,
    *,
    aligned_height: int,
    aligned_width: int,
    spatial_scale: float,
    sampling_ratio: int,
    pool_mode: int,
    aligned: bool,
) -> None:
    if pool_mode != 1:
        raise NotImplementedError("RoIAlign with pool_mode='max' needs full mmcv")
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)

    n, c, h, w = grad_input.shape
    grad_input.copy_(
        torch.ops.torchvision._roi_align_backward(
            grad_output,
            rois,
            spatial_scale,
            aligned_height,
            aligned_width,
            n,
            c,
            h,
            w,
            sampling_ratio,
            aligned,
        )
    )


def _missing(name: str) -> Callable[..., Any]:
    def op(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(
            f"mmcv op {name!r} needs full mmcv (avaforge runs mmcv-lite + RoIAlign only)"
        )

    op.__name__ = name
    return op


def install() -> None:
    """Register the adapter as ``mmcv._ext`` unless a real compiled one is importable."""
    if EXT in sys.modules or importlib.util.find_spec("mmcv") is None:
        return
    try:
        if importlib.util.find_spec(EXT) is not None:
            return
    except (ImportError, ValueError):
        pass
    module = types.ModuleType(EXT, "avaforge's mmcv-lite adapter (torchvision RoIAlign)")
    # A spec without a loader: importable from sys.modules, yet mmengine's mmcv_full_available() stays False.
    module.__spec__ = importlib.machinery.ModuleSpec(EXT, None)
    module.roi_align_forward = roi_align_forward  # type: ignore[attr-defined]
    module.roi_align_backward = roi_align_backward  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:  # PEP 562: every other op exists but refuses to run
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(name)

    module.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules[EXT] = module
