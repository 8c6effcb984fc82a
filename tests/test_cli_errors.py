"""Every CLI user error is one line on stderr and exit code 2, run as a user runs it (a subprocess), on a real
work folder (the embedded prepare of a test video, once for the module). The issue's repro: a ``person`` of
"²" ended ``avaforge import`` in a ValueError traceback; NaN coordinates passed import and failed at build."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from avaforge.formats.actions import ActionList
from avaforge.runner import autolabel_workdir, prepare
from avaforge.settings import ClipPlan, CutSettings, PipelineSettings

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
PLAN = PipelineSettings(cut=CutSettings(plan=ClipPlan(mode="explicit", segments=((0.0, 7.0),))))
VIDEO_NAMES = ("people_29.97fps_10s.mp4",)  # tests/media.py


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> dict[str, Any]:
    video = next(videos / n for n in VIDEO_NAMES if (videos / n).is_file())
    root = tmp_path_factory.mktemp("cli_errors")
    prepare([video], ActionList.from_obj(ACTIONS), root / "work", PLAN)
    (project,) = autolabel_workdir(root / "work")
    return {"root": root, "work": root / "work", "video": video, "project": json.loads(project.read_bytes())}


def avaforge(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "avaforge", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _one_line_user_error(run: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _mutated(work: dict[str, Any], name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(work["project"])
    mid = sorted(doc["metadata"])[0]
    mutate(doc["metadata"][mid])
    path = work["root"] / name
    path.write_text(json.dumps(doc))  # Python writes NaN as NaN, as a careless tool would
    return path


def test_a_person_of_superscript_two_is_one_line_naming_the_region(work: dict[str, Any]) -> None:
    path = _mutated(work, "sup2.json", lambda md: md["av"].__setitem__("1", "²"))
    line = _one_line_user_error(avaforge("import", str(work["work"]), str(path)), "region", "not a track id")
    assert line.startswith("error: ") and str(path) in line


def test_nan_coordinates_are_refused_at_import_not_at_build(work: dict[str, Any]) -> None:
    path = _mutated(work, "nan.json", lambda md: md["xy"].__setitem__(1, float("nan")))
    _one_line_user_error(avaforge("import", str(work["work"]), str(path)), "region", "not a finite number")
    assert not list(work["work"].rglob("labels/*.json"))  # nothing imported


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not JSON"),
        ("[]", "top level is a JSON list"),
        ('{"project": {}}', "missing keys"),
    ],
)
def test_broken_project_files_are_one_line(work: dict[str, Any], content: str, needle: str) -> None:
    path = work["root"] / "broken.json"
    path.write_text(content)
    _one_line_user_error(avaforge("import", str(work["work"]), str(path)), needle)


@pytest.mark.parametrize(
    ("settings", "needles"),
    [
        ("detect:\n  imgsz: 333\n", ("settings.yaml.detect.imgsz", "multiple of 32")),
        ("detect:\n  conf: .nan\n", ("settings.yaml.detect.conf", "finite")),
        ("frames: {jpeg_qscale: 40}\n", ("settings.yaml.frames.jpeg_qscale", "[2, 31]")),
        ("cut:\n  plan: [1\n", ("cannot parse settings",)),  # yaml's message spans lines: joined into one
        ("detect:\n  nope: 1\n", ("unknown settings",)),
    ],
)
def test_bad_settings_files_are_one_line_naming_the_field(
    work: dict[str, Any], settings: str, needles: tuple[str, ...]
) -> None:
    path = work["root"] / "settings.yaml"
    path.write_text(settings)
    actions = work["root"] / "actions.json"
    actions.write_text(json.dumps(ACTIONS))
    out = work["root"] / "never"
    run = avaforge(
        "prepare", str(work["video"]), "--actions", str(actions), "--out", str(out), "--settings", str(path)
    )
    _one_line_user_error(run, *needles)
    assert not out.exists()  # refused before any work


def test_usage_and_missing_files_are_one_line(work: dict[str, Any]) -> None:
    _one_line_user_error(avaforge("prepare"), "required")
    _one_line_user_error(
        avaforge("import", str(work["work"]), str(work["root"] / "missing.json")), "not found"
    )
    _one_line_user_error(avaforge("build", str(work["root"] / "nowhere"), "--out", str(work["root"] / "o")))
