"""Imported by every generated config (``custom_imports``) before mmengine builds anything.

It makes the pinned stack runnable — mmaction2's missing ``drn`` module guarded, mmcv-lite's missing
compiled ops replaced by the torchvision RoIAlign adapter — and registers avaforge's AVA metric, so the same
config runs under ``avaforge train`` and under mmaction2's own ``tools/train.py``.
"""

from avaforge.compat.mmaction import guard_missing_drn
from avaforge.compat.mmcv_ext import install

install()
guard_missing_drn()

from avaforge.trainer import hooks, metric  # noqa: E402,F401  (registers the metric and the hook)
