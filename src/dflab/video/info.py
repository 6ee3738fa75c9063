"""What a video file holds: frame count, rate, size, rotation and where seeking can start.

Frame ``i`` of a video is the ``i``-th frame in presentation order, shown as playback shows
it: the container's display rotation is applied. Where the timestamps can be trusted, that
order is the rank of a frame's timestamp among the stream's packets, so a frame can be named
before it is decoded (and seeked to). Where they cannot (packets without timestamps, as in raw
``.h264`` streams; repeated timestamps; decoding times that run backwards, as in joined TS
segments; or frames that come out of the decoder out of timestamp order, as H.264 with B-frames
in AVI does), :attr:`VideoInfo.ordered` is false and frame ``i`` is simply the ``i``-th frame a
sequential decode puts out: such videos are always read from the start.

:func:`probe` reads the packet table once (demuxing only, no decoding beyond the first frame)
and caches the result per process, keyed by path, size and modification time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


class VideoDecodeError(RuntimeError):
    """A video could not be opened or decoded; the message names the file.

    Attributes:
        path: the video file.
        frames: the frame indices that could not be decoded (empty when the whole file failed).
    """

    def __init__(self, message: str, path: str = "", frames: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.path, self.frames = path, tuple(frames)


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """Facts about the first video stream of a file.

    Attributes:
        path: the file.
        num_frames: frames in presentation order (packets with a timestamp).
        fps: average frame rate (frames per second).
        height: frame height as displayed (after ``rotation``), pixels.
        width: frame width as displayed, pixels.
        rotation: display rotation in degrees counter-clockwise (0, 90, 180 or 270), applied
            to every decoded frame.
        codec: decoder name (``h264``, ``hevc``, ...).
        pix_fmt: decoded pixel format (``yuv420p``, ``yuv444p``, ...).
        pts: ``(num_frames,)`` int64 presentation timestamps, ascending, in ``time_base``.
        dts: ``(num_frames,)`` int64 decoding timestamp of each frame's packet
            (``pts`` where the container has none).
        time_base: seconds per timestamp unit.
        keyframes: display indices of the frames the container offers as seek points (its
            seek index and packet key flags); whether decoding from one really reproduces
            the frames is checked by :func:`dflab.video.access.check_decode`.
        ordered: the timestamps give the presentation order (see the module docstring); when
            false, frames are numbered in decoder output order and never seeked to.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    rotation: int
    codec: str
    pix_fmt: str
    pts: np.ndarray
    dts: np.ndarray
    time_base: float
    keyframes: np.ndarray
    ordered: bool = True

    @property
    def timestamps(self) -> np.ndarray:
        """``(num_frames,)`` float64 presentation time of every frame in seconds from the first."""
        return (self.pts - self.pts[0]) * self.time_base

    def index_of_pts(self, pts: int) -> int:
        """Display index of the frame with timestamp ``pts`` (the nearest one at or before it)."""
        return max(0, int(np.searchsorted(self.pts, pts, side="right")) - 1)


def probe(path: str | Path) -> VideoInfo:
    """Read a video's packet table and first frame.

    Args:
        path: video file.

    Returns:
        The stream's :class:`VideoInfo` (cached per process while the file is unchanged).

    Raises:
        VideoDecodeError: the file is missing, empty, not a video, holds no frames or its
            first frame cannot be decoded (the message names the file).
    """
    path = str(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise VideoDecodeError(f"{path}: no such file", path) from err
    if st.st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)", path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    info = _CACHE.get(key)
    if info is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        info = _CACHE[key] = _probe(key[0], path)
    return info if info.path == path else replace(info, path=path)


_CACHE: dict[tuple[str, int, int], VideoInfo] = {}
_CACHE_SIZE = 4096


def mark_unordered(info: VideoInfo) -> VideoInfo:
    """Record that ``info``'s frames came out of the decoder out of timestamp order; returns
    the corrected info (also what :func:`probe` returns from now on in this process)."""
    unordered = replace(info, ordered=False, keyframes=np.zeros(0, np.int64))
    try:
        st = os.stat(info.path)
    except OSError:
        return unordered
    key = (os.path.abspath(info.path), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        _CACHE[key] = replace(unordered, path=_CACHE[key].path)
    return unordered


def _probe(absolute: str, path: str) -> VideoInfo:
    import av

    try:
        container = av.open(absolute)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"{path}: cannot open video ({type(err).__name__}: {err})", path) from err
    with container:
        if not container.streams.video:
            raise VideoDecodeError(f"{path}: the file holds no video stream", path)
        stream = container.streams.video[0]
        pts, dts, flagged = [], [], []
        stamped = True
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None and packet.dts is None:  # raw streams: no timestamps
                    stamped = False
                pts.append(packet.pts if packet.pts is not None else packet.dts)
                dts.append(packet.dts)  # None where the container gives none (MKV B-frames)
                flagged.append(packet.is_keyframe)
        except av.FFmpegError:
            pass  # a damaged tail: the packets read so far are the video
        if not pts:
            raise VideoDecodeError(f"{path}: video has no frames", path)
        seek_points = sorted({int(e.timestamp) for e in stream.index_entries or () if e.is_keyframe})
        index_by_dts = container.format.name.startswith(("mov", "mp4"))  # MP4's index holds dts
        rotation, first, early, reorders = _first_frames(absolute, path)
        codec, pix_fmt = stream.codec_context.name, str(first.format.name)
        time_base = float(stream.time_base or 0.0)
        rate = stream.average_rate or stream.guessed_rate
    n = len(pts)
    ordered = (stamped and _monotonic(dts) and len(set(pts)) == n and _monotonic(early, strict=True)
               # A codec that reorders frames, with timestamps that never go back in decoding
               # order: they count packets in decoding order (H.264 with B-frames in AVI).
               and not (reorders and _monotonic(pts, strict=True)))
    if ordered:
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        pts_sorted = np.asarray(pts, np.int64)[order]
        dts_sorted = np.asarray([d if d is not None else p for d, p in zip(dts, pts, strict=True)],
                                np.int64)[order]
        keyed = np.asarray(flagged, bool)[order]
        # Seek-index entries name packets by decoding time in MP4, by presentation time
        # elsewhere (MKV cues); entries already on a flagged packet add nothing.
        marked = set(dts_sorted[keyed].tolist()) | set(pts_sorted[keyed].tolist())
        extra = np.asarray([t for t in seek_points if t not in marked], np.int64)
        keyed |= np.isin(dts_sorted if index_by_dts else pts_sorted, extra)
        keyframes = np.flatnonzero(keyed).astype(np.int64)
    else:  # frames are numbered in decoder output order; nothing is seeked to
        pts_sorted = dts_sorted = np.arange(n, dtype=np.int64)
        keyframes = np.zeros(0, np.int64)
    span = (pts_sorted[-1] - pts_sorted[0]) * time_base
    fps = float(rate) if rate else ((n - 1) / span if ordered and span > 0 else 0.0)
    h, w = int(first.height), int(first.width)
    if rotation in (90, 270):
        h, w = w, h
    return VideoInfo(path, n, fps, h, w, rotation, codec, pix_fmt, pts_sorted, dts_sorted, time_base,
                     keyframes, ordered)


def _monotonic(values: list, strict: bool = False) -> bool:
    """The known values never go back (decoding times of joined TS segments restart); with
    ``strict``, they always go forward."""
    steps = np.diff(np.asarray([v for v in values if v is not None], np.int64))
    return bool(np.all(steps > 0) if strict else np.all(steps >= 0))


def _first_frames(absolute: str, path: str, count: int = 6, patience: int = 250):
    """The display rotation and first frame, the timestamps of the first ``count`` frames out
    of the decoder, and whether the decoder reorders frames (B-frames). Packets that fail to
    decode are passed over (for at most ``patience`` packets)."""
    import av

    first, early, error = None, [], None
    with av.open(absolute) as again:
        s = again.streams.video[0]
        s.thread_type = "NONE"
        for k, packet in enumerate(again.demux(s)):
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                error = error or err
                frames = []
            for frame in frames:
                first = first or frame
                early.append(frame.pts)
            if len(early) >= count or (first is None and k >= patience):
                break
        reorders = bool(s.codec_context.has_b_frames)
    if first is None:
        detail = f"{type(error).__name__}: {error}" if error else "no frame came out"
        raise VideoDecodeError(f"{path}: cannot decode the first frame ({detail})", path)
    return display_rotation(first), first, early[:count], reorders


def display_rotation(frame) -> int:
    """The frame's display rotation, counter-clockwise degrees rounded to 0, 90, 180 or 270."""
    try:
        angle = float(frame.rotation or 0.0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return round(angle / 90.0) % 4 * 90
