"""The lint panel's rules on hand-made boxes of a 640x480 frame."""

from avaforge.formats.actions import ActionList
from avaforge.stages.via_import import LabelledBox
from avaforge.workbench.lint import lint

ACTIONS = ActionList.from_obj(
    {"groups": {"pose": {"exclusive": True, "actions": ["stand", "sit"]}, "social": ["talk"]}}
)  # stand 1, sit 2, talk 3
SIZE = (640, 480)


def box(second: int, person: int, xyxy: tuple[float, ...], *actions: int) -> LabelledBox:
    return LabelledBox(second, xyxy, person, actions, "human", f"workbench:{person}@{second}")


def test_each_rule() -> None:
    boxes = [
        box(1, 0, (0.1, 0.1, 0.3, 0.9), 1, 3),  # fine
        box(1, 1, (0.5, 0.1, 0.7, 0.9)),  # no action
        box(2, 0, (0.1, 0.1, 0.3, 0.9), 1, 2),  # two poses
        box(2, 1, (0.5, 0.1, 0.7, 0.9), 3),  # no pose
        box(3, 0, (0.8, 0.1, 1.05, 0.9), 1),  # beyond the right edge
        # 0.02 x 640 = 12.8 px wide (< 16), 0.5 x 480 = 240 px high; and unlabelled
        box(3, 1, (0.4, 0.2, 0.42, 0.7)),
        box(4, 2, (0.4, 0.2, 0.425, 0.7), 1),  # 0.025 x 640 = 16 px: not tiny
    ]
    issues = lint(boxes, ACTIONS, SIZE)
    assert [(i.kind, i.second, i.person_id) for i in issues] == [
        ("unlabelled", 1, 1),
        ("exclusive", 2, 0),
        ("exclusive", 2, 1),
        ("outside", 3, 0),
        ("unlabelled", 3, 1),
        ("tiny", 3, 1),
    ]
    messages = [i.message for i in issues]
    assert messages[1] == "second 2, person 0: group 'pose' needs exactly one action, got 2 (stand, sit)"
    assert messages[2] == "second 2, person 1: group 'pose' needs exactly one action, got none"
    assert messages[5] == "second 3, person 1: box is 13x240 px, under 16 px"
    assert issues[3].to_dict()["kind"] == "outside"
    assert lint(boxes[:1], ACTIONS, SIZE) == [] and lint([], ACTIONS, SIZE) == []
    # the threshold is a parameter: at 20 px the 16 px box is tiny too
    assert [(i.kind, i.second) for i in lint(boxes[6:], ACTIONS, SIZE, min_box_px=20)] == [("tiny", 4)]


def test_without_exclusive_groups_any_labels_pass() -> None:
    flat = ActionList.from_flat(["stand", "sit", "talk"])
    assert lint([box(1, 0, (0.1, 0.1, 0.3, 0.9), 1, 2)], flat, SIZE) == []
