"""Ingest/cut and frames on videos of real people made from vtest.avi with real ffmpeg (tests/media.py)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from avaforge.formats.errors import FormatError
from avaforge.settings import ClipPlan, CutSettings, FrameSettings, ScheduleSettings
from avaforge.stages.frames import cut_with_frames, extract_frames
from avaforge.stages.ingest import ClipSpec, cut_clip, plan_clips
from avaforge.video.probe import probe_video
from tests import media
from tests.media import ffmpeg

CUT = CutSettings()


def _cut(src: Path, tmp: Path, plan: ClipPlan | None = None, video_id: str = "v"):
    specs = plan_clips(probe_video(src), plan or ClipPlan(), video_id)
    return [cut_clip(src, s, tmp / f"{s.clip_id}.mp4", CUT) for s in specs]


# The test videos of tests/media.py: their rate as ffprobe reports it (avg_frame_rate), and the frames and
# size of the 30 fps clip cut from the whole video (frames = round(duration x 30), duration from ffprobe).
@pytest.mark.parametrize(
    ("name", "fps", "frames", "size"),
    [
        ("people_29.97fps_10s.mp4", 29.97, 300, (384, 288)),  # 300 frames at 30000/1001: 10.01 s
        ("people_28fps_10s.mp4", 28.0, 300, (352, 264)),  # 280 frames at 28: 10.000 s
        # variable rate: 71 frames over 2.567 s (30/1 nominal, 2130/77 average); 2.567 s x 30 = 77 frames
        ("people_1080p_vfr_2.6s.mp4", 27.66, 77, (1920, 1080)),
    ],
)
def test_whole_video_clips_have_exact_30fps_frame_counts(
    videos: Path, tmp_path: Path, name, fps, frames, size
):
    info = probe_video(videos / name)
    assert info.fps == pytest.approx(fps, abs=0.01)
    (clip,) = _cut(videos / name, tmp_path)
    assert clip.num_frames == frames and (clip.width, clip.height) == size
    again = probe_video(tmp_path / "v.mp4")
    assert again.fps == 30 and again.codec == "h264"


def test_windows_and_explicit_segments(videos: Path, tmp_path: Path) -> None:
    src = videos / "people_28fps_10s.mp4"
    clips = _cut(src, tmp_path, ClipPlan(mode="windows", window_s=4))
    assert [(c.clip_id, c.start_s, c.num_frames) for c in clips] == [
        ("v_c000", 0.0, 120),
        ("v_c001", 4.0, 120),
        ("v_c002", 8.0, 60),
    ]
    (clip,) = _cut(src, tmp_path, ClipPlan(mode="explicit", segments=((1.5, 3.0),)))
    assert clip.num_frames == 90
    with pytest.raises(FormatError, match=r"outside the 10\.000 s video"):
        plan_clips(probe_video(src), ClipPlan(mode="explicit", segments=((8.0, 5.0),)), "v")


def test_cut_boundary_is_frame_exact(videos: Path, tmp_path: Path) -> None:
    """A clip starting at 1.0 s of a 30 fps source begins with source frame 31, not a nearby keyframe.

    The 1080p video runs at a steady 30 fps for its first 1.5 s (frames are dropped only after that), and
    each of its frames is a distinct blend of vtest's, so frame 31 is the one closest to 1.0 s."""
    src = videos / "people_1080p_vfr_2.6s.mp4"
    spec = ClipSpec("h", "h", 0, 1.0, 1.0)
    clip = cut_clip(src, spec, tmp_path / "h.mp4", CUT)
    assert clip.num_frames == 30
    ffmpeg("-i", str(src), "-vf", "scale=192:108", "-start_number", "1", str(tmp_path / "src_%03d.png"))
    ffmpeg(
        "-i", str(tmp_path / "h.mp4"), "-vf", "scale=192:108", "-frames:v", "1", str(tmp_path / "first.png")
    )
    first = cv2.imread(str(tmp_path / "first.png")).astype(float)
    diffs = {
        k: np.abs(cv2.imread(str(tmp_path / f"src_{k:03d}.png")).astype(float) - first).mean()
        for k in (29, 31, 33)
    }
    assert diffs[31] < diffs[29] and diffs[31] < diffs[33], diffs


def test_odd_codec_low_fps_avi(tmp_path: Path) -> None:
    """vtest.avi itself is an old MS-MPEG4 v3 AVI at 10 fps; its first 10 s, stream-copied, is 100 frames."""
    avi = tmp_path / "old.avi"
    ffmpeg("-i", str(media.vtest()), "-t", "10", "-c", "copy", str(avi))
    info = probe_video(avi)
    assert (info.codec, info.fps) == ("msmpeg4v3", 10.0)
    (clip,) = _cut(avi, tmp_path)
    assert clip.num_frames == 300  # 10 s at 30 fps


def test_rotation_metadata_is_applied(videos: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rot.mp4"
    ffmpeg(
        "-i",
        str(videos / "people_29.97fps_10s.mp4"),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        str(rotated),
    )
    info = probe_video(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (288, 384)  # 384x288 stored, turned
    (clip,) = _cut(rotated, tmp_path)
    assert (clip.width, clip.height) == (288, 384)


def test_short_clip_has_no_labelled_seconds(videos: Path, tmp_path: Path) -> None:
    src = videos / "people_1080p_vfr_2.6s.mp4"
    (spec,) = plan_clips(probe_video(src), ClipPlan(), "v")
    _, info = cut_with_frames(
        src, spec, tmp_path / "v.mp4", tmp_path / "frames", CUT, FrameSettings(), ScheduleSettings()
    )
    # 2.567 s x 30 = 77 frames; keyframes at seconds 0-2; none labelled (AVA needs 2 s on either side)
    assert info.num_frames == 77 and info.keyframe_seconds == (0, 1, 2) and info.labelled_seconds == ()


def _bad_inputs(tmp: Path, videos: Path) -> dict[str, Path]:
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n")
    audio = tmp / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(audio))
    truncated = tmp / "truncated.mp4"
    data = (videos / "people_29.97fps_10s.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    return {"0 bytes": empty, "not a readable video": text, "no video stream": audio, "truncated": truncated}


def test_bad_inputs_are_clear_errors_naming_the_file(videos: Path, tmp_path: Path) -> None:
    for expected, path in _bad_inputs(tmp_path, videos).items():
        with pytest.raises(FormatError) as exc:
            _cut(path, tmp_path)
        assert str(path) in str(exc.value)
        if expected != "truncated":
            assert expected in str(exc.value)
    assert not list(tmp_path.glob("*.partial*"))


def test_frames_one_pass_names_quality_and_atomicity(videos: Path, tmp_path: Path) -> None:
    src = videos / "people_29.97fps_10s.mp4"
    (spec,) = plan_clips(probe_video(src), ClipPlan(), "v")
    sched = ScheduleSettings()
    clip, info = cut_with_frames(
        src, spec, tmp_path / "v.mp4", tmp_path / "hq", CUT, FrameSettings(jpeg_qscale=2), sched
    )
    names = sorted(p.name for p in (tmp_path / "hq").iterdir())
    assert len(names) == 300 and names[0] == "img_00001.jpg" and names[-1] == "img_00300.jpg"
    assert info.labelled_seconds == (2, 3, 4, 5, 6, 7, 8) and info.keyframe_seconds == tuple(range(10))
    # The frames stage run on its own (as a service would) writes the same bytes as the one-pass cut+frames.
    extract_frames(src, spec, clip, tmp_path / "apart", FrameSettings(jpeg_qscale=2), sched)
    for name in ("img_00001.jpg", "img_00151.jpg", "img_00300.jpg"):
        assert (tmp_path / "apart" / name).read_bytes() == (tmp_path / "hq" / name).read_bytes()
    extract_frames(src, spec, clip, tmp_path / "lq", FrameSettings(jpeg_qscale=20), sched)
    size = lambda d: sum(p.stat().st_size for p in (tmp_path / d).iterdir())  # noqa: E731
    assert size("lq") < size("hq") / 2
    # A source that does not decode fully: an error naming it, and no rawframes folder left behind.
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(src.read_bytes()[:20000])
    with pytest.raises(FormatError, match=str(broken)):
        extract_frames(broken, spec, clip, tmp_path / "broken_frames", FrameSettings(), sched)
    assert not (tmp_path / "broken_frames").exists()
    assert not list(tmp_path.glob(".*partial*"))
