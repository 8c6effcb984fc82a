"""docker/: the Dockerfiles lint clean, follow the image rules, and install exactly what the services need."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import pytest

from avaforge.tracking.embedder import onnx_embedder_model
from services.common import catalog

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))
BIN = Path(sys.executable).parent


def _stages(path: Path) -> list[list[str]]:
    """Instructions per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def test_both_images_exist_and_hadolint_is_clean() -> None:
    assert [p.name for p in DOCKERFILES] == ["cpu.Dockerfile", "gpu.Dockerfile"]
    out = subprocess.run([str(BIN / "hadolint"), *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_really_checks(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install ffmpeg\n")
    out = subprocess.run([str(BIN / "hadolint"), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout and "DL3008" in out.stdout


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_multi_stage_non_root_pinned_with_base_images_as_arguments(path: Path) -> None:
    preamble, *stages = _stages(path)
    assert any(line.startswith("ARG BASE_IMAGE=") for line in preamble)
    assert all(re.match(r"FROM \$\{[A-Z_]+\} AS \w+", s[0]) for s in stages), "every base is a build argument"
    final = stages[-1]
    assert final[0].endswith("AS runtime") and len(stages) >= 2
    users = [line for line in final if line.startswith("USER ")]
    assert users == ["USER 10001:10001"]  # the uid/gid the pods run as (deploy/k8s runAsUser/runAsGroup)
    assert any(line.startswith("HEALTHCHECK ") and "services.common.probe" in line for line in final)
    runtime = " ".join(final)
    for tool in ("gcc", "build-essential", "pip install", "grpc_tools", "/opt/tools"):
        assert tool not in runtime, f"{tool} in the final stage"
    # installs are pinned: pip from generated exact lists without resolution, apt with a version
    build = " ".join(line for s in stages[:-1] for line in s)
    assert re.findall(r"pip install [^&]*", build) and all(
        "--no-deps -r requirements/image-" in cmd or "--no-deps --no-build-isolation ." in cmd
        for cmd in re.findall(r"pip install [^&]*", build)
    )
    assert '"ffmpeg=${FFMPEG_VERSION}"' in runtime


def test_image_package_lists_are_generated_and_pinned_to_the_lock() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "image_requirements.py"), "--check"])
    assert out.returncode == 0, "requirements/image-*.txt are stale: make image-requirements"
    lock = {
        line.split("==")[0].lower().replace("_", "-"): line.strip()
        for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    sets = {}
    for kind in ("cpu", "gpu", "build"):
        pins = [
            line
            for line in (ROOT / "requirements" / f"image-{kind}.txt").read_text().splitlines()
            if line and not line.startswith("#")
        ]
        for pin in pins:
            name = pin.split("==")[0].lower().replace("_", "-")
            assert lock[name].lower().replace("_", "-") == pin.lower().replace("_", "-"), pin
        sets[kind] = {p.split("==")[0].lower() for p in pins}
    assert sets["cpu"] < sets["gpu"]
    assert not {"torch", "torchvision", "ultralytics", "mmengine", "mmaction2"} & sets["cpu"]


def test_cpu_image_services_import_nothing_outside_the_cpu_image() -> None:
    """Every module a CPU-image process runs imports only packages of requirements/image-cpu.txt (no torch):
    imports of any other installed distribution are refused in a fresh interpreter."""
    cpu = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements" / "image-cpu.txt").read_text().splitlines()
        if "==" in line
    }
    foreign = sorted(
        top
        for top, dists in md.packages_distributions().items()
        if not {d.lower().replace("_", "-") for d in dists} & (cpu | {"avaforge"})
    )
    modules = [
        *sorted({d.args[0] for d in catalog.DEPLOYABLES if d.image == "cpu"}),
        "avaforge.detection.model_repo",
        "avaforge.detection.onnx_backend",
        "avaforge.detection.triton_backend",
        "avaforge.stages.track",
        "services.common.probe",
        "services.gateway.__main__",
        "services.detector.__main__",
        "services.trainer.__main__",
    ]
    code = f"""
import sys
FOREIGN = set({foreign!r})
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FOREIGN:
            raise ImportError(f"{{name}} is not in the CPU image")
sys.meta_path.insert(0, Refuse())
import importlib
for m in {modules!r}:
    importlib.import_module(m)
# what the track worker does at run time: the ONNX embedder and Deep SORT
import numpy as np
from avaforge.settings import TrackSettings
from avaforge.stages.track import _deepsort
from avaforge.tracking.embedder import OnnxEmbedder
assert OnnxEmbedder().embed(np.zeros((64, 64, 3), np.uint8), np.array([[0, 0, 32, 32.0]])).shape == (1, 1280)
_deepsort(TrackSettings(), 10.0)
print("ok", len(FOREIGN))
"""
    onnx_embedder_model()  # exported here (torch) if this machine has not yet: the image bakes it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "torch" in foreign and "mmengine" in foreign  # the check refuses what the CPU image lacks
