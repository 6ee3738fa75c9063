"""The face-index pass in a background thread, so decoding overlaps with what uses the frames.

:func:`~dflab.video.access.check_decode` decodes a video forward while the face detector runs
on the frames already decoded: the decoder (FFmpeg) and the detector both release the GIL, so
on a few cores the two overlap (about 7-10 % more frames/s for the face stage; see
docs/benchmarks.md). At most ``depth`` decoded frames wait between the two.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType

import numpy as np

from dflab.video.access import CheckedDecode, check_decode

_END = object()


class _Stopped(Exception):
    """The consumer left: the decoding thread stops at the next frame."""


class CheckInBackground:
    """:func:`~dflab.video.access.check_decode` in a thread; iterate to get its frames.

    Example::

        with CheckInBackground(path, indices, threads=2) as pending:
            for index, rgb in pending:  # display order, as decoded
                found[index] = detector.detect(rgb)
        decoded = pending.result  # frames empty; seek check, damaged frames, errors

    Args:
        path: video file.
        indices: display indices wanted.
        threads: decoder threads.
        depth: decoded frames that may wait for the consumer.

    Raises (on iteration or :attr:`result`): what :func:`check_decode` raises, e.g.
    :class:`~dflab.video.info.VideoDecodeError` naming the file.
    """

    def __init__(self, path: str, indices: Sequence[int] | np.ndarray, threads: int = 1, depth: int = 4) -> None:
        self.path, self.indices, self.threads = path, indices, threads
        self._frames: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._result: CheckedDecode | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"decode {path}", daemon=True)

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._frames.put(item, timeout=0.05)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self) -> None:
        try:
            self._result = check_decode(self.path, self.indices, threads=self.threads,
                                        on_frame=lambda i, rgb: self._put((i, rgb)))
        except _Stopped:
            return
        except BaseException as err:  # handed to the consumer's thread, raised there
            self._error = err
        try:
            self._put(_END)
        except _Stopped:
            return

    def __enter__(self) -> CheckInBackground:
        self._thread.start()
        return self

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        while (item := self._frames.get()) is not _END:
            yield item
        if self._error is not None:
            raise self._error

    @property
    def result(self) -> CheckedDecode:
        """The pass's outcome (its ``frames`` are empty: they were handed over)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None, "iterate over the frames first"
        return self._result

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
