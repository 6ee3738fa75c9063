"""What a video file holds: frame count, rate, size, rotation and where seeking can start.

Frame ``i`` of a video is the ``i``-th frame in presentation order (the rank of its timestamp
among the stream's packets), shown as playback shows it: the container's display rotation is
applied. :func:`probe` reads the packet table once (demuxing only, no decoding beyond the first
frame) and caches the result per process, keyed by path, size and modification time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
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
    return _probe(os.path.abspath(path), st.st_size, st.st_mtime_ns, path)


@lru_cache(maxsize=4096)
def _probe(absolute: str, size: int, mtime_ns: int, path: str) -> VideoInfo:
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
        try:
            for packet in container.demux(stream):
                if (packet.pts is None and packet.dts is None) or packet.size == 0 or packet.is_discard:
                    continue
                pts.append(packet.pts if packet.pts is not None else packet.dts)
                dts.append(packet.dts if packet.dts is not None else pts[-1])
                flagged.append(packet.is_keyframe)
        except av.FFmpegError:
            pass  # a damaged tail: the packets read so far are the video
        if not pts:
            raise VideoDecodeError(f"{path}: video has no frames", path)
        seek_points = {int(e.timestamp) for e in stream.index_entries or () if e.is_keyframe}
        rotation, first = _first_frame(absolute, path)
        codec, pix_fmt = stream.codec_context.name, str(first.format.name)
        time_base = float(stream.time_base or 0.0)
        rate = stream.average_rate or stream.guessed_rate
    order = np.argsort(np.asarray(pts, np.int64), kind="stable")
    pts_sorted = np.asarray(pts, np.int64)[order]
    dts_sorted = np.asarray(dts, np.int64)[order]
    # Seek-index entries carry the packet's decoding time (MP4) or presentation time (MKV):
    # an entry names the packet whose dts it equals, else the one whose pts it equals.
    by_dts = np.isin(seek_points_array := np.asarray(sorted(seek_points), np.int64), dts_sorted)
    keyed = (np.asarray(flagged, bool)[order] | np.isin(dts_sorted, seek_points_array[by_dts])
             | np.isin(pts_sorted, seek_points_array[~by_dts]))
    keyframes = np.flatnonzero(keyed).astype(np.int64)
    n = len(pts_sorted)
    fps = float(rate) if rate else (n - 1) / max(1e-9, (pts_sorted[-1] - pts_sorted[0]) * time_base)
    h, w = int(first.height), int(first.width)
    if rotation in (90, 270):
        h, w = w, h
    return VideoInfo(path, n, fps, h, w, rotation, codec, pix_fmt, pts_sorted, dts_sorted, time_base,
                     keyframes)


def _first_frame(absolute: str, path: str):
    """The first decodable frame and the display rotation it carries."""
    import av

    try:
        with av.open(absolute) as again:
            s = again.streams.video[0]
            s.thread_type = "NONE"
            for frame in again.decode(s):
                return display_rotation(frame), frame
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot decode the first frame ({type(err).__name__}: {err})",
                               path) from err
    raise VideoDecodeError(f"{path}: cannot decode the first frame (no frame came out)", path)


def display_rotation(frame) -> int:
    """The frame's display rotation, counter-clockwise degrees rounded to 0, 90, 180 or 270."""
    try:
        angle = float(frame.rotation or 0.0)
    except (AttributeError, TypeError, ValueError):
        return 0
    return round(angle / 90.0) % 4 * 90
