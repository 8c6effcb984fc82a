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

# The people on each keyframe (second t = frame 30t+1) of people_rawframes (tests/media.py's 384x288
# people_29.97fps_10s.mp4, vtest.avi seconds 0-10), in pixels. J = man in a black jacket and jeans walking
# away (seconds 0-1), L = person in a long black coat walking left (0-3), R = man in a red and navy jacket
# (2-9), B = blonde woman in a black coat beside him (2-9), G = bald man in a dark jacket and jeans (5-9).
# Method: the boxes are the tracker's (detect at 10 fps, default TrackSettings) rounded to pixels; every
# keyframe was drawn with its boxes and track ids into a PNG and looked at, and each box was named by the
# person in it (by clothes, hair and walking direction), not by its track id. Left out as ambiguous: the
# people standing half-hidden behind the sign post at the left edge (seconds 2-9) and G at second 4, where
# only a sliver of him has entered the frame. With every name checked this way, the track ids the tracker gave
# were one per person: 0 switches.
PEOPLE_REFERENCE = {
    0: {"J": [115, 86, 146, 161], "L": [257, 169, 300, 250]},
    1: {"J": [80, 96, 120, 174], "L": [163, 166, 200, 254]},
    2: {"L": [54, 161, 96, 247], "R": [302, 200, 339, 288], "B": [344, 199, 372, 288]},
    3: {"L": [15, 152, 44, 223], "R": [244, 180, 282, 281], "B": [282, 177, 314, 272]},
    4: {"R": [184, 163, 221, 259], "B": [216, 160, 250, 252]},
    5: {"R": [121, 145, 156, 236], "B": [168, 143, 204, 230], "G": [284, 186, 332, 288]},
    6: {"R": [82, 131, 117, 218], "B": [120, 129, 148, 213], "G": [232, 162, 266, 269]},
    7: {"R": [60, 117, 92, 204], "B": [95, 116, 122, 196], "G": [203, 136, 238, 237]},
    8: {"R": [59, 101, 91, 182], "B": [91, 102, 117, 178], "G": [184, 116, 216, 212]},
    9: {"R": [77, 88, 106, 163], "B": [105, 91, 134, 162], "G": [187, 100, 213, 187]},
}


@pytest.fixture(scope="module")
def onnx_detector():
    return make_detector(DetectSettings(backend="onnx"))  # the default model: int8


@pytest.fixture(scope="module")
def fp32_detector():
    return make_detector(DetectSettings(backend="onnx", precision="fp32"))


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
def test_onnx_and_ultralytics_backends_agree(videos: Path, fp32_detector, name: str) -> None:
    """The fp32 ONNX export is the .pt model (the int8 model is its quantization, measured by make
    bench-detect, and found every reference person below)."""
    images = _source_keyframes(videos / name)
    ours = fp32_detector.detect(images)
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
def people_tracks(people_rawframes: Path, onnx_detector) -> Tracks:
    frames = frames_to_detect(300, 10, tuple(range(10)))
    dets = detect_clip(people_rawframes, frames, onnx_detector, 8)
    return track_clip(people_rawframes, dets, TrackSettings(), 10, OnnxEmbedder())


@pytest.mark.slow
def test_detector_finds_every_reference_person_and_tracker_ids_are_stable(people_tracks: Tracks) -> None:
    tracked = {t: people_tracks.at_second(t) for t in range(10)}
    result = id_switches(PEOPLE_REFERENCE, tracked)
    # every reference person found on every keyframe they are named on
    assert result["misses"] == dict.fromkeys("JLRBG", 0), result
    # Measured 0 at the default 10 fps; 16 at the seed's 1 fps (n_init 1, as benchmarks/bench_prepare.py).
    assert result["total"] == 0, result
    ids = people_tracks.track_ids
    assert ids == list(range(len(ids)))  # contiguous from 0
    assert all((boxes.tracked_ids >= 0).all() for boxes in tracked.values())


def test_onnx_embedder_matches_the_packages_torch_embedder(people_rawframes: Path) -> None:
    frame = cv2.imread(str(people_rawframes / "img_00061.jpg"))
    # L and R of PEOPLE_REFERENCE at second 2 (frame 61), and a box reaching outside the 384x288 frame
    boxes = np.array([[54.2, 161.3, 96.1, 247.2], [302.1, 200.4, 338.9, 287.6], [-5.0, 10.0, 40.0, 300.0]])
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
