"""Detect and track compute on decoded frames (numpy arrays drawn here), no video and no JPEG.

The frames are a grey background with solid coloured rectangles for people. ``BlobDetector`` is a real
(if simple) detector of such rectangles and ``MeanColourEmbedder`` a real appearance feature; Deep SORT itself
is the package's, as in the pipeline.
"""

from __future__ import annotations

import cv2
import numpy as np

from avaforge.boxes import Boxes
from avaforge.settings import TrackSettings
from avaforge.stages.detect import MIN_BOX_PX, Detections, detect_frames, keep_people
from avaforge.stages.track import renumber, track_frames

W, H = 320, 240
GREY = 128


class BlobDetector:
    """Every connected region that differs from the grey background is a person, score 0.9."""

    model_version = "blobs:1"

    def detect(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for im in images:
            mask = (np.abs(im.astype(np.int16) - GREY).max(axis=2) > 40).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
            rows = [[x, y, x + w, y + h, 0.9] for x, y, w, h, _ in stats[1:n]]
            out.append(np.array(rows, dtype=np.float64).reshape(-1, 5))
        return out


class MeanColourEmbedder:
    def embed(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        feats = [
            frame[int(y1) : int(y2), int(x1) : int(x2)].reshape(-1, 3).mean(axis=0)
            for x1, y1, x2, y2 in boxes
        ]
        feats = np.array(feats, dtype=np.float32).reshape(-1, 3)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-6)


def _frame(people: list[tuple[int, int, int, int, tuple[int, int, int]]]) -> np.ndarray:
    im = np.full((H, W, 3), GREY, dtype=np.uint8)
    for x1, y1, x2, y2, colour in people:
        im[y1:y2, x1:x2] = colour
    return im


def _scene(frame: int) -> np.ndarray:
    """A red person walking right along the top, a blue one walking left along the bottom."""
    dx = 6 * (frame - 1)
    return _frame([(20 + dx, 10, 60 + dx, 100, (0, 0, 255)), (260 - dx, 130, 300 - dx, 230, (255, 0, 0))])


def test_detect_frames_sets_the_frame_size_and_drops_thin_boxes() -> None:
    noisy = _frame([(10, 10, 60, 90, (0, 255, 0)), (200, 20, 201, 200, (0, 255, 255))])  # a 1 px line
    dets = detect_frames([([1, 4], [noisy, _scene(4)]), ([7], [_scene(7)])], BlobDetector())
    assert dets.frames == [1, 4, 7] and dets.model_version == "blobs:1"
    assert [len(b) for b in dets.boxes] == [1, 2, 2]
    np.testing.assert_array_equal(dets.boxes[0].xyxy, [[10, 10, 60, 90]])
    assert all(b.size == (W, H) and b.space == "pixels" for b in dets.boxes)


def test_keep_people_uses_the_minimum_side() -> None:
    b = Boxes([[0, 0, MIN_BOX_PX, 50], [0, 0, MIN_BOX_PX - 0.5, 50], [0, 0, 50, 1]], [1, 1, 1])
    np.testing.assert_array_equal(keep_people(b).xyxy, [[0, 0, MIN_BOX_PX, 50]])


def test_track_frames_keeps_two_people_apart_with_stable_ids() -> None:
    frames = list(range(1, 43, 3))  # 14 frames at the 10 fps tracking rate; both stay inside the frame
    dets = detect_frames([(frames, [_scene(f) for f in frames])], BlobDetector())
    loaded: list[int] = []

    def load(f: int) -> np.ndarray:
        loaded.append(f)
        return _scene(f)

    tracks = track_frames(dets, load, TrackSettings(), 10, MeanColourEmbedder())
    assert loaded == frames  # every frame with people was loaded once, in order
    assert sorted(tracks.boxes) == frames and tracks.track_ids == [0, 1]
    for f in frames:
        b = tracks.boxes[f]
        red = int(np.argmin(b.xyxy[:, 1]))  # the red person is the one at the top
        assert int(b.tracked_ids[red]) == 0 and int(b.tracked_ids[1 - red]) == 1, f


def test_track_frames_keeps_frames_without_people() -> None:
    dets = Detections([1, 4], [Boxes.empty(size=(W, H)), Boxes.empty(size=(W, H))])
    tracks = track_frames(dets, lambda f: _frame([]), TrackSettings(), 10, MeanColourEmbedder())
    assert sorted(tracks.boxes) == [1, 4] and tracks.track_ids == []


def test_renumber_orders_by_first_appearance_then_left_to_right() -> None:
    raw = {
        31: (Boxes([[50, 0, 60, 10], [5, 0, 15, 10]], [0.8, 0.7]), ["c", "a"]),
        1: (Boxes([[40, 0, 50, 10], [10, 0, 20, 10]], [0.9, 0.6]), ["a", "b"]),
    }
    out = renumber(raw)
    # frame 1 left to right: "b" (x1 10) -> 0, "a" (x1 40) -> 1; frame 31: "a" (x1 5) keeps 1, "c" is new -> 2
    assert out[1].tracked_ids.tolist() == [0, 1] and out[1].xyxy[:, 0].tolist() == [10, 40]
    assert out[31].tracked_ids.tolist() == [1, 2] and out[31].score.tolist() == [0.7, 0.8]
