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

import av
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
        "h264 b-frames in mkv": write_video(root / "bframes.mkv", frames, fps=25, options={"g": "30", "bf": "3"}),
    }


KINDS = ["h264 yuv444p b-pyramid", "hevc", "mpeg4 in avi", "variable frame rate",
         "rotated phone video", "false keyframes", "h264 b-frames in mkv"]


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


def _encode(path: Path, frames: list[np.ndarray], start: int = 0, codec: str = "libx264",
            options: dict | None = None) -> Path:
    """Frames encoded at 25 fps with timestamps from ``start`` (in frames), any container."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"g": "30", "bf": "3", **(options or {})}
        for k, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = start + k, Fraction(1, 25)
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


def _repeat_a_timestamp(src: Path, dst: Path) -> Path:
    """A copy of ``src`` (MKV) in which packet 10 carries packet 9's timestamp."""
    with av.open(str(src)) as source, av.open(str(dst), "w") as out:
        stream = source.streams.video[0]
        copy = out.add_stream_from_template(stream)
        packets = [p for p in source.demux(stream) if p.size]
        ordered = sorted(packets, key=lambda p: p.pts)
        ninth = ordered[9].pts
        for p in packets:
            if p is ordered[10]:
                p.pts, p.dts = ninth, None
            p.stream = copy
            out.mux(p)
    return dst


def _pal8(path: Path) -> Path:
    """Palettised raw video in AVI (the palette travels with the first packet only)."""
    palette = np.concatenate([np.full((256, 1), 255, np.uint8),
                              np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)], 1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "pal8"
        for k in range(24):
            image = ((np.arange(64)[None, :] + 3 * np.arange(48)[:, None] + 7 * k) % 256).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray((image, palette), format="pal8")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files whose timestamps do not simply give the presentation order, and other oddities."""
    root = tmp_path_factory.mktemp("awkward")
    frames = list(moving_frames(160, 96, 60))
    small = [f[8:88, 16:144] for f in moving_frames(160, 96, 30, seed=1)]
    out = {
        "h264 b-frames in avi": write_video(root / "bframes.avi", frames, fps=25, options={"g": "30", "bf": "3"}),
        "raw h264 stream": write_video(root / "raw.h264", frames, fps=25, options={"g": "30", "bf": "3"}),
        "repeated timestamp": _repeat_a_timestamp(
            write_video(root / "src.mkv", frames, fps=25, options={"g": "30", "bf": "0"}), root / "dup.mkv"),
        "palettised raw video": _pal8(root / "pal8.avi"),
    }
    a, b = _encode(root / "a.ts", frames[:30]), _encode(root / "b.ts", frames[30:])
    (root / "joined.ts").write_bytes(a.read_bytes() + b.read_bytes())  # both segments start at 0
    out["joined ts segments"] = root / "joined.ts"
    c = _encode(root / "c.ts", small, start=30)  # carries on where a.ts ends, at 128x80
    (root / "resized.ts").write_bytes(a.read_bytes() + c.read_bytes())
    out["resolution change"] = root / "resized.ts"
    return out


@pytest.mark.parametrize("kind", ["h264 b-frames in avi", "raw h264 stream", "repeated timestamp",
                                  "joined ts segments", "resolution change", "palettised raw video"])
def test_awkward_files_read_as_playback_shows(awkward: dict[str, Path], kind: str) -> None:
    path = str(awkward[kind])
    reference = sequential_decode(path)
    info = probe(path)
    checked = check_decode(path, range(info.num_frames), keep=True)
    shape = (info.height, info.width, 3)
    for i, frame in checked.frames.items():
        assert frame.shape == shape and i in reference
        assert mad(frame, reference[i]) < 1.0
    decodable = sorted(set(checked.frames))
    assert len(decodable) >= 0.9 * info.num_frames
    rng = np.random.default_rng(2)
    picks = rng.choice(decodable, min(12, len(decodable)), replace=False)
    got = read_frames(path, picks, checked.seek.access_points)
    assert max(mad(g, reference[int(i)]) for g, i in zip(got, picks, strict=True)) < 1.0
    if kind == "resolution change":
        assert got.shape[1:] == shape == (96, 160, 3)  # every frame at the first frame's size
    elif kind != "palettised raw video":  # numbered by output order, never seeked
        assert not info.ordered and not checked.seek.exact and len(checked.seek.access_points) == 0


def test_a_damaged_stream_is_only_read_sequentially(tmp_path: Path) -> None:
    """The error concealment of a damaged stream depends on where decoding starts and on which
    frames were decoded: such a video gets no access points and no frames skipped."""
    base = write_video(tmp_path / "base.mp4", moving_frames(160, 96, 120), fps=25, options={"g": "30", "bf": "3"})
    for seed in range(4):
        path = damage_bytes(Path(shutil.copy(base, tmp_path / f"d{seed}.mp4")), 0.55 + 0.05 * seed, 0.004, seed)
        reference = sequential_decode(path)
        checked = check_decode(str(path), range(probe(path).num_frames), keep=False)
        if not checked.errors:
            continue  # the damage happened to decode without complaint
        assert checked.seek.sequential_only == "decode errors" and len(checked.seek.access_points) == 0
        for i in sorted(reference)[::7]:
            frame = read_frames(str(path), [i], checked.seek.access_points)[0]
            assert mad(frame, reference[i]) < 1.0


def test_damage_ffmpeg_conceals_is_seen(tmp_path: Path) -> None:
    """Damaged MPEG-TS packets often decode without an error raised: FFmpeg conceals them and only
    logs. Those messages count as decode errors, so such a video is never seeked into either."""
    base = _encode(tmp_path / "base.ts", list(moving_frames(160, 96, 120)))
    logged = 0
    for seed in (130, 186, 193, 100):  # the first three are read wrong if the messages are ignored
        path = Path(shutil.copy(base, tmp_path / f"d{seed}.ts"))
        rng = np.random.default_rng(seed)
        for _ in range(int(rng.integers(1, 4))):
            damage_bytes(path, float(rng.uniform(0.02, 0.98)), float(rng.choice([0.0005, 0.003, 0.02])),
                         int(rng.integers(1 << 30)))
        reference = sequential_decode(path)
        checked = check_decode(str(path), range(probe(path).num_frames), keep=False)
        logged += any("h264:" in e or "mpegts:" in e for e in checked.errors)
        for i in sorted(reference)[::2]:
            frame = read_frames(str(path), [i], checked.seek.access_points)[0]
            assert mad(frame, reference[i]) < 1.0, (seed, i)
    assert logged == 4  # the decoder's own messages were seen


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
    for kind in ("h264 yuv444p b-pyramid", "hevc", "mpeg4 in avi", "h264 b-frames in mkv"):
        info = probe(videos[kind])
        seek = check_decode(str(videos[kind]), [89]).seek
        assert seek.exact and seek.access_points.tolist() == info.keyframes.tolist()
        assert seek.checked_frames >= len(info.keyframes) - 1
        if kind not in ("mpeg4 in avi",):  # keyframes 0, 30, 60: 8 frames + the last before the next
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


def test_frame_indices_must_be_whole_numbers_inside_the_video(videos: dict[str, Path]) -> None:
    path = str(videos["hevc"])
    with pytest.raises(ValueError, match="frame 90 is outside") as err:
        read_frames(path, [3, 90])
    assert path in str(err.value)
    for bad in ([2.7], [float("nan")]):
        with pytest.raises(ValueError, match="whole numbers"):
            read_frames(path, bad)
    assert read_frames(path, 5).shape == (1, 120, 160, 3)  # a scalar is one frame
    assert read_frames(path, np.array([4.0, 4.0], np.float32)).shape == (2, 120, 160, 3)
    assert read_frames(path, []).shape == (0, 120, 160, 3)


def test_decode_runs_start_only_at_access_points() -> None:
    frames = np.array([3, 5, 40, 41, 70, 130, 131])
    runs = plan_runs(frames, np.array([0, 30, 60, 120]))
    assert runs == [(0, [3, 5]), (30, [40, 41]), (60, [70]), (120, [130, 131])]
    assert plan_runs(frames, np.array([0])) == [(0, frames.tolist())]
    assert plan_runs(np.array([10, 70]), np.array([30, 60])) == [(0, [10]), (60, [70])]  # 0 always
    assert plan_runs(np.array([29, 30, 31]), np.array([0, 30])) == [(0, [29, 30, 31])]  # no seek for 1 frame
    assert frame_ranges([5, 3, 4, 9, 11, 10]) == [(3, 5), (9, 11)]


def test_the_check_pass_in_a_background_thread_hands_over_the_same_frames(videos: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    from dflab.video.background import CheckInBackground

    path = str(videos["h264 yuv444p b-pyramid"])
    picks = np.linspace(0, 89, 12).round().astype(int)
    direct = check_decode(path, picks)
    with CheckInBackground(path, picks, threads=2, depth=2) as pending:
        got = list(pending)
        result = pending.result
    assert [i for i, _ in got] == sorted(direct.frames)
    assert all(np.array_equal(frame, direct.frames[i]) for i, frame in got)
    assert result.frames == {} and result.seek.access_points.tolist() == direct.seek.access_points.tolist()
    with CheckInBackground(path, picks, depth=1) as pending:  # leaving early stops the thread
        next(iter(pending))
    assert not pending._thread.is_alive()
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(VideoDecodeError, match=r"notes\.mp4"), \
            CheckInBackground(str(tmp_path / "notes.mp4"), [0]) as pending:
        list(pending)
