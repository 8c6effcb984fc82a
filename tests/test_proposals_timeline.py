import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from avaforge.formats.errors import FormatError
from avaforge.formats.proposals import check_array, dumps, read_proposals, write_proposals
from avaforge.formats.timeline import (
    KeyframeSchedule,
    keyframe_index,
    rawframe_relpath,
    read_included_timestamps,
    sample_window,
    write_included_timestamps,
)
from tests.reference_data import ava_proposals, ava_proposals_pickle, ava_rows, write_eval_fixture


@pytest.mark.parametrize("kind", ["detector", "evaluation"])
def test_ava_style_proposal_pickles_round_trip(tmp_path: Path, kind: str) -> None:
    if kind == "detector":  # AVA's released person detections: scores < 1, false positives
        src = tmp_path / "ava.pkl"
        src.write_bytes(ava_proposals_pickle(ava_proposals(ava_rows(0))))  # protocol 2, numpy 1.x names
    else:  # mmaction2's evaluation fixture: the predicted boxes, 10 per keyframe, with score 1.0
        src = write_eval_fixture(tmp_path / "eval").proposals
    original = pickle.loads(src.read_bytes())
    props = read_proposals(src)
    write_proposals(tmp_path / "p.pkl", props)
    again = pickle.loads((tmp_path / "p.pkl").read_bytes())
    assert list(again) == sorted(original)
    for key, value in original.items():
        assert again[key].dtype == np.float64
        np.testing.assert_array_equal(again[key], value)


def test_empty_keyframe_is_0x5_and_lists_become_float64(tmp_path: Path) -> None:
    write_proposals(
        tmp_path / "p.pkl", {"v,0002": [], "v,0003": [[0.1, 0.1, 0.5, 0.9, 1]], "v,0004": np.zeros(0)}
    )
    props = read_proposals(tmp_path / "p.pkl")
    assert props["v,0002"].shape == (0, 5) and props["v,0004"].shape == (0, 5)
    assert props["v,0003"].dtype == np.float64


def test_string_scores_rejected() -> None:
    """Seed bug: scores written as strings from the detector's text output."""
    bad = {"v,0002": np.array([["0.1", "0.1", "0.5", "0.9", "0.87"]])}
    with pytest.raises(FormatError, match="strings"):
        dumps(bad)
    assert check_array("v,0002", bad["v,0002"])[0].code == "proposal-dtype"


def test_reader_reports_zero_dim_empty_array(tmp_path: Path) -> None:
    """Seed bug: an empty keyframe stored as shape (0,), which mmaction2 cannot index [:, 4]."""
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"v,0002": np.zeros((0,))}))
    with pytest.raises(FormatError, match=r"shape \(0,\)"):
        read_proposals(tmp_path / "p.pkl")


@pytest.mark.parametrize(
    "props",
    [{"v,2": np.zeros((0, 5))}, {"v,0002": np.full((1, 5), 1.5)}, {"a/b,0002": np.zeros((0, 5))}],
)
def test_bad_keys_and_values_rejected(props: dict) -> None:
    with pytest.raises(FormatError):
        dumps(props)


def test_proposal_reader_refuses_code_execution(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"v,0002": Evil()}))
    with pytest.raises(FormatError, match=r"refusing to load builtins\.print"):
        read_proposals(tmp_path / "evil.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(FormatError, match="empty file"):
        read_proposals(tmp_path / "empty.pkl")


def test_keyframe_schedule_of_a_10s_clip() -> None:
    sched = KeyframeSchedule(num_frames=300)  # 10 s at 30 fps: keyframes 30t+1 for t = 0..9 (frame 271)
    assert sched.keyframe_seconds == list(range(10))
    assert sched.labelled_seconds == [2, 3, 4, 5, 6, 7, 8]  # the seed's included timestamps 02..08
    assert sched.keyframes()[2] == 61 == keyframe_index(2)  # 30 * 2 + 1
    assert KeyframeSchedule(301).keyframe_seconds[-1] == 10  # frame 301 = 30 * 10 + 1 exists
    # margins of 1 s at both ends allow seconds 1 .. 10 - 1, but second 9's sampling window ends at frame
    # 30 * 9 + 32 = 302 > 300 (sample_window): training could not read it, so it is not labelled
    assert KeyframeSchedule(300, 1, 1).labelled_seconds == list(range(1, 9))
    assert KeyframeSchedule(302, 1, 1).labelled_seconds == list(range(1, 10))  # frame 302 exists
    assert KeyframeSchedule(300, 0, 0).labelled_seconds == list(range(0, 9))


def test_clip_shorter_than_margins_has_no_labelled_seconds() -> None:
    assert KeyframeSchedule(num_frames=77).labelled_seconds == []  # the 2.6 s handshake clip
    assert KeyframeSchedule(num_frames=120).labelled_seconds == [2]  # 4 s: from second 2 to 4 - 2


def test_rawframe_paths_are_one_based() -> None:
    assert rawframe_relpath("v", 1) == "rawframes/v/img_00001.jpg"
    with pytest.raises(ValueError):
        rawframe_relpath("v", 0)


def test_sample_window_matches_mmaction2_arithmetic() -> None:
    # center = 30t + start_index, clamp to [0, shot-1], then + start_index again (mmaction2 1.2.0)
    assert sample_window(2) == list(range(30, 93, 2))  # middle frame 62 = 30t+2
    # second 0: centre 0 + 1, indices -31..31 step 2; the 16 negative ones clamp to 0, then all + 1
    assert sample_window(0) == [1] * 16 + list(range(2, 33, 2))
    # second 9: centre 271, indices 239..301 step 2; 301 clamps to shot_frames - 1 = 299, then all + 1
    assert sample_window(9, shot_frames=300)[-4:] == [296, 298, 300, 300]
    assert sample_window(2, timestamp_start=900, shot_frames=900 * 30) == [1] * 32  # the seed's config


def test_included_timestamps(tmp_path: Path) -> None:
    write_included_timestamps(tmp_path / "i.txt", [3, 2, 8, 2])
    assert (tmp_path / "i.txt").read_text() == "0002\n0003\n0008\n"
    assert read_included_timestamps(tmp_path / "i.txt") == [2, 3, 8]


@given(
    num_frames=st.integers(1, 2000),
    margin_start=st.floats(0, 3, allow_nan=False),
    margin_end=st.floats(0, 3, allow_nan=False),
)
def test_every_labelled_second_has_its_whole_sampling_window(
    num_frames: int, margin_start: float, margin_end: float
) -> None:
    """Whatever the margins, the frames training reads for a labelled second exist (the dataset validator's
    ``rawframes-window`` check): a short end margin once labelled a last second whose window ran past the
    clip."""
    for t in KeyframeSchedule(num_frames, margin_start, margin_end).labelled_seconds:
        window = sample_window(t)
        assert window[0] >= 1 and window[-1] <= num_frames
