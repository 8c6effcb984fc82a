"""Input size per clip, tiled detection and the recall-risk signals (prepare's line, the report's warning)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from avaforge.detection import make_detector
from avaforge.detection.risk import recall_risk
from avaforge.detection.sizing import InputPlan, SizedDetector, parse_tag, plan_input, probe_frames
from avaforge.detection.tiling import merge_tiles, tile_windows
from avaforge.settings import DetectSettings
from avaforge.tracking.metrics import hungarian, iou_matrix

REPO = Path(__file__).resolve().parents[1]
S = DetectSettings(min_person_px=96.0, imgsz=640, max_imgsz=1280)  # fixed here, whatever the defaults


def test_plan_follows_the_small_people() -> None:
    # vtest-like: 768x576, people 60-110 px; the 5th percentile of 60..110 step 1 is 62.5 px:
    # 768 * 96 / 62.5 = 1179.6 -> next multiple of 32 = 1184
    assert plan_input((576, 768), np.arange(60, 111.0), S) == InputPlan(1184)
    # close-up 960x540, people 300 px: 960 * 96 / 300 = 307 -> at least imgsz (640)
    assert plan_input((540, 960), np.full(5, 300.0), S) == InputPlan(640)
    # 1440x1080 with people 130 px: 1440 * 96 / 130 = 1063.4 -> 1088, no tiles
    assert plan_input((1080, 1440), np.full(5, 130.0), S) == InputPlan(1088)
    # nobody found even by the probe: as large as allowed
    assert plan_input((576, 768), np.zeros(0), S) == InputPlan(1280)


def test_tiles_only_for_sources_much_larger_than_the_input() -> None:
    # 4K (3840x2160) with 60 px people needs a scale of 96 / 60 = 1.6 (6144 px across). Per axis, tiles that
    # fit 1280 px at that scale: cols = ceil((3840 * 1.6 / 1280 - 0.25) / 0.75) = ceil(6.07) = 7,
    # rows = ceil((2160 * 1.6 / 1280 - 0.25) / 0.75) = ceil(3.27) = 4; tiles 3840 / (7 - 6 * 0.25) = 698.2 px
    # wide (longer than 2160 / 3.25 = 664.6 tall), shown at 698.2 * 1.6 = 1117.1 -> 1120
    plan = plan_input((2160, 3840), np.full(5, 60.0), S)
    assert plan == InputPlan(1120, (4, 7))
    assert parse_tag(plan.tag) == plan
    # the plan's findable height in source pixels: 96 * 698.2 / 1120 = 59.8 (<= the 60 px people)
    assert plan.min_source_px((2160, 3840), 96) == pytest.approx(96 * 3840 / 5.5 / 1120)
    # 1440x1080 at 70 px: 1440 * 96 / 70 = 1974.9 > 1280: cols ceil((1974.9 / 1280 - 0.25) / 0.75) = 2, rows
    # ceil((1080 * 1.371 / 1280 - 0.25) / 0.75) = 2; tiles 1440 / 1.75 = 822.9 px at 1.371 = 1128.5 -> 1152
    assert plan_input((1080, 1440), np.full(5, 70.0), S) == InputPlan(1152, (2, 2))


def test_tile_windows_cover_the_frame_with_overlap() -> None:
    wins = tile_windows(576, 768, 2, 2, 0.25)
    # width 768 / (2 - 0.25) = 438.9 -> 439; the second column starts at 768 - 439 = 329: 110 px overlap
    assert wins == [(0, 0, 439, 330), (329, 0, 768, 330), (0, 246, 439, 576), (329, 246, 768, 576)]


def test_merge_keeps_one_box_per_person_across_seams() -> None:
    wins = [(0, 0, 400, 300), (300, 0, 700, 300)]  # two tiles side by side, overlap x 300..400
    whole = np.array([[310.0, 50, 360, 150, 0.9]])  # person inside the overlap: whole in both tiles
    left_copy = whole.copy()
    right_copy = whole - [300, 0, 300, 0, 0]
    cut = np.array([[380.0, 160, 400, 260, 0.6]])  # person at x 380-430: cut by the left tile's border ...
    full = np.array([[80.0, 160, 130, 260, 0.8]])  # ... and whole in the right tile (x 380-430)
    other = np.array([[395.0, 20, 399, 40, 0.5]])  # a different, small person next to the seam, whole
    merged = merge_tiles(
        [np.concatenate([left_copy, cut, other]), np.concatenate([right_copy, full])], wins, (300, 700), 0.7
    )
    order = np.argsort(merged[:, 0])
    np.testing.assert_allclose(
        merged[order, :4], [[310, 50, 360, 150], [380, 160, 430, 260], [395, 20, 399, 40]]
    )


def test_merge_joins_the_halves_of_a_person_larger_than_the_overlap() -> None:
    wins = [(0, 0, 200, 300), (150, 0, 350, 300)]  # overlap x 150..200
    left_half = np.array([[120.0, 10, 200, 200, 0.7]])  # person x 120-260: cut at 200 in the left tile
    right_half = np.array([[0.0, 12, 110, 198, 0.8]])  # and at 150 in the right tile (x 150-260)
    merged = merge_tiles([left_half, right_half], wins, (300, 350), 0.7)
    np.testing.assert_allclose(merged, [[120, 10, 260, 200, 0.8]])


@pytest.fixture(scope="module")
def vtest_frame(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[list]]:
    """Frame 65 of vtest.avi (Debian opencv-doc, scripts/fetch_demo_video.sh) and its hand labels."""
    video = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch_demo_video.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    out = tmp_path_factory.mktemp("vtest") / "f.png"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", video, "-vf", "select='eq(n\\,65)'", "-frames:v", "1", str(out)],
        check=True,
    )
    labels = json.loads((REPO / "benchmarks" / "detect_labels" / "vtest.json").read_text())["frames"]["65"]
    return cv2.imread(str(out)), labels


def test_tiled_detection_finds_each_person_once(vtest_frame) -> None:  # type: ignore[no-untyped-def]
    image, labels = vtest_frame
    gt = np.array([r[:4] for r in labels], dtype=np.float64)
    assert len(gt) == 6  # frame 65: six people on the road, all clear
    base = make_detector(replace(S, conf=0.1))
    whole_640 = SizedDetector(base, InputPlan(640)).detect([image])[0]
    tiled = SizedDetector(base, InputPlan(640, (2, 2))).detect([image])[0]
    # 2x2 tiles show the 80-100 px people 1.75x larger (439 px tiles at 640): all six found, each once
    assert len(hungarian(tiled, gt, 0.5)) == 6
    # Measured with the default int8 model: the six and one 48x18 px box at score 0.10 on no person (a false
    # box, not a second copy of one: the IoU check below); the fp32 export gave exactly the six.
    assert len(tiled) == 7 and int((tiled[:, 4] >= 0.25).sum()) == 6
    assert len(hungarian(whole_640, gt, 0.5)) < 6  # the whole frame at 640 misses some (the report)
    ious = iou_matrix(tiled, tiled)
    np.fill_diagonal(ious, 0)
    assert ious.max() < 0.3  # no duplicates of one person from neighbouring tiles


def test_probe_frames_are_spread_and_fixed(tmp_path: Path) -> None:
    for i in range(1, 101):
        (tmp_path / f"img_{i:05d}.jpg").touch()
    picked = [p.name for p in probe_frames(tmp_path, 4)]
    # linspace(0, 99, 6)[1:-1] = 19.8, 39.6, 59.4, 79.2 -> indices 20, 40, 59, 79 -> frames 21, 41, 60, 80
    assert picked == ["img_00021.jpg", "img_00041.jpg", "img_00060.jpg", "img_00080.jpg"]


def test_recall_risk_line() -> None:
    # 768x576 detected at 1152: the findable height is 96 * 768 / 1152 = 64 px; "near" is below 1.25 * 64 = 80
    kf = [
        np.array(
            [[0, 0, 10, 70, 0.9], [0, 0, 10, 100, 0.9], [0, 0, 10, 50, 0.05]]
        ),  # the 0.05 box is not shown
        np.array([[0, 0, 10, 79, 0.5], [0, 0, 10, 81, 0.5], [0, 0, 10, 200, 0.5], [0, 0, 10, 60, 0.3]]),
    ]
    risk = recall_risk(kf, (576, 768), "yolo11n-pose.pt:abc@1152", 96, 0.1)
    assert (risk.people_mean, risk.people_max, risk.threshold_px) == (3.0, 4, 64.0)
    assert risk.near_share == pytest.approx(3 / 6)  # 70, 79, 60 of 70, 100, 79, 81, 200, 60
    line = risk.line("vtest_000")
    assert line.startswith(
        "vtest_000: 3.0 people per keyframe (max 4, 2 keyframes), 50% of boxes within 1.25x"
    )
    assert "64 px size limit (input 1152)" in line and "check for missed boxes" in line


def test_report_plots_detector_boxes_and_warns_at_the_limits(tmp_path: Path) -> None:
    from avaforge.dataset_layout import DatasetLayout
    from avaforge.report import detector_boxes, detector_warning, write_report
    from tests.conftest import write_demo_dataset

    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "img_00001.jpg"), np.full((576, 768, 3), 90, np.uint8))
    root = write_demo_dataset(tmp_path / "ds", frames, {"train": ["a"], "val": ["b"]})
    heights, scores = detector_boxes(DatasetLayout(root))
    # every keyframe carries boxes scored 0.97, 0.91, 0.2 with heights 0.68, 0.79, 0.05 of 576 rows
    assert sorted(set(np.round(heights, 2))) == [28.8, 391.68, 455.04]
    assert np.mean(scores < 0.4) == pytest.approx(1 / 3)
    page = write_report(root).read_text()
    assert (root / "report" / "detector_boxes.png").stat().st_size > 0
    assert "33% of the detector&#x27;s boxes score below 0.4" in page
    assert detector_warning(np.array([0.9, 0.9, 0.9, 0.9, 0.3])) is None  # 20%: not more than the 20% limit
