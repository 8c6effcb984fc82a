"""Model assist: a tiny-preset checkpoint trained by `avaforge train` scores every box of a clip."""

from pathlib import Path

import pytest

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.stages.via_import import LabelledBox
from avaforge.workbench.assist import predict

pytestmark = pytest.mark.slow
# write_demo_dataset's action list: ids in order of appearance
ACTIONS = ActionList.from_flat(["stand", "walk", "talk"])


def test_checkpoint_scores_every_box_with_the_action_ids(
    tmp_path: Path, people_rawframes: Path, tiny_run
) -> None:  # type: ignore[no-untyped-def]
    _, _, result = tiny_run  # the tiny preset trained 2 iterations on write_demo_dataset
    boxes = [
        LabelledBox(2, (0.1, 0.2, 0.4, 0.9), 5, (), "machine", "workbench:5@2"),
        LabelledBox(2, (0.55, 0.15, 0.85, 0.95), 9, (), "machine", "workbench:9@2"),
        LabelledBox(3, (0.1, 0.2, 0.4, 0.9), 5, (1,), "human", "workbench:5@3"),
        LabelledBox(
            7, (0.5, 0.1, 1.02, 0.9), 11, (), "machine", "workbench:11@7"
        ),  # beyond the frame: clipped
    ]
    scores = predict(result.checkpoint, result.config, people_rawframes, boxes, ACTIONS)
    assert sorted(scores) == [(5, 2), (5, 3), (9, 2), (11, 7)]
    for ranked in scores.values():
        assert sorted(a for a, _ in ranked) == [1, 2, 3]  # every action of the list, by its id
        assert all(0.0 <= s <= 1.0 for _, s in ranked)  # sigmoid scores of the multi-label head
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    renamed = ActionList.from_flat(["stand", "run", "talk"])
    with pytest.raises(FormatError, match=r"action 2 \('walk'\) is not action 2"):
        predict(result.checkpoint, result.config, people_rawframes, boxes, renamed)
    with pytest.raises(FormatError, match="no rawframes"):
        predict(result.checkpoint, result.config, tmp_path, boxes, ACTIONS)
