"""Make the pinned mmaction2 1.2.0 wheel importable and its registries usable.

The 1.2.0 wheel on PyPI lacks ``mmaction/models/localizers/drn/`` while ``localizers/__init__.py`` still
does ``from .drn.drn import DRN``, so ``import mmaction.models`` (and ``register_all_modules``) fails.
We register an importable stand-in for that one module before mmaction imports it; DRN (a temporal
grounding model avaforge never uses) then raises a clear error if anyone builds it. site-packages is
left untouched.
"""

from __future__ import annotations

import importlib.util
import sys
import types

_DRN_PACKAGE = "mmaction.models.localizers.drn"


class DRNUnavailable:
    """Stand-in for mmaction2's DRN, whose source the 1.2.0 wheel does not ship."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ImportError("mmaction2 1.2.0's wheel does not ship models/localizers/drn (DRN is unavailable)")


def guard_missing_drn() -> None:
    """Install the DRN stand-in if (and only if) the installed mmaction2 lacks the module."""
    if _DRN_PACKAGE in sys.modules:
        return
    localizers = importlib.util.find_spec("mmaction")
    if localizers is None or not localizers.submodule_search_locations:
        return
    from pathlib import Path

    drn_dir = Path(next(iter(localizers.submodule_search_locations))) / "models" / "localizers" / "drn"
    if drn_dir.is_dir():
        return
    package = types.ModuleType(_DRN_PACKAGE)
    package.__path__ = []
    module = types.ModuleType(f"{_DRN_PACKAGE}.drn")
    module.DRN = DRNUnavailable  # type: ignore[attr-defined]
    package.drn = module  # type: ignore[attr-defined]
    sys.modules[_DRN_PACKAGE] = package
    sys.modules[f"{_DRN_PACKAGE}.drn"] = module


def register_mmaction() -> None:
    """Import mmaction2 with the guards and register all its modules in the default 'mmaction' scope.

    The mmcv-lite adapter goes in first: mmcv modules imported without it keep the names they failed to
    import (e.g. ``MultiScaleDeformableAttention``), and mmdet's models would then fail later on.
    """
    from avaforge.compat.mmcv_ext import install

    install()
    guard_missing_drn()
    from mmaction.utils import register_all_modules

    register_all_modules(init_default_scope=True)
