"""provenance.json (in the dataset's annotations/): who made the labels, coverage, the split, the action
groups (so that ``avaforge validate`` can check exclusive groups; the pbtxt has no groups) and, where a second
annotator reviewed a clip, the agreement. Not part of the byte-compared content (DatasetLayout.content_files).

Keys: ``split_unit``, ``splits``; ``sources`` = labelled boxes per source; ``coverage`` = labelled and
unlabelled boxes; ``sources_per_action`` = per action name, how many of its labels are human, machine,
suggestion (an accepted machine suggestion) and propagated; ``actions`` = the action list
(ActionList.to_dict);
``agreement`` = clip id -> ClipAgreement.to_dict() for reviewed clips.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError

if TYPE_CHECKING:  # validate reads provenance.json without the import stage's dependencies
    from avaforge.stages.via_import import LabelledBox

PROVENANCE_FILE = "provenance.json"


def sources_per_action(boxes: Iterable[LabelledBox], actions: ActionList) -> dict[str, dict[str, int]]:
    """Action name -> {source: labels}; a box with two actions counts once for each (one AVA row each)."""
    from avaforge.stages.via_import import SOURCES

    counts: dict[int, Counter[str]] = {a.id: Counter() for a in actions}
    for box in boxes:
        for action_id in box.actions:
            counts.setdefault(action_id, Counter())[box.source] += 1
    names = {a.id: a.name for a in actions}
    return {names.get(aid, str(aid)): {s: counts[aid][s] for s in SOURCES} for aid in sorted(counts)}


def read_provenance(annotations: Path) -> dict[str, Any]:
    """The parsed file, {} when absent; FormatError when it is not a JSON object."""
    path = annotations / PROVENANCE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"not JSON: {exc}", str(path)) from None
    if not isinstance(data, dict):
        raise FormatError("expected a JSON object", str(path))
    return data


def provenance_actions(provenance: dict[str, Any], where: str) -> ActionList | None:
    """The action list the dataset was built with, if provenance.json records it (older builds do not);
    FormatError when it is there but not an action list."""
    obj = provenance.get("actions")
    return None if obj is None else ActionList.from_obj(obj, where)
