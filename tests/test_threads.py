"""The thread budget of a service process (services/common/threads.py): from the explicit override, the
downward-API limit, the cgroup quota files (written here as the kernel writes them) or the CPUs available."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avaforge.ort_threads import session_options
from services.common import threads

REPO = Path(__file__).resolve().parents[1]


def cgroup_v2(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def cgroup_v1(tmp_path: Path, quota_us: int, period_us: int) -> Path:
    (tmp_path / "cpu").mkdir(parents=True)
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period_us}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cpu_max", "threads_"),
    [("200000 100000", 2), ("150000 100000", 1), ("50000 100000", 1), ("400000 50000", 8)],
)
def test_cgroup_v2_quota_gives_whole_cores(tmp_path, cpu_max, threads_):
    b = threads.budget({}, cgroup_v2(tmp_path, cpu_max))
    assert b.threads == threads_
    assert b.source.startswith("cgroup quota")


def test_cgroup_v1_quota(tmp_path):
    assert threads.budget({}, cgroup_v1(tmp_path, 300000, 100000)).threads == 3


def test_no_quota_means_the_cpus_available(tmp_path):
    for root in (cgroup_v2(tmp_path, "max 100000"), tmp_path / "absent"):
        b = threads.budget({}, root)
        assert (b.threads, b.source) == (len(os.sched_getaffinity(0)), "CPUs available")
    assert threads.budget({}, cgroup_v1(tmp_path / "v1", -1, 100000)).source == "CPUs available"


def test_downward_api_limit_and_override_come_first(tmp_path):
    root = cgroup_v2(tmp_path, "400000 100000")
    assert threads.budget({"AVAFORGE_CPU_LIMIT_MILLI": "2500"}, root).threads == 2
    assert threads.budget({"AVAFORGE_CPU_LIMIT_MILLI": "500"}, root).threads == 1
    both = {"AVAFORGE_CPU_LIMIT_MILLI": "2500", "AVAFORGE_THREADS": "3"}
    assert threads.budget(both, root) == threads.Budget(3, "AVAFORGE_THREADS")


@pytest.mark.parametrize("bad", [{"AVAFORGE_THREADS": "two"}, {"AVAFORGE_CPU_LIMIT_MILLI": "0"}])
def test_bad_values_name_the_variable(tmp_path, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        threads.budget(bad, tmp_path)


def test_apply_sets_every_pool_and_onnx_runtime_reads_it(monkeypatch):
    env: dict[str, str] = {}
    threads.apply(threads.Budget(1, "test"), env)
    assert {k: env[k] for k in threads.THREAD_VARIABLES} == dict.fromkeys(threads.THREAD_VARIABLES, "1")
    monkeypatch.setenv("AVAFORGE_ORT_THREADS", env["AVAFORGE_ORT_THREADS"])
    assert session_options().intra_op_num_threads == 1
    monkeypatch.delenv("AVAFORGE_ORT_THREADS")
    assert session_options().intra_op_num_threads == 0  # ONNX Runtime's default: one per core


@pytest.mark.slow  # a Python start-up with the services' imports
def test_worker_start_up_rejects_a_bad_budget_in_one_line():
    env = {**os.environ, "AVAFORGE_THREADS": "0", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "services.detector", "work"], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "detector: AVAFORGE_THREADS='0': expected at least 1"
