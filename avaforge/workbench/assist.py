"""Model assist: a trained checkpoint's action scores for the boxes of a clip, shown as suggestions.

The checkpoint is ``avaforge train``'s output and ``config`` its run's config.py (both deployment- or
user-owned files, never chosen by a request: the config is Python that mmengine executes). Weights load with
torch's weights-only unpickler (``mmengine_checkpoint_globals`` allows exactly the message-hub types). Each
labelled second is scored once with all its boxes as the proposals, through the config's own test pipeline
over the clip's rawframes (the same ``img_%05d.jpg`` files and sampling window training used).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avaforge.formats.actions import ActionList
from avaforge.formats.errors import FormatError
from avaforge.formats.pbtxt import read_pbtxt
from avaforge.formats.timeline import FPS
from avaforge.stages.via_import import LabelledBox
from avaforge.tracking.metrics import hungarian

Scores = dict[tuple[int, int], list[tuple[int, float]]]
_FRAME = re.compile(r"img_[0-9]{5}\.jpg")


def predict(
    checkpoint: Path,
    config: Path,
    rawframes: Path,
    boxes: Sequence[LabelledBox],
    actions: ActionList,
) -> Scores:
    """(person id, second) -> [(action id, score)] for every box, highest score first; the action ids are
    the checkpoint's classes, which must be actions of ``actions`` with the same names."""
    import torch
    from mmengine.dataset import pseudo_collate

    from avaforge.trainer.demo_video import _load_model

    for path in (checkpoint, config):
        if not Path(path).is_file():
            raise FormatError("no such file", str(path))
    num_frames = sum(1 for p in Path(rawframes).iterdir() if _FRAME.fullmatch(p.name))
    if num_frames == 0:
        raise FormatError("no rawframes img_00001.jpg... in this folder", str(rawframes))
    cfg, model, pipeline = _load_model(Path(config), Path(checkpoint))
    class_ids = _class_ids(cfg, actions, str(config))
    by_second: dict[int, list[LabelledBox]] = defaultdict(list)
    for b in boxes:
        by_second[b.second].append(b)
    out: Scores = {}
    for second, people in sorted(by_second.items()):
        proposals = np.clip(np.array([b.box for b in people], dtype=np.float32).reshape(-1, 4), 0.0, 1.0)
        data = _sample(Path(rawframes), second, num_frames, proposals, len(class_ids))
        with torch.no_grad():
            (sample,) = model.test_step(pseudo_collate([pipeline(data)]))
        predicted = sample.pred_instances.bboxes.cpu().numpy()
        scores = sample.pred_instances.scores.cpu().numpy()
        # the head returns one row per proposal; match by IoU rather than trust the order
        for i, j in hungarian(proposals, predicted, 0.5):
            ranked = sorted(
                ((class_ids[c - 1], float(scores[j, c])) for c in range(1, scores.shape[1])),
                key=lambda item: (-item[1], item[0]),
            )
            out[(people[i].person_id, second)] = ranked
    missing = [(b.person_id, b.second) for b in boxes if (b.person_id, b.second) not in out]
    if missing:
        raise FormatError(f"the model returned no scores for (person, second) {missing[:5]}", str(checkpoint))
    return out


def _class_ids(cfg: Any, actions: ActionList, where: str) -> list[int]:
    """Column c (1..) of the model's scores is action ``ids[c - 1]``; checked against ``actions``."""
    dataset = cfg.test_dataloader.dataset
    by_id = actions.by_id()
    label_file = Path(dataset.label_file)
    trained = dict(read_pbtxt(label_file)) if label_file.is_file() else {}
    custom = dataset.get("custom_classes")
    ids = list(custom) if custom else (sorted(trained) or list(range(1, dataset.num_classes)))
    if len(ids) != dataset.num_classes - 1:
        raise FormatError(f"{dataset.num_classes - 1} classes but {len(ids)} action ids", where)
    for action_id in ids:
        action = by_id.get(action_id)
        if action is None or (trained and trained.get(action_id) != action.name):
            raise FormatError(
                f"the checkpoint's action {action_id} ({trained.get(action_id, '?')!r}) is not action "
                f"{action_id} of this clip's action list; it was trained on another list",
                where,
            )
    return ids


def _sample(
    rawframes: Path, second: int, num_frames: int, proposals: np.ndarray, num_actions: int
) -> dict[str, Any]:
    """What mmaction2's AVADataset hands its test pipeline for one keyframe (start_index 1, 30 fps)."""
    return dict(
        frame_dir=str(rawframes),
        video_id=rawframes.name,
        timestamp=second,
        img_key=f"{rawframes.name},{second:04d}",
        shot_info=(0, num_frames),
        fps=FPS,
        timestamp_start=0,
        timestamp_end=num_frames // FPS + 1,
        filename_tmpl="img_{:05}.jpg",
        start_index=1,
        modality="RGB",
        proposals=proposals,
        scores=np.ones(len(proposals), dtype=np.float32),
        gt_bboxes=np.zeros((0, 4), dtype=np.float32),
        gt_labels=np.zeros((0, num_actions + 1), np.float32),
    )
