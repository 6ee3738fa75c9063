"""Exact frames whatever the file: every frame read equals a plain sequential decode.

The reference in every test is PyAV decoding the file from its first packet to its last, with
nothing skipped and no seek, the display rotation applied as FFmpeg's player applies it. The
files are the kinds real footage brings: H.264 4:4:4 with a B-frame pyramid, HEVC, MPEG-4 in
AVI, variable frame rate, phone video with a rotation flag, a seek table that lists frames
which are not random-access points, and damaged bytes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dflab.video import VideoDecodeError, check_decode, iter_frames, probe, read_frames, write_video
from dflab.video.access import Undecoded, frame_ranges, plan_runs
from dflab.video.faults import damage_bytes, moving_frames, remux_false_keyframes, write_vfr_video
from footage import mad, sequential_decode


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kinds")
    frames = list(moving_frames(160, 120, 90))
    base = write_video(root / "base.mp4", frames, fps=25, options={"g": "30"})
    rng = np.random.default_rng(0)
    return {
        "h264 yuv444p b-pyramid": write_video(root / "yuv444.mp4", frames, fps=25, pix_fmt="yuv444p",
                                              options={"g": "30", "bf": "3", "x264-params": "b-pyramid=normal"}),
        "hevc": write_video(root / "hevc.mp4", frames, fps=25, codec="libx265", options={"g": "30"}),
        "mpeg4 in avi": write_video(root / "mpeg4.avi", frames, fps=25, codec="mpeg4",
                                    options={"g": "30", "bf": "2", "qscale": "3"}),
        "variable frame rate": write_vfr_video(root / "vfr.mp4", frames,
                                               rng.choice([20, 33, 40, 66], len(frames)).tolist()),
        "rotated phone video": write_video(root / "rotated.mp4", frames, fps=30, rotation=270,
                                           options={"g": "25"}),
        "false keyframes": remux_false_keyframes(base, root / "false_keys.mp4", every=13),
    }


KINDS = ["h264 yuv444p b-pyramid", "hevc", "mpeg4 in avi", "variable frame rate",
         "rotated phone video", "false keyframes"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_read_equals_the_sequential_decode(videos: dict[str, Path], kind: str) -> None:
    path = str(videos[kind])
    reference = sequential_decode(path)
    info = probe(path)
    assert len(reference) == info.num_frames == 90
    checked = check_decode(path, np.linspace(0, 89, 8).round().astype(int))
    for i, frame in checked.frames.items():  # the face-index pass itself
        assert mad(frame, reference[i]) == 0.0
    rng = np.random.default_rng(1)
    picks = np.concatenate([rng.integers(0, 90, 20), info.keyframes, [89, 0, 45, 45]])
    got = read_frames(path, picks, checked.seek.access_points)
    assert got.shape == (len(picks), info.height, info.width, 3)
    assert max(mad(g, reference[int(i)]) for g, i in zip(got, picks, strict=True)) < 1.0
    clip = read_frames(path, range(40, 48), checked.seek.access_points)  # a clip of 8 frames
    assert max(mad(g, reference[i]) for g, i in zip(clip, range(40, 48), strict=True)) < 1.0


def test_false_keyframes_are_found_and_never_seeked_to(videos: dict[str, Path]) -> None:
    path = str(videos["false keyframes"])
    info = probe(path)
    seek = check_decode(path, [89]).seek
    assert not seek.exact and len(seek.rejected) >= 4
    assert set(seek.access_points.tolist()) == {0, 30, 60}  # the encoder's real keyframes
    assert set(seek.rejected.tolist()).isdisjoint(seek.access_points.tolist())
    # The fault is real: starting at a rejected seek point does not give the right frames.
    reference = sequential_decode(path)
    bad = int(seek.rejected[-1])
    wrong = Undecoded()
    frames = dict(iter_frames(path, [bad + 2], info.keyframes, undecoded=wrong))
    assert wrong.frames == [bad + 2] or mad(frames[bad + 2], reference[bad + 2]) > 1.0


def test_exact_files_keep_every_seek_point(videos: dict[str, Path]) -> None:
    for kind in ("h264 yuv444p b-pyramid", "hevc", "mpeg4 in avi"):
        info = probe(videos[kind])
        seek = check_decode(str(videos[kind]), [89]).seek
        assert seek.exact and seek.access_points.tolist() == info.keyframes.tolist()
        assert seek.checked_frames >= len(info.keyframes) - 1
        if kind != "mpeg4 in avi":  # keyframes 0, 30, 60: 8 frames + the last before the next
            assert info.keyframes.tolist() == [0, 30, 60] and seek.checked_frames == 18


def test_display_rotation_is_applied_as_playback_does(tmp_path: Path) -> None:
    """FFmpeg's player turns a frame flagged 90° by a quarter turn counter-clockwise: the top-left
    corner ends bottom-left (checked against ``ffmpeg -i`` with autorotate, FFmpeg 5.1)."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:8, :8] = 255
    for rotation, corner in ((90, (slice(56, 64), slice(0, 8))), (270, (slice(0, 8), slice(40, 48))),
                             (180, (slice(40, 48), slice(56, 64)))):
        path = write_video(tmp_path / f"r{rotation}.mp4", [frame] * 3, fps=10, rotation=rotation)
        info = probe(path)
        shown = read_frames(path, [1])[0]
        assert info.rotation == rotation
        assert shown.shape[:2] == ((64, 48) if rotation in (90, 270) else (48, 64)) == (info.height, info.width)
        assert shown[corner].mean() > 200 and shown.mean() < 40


def test_damaged_bytes_name_the_file_and_frames(tmp_path: Path) -> None:
    clean = write_video(tmp_path / "clean.mp4", moving_frames(96, 96, 120), fps=25, options={"g": "60"})
    path = damage_bytes(Path(shutil.copy(clean, tmp_path / "damaged.mp4")), start=0.45, length=0.02)
    scan = check_decode(str(path), range(probe(path).num_frames), keep=False)
    assert scan.damaged and scan.errors
    lost = scan.damaged
    with pytest.raises(VideoDecodeError) as err:
        read_frames(str(path), [lost[0], 0])
    assert str(path) in str(err.value) and str(lost[0]) in str(err.value)
    assert lost[0] in err.value.frames
    undecoded = Undecoded()
    good = [i for i in range(0, 120, 7) if i not in lost]
    got = dict(iter_frames(str(path), good + lost[:1], undecoded=undecoded))
    assert sorted(got) == good and undecoded.frames == lost[:1]


def test_probe_refuses_what_is_not_a_video(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    for path, words in ((empty, "empty"), (text, "cannot open"), (tmp_path / "missing.mp4", "no such file")):
        with pytest.raises(VideoDecodeError, match=words) as err:
            probe(path)
        assert str(path) in str(err.value)


def test_frames_outside_the_video_are_refused_not_clamped(videos: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="frame 90 is outside"):
        read_frames(str(videos["hevc"]), [3, 90])


def test_decode_runs_start_only_at_access_points() -> None:
    frames = np.array([3, 5, 40, 41, 70, 130, 131])
    runs = plan_runs(frames, np.array([0, 30, 60, 120]))
    assert runs == [(0, [3, 5]), (30, [40, 41]), (60, [70]), (120, [130, 131])]
    assert plan_runs(frames, np.array([0])) == [(0, frames.tolist())]
    assert frame_ranges([5, 3, 4, 9, 11, 10]) == [(3, 5), (9, 11)]
