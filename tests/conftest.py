"""Shared fixtures: test videos made from vtest.avi (tests/media.py), a real rawframes dataset built from one
of them, and a real S3 server. Reference files are written by tests/reference_data.py."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from devstack.servers import S3Credentials
from tests import media

# Model exports (ONNX of the detector and embedder) go to a per-session cache unless the caller pins one;
# the session removes the one it made (about 20 MB each run).
if "AVAFORGE_CACHE" not in os.environ:
    _SESSION_CACHE = tempfile.mkdtemp(prefix="avaforge-cache-")
    os.environ["AVAFORGE_CACHE"] = _SESSION_CACHE
    atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the test videos of tests/media.py (people_29.97fps_10s.mp4 ...), made once a session."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (make install brings it)")
    folder = tmp_path_factory.mktemp("videos")
    media.make_all(folder)
    return folder


@pytest.fixture(scope="session")
def people_rawframes(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> Path:
    """Rawframes img_00001.jpg... of the 29.97 fps vtest clip, made by the pipeline's cut + frames."""
    from avaforge.settings import CutSettings, FrameSettings, ScheduleSettings
    from avaforge.stages.frames import cut_with_frames
    from avaforge.stages.ingest import ClipSpec

    tmp = tmp_path_factory.mktemp("rawframes")
    spec = ClipSpec("people", "people", 0, 0.0, 10.01)
    cut_with_frames(
        videos / media.PEOPLE_2997,
        spec,
        tmp / "clip.mp4",
        tmp / "people",
        CutSettings(),
        FrameSettings(),
        ScheduleSettings(),
    )
    return tmp / "people"


# Two people at fixed boxes across seconds 2..8 of a 10 s clip; enough to exercise every file.
def demo_rows(video_id: str) -> list:
    from avaforge.formats.ava_csv import AvaRow

    rows = []
    for t in range(2, 9):
        rows.append(AvaRow(video_id, t, 0.1, 0.2, 0.4, 0.9, 1, 0))
        rows.append(AvaRow(video_id, t, 0.1, 0.2, 0.4, 0.9, 3, 0))
        rows.append(AvaRow(video_id, t, 0.55, 0.15, 0.85, 0.95, 2, 1))
    return rows


def write_demo_dataset(root: Path, rawframes: Path, splits: dict[str, list[str]]) -> Path:
    """A complete dataset: ``splits`` maps split -> video ids, all sharing the given rawframes."""
    import numpy as np

    from avaforge.dataset_layout import DatasetLayout
    from avaforge.formats.actions import ActionList
    from avaforge.formats.ava_csv import write_excluded, write_rows
    from avaforge.formats.pbtxt import write_pbtxt
    from avaforge.formats.proposals import write_proposals
    from avaforge.formats.timeline import KeyframeSchedule, write_included_timestamps

    layout = DatasetLayout(root)
    actions = ActionList.from_flat(["stand", "walk", "talk"])
    write_pbtxt(layout.action_list, actions.pbtxt_items())
    seconds = KeyframeSchedule(300).labelled_seconds
    write_included_timestamps(layout.included_timestamps, seconds)
    for split, vids in splits.items():
        rows = [r for v in vids for r in demo_rows(v)]
        write_rows(layout.csv(split), rows)
        write_excluded(layout.excluded(split), [])
        props = {}
        for v in vids:
            for t in KeyframeSchedule(300).keyframe_seconds:
                props[f"{v},{t:04d}"] = np.array(
                    [
                        [0.11, 0.21, 0.41, 0.89, 0.97],
                        [0.56, 0.15, 0.86, 0.94, 0.91],
                        [0.0, 0.0, 0.05, 0.05, 0.2],
                    ]
                )
            layout.rawframes.mkdir(parents=True, exist_ok=True)
            (layout.rawframes / v).symlink_to(rawframes, target_is_directory=True)
        write_proposals(layout.proposals(split), props)
    return root


def ava_dataset(layout, split: str = "train", **overrides):  # type: ignore[no-untyped-def]
    """mmaction2's own AVADataset over an avaforge dataset, sampling as the AVA configs do (test mode)."""
    from avaforge.compat.mmaction import register_mmaction

    register_mmaction()
    from mmaction.datasets import AVADataset

    kwargs = dict(
        ann_file=str(layout.csv(split)),
        exclude_file=str(layout.excluded(split)),
        label_file=str(layout.action_list),
        proposal_file=str(layout.proposals(split)),
        pipeline=[
            dict(type="SampleAVAFrames", clip_len=32, frame_interval=2, test_mode=True),
            dict(type="RawFrameDecode"),
        ],
        data_prefix=dict(img=str(layout.rawframes)),
        person_det_score_thr=0.9,
        num_classes=4,
        timestamp_start=0,
        timestamp_end=10,
        start_index=1,
        fps=30,
        test_mode=True,
    )
    kwargs.update(overrides)
    return AVADataset(**kwargs)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, people_rawframes: Path):  # type: ignore[no-untyped-def]
    """(dataset, run dir, TrainResult): the tiny preset trained 2 iterations on ``write_demo_dataset`` once
    per session - training is the slow part, and several tests only need a real checkpoint."""
    from avaforge.trainer.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    data = write_demo_dataset(root / "ds", people_rawframes, {"train": ["a"], "val": ["b"]})
    return data, root / "run", train(data, "tiny", root / "run", iters=2)


CREDS = S3Credentials("avaforge-test", "test-secret-key-0123")  # the test S3 server's credentials


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real S3 server (SeaweedFS, or MinIO if installed) with credentials, and a store on it."""
    from avaforge.storage import S3Store
    from devstack.servers import s3_server

    server = s3_server(tmp_path_factory.mktemp("s3"), CREDS).start()
    store = S3Store(f"127.0.0.1:{server.port}", CREDS.access_key, CREDS.secret_key, "artifacts")
    store.wait_ready()
    yield server, store
    server.stop()


@pytest.fixture(scope="session")
def training_dataset(s3, tmp_path_factory: pytest.TempPathFactory, people_rawframes: Path):  # type: ignore[no-untyped-def]
    """A demo dataset (train: video a, val: video b) with real rawframe files, packed and stored in the test
    S3: what the trainer service trains on, as its ``common_pb2.ArtifactRef``."""
    from avaforge.archive import pack_tree
    from avaforge.dataset_layout import DatasetLayout
    from services.common.convert import ref_to_proto

    _, store = s3
    root = tmp_path_factory.mktemp("training_dataset") / "dataset"
    layout = DatasetLayout(write_demo_dataset(root, people_rawframes, {"train": ["a"], "val": ["b"]}))
    for link in layout.rawframes.iterdir():  # real files in the uploaded dataset
        link.unlink()
        shutil.copytree(people_rawframes, link)
    return ref_to_proto(store.put("datasets", pack_tree(layout.root), ".tar"))
