"""The PyAV (FFmpeg) decoder behind :class:`~dflab.video.backend.VideoStream`.

Only wanted frames are converted to RGB, honouring the stream's colour range, with the display
rotation applied (and scaled to the first frame's size should the stream change resolution).
With ``skip=True`` frames that are not wanted and that no other frame references (FFmpeg's
``skip_frame = NONREF``: most B-frames of H.264/HEVC) are not decoded at all, which halves the
cost of decoding forward without changing a pixel of the frames that are, in a stream that
decodes without errors (references are always decoded). In a damaged stream that is no longer
guaranteed, so callers decode such videos with ``skip=False``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

import numpy as np

from dflab.video.info import VideoInfo

SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})
"""Codecs whose non-reference frames are skipped when not wanted (checked frame-exact)."""


_ERROR_LEVEL = 16  # FFmpeg's AV_LOG_ERROR
_messages: list | None = None  # FFmpeg's log while capture_decoder_errors() is active


@contextmanager
def capture_decoder_errors() -> Iterator[None]:
    """While active, FFmpeg's error messages (a reference frame missing, an undecodable slice,
    a demuxer's damaged packet: damage FFmpeg conceals without failing the decode) are
    recorded in the :attr:`PyAVStream.errors` of the stream that caused them.

    PyAV's log level and repeat folding are restored afterwards.
    """
    import av.logging

    global _messages
    level, repeated = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(_ERROR_LEVEL if level is None else max(level, _ERROR_LEVEL))
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=False) as logs:
            _messages = logs
            yield
    finally:
        _messages = None
        av.logging.set_skip_repeated(repeated)
        av.logging.set_level(level)


class UnorderedTimestamps(RuntimeError):
    """Frames came out of the decoder out of timestamp order: the video must be numbered by
    decoder output order (:func:`dflab.video.info.mark_unordered`)."""


class PyAVFrame:
    """A decoded PyAV frame (see :class:`~dflab.video.backend.DecodedFrame`)."""

    __slots__ = ("_frame", "_info", "index")

    def __init__(self, index: int, frame, info: VideoInfo) -> None:
        self.index, self._frame, self._info = index, frame, info

    def rgb(self) -> np.ndarray:
        frame, info = self._frame, self._info
        quarter = info.rotation // 90
        size = (info.height, info.width) if quarter % 2 else (info.width, info.height)
        resize = {} if (frame.width, frame.height) == size else {"width": size[0], "height": size[1]}
        rgb = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None, threads=1, **resize)
        if quarter:
            rgb = np.ascontiguousarray(np.rot90(rgb, quarter))
        return rgb

    def planes(self) -> tuple[np.ndarray, int]:
        frame = self._frame
        try:
            data = frame.to_ndarray()
            bits = max(c.bits for c in frame.format.components)
        except (ValueError, TypeError, AttributeError):  # a format numpy cannot take as is
            return self.rgb(), 255
        if not isinstance(data, np.ndarray):  # palettised formats give (image, palette)
            return self.rgb(), 255
        return data, (1 << bits) - 1


class PyAVStream:
    """Decode one video with PyAV from its start or from a seek point.

    Args:
        info: the probed video.
        threads: decoder threads (1 inside DataLoader workers).
        skip: skip decoding unwanted non-reference frames (only for streams known to decode
            without errors).
    """

    def __init__(self, info: VideoInfo, threads: int = 1, skip: bool = True) -> None:
        self.info, self.threads = info, max(1, int(threads))
        self.errors: list[str] = []
        self._container: Any = None
        self._packets: Iterator = iter(())
        self._skip_ok = skip and info.ordered and info.codec in SKIP_NONREF_CODECS
        self._mark = 0

    def _resume(self) -> None:
        """FFmpeg messages logged from now on are this stream's (another may have run meanwhile)."""
        self._mark = len(_messages) if _messages is not None else 0

    def _take(self, where: str) -> None:
        """Record the FFmpeg errors logged since :meth:`_resume` as this stream's errors."""
        if _messages is None:
            return
        new, self._mark = _messages[self._mark:], len(_messages)
        self.errors.extend(f"{where}: {name or 'ffmpeg'}: {text.strip()}"
                           for level, name, text in new if level <= _ERROR_LEVEL)

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
        self._output = 0  # frames put out since the start (the index of unordered videos)

    def start_at(self, frame: int) -> bool:
        self._resume()
        try:
            return self._start_at(frame)
        finally:
            self._take(f"seeking to frame {frame}")

    def _start_at(self, frame: int) -> bool:
        import av

        if frame == 0 or self._container is None:
            self._open()
            if frame == 0:
                return True
        info = self.info
        if not info.ordered:
            return False
        want_pts, want_dts = int(info.pts[frame]), int(info.dts[frame])
        for ts in dict.fromkeys((want_dts, want_pts)):
            try:
                self._container.seek(ts, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            packets = self._container.demux(self._stream)
            first = next((p for p in packets if p.size and (p.pts is not None or p.dts is not None)), None)
            # Landed on the seek point's own packet? Some demuxers (MKV) give no dts after a seek.
            if first is not None and (first.pts == want_pts if first.pts is not None else first.dts == want_dts):
                self._packets = chain([first], packets)
                return True
        return False

    def decode(self, wanted: Collection[int], stop: int) -> Iterator[PyAVFrame]:
        import av

        wanted = wanted if isinstance(wanted, (set, frozenset)) else set(wanted)
        info = self.info
        codec = self._stream.codec_context
        packet_index = -1
        last_pts: int | None = None
        self._resume()
        for packet in self._packets:
            if self._skip_ok and packet.size and (packet.pts is not None or packet.dts is not None):
                packet_index = info.index_of_pts(packet.pts if packet.pts is not None else packet.dts)
                skip = packet_index not in wanted
                if skip != self._skipping:
                    codec.skip_frame = "NONREF" if skip else "DEFAULT"
                    self._skipping = skip
            where = f"frame {packet_index}" if self._skip_ok else f"after frame {self._output - 1}"
            if getattr(packet, "is_corrupt", False):  # the demuxer saw damage (e.g. a TS checksum)
                self.errors.append(f"{where}: corrupt packet")
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                self.errors.append(f"{where}: {type(err).__name__}: {err}")
                self._take(where)
                continue
            self._take(where)
            for frame in frames:
                if getattr(frame, "is_corrupt", False):  # concealed damage: shown, but recorded
                    self.errors.append(f"a frame after frame {max(0, self._output - 1)}: decoded with errors concealed")
                if info.ordered:
                    if frame.pts is not None and last_pts is not None and frame.pts < last_pts:
                        raise UnorderedTimestamps(f"{info.path}: frames come out of timestamp order")
                    last_pts = frame.pts if frame.pts is not None else last_pts
                    index = info.index_of_pts(frame.pts) if frame.pts is not None else self._output
                else:
                    index = self._output
                self._output += 1
                if index in wanted:
                    yield PyAVFrame(index, frame, info)
                    self._resume()
                if index >= stop:
                    return

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
