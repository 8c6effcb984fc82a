"""Detector backends, tracking id stability and IoU matching, on real videos and real MOT data."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from avaforge.detection import make_detector
from avaforge.settings import DetectSettings, TrackSettings
from avaforge.stages.detect import detect_clip, frames_to_detect
from avaforge.stages.track import Tracks, track_clip
from avaforge.tracking.embedder import OnnxEmbedder, TorchEmbedder
from avaforge.tracking.metrics import hungarian, id_switches, iou_matrix

# The two basketball players on each keyframe (pixels of the 426x240 frames), checked by eye on a contact
# sheet of the keyframes: W = white shirt, B = blue shirt. At second 6 B is hidden behind W.
BASKETBALL_REFERENCE = {
    0: {"W": [77, 117, 131, 240], "B": [227, 112, 267, 233]},
    1: {"W": [81, 102, 135, 240], "B": [300, 129, 345, 239]},
    2: {"W": [113, 125, 159, 225], "B": [314, 120, 358, 239]},
    3: {"W": [197, 123, 224, 199], "B": [300, 110, 362, 240]},
    4: {"W": [146, 111, 173, 180], "B": [237, 108, 289, 212]},
    5: {"W": [170, 101, 199, 188], "B": [204, 94, 240, 186]},
    6: {"W": [184, 108, 219, 201]},
    7: {"W": [182, 90, 211, 198], "B": [254, 103, 283, 187]},
    8: {"W": [175, 113, 216, 194], "B": [298, 107, 333, 195]},
    9: {"W": [105, 116, 162, 171], "B": [286, 107, 313, 170]},
}


@pytest.fixture(scope="module")
def onnx_detector():
    return make_detector(DetectSettings(backend="onnx"))


def _source_keyframes(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames, i = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % round(fps) == 0:
            frames.append(frame)
        i += 1
    return frames


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    ["people_29.97fps_10s.mp4", "people_28fps_10s.mp4", "people_1080p_vfr_2.6s.mp4"],
)
def test_onnx_and_ultralytics_backends_agree(videos: Path, onnx_detector, name: str) -> None:
    images = _source_keyframes(videos / name)
    ours = onnx_detector.detect(images)
    ref = make_detector(DetectSettings(backend="ultralytics")).detect(images)
    assert sum(len(b) for b in ref) > 0
    for a, b in zip(ours, ref, strict=True):
        assert len(a) == len(b)
        pairs = hungarian(a, b, 0.0)
        assert len(pairs) == len(a)
        assert all(iou_matrix(a[i : i + 1], b[j : j + 1])[0, 0] >= 0.9 for i, j in pairs)
        np.testing.assert_allclose(sorted(a[:, 4]), sorted(b[:, 4]), atol=0.02)


def test_detection_schedule_includes_every_keyframe() -> None:
    frames = frames_to_detect(300, 10, tuple(range(10)))
    assert len(frames) == 100 and frames[:3] == [1, 4, 7]
    frames = frames_to_detect(300, 7, tuple(range(10)))  # stride 4: keyframes 31, 61 ... added
    assert {30 * t + 1 for t in range(10)} <= set(frames)
    assert frames_to_detect(300, 1, tuple(range(10))) == [30 * t + 1 for t in range(10)]


@pytest.fixture(scope="module")
def basketball_tracks(people_rawframes: Path, onnx_detector) -> Tracks:
    frames = frames_to_detect(300, 10, tuple(range(10)))
    dets = detect_clip(people_rawframes, frames, onnx_detector, 8)
    return track_clip(people_rawframes, dets, TrackSettings(), 10, OnnxEmbedder())


@pytest.mark.slow
def test_detector_finds_both_players_and_tracker_ids_are_stable(basketball_tracks: Tracks) -> None:
    tracked = {t: basketball_tracks.at_second(t) for t in range(10)}
    result = id_switches(BASKETBALL_REFERENCE, tracked)
    assert result["misses"] == {"W": 0, "B": 0}, (
        result
    )  # both players found on every keyframe they are visible
    # Measured 3 (W: 1, B: 2 after B is hidden behind W at second 6); the seed's 1 fps tracking: 12.
    assert result["total"] <= 3, result
    ids = basketball_tracks.track_ids
    assert ids == list(range(len(ids)))  # contiguous from 0
    assert all((rows[:, 0] >= 0).all() for rows in tracked.values())


def test_onnx_embedder_matches_the_packages_torch_embedder(people_rawframes: Path) -> None:
    frame = cv2.imread(str(people_rawframes / "img_00061.jpg"))
    boxes = np.array([[113.2, 125.3, 158.9, 225.2], [313.9, 119.9, 358.1, 238.9], [-5.0, 10.0, 40.0, 250.0]])
    a, b = OnnxEmbedder().embed(frame, boxes), TorchEmbedder().embed(frame, boxes)
    assert a.shape == (3, 1280)
    np.testing.assert_allclose(a, b, atol=1e-3)


def _mot(path: Path) -> dict[int, np.ndarray]:
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    out: dict[int, np.ndarray] = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == frame]
        out[frame] = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]])
    return out


def test_iou_matching_agrees_with_motmetrics_on_real_mot_data() -> None:
    """TUD-Campus ground truth vs a real tracker's output, shipped in the motmetrics package."""
    import motmetrics as mm

    root = Path(mm.__file__).parent / "data" / "TUD-Campus"
    gt, hyp = _mot(root / "gt.txt"), _mot(root / "test.txt")
    compared = 0
    for frame in sorted(set(gt) & set(hyp)):
        ours = sorted(hungarian(gt[frame], hyp[frame], 0.5))
        # motmetrics: distance = 1 - IoU, pairs farther than 0.5 are not allowed
        dist = mm.distances.iou_matrix(
            np.column_stack([gt[frame][:, :2], gt[frame][:, 2:] - gt[frame][:, :2]]),
            np.column_stack([hyp[frame][:, :2], hyp[frame][:, 2:] - hyp[frame][:, :2]]),
            max_iou=0.5,
        )
        rows, cols = mm.lap.linear_sum_assignment(np.where(np.isnan(dist), 1e6, dist))
        theirs = sorted((int(r), int(c)) for r, c in zip(rows, cols, strict=True) if not np.isnan(dist[r, c]))
        assert ours == theirs, frame
        compared += len(ours)
    assert compared > 100
