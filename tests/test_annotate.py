"""Annotated outputs: boxes, verdict and score strip drawn on real decoded frames, written as a
browser-playable H.264 MP4 or a PNG, and Grad-CAM heat maps of a frame network."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata
from torch import nn

from dflab.predict.annotate import (
    BANNER_COLOURS,
    TrackTimeline,
    annotate_frame,
    annotate_image,
    annotate_video,
    score_colour,
)
from dflab.predict.cam import CamError, grad_cam, last_conv_layer
from dflab.predict.results import FileResult, FrameScore, TrackResult
from dflab.video import check_decode, probe, read_frames, write_video
from dflab.video.faults import damage_bytes
from footage import mad

W, H, N = 161, 121, 64  # odd sides: the annotated video must be padded to 162 x 122
FAKE_FRAMES = {8: [20, 30, 60, 80], 24: [40, 32, 80, 82], 40: [30, 30, 70, 80]}  # track 0, score 0.9
REAL_FRAMES = {16: [100, 40, 140, 90], 32: [104, 42, 144, 92]}  # track 1, score 0.1


def _grey_frames(n: int, w: int = W, h: int = H):
    """Moving grey photo texture (equal R, G, B), so drawn colours stand out."""
    cam = cv2.resize(skdata.camera(), (w + 40, h + 40), interpolation=cv2.INTER_AREA)
    for t in range(n):
        dx, dy = int(10 + 8 * np.sin(t / 9)), int(10 + 6 * np.cos(t / 13))
        grey = cam[dy : dy + h, dx : dx + w]
        yield np.repeat(grey[:, :, None] // 2 + 64, 3, 2)  # mid grey, no clipped whites


def _track(track: int, boxes: dict[int, list[int]], score: float, fps: float = 25.0) -> TrackResult:
    frames = [FrameScore(f, f / fps, [float(v) for v in b], float(np.log(score / (1 - score))), score)
              for f, b in boxes.items()]
    return TrackResult(track, score, frames)


def _result(path: Path, kind: str = "video", verdict: str | None = "fake") -> FileResult:
    return FileResult(str(path), kind, "scored" if verdict else "no_face", score=0.9 if verdict else None,
                      verdict=verdict, tracks=[_track(0, FAKE_FRAMES, 0.9), _track(1, REAL_FRAMES, 0.1)],
                      num_frames=N, fps=25.0, width=W, height=H)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # x264 takes odd sides in 4:4:4 (4:2:0 needs even ones)
    return write_video(tmp_path_factory.mktemp("annotate") / "odd.mp4", _grey_frames(N), fps=25,
                       pix_fmt="yuv444p")


@pytest.fixture(scope="module")
def annotated(video: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    out = annotate_video(_result(video), tmp_path_factory.mktemp("out") / "sub" / "annotated.mp4", 0.42)
    return out, read_frames(str(video), range(N)), read_frames(str(out), range(probe(out).num_frames))


def _redness(region: np.ndarray) -> float:
    """Mean R minus mean G of a region (positive: red, negative: green)."""
    r = region.reshape(-1, 3).astype(np.float64).mean(0)
    return float(r[0] - r[1])


def test_score_colour_ramps_green_yellow_red() -> None:
    assert score_colour(0.0) == (0, 255, 0)
    assert score_colour(0.5) == (255, 255, 0)
    assert score_colour(1.0) == (255, 0, 0)
    assert score_colour(1.7) == (255, 0, 0) and score_colour(-1) == (0, 255, 0)
    assert score_colour(float("nan")) == (128, 128, 128)
    r, g, _ = score_colour(0.25)
    assert 0 < r < 255 and g == 255


def test_video_is_browser_h264_with_every_frame_and_even_sides(annotated) -> None:
    out, src, ann = annotated
    info = probe(out)
    assert out.name == "annotated.mp4" and not list(out.parent.glob(".*"))  # no temporary files left
    assert info.num_frames == N and len(ann) == N
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert (info.width, info.height) == (W + 1, H + 1)
    assert info.fps == pytest.approx(25.0)
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # +faststart: the index first
    # padding, not scaling: the source sits unchanged (up to compression) in the top-left corner
    mid = slice(30, 95)  # below the banner, above the strip, away from the boxes
    assert mad(ann[50, mid, :18], src[50, mid, :18]) < 6
    assert ann[50, 100:, -1].max() < 40 and ann[50, -1, :100].max() < 40  # the black pad (strip above it)


def test_boxes_are_coloured_by_score_on_sampled_frames(annotated) -> None:
    _, src, ann = annotated
    x1, y1, _, y2 = FAKE_FRAMES[24]
    assert _redness(ann[24, y1 + 5 : y2 - 5, x1 - 1 : x1 + 2]) > 60  # the fake track's left edge: red
    assert abs(_redness(src[24, y1 + 5 : y2 - 5, x1 - 1 : x1 + 2])) < 5
    x1, y1, _, y2 = REAL_FRAMES[16]
    assert _redness(ann[16, y1 + 5 : y2 - 5, x1 - 1 : x1 + 2]) < -60  # the real track's: green
    # between two sampled frames the box is interpolated (frame 16: halfway from x1=20 to x1=40)
    assert _redness(ann[16, 50:75, 29:32]) > 60  # (below the label inside the box's top)
    assert abs(_redness(ann[16, 50:75, 19:22])) < 20 and abs(_redness(ann[16, 50:75, 39:42])) < 20


def test_no_box_outside_a_tracks_sampled_range(annotated) -> None:
    _, src, ann = annotated
    x1, _, x2, y2 = REAL_FRAMES[16]
    real = (slice(20, y2 + 3), slice(x1 - 3, x2 + 3))  # the box with its label, below the banner
    _, _, _, y2 = FAKE_FRAMES[8]
    fake = (slice(20, y2 + 3), slice(17, 83))  # every box of the fake track, labels too
    for f in (0, 5, 15, 33, 50, 63):  # the real track spans frames 16-32
        assert mad(ann[f][real], src[f][real]) < 4, f
    for f in (0, 7, 41, 63):  # the fake track spans frames 8-40
        assert mad(ann[f][fake], src[f][fake]) < 4, f
    for f in (16, 20, 32):
        assert mad(ann[f][real], src[f][real]) > 8, f


def test_banner_and_score_strip(annotated) -> None:
    _, src, ann = annotated
    assert _redness(ann[10, :3, -30:]) > 100  # FAKE: a red band across the top
    strip = ann[30, -12:-2, 2:-6].astype(np.float64)
    assert strip.mean() < 0.6 * src[30, -12:-2, 2:-6].mean()  # darkened


def test_timeline_interpolates_boxes_and_takes_the_nearest_score() -> None:
    tl = TrackTimeline.of(TrackResult(3, 0.5, [
        FrameScore(10, 0.4, [0, 0, 10, 10], 0.0, 0.2),
        FrameScore(20, 0.8, [10, 20, 30, 40], 0.0, 0.8),
        FrameScore(20, 0.8, [10, 20, 30, 40], 0.0, 0.6),  # overlapping clips: averaged
        FrameScore(30, 1.2, [float("nan")] * 4, 0.0, 0.9),  # no box: dropped
    ]))
    assert tl.frames.tolist() == [10, 20] and tl.scores.tolist() == pytest.approx([0.2, 0.7])
    assert tl.at(9) is None and tl.at(21) is None
    box, score, near = tl.at(14)
    assert box.tolist() == pytest.approx([4, 8, 18, 22]) and (score, near) == (0.2, 10)
    assert tl.at(15)[1:] == (0.2, 10)  # a tie goes to the earlier frame
    assert tl.at(16)[1:] == pytest.approx((0.7, 20))
    assert tl.at(20)[0].tolist() == [10, 20, 30, 40]


def test_annotate_video_wants_a_video(video: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="video"):
        annotate_video(_result(video, kind="image"), tmp_path / "x.mp4", 0.5)


def test_damaged_frames_are_skipped(tmp_path: Path) -> None:
    clean = write_video(tmp_path / "clean.mp4", _grey_frames(200, 96, 64), fps=25, options={"g": "25"})
    path = damage_bytes(Path(shutil.copy(clean, tmp_path / "damaged.mp4")), start=0.5, length=0.01)
    lost = check_decode(str(path), range(probe(path).num_frames), keep=False).damaged
    assert lost
    out = annotate_video(_result(path), tmp_path / "annotated.mp4", 0.5)
    info = probe(out)
    assert info.num_frames == probe(path).num_frames - len(lost)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == info.num_frames


@pytest.mark.parametrize("verdict", [None, "fake", "real"])
def test_image_png_with_the_verdict_band(tmp_path: Path, verdict: str | None) -> None:
    image = np.ascontiguousarray(skdata.astronaut()[:300, 80:380])
    faces = TrackResult(0, 0.9, [FrameScore(0, 0.0, [90.0, 40.0, 200.0, 180.0], 2.0, 0.9)])
    result = FileResult("face.jpg", "image", "scored" if verdict else "no_face", verdict=verdict,
                        score=None if verdict is None else 0.9, tracks=[faces], num_frames=1)
    before = image.copy()
    out = annotate_image(result, image, tmp_path / "pics" / "face.png", 0.42)
    assert np.array_equal(image, before)
    assert out == tmp_path / "pics" / "face.png" and [p.name for p in out.parent.iterdir()] == ["face.png"]
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.shape == image.shape
    rgb = cv2.cvtColor(back, cv2.COLOR_BGR2RGB)
    band = rgb[:2].reshape(-1, 3)  # rows above the text: the band's own colour (PNG is lossless)
    assert (band == BANNER_COLOURS[verdict]).all()
    if verdict is None:
        r, g, b = band[0].astype(int)
        assert abs(r - g) < 10 and abs(g - b) < 10 and 60 < r < 200  # grey
    assert _redness(rgb[60:160, 89:92]) > 100  # the face box, red (score 0.9)


def test_annotate_frame_draws_on_a_copy_and_scales_with_the_frame() -> None:
    small = np.full((240, 320, 3), 128, np.uint8)
    big = np.full((1080, 1920, 3), 128, np.uint8)
    faces_small = [(0, np.array([100.0, 60, 180, 160]), 0.87)]
    faces_big = [(0, np.array([100.0, 60, 180, 160]) * 4.5, 0.87)]
    a = annotate_frame(small, faces_small, verdict="real", file_score=0.08, threshold=0.42,
                       history=np.r_[np.full(5, np.nan), np.linspace(0, 1, 20)], now=10)
    b = annotate_frame(big, faces_big, verdict="real", file_score=0.08, threshold=0.42)
    assert (small == 128).all() and (big == 128).all()
    assert a.shape == small.shape and a.dtype == np.uint8

    def band_height(img: np.ndarray) -> int:
        return int(np.argmax((img[:, -1] == 128).all(1)))

    assert 10 <= band_height(a) < band_height(b)  # text grows with the frame
    assert (a[:2, -1] == BANNER_COLOURS["real"]).all()
    # the strip: the bottom 12 % is darkened, the curve is drawn, the cursor too
    strip = a[-28:]
    assert (strip.reshape(-1, 3).min(0) < 60).all() and (strip > 200).all(2).any()


def test_cam_overlay_changes_only_its_region() -> None:
    frame = np.ascontiguousarray(np.repeat(skdata.camera()[::4, ::4, None], 3, 2))  # 128 x 128
    box = np.array([40.0, 50, 80, 90])
    heat = np.zeros((16, 16), np.float32)
    heat[4:12, 4:12] = 1.0
    faces = [(7, box, 0.3)]
    plain = annotate_frame(frame, faces, verdict=None, file_score=None, threshold=0.5)
    hot = annotate_frame(frame, faces, verdict=None, file_score=None, threshold=0.5, cams={7: heat})
    changed = (plain != hot).any(2)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # square_box(box, 1.3): side 52 around the centre (60, 70) -> x 34..86, y 44..96
    assert xs.min() >= 34 and xs.max() < 86 and ys.min() >= 44 and ys.max() < 96
    # hot centre red-ish, cold border blue-ish
    assert _redness(hot[68:72, 58:62]) > 40 and hot[46, 36, 2] > hot[46, 36, 0] + 40
    # a track without a heat map and a region off the frame change nothing
    off = annotate_frame(frame, [(7, box + 500, 0.3)], verdict=None, file_score=None, threshold=0.5,
                         cams={7: heat})
    assert np.array_equal(off, annotate_frame(frame, [(7, box + 500, 0.3)], verdict=None, file_score=None,
                                              threshold=0.5))


class _LeftHalf(nn.Module):
    """Zeroes the right half of the image: the logit can only depend on the left half."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-1] // 2] = 1
        return x * mask


def _left_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(_LeftHalf(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1), nn.Flatten(0))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
                m.bias.zero_()
    return net


def test_grad_cam_finds_the_half_the_logit_depends_on() -> None:
    net = _left_net().train()
    net[1].weight.requires_grad_(False)  # a frozen layer stays frozen
    marker = torch.ones_like(net[3].weight)
    net[3].weight.grad = marker
    crops = torch.rand(3, 3, 32, 32)
    assert last_conv_layer(net) is net[3]
    with torch.no_grad():  # works where callers usually are
        heat = grad_cam(net, crops)
    assert heat.shape == (3, 32, 32) and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() <= 1 and heat.max() > 0.9
    left, right = heat[:, :, :15].mean((1, 2)), heat[:, :, 17:].mean((1, 2))
    assert (left > 0.3).all() and (right < 0.05).all()
    assert net.training and all(m.training for m in net.modules())
    assert not net[1].weight.requires_grad and net[3].weight.requires_grad
    assert net[3].weight.grad is marker and net[1].weight.grad is None
    assert not net[3]._forward_hooks and not net[3]._backward_hooks  # hooks removed
    # an earlier layer can be named
    assert grad_cam(net, crops[:1], layer=net[1]).shape == (1, 32, 32)


def test_grad_cam_refuses_what_it_cannot_explain() -> None:
    with pytest.raises(CamError, match="Conv2d"):
        grad_cam(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1), nn.Flatten(0)), torch.rand(2, 3, 8, 8))
    clip_net = _left_net()
    clip_net.takes_clips = True
    with pytest.raises(CamError, match="frame networks"):
        grad_cam(clip_net, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="not a module"):
        grad_cam(_left_net(), torch.rand(2, 3, 8, 8), layer=nn.Conv2d(3, 3, 1))
    assert issubclass(CamError, ValueError)
