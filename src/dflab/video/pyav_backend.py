"""The PyAV (FFmpeg) decoder behind :class:`~dflab.video.backend.VideoStream`.

Decoding runs on one thread. Frames that are not wanted and that no other frame references
(FFmpeg's ``skip_frame = NONREF``: most B-frames of H.264/HEVC) are not decoded at all, which
halves the cost of decoding forward without changing a single pixel of the frames that are
(references are always decoded). Only wanted frames are converted to RGB, honouring the
stream's colour space and range, with the display rotation applied.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import chain
from typing import Any

import numpy as np

from dflab.video.info import VideoInfo

SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})
"""Codecs whose non-reference frames are skipped when not wanted (checked frame-exact)."""


class PyAVFrame:
    """A decoded PyAV frame (see :class:`~dflab.video.backend.DecodedFrame`)."""

    __slots__ = ("_frame", "_rotation", "index")

    def __init__(self, index: int, frame, rotation: int) -> None:
        self.index, self._frame, self._rotation = index, frame, rotation

    def rgb(self) -> np.ndarray:
        frame = self._frame
        rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None, threads=1)
        if self._rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, self._rotation // 90))
        return rgb

    def planes(self) -> tuple[np.ndarray, int]:
        frame = self._frame
        try:
            data = frame.to_ndarray()
            bits = max(c.bits for c in frame.format.components)
        except (ValueError, TypeError, AttributeError):  # a format numpy cannot take as is
            return self.rgb(), 255
        return data, (1 << bits) - 1


class PyAVStream:
    """Decode one video with PyAV from its start or from a seek point.

    Args:
        info: the probed video.
        threads: decoder threads (1 inside DataLoader workers).
    """

    def __init__(self, info: VideoInfo, threads: int = 1) -> None:
        self.info, self.threads = info, max(1, int(threads))
        self.errors: list[str] = []
        self._container: Any = None
        self._packets: Iterator = iter(())
        self._skip_ok = info.codec in SKIP_NONREF_CODECS

    def _open(self) -> None:
        import av

        self.close()
        self._container = container = av.open(self.info.path)
        stream = container.streams.video[0]
        if self.threads > 1:
            stream.thread_type, stream.thread_count = "SLICE", self.threads
        else:
            stream.thread_type = "NONE"
        self._stream = stream
        self._packets = container.demux(stream)
        self._skipping = False

    def start_at(self, frame: int) -> bool:
        import av

        if frame == 0 or self._container is None:
            self._open()
            if frame == 0:
                return True
        info = self.info
        want_pts, want_dts = int(info.pts[frame]), int(info.dts[frame])
        for ts in dict.fromkeys((want_dts, want_pts)):
            try:
                self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            packets = self._container.demux(self._stream)
            first = next((p for p in packets if p.size and (p.pts is not None or p.dts is not None)), None)
            if first is not None and (first.pts, first.dts) == (want_pts, want_dts):
                self._packets = chain([first], packets)
                return True
        return False

    def _index(self, pts: int | None, previous: int) -> int:
        return previous + 1 if pts is None else self.info.index_of_pts(pts)

    def decode(self, wanted: Collection[int], stop: int) -> Iterator[PyAVFrame]:
        import av

        wanted = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
        codec = self._stream.codec_context
        packet_index = last = -1
        for packet in self._packets:
            if packet.size and (packet.pts is not None or packet.dts is not None):
                packet_index = self._index(packet.pts if packet.pts is not None else packet.dts, packet_index)
                skip = self._skip_ok and packet_index not in wanted
                if skip != self._skipping:
                    codec.skip_frame = "NONREF" if skip else "DEFAULT"
                    self._skipping = skip
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                self.errors.append(f"frame {packet_index}: {type(err).__name__}: {err}")
                continue
            for frame in frames:
                last = self._index(frame.pts, last)
                if last in wanted:
                    yield PyAVFrame(last, frame, self.info.rotation)
                if last >= stop:
                    return

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
