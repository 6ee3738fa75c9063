"""The small interface every video decoder sits behind, and the registry of decoders.

A backend opens a :class:`VideoStream`: a decoder that starts at the beginning of the file or
at one of its seek points and decodes forward. Everything that needs exact frames (reading
clips, checking where seeking is exact, scanning for damage) is written once on top of these
two operations in :mod:`dflab.video.access`, so a backend only has to decode.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Protocol

import numpy as np

from dflab.video.info import VideoInfo


class DecodedFrame(Protocol):
    """One decoded frame.

    Attributes:
        index: display index of the frame.
    """

    index: int

    def rgb(self) -> np.ndarray:
        """The frame as playback shows it: ``(H, W, 3)`` uint8 RGB, display rotation applied."""
        ...

    def planes(self) -> tuple[np.ndarray, int]:
        """The decoder's output before colour conversion and the largest sample value
        (255 for 8-bit video), for comparing two decodes of one frame."""
        ...


class VideoStream(Protocol):
    """A decoder over one video file, decoding forward from where it was started.

    Attributes:
        errors: decode errors met so far, each naming the frame (damaged packets).
    """

    errors: list[str]

    def start_at(self, frame: int) -> bool:
        """Start decoding at display index ``frame``: 0 is the start of the file, anything
        else must be one of :attr:`VideoInfo.keyframes`. Returns ``False`` when the backend
        cannot start exactly there (the caller then starts earlier); 0 always works."""
        ...

    def decode(self, wanted: Collection[int], stop: int) -> Iterator[DecodedFrame]:
        """Decode forward, yielding the frames whose index is in ``wanted`` in display order
        and stopping after frame ``stop``. Frames not wanted may be skipped where no other
        frame depends on them (if the stream was opened with ``skip``); a wanted frame that
        cannot be decoded is simply not yielded."""
        ...

    def close(self) -> None:
        """Release the file and the decoder."""
        ...


Opener = Callable[[VideoInfo, int, bool], VideoStream]
"""``opener(info, threads, skip)``: a stream over ``info.path`` using at most ``threads``
threads, skipping unwanted non-reference frames when ``skip``."""

_BACKENDS: dict[str, Opener] = {}


def register_backend(name: str, opener: Opener) -> None:
    """Make a decoder available to :func:`open_stream` under ``name``."""
    _BACKENDS[name] = opener


def backend_names() -> list[str]:
    """The registered decoders (``pyav`` is always one)."""
    _builtin()
    return sorted(_BACKENDS)


def open_stream(info: VideoInfo, backend: str = "pyav", threads: int = 1, skip: bool = True) -> VideoStream:
    """A :class:`VideoStream` over ``info.path`` from the decoder ``backend``; ``skip`` lets it
    leave out unwanted frames nothing depends on (only for streams that decode cleanly).

    Raises:
        ValueError: no decoder of that name is registered.
    """
    _builtin()
    if backend not in _BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose from {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[backend](info, threads, skip)


def _builtin() -> None:
    if "pyav" not in _BACKENDS:
        from dflab.video.pyav_backend import PyAVStream

        register_backend("pyav", PyAVStream)
