"""The real consumer: mmaction2's own AVADataset loads a dataset written by avaforge from real frames."""

from pathlib import Path

import numpy as np
import pytest

from avaforge.dataset_layout import DatasetLayout
from avaforge.formats.ava_csv import write_excluded
from avaforge.formats.proposals import read_proposals
from avaforge.formats.timeline import sample_window
from tests.conftest import ava_dataset, write_demo_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, people_rawframes: Path) -> DatasetLayout:
    root = write_demo_dataset(tmp_path_factory.mktemp("ds"), people_rawframes, {"train": ["basket.v_1"]})
    return DatasetLayout(root)


def test_avadataset_samples_frames_around_each_keyframe(dataset: DatasetLayout) -> None:
    ds = ava_dataset(dataset)
    assert len(ds) == 7  # demo_rows label seconds 2..8
    ours = read_proposals(dataset.proposals("train"))
    for i in range(len(ds)):
        sample = ds[i]
        t = sample["timestamp"]
        assert sample["img_key"] == f"basket.v_1,{t:04d}"
        # mmaction2 reads frames 30t-30 .. 30t+32 (step 2); the keyframe 30t+1 sits in the middle.
        assert (
            list(sample["frame_inds"])
            == sample_window(t, shot_frames=300)
            == list(range(30 * t - 30, 30 * t + 33, 2))
        )
        # people_rawframes: the 384x288 frames of tests/media.py's people_29.97fps_10s.mp4
        assert len(sample["imgs"]) == 32 and sample["imgs"][0].shape == (288, 384, 3)
        # Proposals come from our pkl (scores >= 0.9), not the whole-frame fallback [[0, 0, 1, 1]];
        # RawFrameDecode scales them to pixels of the 384x288 frames.
        scale = np.array([384, 288, 384, 288])
        np.testing.assert_allclose(sample["proposals"], ours[sample["img_key"]][:2, :4] * scale, rtol=1e-6)
        # write_demo_dataset's proposals: the third (score 0.2) is under person_det_score_thr 0.9
        np.testing.assert_array_equal(sample["scores"], [0.97, 0.91])
        np.testing.assert_allclose(
            sample["gt_bboxes"], [[0.1, 0.2, 0.4, 0.9], [0.55, 0.15, 0.85, 0.95]] * scale, rtol=1e-6
        )
        # demo_rows: box 1 has actions 1 and 3, box 2 action 2; one-hot over num_classes 4 (0 = background)
        labels = sample["gt_labels"]
        assert labels.shape == (2, 4)
        assert labels[0].tolist() == [0, 1, 0, 1] and labels[1].tolist() == [0, 0, 1, 0]


def test_excluded_timestamps_are_honoured(dataset: DatasetLayout, tmp_path: Path) -> None:
    write_excluded(tmp_path / "ex.csv", [("basket.v_1", 5)])
    ds = ava_dataset(dataset, exclude_file=str(tmp_path / "ex.csv"))
    assert sorted(ds[i]["timestamp"] for i in range(len(ds))) == [2, 3, 4, 6, 7, 8]  # 2..8 without 5


def test_seed_timestamp_start_collapses_every_sample_to_frame_1(dataset: DatasetLayout) -> None:
    """Why the config generator must set timestamp_start=0: the seed left mmaction2's default 900."""
    ds = ava_dataset(dataset, timestamp_start=900, timestamp_end=1800)
    assert set(ds[0]["frame_inds"].tolist()) == {1}
