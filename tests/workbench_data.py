"""A small prepared work folder for the workbench tests, made once a session: the embedded prepare of
tests/media.py's 29.97 fps people video cut into two clips, 0-6 s (labelled seconds 2, 3, 4) and 6-10 s
(labelled second 2), 3-5 people a keyframe, with autolabel's suggestions; two clips, so that `avaforge build`
has a train and a val split. Each test gets its own copy (``fresh_workdir``): the app writes labels and
revisions into it.

The prepare takes a minute or more (minutes on a loaded machine); to rerun the workbench tests quickly,
``python -m tests.workbench_data DIR`` makes the folder once and ``AVAFORGE_WORKBENCH_PREPARED=DIR/work``
makes the tests copy it instead of preparing again (the same prepare, only kept between sessions)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from avaforge.formats.actions import ActionList
from avaforge.runner import autolabel_workdir, prepare
from avaforge.settings import ClipPlan, CutSettings, PipelineSettings
from tests import media

ACTIONS = {"groups": {"body": ["stand", "walk"], "hands": ["wave"]}}
SEGMENTS = ((0.0, 6.0), (6.0, 4.0))  # (start, length) in seconds
PLAN = PipelineSettings(cut=CutSettings(plan=ClipPlan(mode="explicit", segments=SEGMENTS)))
_MADE: dict[str, Path] = {}


def prepared_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's prepared work folder (never modified: copy it with ``fresh_workdir``)."""
    kept = os.environ.get("AVAFORGE_WORKBENCH_PREPARED")
    if kept:
        return Path(kept)
    if "work" not in _MADE:
        _MADE["work"] = make(tmp_path_factory.mktemp("workbench"))
    return _MADE["work"]


def fresh_workdir(tmp_path_factory: pytest.TempPathFactory, into: Path) -> Path:
    out = into / "work"
    shutil.copytree(prepared_workdir(tmp_path_factory), out)
    return out


def make(root: Path) -> Path:
    video = media.make(media.PEOPLE_2997, root / "videos")
    prepare([video], ActionList.from_obj(ACTIONS), root / "work", PLAN)
    autolabel_workdir(root / "work")
    return root / "work"


if __name__ == "__main__":
    print(make(Path(sys.argv[1])))
