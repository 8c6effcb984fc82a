"""A service process's thread budget: as many compute threads as its CPU limit grants, set once at start-up.

Every numeric library sizes its thread pool to the machine's cores by default; two workers on a 2-core node
then run four busy threads on two cores and are slower together than one alone (issue 13). The budget is, in
this order:
  AVAFORGE_THREADS          an explicit count (an operator's override)
  AVAFORGE_CPU_LIMIT_MILLI  the container's limits.cpu in millicores (Kubernetes downward API,
                            resourceFieldRef limits.cpu with divisor 1m; the catalog's manifests set it)
  the cgroup CPU quota      /sys/fs/cgroup/cpu.max (v2) or cpu.cfs_quota_us / cpu.cfs_period_us (v1)
  the CPUs this process may run on (sched_getaffinity)
rounded down to whole cores (a thread on 1.5 cores is throttled every period), at least 1, and applied to
ONNX Runtime (``AVAFORGE_ORT_THREADS``, read by avaforge.ort_threads), OpenMP/BLAS (torch's intra-op pool,
read when torch loads) and OpenCV.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# what reads the budget: ONNX Runtime via avaforge.ort_threads, libgomp/MKL/OpenBLAS when they load
THREAD_VARIABLES = ("AVAFORGE_ORT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Budget:
    threads: int
    source: str  # where the number came from, for the start-up log


def cgroup_cpus(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores, or None when it has none."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100000)
    v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if v1_quota.is_file() and v1_period.is_file():
        quota_us = int(v1_quota.read_text())
        return None if quota_us < 0 else quota_us / int(v1_period.read_text())
    return None


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: expected at least 1")
    return value


def budget(env: Mapping[str, str] = os.environ, root: Path = CGROUP) -> Budget:
    if (explicit := _positive_int(env, "AVAFORGE_THREADS")) is not None:
        return Budget(explicit, "AVAFORGE_THREADS")
    if (milli := _positive_int(env, "AVAFORGE_CPU_LIMIT_MILLI")) is not None:
        return Budget(max(1, milli // 1000), f"limits.cpu {milli}m")
    if (cores := cgroup_cpus(root)) is not None:
        return Budget(max(1, math.floor(cores)), f"cgroup quota {cores:g} CPUs")
    return Budget(len(os.sched_getaffinity(0)), "CPUs available")


def apply(b: Budget, env: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Size every compute thread pool of this process to ``b`` (before the models load)."""
    for name in THREAD_VARIABLES:
        env[name] = str(b.threads)
    if "torch" in sys.modules:  # already loaded: OMP_NUM_THREADS was read; tell it directly
        sys.modules["torch"].set_num_threads(b.threads)
    import cv2

    cv2.setNumThreads(b.threads)
