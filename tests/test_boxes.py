"""The typed core on arrays: Boxes validation and conversions, and the stages' compute without any video."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest

from avaforge.boxes import Boxes, iou_matrix
from avaforge.formats.actions import ActionList
from avaforge.formats.proposals import dumps, from_boxes
from avaforge.formats.via3 import build_project, dumps_project
from avaforge.settings import ProposalSettings, ViaSettings
from avaforge.stages.detect import Detections, merge_detections
from avaforge.stages.frames import FramesInfo
from avaforge.stages.proposals import build_proposals, keyframe_proposals
from avaforge.stages.track import Tracks
from avaforge.stages.via_export import keyframes_for_via
from avaforge.tracking.metrics import match_boxes

FRAMES = FramesInfo("clip_a", 90, 640, 480, (0, 1, 2), (1,))
ROWS = {  # detector rows [x1, y1, x2, y2, score] in pixels of a 640x480 frame; frame 31 saw nobody
    1: [[10.5, 20.25, 110.125, 300.0, 0.91234567], [300.0, 40.0, 640.0, 480.0, 0.3]],
    31: [],
    61: [[0.0, 0.0, 50.0, 60.0, 0.55], [100.0, 100.0, 200.0, 200.0, 0.75], [5.0, 5.0, 7.0, 9.0, 0.75]],
}


def _dets() -> Detections:
    return Detections(list(ROWS), [Boxes.from_rows(r) for r in ROWS.values()], "m:1")


def _tracks() -> Tracks:
    xyxy = [[10.5, 20.25, 110.125, 300.0], [300.0, 40.0, 640.0, 480.0]]
    return Tracks(
        {1: Boxes(xyxy, [0.91234567, 0.3], track_id=[0, 1]), 31: Boxes.empty(tracked=True)},
    )


# ---- Boxes ------------------------------------------------------------------------------------------------


def test_boxes_hold_float64_int64_and_are_read_only() -> None:
    b = Boxes([[1, 2, 3, 4]], [1], "pixels", (640.0, 480), track_id=[7.0])
    assert b.xyxy.dtype == np.float64 and b.score.dtype == np.float64 and b.track_id.dtype == np.int64
    assert b.size == (640, 480) and len(b) == 1
    with pytest.raises(ValueError):
        b.xyxy[0, 0] = 5.0
    src = np.array([[1.0, 2.0, 3.0, 4.0]])
    c = Boxes(src, [0.5])
    src[0, 0] = 9.0  # the caller's array is copied: a validated box cannot change afterwards
    assert c.xyxy[0, 0] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": [[1, 2, 3]], "score": [1]}, "expected \\(N, 4\\)"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [1, 2]}, "expected \\(1,\\)"),
        ({"xyxy": [[1, 2, np.nan, 4]], "score": [1]}, "NaN or infinity"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [np.inf]}, "NaN or infinity"),
        ({"xyxy": [[3, 2, 1, 4]], "score": [1]}, "x2 < x1"),
        ({"xyxy": [[1, 4, 3, 2]], "score": [1]}, "y2 < y1"),
        ({"xyxy": [["1", "2", "3", "4"]], "score": [1]}, "expected numbers"),
        ({"xyxy": [[0.1, 0.2, 1.2, 0.4]], "score": [1], "space": "normalised"}, "outside \\[0, 1\\]"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [1], "space": "inches"}, "space"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [1], "size": (0, 480)}, "positive integers"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [1], "track_id": [0.5]}, "non-integer"),
        ({"xyxy": [[1, 2, 3, 4]], "score": [1], "track_id": [1, 2]}, "expected \\(1,\\)"),
    ],
)
def test_boxes_reject_what_no_stage_could_use(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Boxes(**kwargs)


def test_an_empty_box_set_has_shape_0_4_and_a_degenerate_box_is_allowed() -> None:
    e = Boxes([], [])
    assert e.xyxy.shape == (0, 4) and e.to_rows().shape == (0, 5)
    assert len(Boxes([[5, 5, 5, 5]], [0.1])) == 1  # zero area: valid here, filtered by the stages


def test_normalise_and_back_round_trips_and_needs_the_frame_size() -> None:
    b = Boxes([[64, 48, 320, 480], [0, 0, 640, 240]], [0.9, 0.4])
    with pytest.raises(ValueError, match="frame size is unknown"):
        b.to_normalised()
    n = b.with_size((640, 480)).to_normalised()
    assert n.space == "normalised" and n.size == (640, 480)
    np.testing.assert_array_equal(n.xyxy, [[0.1, 0.1, 0.5, 1.0], [0.0, 0.0, 1.0, 0.5]])
    np.testing.assert_allclose(n.to_pixels().xyxy, b.xyxy)
    np.testing.assert_array_equal(n.score, b.score)
    with pytest.raises(ValueError, match="frame size is \\(640, 480\\)"):
        n.with_size((1280, 720))


def test_normalising_clips_a_box_past_the_frame_edge() -> None:
    n = Boxes([[-4, 10, 650, 470]], [1], size=(640, 480)).to_normalised()
    assert n.xyxy[0, 0] == 0.0 and n.xyxy[0, 2] == 1.0


def test_filters_keep_ids_and_order() -> None:
    b = Boxes([[0, 0, 10, 10], [0, 0, 1, 50], [5, 5, 30, 30]], [0.2, 0.9, 0.9], track_id=[4, 5, 6])
    assert b.with_min_score(0.5).track_id.tolist() == [5, 6]
    assert b.with_min_side(2).track_id.tolist() == [4, 6]
    assert b.by_score().track_id.tolist() == [5, 6, 4]  # ties keep their order
    assert b.select([]).track_id.tolist() == [] and b.select(slice(1, None)).track_id.tolist() == [5, 6]
    assert Boxes.concat([b, b.select([0])]).track_id.tolist() == [4, 5, 6, 4]
    with pytest.raises(ValueError, match="no track ids"):
        _ = Boxes([[0, 0, 1, 1]], [1]).tracked_ids
    with pytest.raises(ValueError, match="different space"):
        Boxes.concat([b, Boxes.empty()])


def test_iou_values_and_space_check() -> None:
    a = Boxes([[0, 0, 10, 10]], [1])
    b = Boxes([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [1, 1, 1])
    # overlap 5x10 = 50 of union 150 -> 1/3; disjoint -> 0; identical -> 1
    np.testing.assert_allclose(a.iou(b), [[1 / 3, 0.0, 1.0]])
    np.testing.assert_array_equal(iou_matrix(np.zeros((0, 4)), b.xyxy).shape, (0, 3))
    with pytest.raises(ValueError, match="IoU of pixels and normalised"):
        a.iou(Boxes([[0, 0, 1, 1]], [1], "normalised"))
    assert match_boxes(b, a, 0.5) == [(2, 0)]


def test_rows_round_trip_bit_exactly() -> None:
    rng = np.random.default_rng(0)
    for n in range(6):
        xy = rng.uniform(0, 1000, (n, 2))
        rows = np.concatenate([xy, xy + rng.uniform(0, 300, (n, 2)), rng.uniform(0, 1, (n, 1))], axis=1)
        assert Boxes.from_rows(rows).to_rows().tobytes() == rows.tobytes()


# ---- the stages' compute and their unchanged file formats ------------------------------------------------
# The sha256 digests below are of the bytes the writers produced for the same inputs before the typed core
# (commit 535d1e7, positional arrays), computed by running that commit's code on these rows.


def test_detections_npz_bytes_are_unchanged() -> None:
    data = _dets().to_bytes()
    assert (
        hashlib.sha256(data).hexdigest() == "53c4644f7011816abd89b471490442afd22047a62c4828080c6547a8599b4741"
    )
    back = Detections.load(io.BytesIO(data))
    assert back.frames == [1, 31, 61] and [len(b) for b in back.boxes] == [2, 0, 3]
    assert back.to_bytes() == data


def test_merge_detections_orders_by_frame_and_refuses_repeats() -> None:
    d = _dets()
    parts = [Detections(d.frames[1:], d.boxes[1:], "m:1"), Detections(d.frames[:1], d.boxes[:1], "m:1")]
    assert merge_detections(parts).to_bytes() == d.to_bytes()
    with pytest.raises(ValueError, match="two batches"):
        merge_detections([d, d])


def test_proposals_are_normalised_filtered_sorted_and_their_pickle_is_unchanged() -> None:
    by_second = keyframe_proposals(FRAMES, _dets(), ProposalSettings(min_score=0.5))
    assert {t: len(b) for t, b in by_second.items()} == {0: 1, 1: 0, 2: 3}
    assert by_second[2].score.tolist() == [0.75, 0.75, 0.55]  # highest first, ties in detection order
    np.testing.assert_array_equal(by_second[0].xyxy, [[10.5 / 640, 20.25 / 480, 110.125 / 640, 300 / 480]])
    props = build_proposals(FRAMES, _dets(), ProposalSettings(min_score=0.5))
    assert props["clip_a,0001"].shape == (0, 5)
    digest = hashlib.sha256(dumps(props)).hexdigest()
    assert digest == "28f4e9453d8c376b8fc57bdc76fe0b9d07c879e861401764dff7ef4fed4e0e09"
    with pytest.raises(ValueError, match="normalised"):
        from_boxes("clip_a", {0: Boxes.empty()})


def test_proposals_need_every_keyframe_detected() -> None:
    d = _dets()
    with pytest.raises(ValueError, match="keyframe 31 of second 1 was not detected"):
        keyframe_proposals(FRAMES, Detections([1, 61], [d.boxes[0], d.boxes[2]]), ProposalSettings())


def test_tracks_json_is_unchanged_and_round_trips(tmp_path) -> None:
    tr = _tracks()
    # Written by commit 535d1e7 for the same rows: ids as ints, pixels to 3 decimals, scores to 5.
    expected = (
        '{"frames":{"1":[[0,10.5,20.25,110.125,300.0,0.91235],[1,300.0,40.0,640.0,480.0,0.3]],"31":[]}}'
    )
    assert tr.to_bytes().decode() == expected
    tr.save(tmp_path / "t.json")
    back = Tracks.load(tmp_path / "t.json")
    assert back.to_bytes() == tr.to_bytes() and back.track_ids == [0, 1]
    assert len(back.at_second(1)) == 0 and len(back.at_second(2)) == 0  # frame 31 empty; 61 not detected
    with pytest.raises(ValueError, match="tracked pixel boxes"):
        Tracks({1: Boxes.empty()})


def test_via_project_bytes_are_unchanged() -> None:
    frames = FramesInfo("clip_a", 90, 640, 480, (0, 1, 2), (0, 1))
    actions = ActionList.from_obj({"groups": {"body": ["stand", "walk"]}})
    kfs = keyframes_for_via(frames, _tracks(), ViaSettings(min_score=0.2), prefill={(0, 1): (2,)})
    assert [len(k.boxes) for k in kfs] == [2, 0]
    data = dumps_project(build_project("clip_a", kfs, actions))
    assert (
        hashlib.sha256(data).hexdigest() == "5be4a3e78bbd4a71c13368592d39889a7bb2db8fe8f4b07f6367b8e621f3bf5b"
    )
    assert [len(k.boxes) for k in keyframes_for_via(frames, _tracks(), ViaSettings(min_score=0.5))] == [1, 0]
