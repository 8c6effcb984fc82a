"""Reference inputs the tests write themselves, from published facts about the formats.

Nothing here is read from outside the repository: each writer reproduces a layout that AVA, mmaction2, VIA or
the seed tutorial is documented (or was observed) to produce, and says where the fact comes from. The writers
deliberately do not use avaforge's own formatters, so a round trip through avaforge is a real comparison.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --- AVA (v2.x release files and mmaction2's copies of them) ---------------------------------------------
# A row is `video_id,timestamp,x1,y1,x2,y2,action_id,person_id`: no header, LF line ends, a final newline,
# the second as 4 digits, box corners normalised with exactly 3 decimals ("0.670" and "1.000" keep their
# zeros), one row per (person, action), so a person doing several actions repeats the same box. Rows are
# grouped by video, then second, then person, actions ascending.
# YouTube ids are 11 characters of [A-Za-z0-9_-].
# AVA's keyframes are the seconds 0902..1798 of each 15-minute movie segment.
AVA_FIRST_SECOND, AVA_LAST_SECOND = 902, 1798
# The first row of mmaction2's AVA sample (tests/data/ava_dataset/ava_sample.csv), kept as one known value.
AVA_SAMPLE_FIRST_ROW = ("0f39OWEqJ24", 902, 0.031, 0.162, 0.670, 0.995, 12, 0)
# Four video ids of the AVA release: two of them start with '_' and '-', which sort after digits in ASCII.
AVA_VIDEO_IDS = ("0f39OWEqJ24", "_-Z6wFjXtGQ", "-5KQ66BBWC4", "2DUITARAsWQ")

Row = tuple[str, int, float, float, float, float, int, int]


def ava_row_text(row: Row) -> str:
    vid, ts, x1, y1, x2, y2, action, person = row
    return f"{vid},{ts:04d},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{action},{person}\n"


def _box(rng: random.Random) -> tuple[float, float, float, float]:
    """A box on AVA's 3-decimal grid; x2/y2 may touch 1.000 (as AVA's full-height persons do)."""
    x1, y1 = rng.randint(0, 700) / 1000, rng.randint(0, 500) / 1000
    return x1, y1, min(1.0, x1 + rng.randint(50, 400) / 1000), min(1.0, y1 + rng.randint(200, 600) / 1000)


def ava_rows(seed: int = 0, seconds_per_video: int = 3) -> list[Row]:
    """AVA-style ground truth, in the release files' order; the first row is the mmaction2 sample's."""
    rng = random.Random(seed)
    rows: list[Row] = [AVA_SAMPLE_FIRST_ROW]
    for vid in sorted(AVA_VIDEO_IDS):
        seconds = sorted(rng.sample(range(AVA_FIRST_SECOND, AVA_LAST_SECOND + 1), seconds_per_video))
        if vid == AVA_SAMPLE_FIRST_ROW[0]:
            seconds = sorted({AVA_FIRST_SECOND, *seconds})
        for ts in seconds:
            for person in range(rng.randint(1, 4)):
                box = _box(rng)
                # AVA has 80 actions (ids 1..80); a person has one pose action and up to two others
                actions = sorted({rng.randint(1, 14)} | set(rng.sample(range(15, 81), rng.randint(0, 2))))
                if (vid, ts, person) == (*AVA_SAMPLE_FIRST_ROW[:2], 0):
                    box, actions = AVA_SAMPLE_FIRST_ROW[2:6], sorted({12, *actions[1:]})
                for action in actions:
                    rows.append((vid, ts, *box, action, person))
    return sorted(set(rows), key=lambda r: (r[0], r[1], r[7], r[6]))


def ava_csv_bytes(rows: list[Row]) -> bytes:
    return "".join(ava_row_text(r) for r in rows).encode()


def ava_excluded_bytes(entries: list[tuple[str, int]]) -> bytes:
    """AVA's excluded-timestamps file: `video_id,timestamp` (4 digits), sorted, no header."""
    return "".join(f"{vid},{ts:04d}\n" for vid, ts in sorted(entries)).encode()


def mmaction_label_map_bytes(items: list[tuple[int, str]]) -> bytes:
    """mmaction2's label map (e.g. its tests' action_list.txt): `item {`, two-space `name: "..."` and `id: N`,
    `}`, items in id order. Names may repeat (mmaction2's sample names ids 79 and 80 both "action3")."""
    return "".join(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n' for i, name in sorted(items)).encode()


def ava_proposals(rows: list[Row], seed: int = 0) -> dict[str, np.ndarray]:
    """Dense proposals as AVA's detector files hold them: one float64 (N,5) array per "video,ssss" key,
    boxes with 3 decimals, scores with 6 (as the released Faster R-CNN scores, e.g. 0.998163), and a few
    false positives."""
    rng = random.Random(seed)
    boxes: dict[str, set[tuple[float, ...]]] = {}
    for vid, ts, *box, _action, _person in rows:
        boxes.setdefault(f"{vid},{ts:04d}", set()).add(tuple(box))
    out = {}
    for key, gt in sorted(boxes.items()):
        found = [(*b, rng.randint(900_000, 999_999) / 1e6) for b in sorted(gt)]
        found += [(*_box(rng), rng.randint(50_000, 400_000) / 1e6) for _ in range(rng.randint(0, 2))]
        out[key] = np.array(found, dtype=np.float64)
    return out


def ava_proposals_pickle(proposals: dict[str, np.ndarray]) -> bytes:
    """A proposals pkl as AVA's files and mmaction2's samples are: pickle protocol 2 of a dict of arrays,
    written by numpy 1.x, so the array class is `numpy.core.multiarray._reconstruct` and the raw bytes go
    through `_codecs.encode` (protocol 2 has no bytes type). Protocol 2's GLOBAL opcode names the module as a
    text line with no length prefix, so numpy 2's module name can be rewritten to numpy 1's in place."""
    data = pickle.dumps(proposals, protocol=2)
    data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data and b"c_codecs\nencode\n" in data
    return data


# --- per-class evaluation input (the files mmaction2's ava_eval reads) -----------------------------------
@dataclass
class EvalFixture:
    gt: Path
    pred: Path
    label_map: Path
    proposals: Path


EVAL_CLASSES = 3
EVAL_KEYFRAMES = (("3reY9zJKhqN", 1774), ("HmR8SmNIoxu", 1384), ("5HNXoce1raG", 1097), ("3reY9zJKhqN", 1775))
EVAL_PERSONS = 4


def _jitter(rng: random.Random, box: tuple[float, ...], amount: float) -> tuple[float, ...]:
    x1, y1, x2, y2 = (min(1.0, max(0.0, v + rng.uniform(-amount, amount))) for v in box)
    return (min(x1, x2 - 0.01), min(y1, y2 - 0.01), x2, y2)


def write_eval_fixture(root: Path, seed: int = 0) -> EvalFixture:
    """Ground truth, predictions and proposals for `ava_eval`, shaped like mmaction2's eval_detection test
    data: 3 classes, 4 persons per keyframe with one action each, 10 scored predictions per keyframe (near a
    ground-truth box or anywhere, any class), proposals = the predicted boxes with score 1.0.

    Ground-truth actions are `(person + keyframe index) % 3 + 1`, so over 4 keyframes x 4 persons the classes
    get 16 boxes split 6/5/5 (class 1 gets persons 0 and 3 of keyframe 0, 2 of 1, 1 of 2, 0 and 3 of 3)."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    gt_rows: list[Row] = []
    pred_lines: list[str] = []
    proposals: dict[str, np.ndarray] = {}
    for k, (vid, ts) in enumerate(EVAL_KEYFRAMES):
        boxes = [_box(rng) for _ in range(EVAL_PERSONS)]
        for person, box in enumerate(boxes):
            gt_rows.append((vid, ts, *box, (person + k) % EVAL_CLASSES + 1, person))
        preds = []
        for _ in range(10):
            near = rng.random() < 0.7
            box = _jitter(rng, rng.choice(boxes), 0.05) if near else _box(rng)
            preds.append((box, rng.randint(1, EVAL_CLASSES), round(rng.random(), 3)))
        for box, action, score in preds:
            pred_lines.append(f"{vid},{ts:04d},{','.join(f'{v:.3f}' for v in box)},{action},{score:.3f}\n")
        proposals[f"{vid},{ts:04d}"] = np.array(
            [[round(v, 3) for v in box] + [1.0] for box, _, _ in preds], dtype=np.float64
        )
    fx = EvalFixture(root / "gt.csv", root / "pred.csv", root / "action_list.txt", root / "proposal.pkl")
    fx.gt.write_bytes(ava_csv_bytes(gt_rows))
    fx.pred.write_text("".join(pred_lines))
    classes = [(i, f"action{i}") for i in range(1, EVAL_CLASSES + 1)]
    fx.label_map.write_bytes(mmaction_label_map_bytes(classes))
    fx.proposals.write_bytes(ava_proposals_pickle(proposals))
    return fx


# --- VIA 3 -----------------------------------------------------------------------------------------------
def via3_project_as_saved_by_via() -> dict[str, Any]:
    """The key layout VIA 3.0.x writes on "Save" for a project with no files yet (VIA3-CodeDoc, and a project
    saved by VIA 3.0.11): six top-level keys; `project` with VIA's placeholder ids; `config.file.loc_prefix`
    per location type 1..4; six `config.ui` keys; attributes with six keys each (type 3 = radio)."""
    return {
        "project": {
            "pid": "__VIA_PROJECT_ID__",
            "rev": "__VIA_PROJECT_REV_ID__",
            "rev_timestamp": "__VIA_PROJECT_REV_TIMESTAMP__",
            "pname": "Unnamed VIA Project",
            "creator": "VGG Image Annotator (http://www.robots.ox.ac.uk/~vgg/software/via)",
            "created": 1718955939625,
            "vid_list": [],
        },
        "config": {
            "file": {"loc_prefix": {"1": "", "2": "", "3": "", "4": ""}},
            "ui": {
                "file_content_align": "center",
                "file_metadata_editor_visible": True,
                "spatial_metadata_editor_visible": True,
                "temporal_segment_metadata_editor_visible": True,
                "spatial_region_label_attribute_id": "",
                "gtimeline_visible_row_count": "4",
            },
        },
        "attribute": {
            "1": {
                "aname": "hand",
                "anchor_id": "FILE1_Z0_XY1",
                "type": 3,
                "desc": "",
                "options": {"0": "raise hand", "1": "clap"},
                "default_option_id": "",
            }
        },
        "file": {},
        "metadata": {},
        "view": {},
    }


# --- the seed tutorial's outputs (facts from DESIGN.md sections 3-4 and the seed's README) --------------
SEED_VIDEOS = ("1", "2", "3")  # the seed cuts three 10 s clips of one AVA movie and names them 1, 2, 3
SEED_SECONDS = range(2, 9)  # its included_timestamps.txt: 02..08, no final newline
SEED_WIDTH, SEED_HEIGHT = 640, 480
SEED_PERSONS = 3  # tracked persons per keyframe; ids per video, 3 new ones each second (1 fps tracking)
# The seed matches annotations to its 1 fps tracks by +-0.005 per coordinate and patches the -1 id of a box it
# could not match by shifting later ids, which leaves one id on two different boxes at one second. These are
# (video, second, index of the tracked person whose id the patched box takes): 9 doubled ids, all in video 1,
# 2 at second 4, 2 at 5, 3 at 6, 1 at 7 and 1 at 8 (the distribution of the seed's own train.csv).
SEED_PATCHED = (("1", 4, 0), ("1", 4, 1), ("1", 5, 0), ("1", 5, 2), ("1", 6, 0), ("1", 6, 1))
SEED_PATCHED += (("1", 6, 2), ("1", 7, 0), ("1", 8, 0))
SEED_PATCHED_ACTION = 3  # a patched box has one action row (the seed's most frequent action id)


def seed_person_id(second: int, index: int) -> int:
    """Id of the index-th tracked person at a second: ids count up from 0 at second 2, 3 per second."""
    return (second - SEED_SECONDS[0]) * SEED_PERSONS + index


def _seed_box(rng: random.Random) -> list[str]:
    """The seed converts YOLO's centre/size back to corners in float arithmetic and writes Python's repr:
    with odd pixel centres and sizes a corner is (2k+1)/1280 or /960, at least 7 decimals (often 17 digits of
    float noise) instead of AVA's 3. Centres and sizes are drawn so every corner stays inside (0, 1)."""
    cx, cy = rng.randrange(101, 539, 2), rng.randrange(121, 359, 2)
    w, h = rng.randrange(41, 161, 2), rng.randrange(101, 241, 2)
    return [
        repr(cx / SEED_WIDTH - w / SEED_WIDTH / 2),
        repr(cy / SEED_HEIGHT - h / SEED_HEIGHT / 2),
        repr(cx / SEED_WIDTH + w / SEED_WIDTH / 2),
        repr(cy / SEED_HEIGHT + h / SEED_HEIGHT / 2),
    ]


def write_seed_outputs(root: Path, *, patched: bool = True, string_score_proposals: bool = False) -> Path:
    """A folder as the seed tutorial leaves it: train.csv (unpadded seconds, long floats, one row per
    (box, action), doubled person ids), an EMPTY action_list.pbtxt, included_timestamps.txt, an empty
    train_temp.csv and train_personID.csv; no val split, no proposals, no rawframes.

    ``patched=False``: the csv before the seed's id patch, where each box of SEED_PATCHED keeps id -1.
    ``string_score_proposals``: also a dense_proposals_train.pkl whose arrays hold strings, as the seed's
    proposals assembled from the detector's text output do, one key per (video, second)."""
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    person_lines: list[str] = []
    proposals: dict[str, np.ndarray] = {}
    for vid in SEED_VIDEOS:
        for ts in SEED_SECONDS:
            boxes = [(_seed_box(rng), seed_person_id(ts, i), None) for i in range(SEED_PERSONS)]
            for v, t, index in SEED_PATCHED:
                if (v, t) == (vid, ts):
                    pid = seed_person_id(ts, index) if patched else -1
                    boxes.append((_seed_box(rng), pid, SEED_PATCHED_ACTION))
            for box, pid, action in boxes:
                # the seed's list has 7 actions; its annotators ticked 1 to 3 of the first 5 per box
                actions = [action] if action else sorted(rng.sample(range(1, 6), rng.randint(1, 3)))
                lines += [f"{vid},{ts},{','.join(box)},{a},{pid}\n" for a in actions]
                person_lines.append(f"{vid},{ts:04d},{','.join(box)},{pid}\n")
            proposals[f"{vid},{ts:04d}"] = np.array([[*b, f"{rng.random():.2f}"] for b, _, _ in boxes])
    (root / "train.csv").write_text("".join(lines))
    (root / "train_personID.csv").write_text("".join(person_lines))
    (root / "train_temp.csv").write_text("")
    (root / "action_list.pbtxt").write_text("")
    (root / "included_timestamps.txt").write_text("\n".join(f"{t:02d}" for t in SEED_SECONDS))
    if string_score_proposals:
        (root / "dense_proposals_train.pkl").write_bytes(pickle.dumps(proposals))
    return root
