"""Draw a scored file's results on its frames: face boxes coloured by score, the verdict, a
score-over-time strip and, optionally, Grad-CAM heat maps.

:func:`annotate_frame` draws on one RGB frame; :func:`annotate_video` decodes every frame of a
scored video exactly (:func:`dflab.video.iter_frames`, display rotation applied), draws the
tracks' boxes (linearly interpolated between the sampled frames) and writes an H.264
``yuv420p`` MP4 with its index at the front (``+faststart``), which browsers play;
:func:`annotate_image` writes an annotated PNG of a scored image.

Colours run from green (real, score 0) through yellow to red (fake, score 1), see
:func:`score_colour`. Line widths and text sizes scale with the frame, so the drawing stays
readable from 240p to 1080p and beyond.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dflab.faces.crop import square_box
from dflab.predict.results import FileResult, TrackResult
from dflab.video import iter_frames, probe, write_video

log = logging.getLogger(__name__)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
BANNER_COLOURS: dict[str | None, tuple[int, int, int]] = {
    "fake": (200, 30, 30),
    "real": (30, 140, 50),
    None: (110, 110, 110),
}
"""RGB band colour by verdict (``None``: not scored; any other verdict gets the grey too)."""

STRIP_HEIGHT = 0.12
"""Height of the score-over-time strip as a share of the frame height."""

CAM_ALPHA = 0.4
"""Weight of the Grad-CAM colour map blended over the face region."""

DEFAULT_FPS = 25.0
"""Frame rate of the annotated video when the result and the file give none."""


def score_colour(score: float) -> tuple[int, int, int]:
    """RGB colour of a fake probability: a linear ramp green -> yellow -> red.

    ``score`` is clipped to ``[0, 1]``; red rises linearly from 0 to 255 over ``[0, 0.5]`` and
    green falls linearly from 255 to 0 over ``[0.5, 1]`` (blue stays 0): 0 is ``(0, 255, 0)``,
    0.5 ``(255, 255, 0)``, 1 ``(255, 0, 0)``. A non-finite score is grey ``(128, 128, 128)``.

    Args:
        score: calibrated fake probability.

    Returns:
        ``(r, g, b)`` ints in ``[0, 255]``.
    """
    if not math.isfinite(score):
        return (128, 128, 128)
    s = min(max(float(score), 0.0), 1.0)
    return (round(255 * min(1.0, 2 * s)), round(255 * min(1.0, 2 * (1 - s))), 0)


@dataclass(frozen=True)
class _Style:
    """Line and text sizes for one frame size."""

    line: int  # box line thickness, pixels
    font: float  # cv2 font scale
    text: int  # text stroke thickness, pixels

    @classmethod
    def of(cls, height: int, width: int) -> _Style:
        base = min(height, width)
        font = max(0.35, base / 600)  # 240p: 0.4 (~9 px capitals), 1080p: 1.8 (~40 px)
        return cls(line=max(2, round(base / 200)), font=font, text=max(1, round(font * 1.6)))


def annotate_frame(
    rgb: np.ndarray,
    faces: Sequence[tuple[int, np.ndarray | Sequence[float], float]],
    *,
    verdict: str | None,
    file_score: float | None,
    threshold: float,
    history: np.ndarray | None = None,
    now: int | None = None,
    cams: Mapping[int, np.ndarray] | None = None,
    margin: float = 1.3,
) -> np.ndarray:
    """Draw faces, verdict, score timeline and Grad-CAM heat on a copy of one frame.

    Drawn in this order: the heat maps, the face boxes with their labels (``#<track> 0.87``
    above the box, or inside its top when there is no room, always inside the frame and
    below the banner), the verdict banner across the top (``FAKE 0.91 (threshold 0.42)`` on
    red, ``REAL ...`` on green, ``NOT SCORED`` on grey when ``verdict`` is ``None``) and the
    score strip at the bottom.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB frame; not modified.
        faces: ``(track id, box, score)`` per face: ``box`` is ``[x1, y1, x2, y2]`` in float
            pixels of ``rgb``, ``score`` the calibrated fake probability of this frame; each box
            is drawn in :func:`score_colour` of its score. Boxes with non-finite coordinates are
            skipped.
        verdict: ``fake``, ``real`` or ``None`` (not scored).
        file_score: the file's calibrated fake probability (``None`` when not scored).
        threshold: the decision threshold shown in the banner and as the strip's dashed line.
        history: ``(N,)`` float file-level score per frame, NaN where unknown; when given, a
            strip of :data:`STRIP_HEIGHT` of the frame height is drawn at the bottom over a
            darkened background: the curve (score 0 at the strip's bottom, 1 at its top), a
            dashed line at ``threshold`` and a vertical cursor at ``now``.
        now: index into ``history`` of this frame (no cursor when ``None`` or out of range).
        cams: Grad-CAM heat by track id: ``(S, S)`` float in ``[0, 1]`` over the square crop
            region :func:`dflab.faces.crop.square_box` ``(box, margin)`` of that track's box
            (the part inside the frame is used); a JET colour map is blended over that region
            with weight :data:`CAM_ALPHA`. Tracks not in ``faces`` are ignored.
        margin: side of the crop region relative to the longer side of the box (the margin the
            heat maps were computed with).

    Returns:
        The annotated ``(H, W, 3)`` uint8 RGB frame (a new array).

    Raises:
        ValueError: ``rgb`` is not an ``(H, W, 3)`` uint8 array, or a heat map is not 2-D.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
    out = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    h, w = out.shape[:2]
    style = _Style.of(h, w)
    boxes = [(int(track), np.asarray(box, np.float64).reshape(4), float(score)) for track, box, score in faces]
    boxes = [b for b in boxes if np.isfinite(b[1]).all()]
    if cams:
        for track, box, _ in boxes:
            if track in cams:
                _overlay_cam(out, box, cams[track], margin)
    banner_text = _banner_text(verdict, file_score, threshold)
    banner_font = _fit_font(banner_text, style, w)
    (_, th), base = cv2.getTextSize(banner_text, _FONT, banner_font, style.text)
    pad = max(2, round(th * 0.4))
    banner_h = min(h, th + base + 2 * pad)
    for track, box, score in boxes:
        _draw_box(out, track, box, score, style, top=banner_h)
    cv2.rectangle(out, (0, 0), (w - 1, banner_h - 1), BANNER_COLOURS.get(verdict, BANNER_COLOURS[None]), -1)
    cv2.putText(out, banner_text, (pad, pad + th), _FONT, banner_font, (255, 255, 255), style.text, cv2.LINE_AA)
    if history is not None:
        _draw_strip(out, np.asarray(history, np.float64).ravel(), now, threshold, style)
    return out


def _banner_text(verdict: str | None, file_score: float | None, threshold: float) -> str:
    if verdict is None:
        return "NOT SCORED"
    score = "" if file_score is None else f" {file_score:.3f}"
    return f"{verdict.upper()}{score} (threshold {threshold:.3f})"


def _fit_font(text: str, style: _Style, width: int) -> float:
    """The style's font scale, shrunk so that ``text`` fits ``width`` (with a little padding)."""
    (tw, _), _ = cv2.getTextSize(text, _FONT, style.font, style.text)
    room = width - 8
    return style.font if tw <= room else max(0.2, style.font * room / max(tw, 1))


def _draw_box(out: np.ndarray, track: int, box: np.ndarray, score: float, style: _Style, top: int) -> None:
    """Draw one face box and its label (kept inside the frame, below ``top``)."""
    h, w = out.shape[:2]
    colour = score_colour(score)
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(out, (x1, y1), (x2, y2), colour, style.line, cv2.LINE_AA)
    label = f"#{track} {score:.2f}" if math.isfinite(score) else f"#{track}"
    (tw, th), base = cv2.getTextSize(label, _FONT, style.font, style.text)
    pad = max(1, round(th * 0.25))
    lw, lh = tw + 2 * pad, th + base + 2 * pad
    lx = min(max(x1 - style.line // 2, 0), max(w - lw, 0))
    ly = y1 - style.line // 2 - lh  # above the box
    if ly < top:
        ly = y1 + (style.line + 1) // 2  # inside the box, under its top edge
    ly = min(max(ly, top), max(h - lh, 0))
    cv2.rectangle(out, (lx, ly), (lx + lw - 1, ly + lh - 1), colour, -1)
    cv2.putText(out, label, (lx + pad, ly + pad + th), _FONT, style.font, (0, 0, 0), style.text, cv2.LINE_AA)


def _crop_region(box: np.ndarray, margin: float) -> tuple[int, int, int]:
    """``x1, y1, side`` of the square crop region, rounded as :func:`~dflab.faces.crop.crop_face` does."""
    sq = square_box(box, margin)
    return round(float(sq[0])), round(float(sq[1])), max(1, round(float(sq[2] - sq[0])))


def _overlay_cam(out: np.ndarray, box: np.ndarray, heat: np.ndarray, margin: float) -> None:
    """Blend the JET colour map of ``heat`` over the crop region of ``box`` (in place)."""
    heat = np.asarray(heat, np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"a Grad-CAM heat map must be (S, S), got {heat.shape}")
    h, w = out.shape[:2]
    x1, y1, side = _crop_region(box, margin)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x1 + side, w), min(y1 + side, h)
    if cx2 <= cx1 or cy2 <= cy1:
        return
    heat8 = np.round(np.clip(np.nan_to_num(heat), 0.0, 1.0) * 255).astype(np.uint8)
    heat8 = cv2.resize(heat8, (side, side), interpolation=cv2.INTER_LINEAR)
    colour = cv2.cvtColor(cv2.applyColorMap(heat8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    colour = np.ascontiguousarray(colour[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1])
    region = np.ascontiguousarray(out[cy1:cy2, cx1:cx2])
    out[cy1:cy2, cx1:cx2] = cv2.addWeighted(region, 1 - CAM_ALPHA, colour, CAM_ALPHA, 0.0)


def _draw_strip(out: np.ndarray, history: np.ndarray, now: int | None, threshold: float, style: _Style) -> None:
    """Draw the score-over-time strip over the bottom of ``out`` (in place)."""
    h, w = out.shape[:2]
    strip_h = min(h, max(8, round(STRIP_HEIGHT * h)))
    y0 = h - strip_h
    out[y0:] = cv2.convertScaleAbs(np.ascontiguousarray(out[y0:]), alpha=0.35)  # black at 65 % opacity
    n = len(history)
    if n == 0:
        return
    pad = max(1, strip_h // 8)
    top, bottom = y0 + pad, h - 1 - pad

    def y_of(s: np.ndarray | float) -> np.ndarray:
        return np.round(bottom - np.clip(s, 0.0, 1.0) * (bottom - top)).astype(np.int32)

    def x_of(i: np.ndarray | int) -> np.ndarray:
        return np.round(np.asarray(i, np.float64) * (w - 1) / max(n - 1, 1)).astype(np.int32)

    thin = max(1, style.line // 2)
    ty = int(y_of(float(np.clip(threshold, 0.0, 1.0))))
    dash = max(3, w // 60)
    for x in range(0, w, 2 * dash):
        cv2.line(out, (x, ty), (min(x + dash, w) - 1, ty), (200, 200, 200), 1)
    finite = np.isfinite(history)
    xs, ys = x_of(np.arange(n)), y_of(np.where(finite, history, 0.0))
    # one polyline per run of known scores
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        points = np.stack([xs[start:stop], ys[start:stop]], 1).reshape(-1, 1, 2)
        if stop - start == 1:
            cv2.circle(out, (int(xs[start]), int(ys[start])), thin, (255, 255, 255), -1)
        else:
            cv2.polylines(out, [points], False, (255, 255, 255), thin, cv2.LINE_AA)
    if now is not None and 0 <= now < n:
        x = int(x_of(now))
        cv2.line(out, (x, y0), (x, h - 1), (0, 200, 255), thin)


@dataclass(frozen=True)
class TrackTimeline:
    """A face track's boxes and scores at every frame between its first and last sampled frame.

    Attributes:
        track: track id.
        frames: ``(K,)`` int64 sampled display indices, ascending, unique.
        boxes: ``(K, 4)`` float64 ``x1, y1, x2, y2`` boxes at those frames, displayed pixels.
        scores: ``(K,)`` float64 calibrated fake probabilities at those frames.
    """

    track: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, track: TrackResult) -> TrackTimeline:
        """The timeline of ``track``'s frames: entries with a non-finite box are dropped, and
        several entries for one frame (overlapping clips) are averaged."""
        by_frame: dict[int, list[tuple[list[float], float]]] = {}
        for fs in track.frames:
            if len(fs.box) == 4 and all(math.isfinite(v) for v in fs.box):
                by_frame.setdefault(int(fs.frame), []).append((list(fs.box), float(fs.score)))
        frames = np.array(sorted(by_frame), np.int64)
        boxes = np.array([np.mean([b for b, _ in by_frame[f]], 0) for f in frames], np.float64).reshape(-1, 4)
        scores = np.array([np.mean([s for _, s in by_frame[f]]) for f in frames], np.float64)
        return cls(int(track.track), frames, boxes, scores)

    def at(self, frame: int) -> tuple[np.ndarray, float, int] | None:
        """The track at display index ``frame``.

        Returns:
            ``(box, score, nearest)``: the box linearly interpolated between the sampled frames
            around ``frame``, the score of the nearest sampled frame (the earlier one on a tie)
            and that frame's index; ``None`` outside ``[first, last]`` sampled frame.
        """
        if not len(self.frames) or frame < self.frames[0] or frame > self.frames[-1]:
            return None
        j = int(np.searchsorted(self.frames, frame, side="right")) - 1
        fj = int(self.frames[j])
        if fj == frame:
            return self.boxes[j].copy(), float(self.scores[j]), fj
        fk = int(self.frames[j + 1])
        t = (frame - fj) / (fk - fj)
        box = (1 - t) * self.boxes[j] + t * self.boxes[j + 1]
        near = j if frame - fj <= fk - frame else j + 1
        return box, float(self.scores[near]), int(self.frames[near])


def annotate_video(
    result: FileResult,
    out_path: str | Path,
    threshold: float,
    *,
    margin: float = 1.3,
    cams: Mapping[tuple[int, int], np.ndarray] | None = None,
    access_points: Sequence[int] | np.ndarray | None = None,
    threads: int = 2,
) -> Path:
    """Write an annotated copy of a scored video: every frame, boxes, verdict and score strip.

    Every frame of ``result.path`` is decoded exactly, display rotation applied, with
    :func:`dflab.video.iter_frames`; frames that do not decode (a damaged file) are left out,
    so the output then has fewer frames. Each track is drawn from its first to its last sampled
    frame (see :class:`TrackTimeline`: box interpolated linearly, score of the nearest sampled
    frame). The strip shows, per frame, the highest score of the tracks drawn there (NaN where
    none): a visual aid, not the file score's combination rule. Frames are padded (black, right
    and bottom) to even sides for 4:2:0, never scaled. The MP4 is H.264 ``yuv420p`` at
    ``result.fps`` (else the file's, else :data:`DEFAULT_FPS`), remuxed with ``+faststart``
    (the index first, so browsers can start playing before the download ends); the file only
    appears under ``out_path`` once complete.

    Args:
        result: the scored video (``kind == "video"``); its ``path`` is read.
        out_path: output ``.mp4``; parent folders are created, an existing file is replaced.
        threshold: decision threshold shown in the banner and the strip.
        margin: crop margin the heat maps were computed with (see :func:`annotate_frame`).
        cams: Grad-CAM heat ``(S, S)`` in ``[0, 1]`` by ``(track, sampled frame)``; a frame
            shows the heat of its track's nearest sampled frame over its interpolated box.
        access_points: verified access points of the video (faster decoding; ``None`` decodes
            sequentially from the start).
        threads: decoder threads.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``result.kind`` is not ``video``, or no frame decodes.
        VideoDecodeError: the file cannot be opened.
    """
    if result.kind != "video":
        raise ValueError(f"{result.path}: annotate_video draws on videos, this is a {result.kind!r}")
    out_path = Path(out_path)
    info = probe(result.path)
    n = info.num_frames
    timelines = [TrackTimeline.of(t) for t in result.tracks]
    placed: list[list[tuple[int, np.ndarray, float, int]]] = [[] for _ in range(n)]
    history = np.full(n, np.nan)
    for tl in timelines:
        if not len(tl.frames):
            continue
        for f in range(max(int(tl.frames[0]), 0), min(int(tl.frames[-1]) + 1, n)):
            hit = tl.at(f)
            if hit is not None:
                placed[f].append((tl.track, hit[0], hit[1], hit[2]))
                history[f] = np.fmax(history[f], hit[1])
    fps = next((r for r in (result.fps, info.fps) if r and r >= 1), DEFAULT_FPS)

    written = [0]

    def frames() -> Iterator[np.ndarray]:
        for f, rgb in iter_frames(result.path, range(n), access_points, threads=threads):
            written[0] += 1
            faces = [(track, box, score) for track, box, score, _ in placed[f]]
            frame_cams = {track: cams[track, near] for track, _, _, near in placed[f]
                          if cams and (track, near) in cams}
            img = annotate_frame(rgb, faces, verdict=result.verdict, file_score=result.score,
                                 threshold=threshold, history=history, now=f, cams=frame_cams, margin=margin)
            yield _pad_even(img)

    try:
        write_video(out_path, frames(), fps=fps, codec="libx264", pix_fmt="yuv420p")
    except ValueError as err:
        if written[0]:
            raise
        raise ValueError(f"{result.path}: no frame could be decoded to annotate") from err
    _faststart(out_path)
    return out_path


def _pad_even(img: np.ndarray) -> np.ndarray:
    """``img`` padded with black on the right/bottom to even width and height."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return cv2.copyMakeBorder(img, 0, h % 2, 0, w % 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _faststart(path: Path) -> None:
    """Remux the MP4 ``path`` (no re-encoding) with its ``moov`` index before the media data.

    :func:`~dflab.video.write_video` passes options to the encoder only, and ``movflags`` is a
    muxer option. If the remux fails, ``path`` is left as written (it plays, only not
    progressively) and a warning is logged.
    """
    import av

    tmp = path.with_name(f".{path.stem}.faststart{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(tmp), mode="w", options={"movflags": "+faststart"}) as dst:
            stream = src.streams.video[0]
            copy = dst.add_stream_from_template(stream)
            for packet in src.demux(stream):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packet.stream = copy
                dst.mux(packet)
        tmp.replace(path)
    except (av.FFmpegError, OSError) as err:
        log.warning("%s: could not move the MP4 index to the front (%s); kept as written", path, err)
    finally:
        tmp.unlink(missing_ok=True)


def annotate_image(
    result: FileResult,
    image_rgb: np.ndarray,
    out_path: str | Path,
    threshold: float,
    *,
    margin: float = 1.3,
    cams: Mapping[tuple[int, int], np.ndarray] | None = None,
) -> Path:
    """Write an annotated PNG of a scored image: its faces (frame 0 of each track) and verdict.

    Args:
        result: the scored file; each track's entries at frame 0 are drawn (averaged if
            several), tracks without one are not.
        image_rgb: ``(H, W, 3)`` uint8 RGB image as scored (boxes are in its pixels).
        out_path: output PNG; parent folders are created. Written under a temporary name in
            the same folder and renamed, so no half file ever appears under ``out_path``.
        threshold: decision threshold shown in the banner.
        margin: crop margin the heat maps were computed with.
        cams: Grad-CAM heat ``(S, S)`` in ``[0, 1]`` by ``(track, 0)``.

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``image_rgb`` is not an ``(H, W, 3)`` uint8 array.
        OSError: the PNG cannot be written.
    """
    faces: list[tuple[int, np.ndarray, float]] = []
    frame_cams: dict[int, np.ndarray] = {}
    for tl in (TrackTimeline.of(t) for t in result.tracks):
        hit = tl.at(0)
        if hit is None:
            continue
        faces.append((tl.track, hit[0], hit[1]))
        if cams and (tl.track, 0) in cams:
            frame_cams[tl.track] = cams[tl.track, 0]
    img = annotate_frame(image_rgb, faces, verdict=result.verdict, file_score=result.score,
                         threshold=threshold, cams=frame_cams, margin=margin)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.part.png")
    try:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{out_path}: could not write the PNG")
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
