"""Exact frame access: every frame read equals the frame a sequential decode gives.

FFmpeg-based readers seek to the container's seek points (``stss`` in MP4) and decode forward
from there. Some real files have seek points that do not decode on their own: sync-sample
tables that mark frames which are not random-access points, and FaceForensics++ c23's H.264
High 4:4:4 streams, whose frames past the second keyframe come back grey/green after a seek
although a decode from the start is exact. Nothing warns: the reader just returns other pixels.

dflab therefore decides per video, once, where decoding may start:

- :func:`check_decode` decodes the video forward from its start, every frame (the reference),
  and, at every seek point it passes, starts a second decoder there and compares the first
  :data:`CHECK_WINDOW` frames and the last frame before the next seek point against the
  reference. A seek point whose frames all agree (mean absolute difference below
  :data:`EXACT_MAD` of 255) becomes an *access point*; the others are never seeked to.
- A video whose reference pass meets decode errors (damaged bytes: errors raised, packets or
  frames flagged corrupt, or FFmpeg's own error messages about damage it concealed), or whose
  timestamps do not give the presentation order, gets no access points at all: the error
  concealment of a damaged stream depends on where decoding started and on which frames were
  decoded, so such a video is always read by a plain sequential decode from its start, nothing
  skipped. A seek point whose second decoder reports an error is rejected likewise.
- :func:`read_frames` / :func:`iter_frames` read any frames by starting only at verified access
  points (the start of the file always is one) and decoding forward, through unverified seek
  points if need be, skipping only frames no other frame depends on.

A video with no verified seek point past the start is still read exactly, by decoding from
its start. The cost of each path is measured in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from dflab.video.backend import DecodedFrame, VideoStream, open_stream
from dflab.video.info import VideoDecodeError, VideoInfo, mark_unordered, probe
from dflab.video.pyav_backend import UnorderedTimestamps, capture_decoder_errors

EXACT_MAD = 1.0
"""Largest mean absolute difference (0-255 scale) between two decodes of a frame that count as
the same frame."""

CHECK_WINDOW = 8
"""Frames compared after each seek point (plus the last frame before the next one)."""

MAX_CHECKED_SEEK_POINTS = 64
"""Seek points checked per video at most (evenly spread); the others are decoded through."""

SEEK_COST = 8
"""Frames of decoding a seek is worth: frames closer than that past an access point are
reached by decoding on rather than by seeking."""


@dataclass(frozen=True)
class SeekCheck:
    """Where a video can be seeked exactly, as found by :func:`check_decode`.

    Attributes:
        access_points: ``(A,)`` int64 display indices where decoding may start, ``0`` first;
            empty when the video must always be read by a plain sequential decode from its
            start (see ``sequential_only``).
        rejected: seek points whose frames differed from the sequential decode (never used).
        unchecked: seek points past the decoded range or beyond :data:`MAX_CHECKED_SEEK_POINTS`
            (decoded through, never seeked to).
        checked_frames: frames compared between the two decodes.
        max_mad: the largest mean absolute difference seen on a verified seek point.
        sequential_only: why the video is only read sequentially (decode errors, timestamps
            out of order), else ``""``.
    """

    access_points: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unchecked: int = 0
    checked_frames: int = 0
    max_mad: float = 0.0
    sequential_only: str = ""

    @property
    def exact(self) -> bool:
        """Seeking reproduces the sequential decode wherever it was checked."""
        return len(self.rejected) == 0 and not self.sequential_only


@dataclass
class CheckedDecode:
    """Frames decoded in one sequential pass, with the seek check made on the way.

    Attributes:
        info: the probed video.
        frames: display index → ``(H, W, 3)`` uint8 RGB of every wanted frame that decoded.
        seek: the seek check.
        damaged: display indices of wanted (or compared) frames the decoder could not produce.
        errors: the decoder's messages about damaged packets.
    """

    info: VideoInfo
    frames: dict[int, np.ndarray]
    seek: SeekCheck
    damaged: list[int]
    errors: list[str]


@dataclass
class Undecoded:
    """Frames a read could not decode, and what the decoder said (see :func:`iter_frames`)."""

    frames: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, path: str) -> VideoDecodeError:
        """The error naming ``path`` and the frame range that could not be decoded."""
        detail = f" ({self.errors[0]})" if self.errors else ""
        return VideoDecodeError(f"{path}: frames {format_ranges(self.frames)} could not be decoded{detail}",
                                path, tuple(self.frames))


def frame_mad(a: DecodedFrame, b: DecodedFrame) -> float:
    """Mean absolute difference of two decodes of one frame, on a 0-255 scale."""
    import cv2

    (pa, top), (pb, _) = a.planes(), b.planes()
    if pa.shape != pb.shape or pa.dtype != pb.dtype:
        pa, pb, top = a.rgb(), b.rgb(), 255
    flat_a, flat_b = pa.reshape(pa.shape[0], -1), pb.reshape(pb.shape[0], -1)
    return float(cv2.norm(flat_a, flat_b, cv2.NORM_L1)) / pa.size * 255.0 / top


@dataclass
class _Check:
    """The comparison at one seek point: still agreeing, the second decoder's frames, worst MAD."""

    ok: bool
    frames: Iterator[DecodedFrame]
    worst: float = 0.0


def _checkpoints(keyframes: np.ndarray, last: int, window: int, limit: int) -> tuple[dict[int, list[int]], int]:
    """Frames compared per checked seek point, and how many seek points go unchecked."""
    inside = [int(k) for k in keyframes if 0 < k <= last]
    picked = inside
    if len(inside) > limit:
        picked = [inside[i] for i in np.linspace(0, len(inside) - 1, limit).round().astype(int)]
    bounds = [int(k) for k in keyframes if k > 0] + [last + 1]
    out = {}
    for k in picked:
        end = min(b for b in bounds if b > k)  # the next seek point (or the pass end)
        frames = list(range(k, min(k + window, end)))
        if end - 1 > frames[-1]:
            frames.append(end - 1)
        out[k] = frames
    unchecked = len(inside) - len(picked) + int(np.sum(keyframes > last))
    return out, unchecked


def check_decode(path: str, indices: Sequence[int] | np.ndarray | int, backend: str = "pyav",
                 keep: bool = True, window: int = CHECK_WINDOW,
                 max_checks: int = MAX_CHECKED_SEEK_POINTS, threads: int = 1,
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> CheckedDecode:
    """Decode ``indices`` in one sequential pass and check every seek point passed on the way.

    The pass decodes every frame from the start of the file to the last wanted frame, so its
    frames are the reference and every decode error in that range shows. At each seek point in
    that range a second decoder starts there; its first ``window`` frames and the last frame
    before the next seek point are compared with the pass. A pass with decode errors, or a
    video whose timestamps do not give the presentation order, yields no access points: it is
    read sequentially from then on (:attr:`SeekCheck.sequential_only` says why).

    Args:
        path: video file.
        indices: display indices wanted (any order, repeats allowed).
        backend: decoder (see :func:`~dflab.video.backend.open_stream`).
        keep: return the RGB frames of ``indices`` (``False`` only checks and scans).
        window: frames compared after each seek point.
        max_checks: seek points checked at most.
        threads: decoder threads of each of the two decoders.
        on_frame: called with ``(index, rgb)`` for each frame of ``indices`` as soon as it is
            decoded, in display order, instead of keeping it in :attr:`CheckedDecode.frames`
            (see :class:`~dflab.video.background.CheckInBackground`). Should the video turn out
            mid-pass to be numbered by decoder output order, the pass restarts and frames are
            handed over again: the later call for an index is right, and an index handed over
            before but not again is listed in :attr:`CheckedDecode.damaged`.

    Returns:
        The frames, the :class:`SeekCheck` and the frames that did not decode.

    Raises:
        VideoDecodeError: the file cannot be opened or holds no frames.
        ValueError: an index is not an integer inside the video.
    """
    info = probe(path)
    with capture_decoder_errors():
        try:
            return _check_decode(info, indices, backend, keep, window, max_checks, threads, on_frame)
        except UnorderedTimestamps:
            return _check_decode(mark_unordered(info), indices, backend, keep, window, max_checks, threads,
                                 on_frame)


def _check_decode(info: VideoInfo, indices, backend: str, keep: bool, window: int, max_checks: int,
                  threads: int, on_frame: Callable[[int, np.ndarray], None] | None = None) -> CheckedDecode:
    wanted = _valid(info, indices)
    last = int(wanted[-1]) if len(wanted) else 0
    checks, unchecked = _checkpoints(info.keyframes, last, window, max_checks)
    owner = {c: k for k, frames in checks.items() for c in frames}
    keep_set = set(wanted.tolist()) if keep else set()
    targets = set(range(last + 1))  # every frame: the reference, and every error shows
    main = open_stream(info, backend, threads, skip=False)
    verifier = open_stream(info, backend, threads)
    frames: dict[int, np.ndarray] = {}
    seen: set[int] = set()
    state: dict[int, _Check] = {}
    compared = 0
    try:
        main.start_at(0)
        for frame in main.decode(targets, last):
            i = frame.index
            seen.add(i)
            if i in keep_set:
                if on_frame is None:
                    frames[i] = frame.rgb()
                else:
                    on_frame(i, frame.rgb())
            k = owner.get(i)
            if k is None or main.errors:
                continue
            if k not in state:  # the pass reached seek point k: start the second decoder there
                verifier.errors.clear()
                started = verifier.start_at(k)
                state[k] = _Check(started, verifier.decode(checks[k], checks[k][-1]) if started else iter(()))
            check = state[k]
            if not check.ok:
                continue
            other = next((f for f in check.frames if f.index >= i), None)
            if other is None or other.index != i or verifier.errors:
                check.ok = False  # the frame did not come out after the seek, or not cleanly
                continue
            mad = frame_mad(frame, other)
            compared += 1
            check.worst = max(check.worst, mad)
            check.ok = mad < EXACT_MAD
    finally:
        main.close()
        verifier.close()
    damaged = sorted(set(wanted.tolist()) - seen)
    reason = ("decode errors" if main.errors or damaged else "") or (
        "" if info.ordered else "timestamps not in presentation order")
    if reason:
        seek = SeekCheck(np.zeros(0, np.int64), np.asarray([k for k in info.keyframes if k > 0], np.int64),
                         0, compared, 0.0, reason)
    else:
        verified = [k for k, c in state.items() if c.ok and set(checks[k]) <= seen]
        rejected = [k for k, c in state.items() if not c.ok]
        unchecked += len(checks) - len(verified) - len(rejected)
        worst = max((state[k].worst for k in verified), default=0.0)
        seek = SeekCheck(np.asarray([0, *sorted(verified)], np.int64), np.asarray(sorted(rejected), np.int64),
                         unchecked, compared, worst)
    return CheckedDecode(info, frames, seek, damaged, list(main.errors))


def _valid(info: VideoInfo, indices: Sequence[int] | np.ndarray | int) -> np.ndarray:
    """The sorted unique frame indices asked for.

    Raises:
        ValueError: an index is not an integer, or outside the video (names the file).
    """
    raw = np.atleast_1d(np.asarray(indices))
    if raw.size and not np.issubdtype(raw.dtype, np.integer):
        as_int = raw.astype(np.int64) if np.all(np.isfinite(raw.astype(float))) else None
        if as_int is None or not np.array_equal(as_int, raw):
            raise ValueError(f"{info.path}: frame indices must be whole numbers, got {raw.ravel()[:5].tolist()}")
        raw = as_int
    idx = np.unique(raw.astype(np.int64).ravel())
    if len(idx) and (idx[0] < 0 or idx[-1] >= info.num_frames):
        bad = idx[(idx < 0) | (idx >= info.num_frames)]
        raise ValueError(f"{info.path}: frame {int(bad[0])} is outside the video (frames 0-{info.num_frames - 1})")
    return idx


def plan_runs(frames: np.ndarray, access_points: np.ndarray) -> list[tuple[int, list[int]]]:
    """Split sorted frames into decode runs, each started at a verified access point.

    A frame joins the current run unless seeking to the last access point before it saves more
    than :data:`SEEK_COST` frames of decoding; otherwise a new run starts at that access point.

    Args:
        frames: ``(N,)`` sorted unique display indices.
        access_points: ``(A,)`` sorted display indices where decoding may start (``0`` included).

    Returns:
        ``[(start, [frames...]), ...]`` in display order.
    """
    runs: list[tuple[int, list[int]]] = []
    points = np.union1d([0], np.asarray(access_points, np.int64))
    for f in np.asarray(frames).tolist():
        start = int(points[np.searchsorted(points, f, side="right") - 1])
        if runs and start - runs[-1][1][-1] <= SEEK_COST:
            runs[-1][1].append(f)
        else:
            runs.append((start, [f]))
    return runs


def iter_frames(path: str, indices: Sequence[int] | np.ndarray | int,
                access_points: Sequence[int] | np.ndarray | None = None, backend: str = "pyav",
                threads: int = 1, undecoded: Undecoded | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Decode frames exactly, one at a time, in ascending index order.

    Each frame equals the frame a sequential decode from the start of the file gives: decoding
    starts only at the start of the file or at a verified access point and runs forward.

    Args:
        path: video file.
        indices: display indices (any order; each unique index is yielded once).
        access_points: verified access points of the video (``SeekCheck.access_points``, kept
            in the face index); with them, frames nothing depends on are skipped. ``None`` or
            empty trusts nothing: a plain sequential decode from the start, nothing skipped.
        backend: decoder (see :func:`~dflab.video.backend.open_stream`).
        threads: decoder threads (1 inside DataLoader workers).
        undecoded: if given, filled with the indices that could not be decoded (a damaged
            file) and the decoder's messages once the iteration ends; those frames are simply
            not yielded.

    Yields:
        ``(index, frame)``: ``frame`` is ``(H, W, 3)`` uint8 RGB, display rotation applied.

    Raises:
        VideoDecodeError: the file cannot be opened (the message names it).
        ValueError: an index is not an integer inside the video.
    """
    info = probe(path)
    uniq = _valid(info, indices)
    trusted = access_points is not None and len(access_points) > 0 and info.ordered
    points = np.asarray(access_points if trusted else [0], np.int64)
    done: set[int] = set()
    stream = open_stream(info, backend, threads, skip=trusted)
    try:
        for start, frames in plan_runs(uniq, points):
            _start(stream, start, points)
            for frame in stream.decode(set(frames) - done, frames[-1]):
                done.add(frame.index)
                yield frame.index, frame.rgb()
    except UnorderedTimestamps as err:
        # Frames numbered from now on by decoder output order (see dflab.video.info). If some
        # were already yielded under the old numbering, their numbers cannot be trusted: fail
        # this read (the next one is right) rather than return frames under wrong numbers.
        stream.close()
        info = mark_unordered(info)
        if done:
            raise VideoDecodeError(f"{path}: frames come out of the decoder out of timestamp order; "
                                   "it is read by decoder output order from now on", path) from err
        stream = open_stream(info, backend, threads, skip=False)
        stream.start_at(0)
        for frame in stream.decode(set(uniq.tolist()), int(uniq[-1])):
            done.add(frame.index)
            yield frame.index, frame.rgb()
    finally:
        stream.close()
        if undecoded is not None:
            undecoded.frames.extend(int(f) for f in uniq if int(f) not in done)
            undecoded.errors.extend(stream.errors)


def read_frames(path: str, indices: Sequence[int] | np.ndarray | int,
                access_points: Sequence[int] | np.ndarray | None = None, backend: str = "pyav",
                threads: int = 1) -> np.ndarray:
    """Decode frames exactly: each equals the frame a sequential decode from the start gives.

    Args:
        path: video file.
        indices: display indices (any order, repeats allowed).
        access_points: verified access points (see :func:`iter_frames`); ``None`` decodes
            sequentially from the start of the file.
        backend: decoder (see :func:`~dflab.video.backend.open_stream`).
        threads: decoder threads (1 inside DataLoader workers).

    Returns:
        ``uint8`` array ``(len(indices), H, W, 3)``, RGB, display rotation applied.

    Raises:
        VideoDecodeError: the file cannot be opened, or some frames cannot be decoded (a
            damaged file); ``err.frames`` lists them and the message names the file and the
            frame range.
        ValueError: an index is not an integer inside the video.
    """
    info = probe(path)
    idx = _valid(info, indices)  # checks before decoding
    order = np.atleast_1d(np.asarray(indices)).astype(np.int64).ravel()
    undecoded = Undecoded()
    out = dict(iter_frames(path, idx, access_points, backend, threads, undecoded))
    if undecoded.frames:
        raise undecoded.error(path)
    if not len(order):
        return np.zeros((0, info.height, info.width, 3), np.uint8)
    return np.stack([out[int(f)] for f in order])


def _start(stream: VideoStream, start: int, points: np.ndarray) -> None:
    """Start ``stream`` at ``start``, or at the nearest earlier access point it can start at."""
    for point in [start, *reversed(points[points < start].tolist()), 0]:
        if stream.start_at(point):
            return


def frame_ranges(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted frame indices as inclusive ``(first, last)`` runs of consecutive frames."""
    out: list[tuple[int, int]] = []
    for f in sorted({int(x) for x in frames}):
        if out and f == out[-1][1] + 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def format_ranges(frames: Sequence[int]) -> str:
    """``"12-15, 40"``: frame indices as readable ranges."""
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in frame_ranges(frames))
