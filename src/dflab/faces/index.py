"""Detect faces once per video, cache the result on disk and reuse it.

For each video, ``num_frames`` evenly spaced frames (or every ``frame_step``-th frame) are
decoded (only those) and run through a face detector. Every raw detection is stored in one small ``.npz`` per video::

    <cache_dir>/<detector.name>-n<num_frames>[-s<frame_step>]/<sha1(abs path, size, mtime_ns)>.npz

The detections are linked into per-person tracks (:mod:`dflab.faces.tracks`); the main face is
track 0, the largest and most persistent person. Tracks are derived from the stored raw
detections, so they need no extra cache data. Entries written by an older ``_CACHE_VERSION``
(whose main face came from another rule) are treated as missing and detected again.

The same pass checks where the video can be seeked exactly (:func:`dflab.video.check_decode`:
detection frames are decoded forward from the start, and every seek point passed is compared
with a second decode started there); the verified access points are stored with the faces, so
every later read of the video starts only where decoding is exact.

Entries are written atomically (temp file + ``os.replace``), so a killed process never leaves a
corrupt entry; an unreadable entry is treated as missing. Decode errors and videos without a
face are cached too (with the reason), and a file whose size or mtime changed gets a new key.

:meth:`FaceIndex.build` runs over many videos in worker processes with a progress bar and never
stops on a bad video; it returns a :class:`FaceReport`.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dflab.faces.detector import Detection, FaceDetector, create_detector
from dflab.faces.tracks import FaceTrack, iou_matrix, link_tracks
from dflab.utils.atomic import atomic_write
from dflab.utils.threads import available_cores
from dflab.video import VideoDecodeError, probe
from dflab.video.background import CheckInBackground

_CACHE_VERSION = 4  # 3-4: seek check and damaged frames; 2: main face = largest face track


@dataclass
class VideoFaces:
    """Faces detected on the sampled frames of one video (main face = track 0).

    Attributes:
        path: video file.
        num_frames: frames in the video; ``fps``, ``height``, ``width`` as decoded.
        frame_indices: ``(K,)`` int64 sampled frames where detection ran.
        boxes: ``(K, 4)`` float32 ``x1, y1, x2, y2`` of the main face (track 0 of
            :meth:`tracks` when built by :func:`detect_video`), NaN where none.
        scores: ``(K,)`` float32 detector scores, NaN where none.
        landmarks: ``(K, 5, 2)`` float32 insightface five points, NaN where none.
        error: decode error message (names the file); the arrays are empty then.
        all_sample: ``(M,)`` int64 position in ``frame_indices`` of every raw detection.
        all_boxes: ``(M, 4)``, ``all_scores`` ``(M,)``, ``all_landmarks`` ``(M, 5, 2)``: every
            detection on every sampled frame, tracked or not.
        access_points: ``(A,)`` int64 frames where decoding may start and reproduce a
            sequential decode exactly (``0`` and every verified seek point); readers start
            nowhere else. Empty for a video that is only ever read by a plain sequential
            decode from its start (decode errors, or timestamps out of presentation order).
        rejected_seeks: ``(R,)`` int64 seek points whose frames differed from a sequential
            decode (the video cannot be seeked there).
        damaged: ``(D,)`` int64 frames of the detection pass the decoder could not produce.
        seek_unchecked: seek points not checked (beyond the decoded range); never used.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    frame_indices: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    error: str | None = None
    all_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    all_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    all_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    all_landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))
    access_points: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    rejected_seeks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    damaged: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seek_unchecked: int = 0
    _tracks: list[FaceTrack] | None = field(default=None, init=False, repr=False, compare=False)

    def tracks(self) -> list[FaceTrack]:
        """Per-person face tracks linked from the raw detections, main (largest) first.

        Computed on the first call with :func:`~dflab.faces.tracks.link_tracks` defaults and
        kept on the instance (do not change the ``all_*`` arrays afterwards).
        """
        if self._tracks is None:
            self._tracks = link_tracks(
                self.frame_indices,
                self.all_sample,
                self.all_boxes,
                self.all_scores,
                self.all_landmarks,
            )
        return self._tracks

    @property
    def seek_exact(self) -> bool:
        """The video can be seeked: no seek point decodes differently from a sequential decode."""
        return len(self.rejected_seeks) == 0 and len(self.access_points) > 0

    @property
    def found(self) -> np.ndarray:
        """``(K,)`` bool: a face was found on the sampled frame."""
        return ~np.isnan(self.scores)

    @property
    def found_fraction(self) -> float:
        """Fraction of sampled frames with a face (0 when nothing was sampled)."""
        return float(self.found.mean()) if len(self.scores) else 0.0

    @property
    def ok(self) -> bool:
        """No decode error and a face on at least one sampled frame."""
        return self.error is None and bool(self.found.any())

    @property
    def reason(self) -> str | None:
        """Why the video is not :attr:`ok` (``None`` when it is)."""
        if self.error is not None:
            return self.error
        return (
            None if self.ok else f"{self.path}: no face found on {len(self.scores)} sampled frames"
        )

    def _track_arrays(self, track: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``boxes``, ``scores`` and ``landmarks`` of face track ``track`` (0: the main face)."""
        if not self.ok:
            raise ValueError(self.reason or f"{self.path}: no face")
        if track == 0:
            return self.boxes, self.scores, self.landmarks
        tracks = self.tracks()
        if not 0 <= track < len(tracks):
            raise IndexError(f"{self.path}: no face track {track} (the video has {len(tracks)})")
        chosen = tracks[track]
        return chosen.boxes, chosen.scores, chosen.landmarks

    def box_at(self, frame: int | np.ndarray, track: int = 0) -> np.ndarray:
        """Box of a face track at any frame index (or array of indices).

        Linear interpolation between frames with a detection; the nearest detection is used
        before the first and after the last one.

        Args:
            frame: frame index or array of indices.
            track: face track (index into :meth:`tracks`); 0 is the main face.

        Returns:
            ``(4,)`` float32 for a scalar ``frame``, ``(N, 4)`` for an array.

        Raises:
            ValueError: the video has no detected face (the message names the file).
            IndexError: the video has no track ``track``.
        """
        boxes, scores, _ = self._track_arrays(track)
        found = ~np.isnan(scores)
        known = self.frame_indices[found].astype(np.float64)
        boxes = boxes[found]
        query = np.asarray(frame, dtype=np.float64)
        out = np.stack([np.interp(query, known, boxes[:, c]) for c in range(4)], axis=-1)
        return out.astype(np.float32)

    @property
    def has_landmarks(self) -> bool:
        """Some sampled frame has finite landmarks of the main face."""
        return self.track_has_landmarks(0)

    def track_has_landmarks(self, track: int = 0) -> bool:
        """Some sampled frame has finite landmarks of face track ``track`` (0: the main face)."""
        if self.error is not None:
            return False
        if track == 0:
            return bool(self._with_landmarks().any())
        return self.ok and bool(self._with_landmarks(track).any())

    def _with_landmarks(self, track: int = 0) -> np.ndarray:
        if track == 0:
            return self.found & np.isfinite(self.landmarks).all(axis=(1, 2))
        _, scores, landmarks = self._track_arrays(track)
        return ~np.isnan(scores) & np.isfinite(landmarks).all(axis=(1, 2))

    def landmarks_at(self, frame: int | np.ndarray, track: int = 0) -> np.ndarray:
        """Five landmarks of a face track at any frame index (or array of indices).

        Each point is interpolated linearly between the sampled frames with landmarks; the
        nearest such frame is used before the first and after the last one (as :meth:`box_at`).

        Args:
            frame: frame index or array of indices.
            track: face track (index into :meth:`tracks`); 0 is the main face.

        Returns:
            ``(5, 2)`` float32 for a scalar ``frame``, ``(N, 5, 2)`` for an array.

        Raises:
            ValueError: the video has no detected face or no landmarks (the message names the
                file).
            IndexError: the video has no track ``track``.
        """
        _, _, landmarks = self._track_arrays(track)
        have = self._with_landmarks(track)
        if not have.any():
            raise ValueError(f"{self.path}: no face landmarks on {len(self.scores)} sampled frames")
        known = self.frame_indices[have].astype(np.float64)
        points = landmarks[have].reshape(-1, 10)
        query = np.asarray(frame, dtype=np.float64)
        out = np.stack([np.interp(query, known, points[:, c]) for c in range(10)], axis=-1)
        return out.reshape(*query.shape, 5, 2).astype(np.float32)

    def scored_tracks(self, min_coverage: float = 0.0) -> list[int]:
        """Face tracks worth scoring: track 0 always, others seen on ``min_coverage`` of frames.

        Args:
            min_coverage: smallest share of sampled frames a track other than 0 needs.

        Returns:
            Track indices (into :meth:`tracks`), ascending; ``[0]`` for a video that is not
            :attr:`ok` or has no linked tracks.
        """
        if not self.ok:
            return [0]
        return [0] + [i for i, t in enumerate(self.tracks()) if i > 0 and t.coverage >= min_coverage]

    def detections_at(self, k: int) -> list[Detection]:
        """All raw detections on the ``k``-th sampled frame."""
        rows = np.flatnonzero(self.all_sample == k)
        return [
            Detection(self.all_boxes[i], float(self.all_scores[i]), self.all_landmarks[i])
            for i in rows
        ]


def _with_threads(detector: str, kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    """The detector settings with ``threads`` added when the detector takes it and the user did
    not set it."""
    import inspect

    from dflab.faces.detector import detector_factory

    if "threads" in kwargs or "threads" not in inspect.signature(detector_factory(detector)).parameters:
        return kwargs
    return {**kwargs, "threads": threads}


def sample_indices(num_frames: int, count: int, step: int = 0) -> np.ndarray:
    """Frame indices to run detection on.

    Args:
        num_frames: frames in the video.
        count: at most this many frames.
        step: ``0`` spreads ``count`` frames evenly over the whole video; ``k > 0`` takes every
            ``k``-th frame from the first (0, k, 2k, ...), at most ``count`` of them.
    """
    if step > 0:
        return np.arange(0, num_frames, step, dtype=np.int64)[:count]
    if num_frames <= count:
        return np.arange(num_frames, dtype=np.int64)
    return np.unique(np.linspace(0, num_frames - 1, count).round().astype(np.int64))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with each of ``(N, 4)`` boxes (see :func:`~dflab.faces.tracks.iou_matrix`)."""
    return iou_matrix(np.asarray(box)[None], np.asarray(boxes))[0]


def detect_video(
    path: str | Path, detector: FaceDetector, num_frames: int = 16, step: int = 0, threads: int = 1
) -> VideoFaces:
    """Decode ``num_frames`` sampled frames of a video, detect faces and link them into tracks.

    The frames are decoded in one forward pass that also checks where the video can be
    seeked exactly (:func:`dflab.video.check_decode`), in a background thread while the
    detector runs on the frames already decoded. The main face (``boxes``, ``scores``,
    ``landmarks``) is track 0 of :meth:`VideoFaces.tracks`. Decode errors do not raise: they
    are returned in :attr:`VideoFaces.error`; sampled frames that do not decode (a damaged
    file) have no face and are listed in :attr:`VideoFaces.damaged`. ``threads``: decoder
    threads.
    """
    path = str(path)
    found: dict[int, list] = {}
    try:
        info = probe(path)
        indices = sample_indices(info.num_frames, num_frames, step)
        with CheckInBackground(path, indices, threads) as pending:  # decoding overlaps detection
            for i, rgb in pending:
                found[i] = detector.detect(rgb)
            decoded = pending.result
    except VideoDecodeError as err:
        return _failed(path, str(err))
    for i in decoded.damaged:  # handed over, then not decoded again (see check_decode)
        found.pop(i, None)
    if not found:
        reason = decoded.errors[0] if decoded.errors else "no frame came out"
        return _failed(path, f"{path}: none of {len(indices)} sampled frames could be decoded ({reason})")
    per_frame = [found.get(int(i), []) for i in indices]
    flat = [(i, d) for i, dets in enumerate(per_frame) for d in dets]
    k = len(indices)
    seek = decoded.seek
    faces = VideoFaces(
        path=path,
        num_frames=info.num_frames,
        fps=info.fps,
        height=info.height,
        width=info.width,
        frame_indices=indices,
        boxes=np.full((k, 4), np.nan, np.float32),
        scores=np.full(k, np.nan, np.float32),
        landmarks=np.full((k, 5, 2), np.nan, np.float32),
        all_sample=np.array([i for i, _ in flat], np.int64),
        all_boxes=np.array([d.box for _, d in flat], np.float32).reshape(-1, 4),
        all_scores=np.array([d.score for _, d in flat], np.float32),
        all_landmarks=np.array([d.landmarks for _, d in flat], np.float32).reshape(-1, 5, 2),
        access_points=seek.access_points,
        rejected_seeks=seek.rejected,
        damaged=np.asarray(decoded.damaged, np.int64),
        seek_unchecked=seek.unchecked,
    )
    tracks = faces.tracks()
    if tracks:
        main = tracks[0]
        faces.boxes, faces.scores, faces.landmarks = main.boxes, main.scores, main.landmarks
    return faces


def _failed(path: str, error: str) -> VideoFaces:
    return VideoFaces(
        path=path,
        num_frames=0,
        fps=0.0,
        height=0,
        width=0,
        frame_indices=np.zeros(0, np.int64),
        boxes=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        landmarks=np.zeros((0, 5, 2), np.float32),
        error=error,
    )


_ARRAYS = (
    "frame_indices", "boxes", "scores", "landmarks",
    "all_sample", "all_boxes", "all_scores", "all_landmarks",
    "access_points", "rejected_seeks", "damaged",
)  # fmt: skip


class FaceIndex:
    """On-disk cache of per-video face detections.

    Args:
        cache_dir: root folder of the cache (created on first write).
        detector: registry name of the detector (see :func:`~dflab.faces.detector.create_detector`).
        num_frames: frames sampled per video (at most, with ``frame_step``).
        detector_kwargs: settings passed to the detector.
        frame_step: ``0`` samples ``num_frames`` evenly spaced frames; ``k > 0`` every
            ``k``-th frame from the start (see :func:`sample_indices`).
        threads: decoder and detector threads of this process (``0``: every core it may use);
            a build's worker processes share the cores out among themselves. Results do not
            depend on it.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        detector: str = "blazeface",
        num_frames: int = 16,
        detector_kwargs: dict[str, Any] | None = None,
        frame_step: int = 0,
        threads: int = 0,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if frame_step < 0:
            raise ValueError(f"frame_step must be >= 0, got {frame_step}")
        self.frame_step = int(frame_step)
        self.cache_dir = Path(cache_dir)
        self.detector_name = detector
        self.detector_kwargs = dict(detector_kwargs or {})
        self.num_frames = int(num_frames)
        self.threads = int(threads) if threads > 0 else available_cores()
        self.detector = create_detector(detector, **_with_threads(detector, self.detector_kwargs, self.threads))
        step = f"-s{self.frame_step}" if self.frame_step else ""
        self.folder = self.cache_dir / f"{self.detector.name}-n{self.num_frames}{step}"

    @classmethod
    def from_config(cls, faces: Any) -> FaceIndex:
        """The index described by a :class:`~dflab.config.schema.FacesConfig`."""
        return cls(faces.cache_dir, faces.detector, faces.num_frames, faces.detector_options,
                   frame_step=faces.frame_step)

    def __repr__(self) -> str:
        return f"FaceIndex({str(self.folder)!r})"

    def key(self, path: str | Path) -> str | None:
        """Cache key of a video (``None`` if the file cannot be stat'ed)."""
        absolute = os.path.abspath(path)
        try:
            st = os.stat(absolute)
        except OSError:
            return None
        return hashlib.sha1(f"{absolute}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()

    def cache_file(self, path: str | Path) -> Path | None:
        """Where the entry of ``path`` lives (``None`` if the file cannot be stat'ed)."""
        key = self.key(path)
        return None if key is None else self.folder / f"{key}.npz"

    def cached(self, path: str | Path) -> VideoFaces | None:
        """The cached result for ``path``, or ``None`` if missing, stale or unreadable."""
        file = self.cache_file(path)
        if file is None or not file.is_file():
            return None
        try:
            with np.load(file, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {name: data[name] for name in _ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if meta.get("version") != _CACHE_VERSION:
            return None
        return VideoFaces(
            path=str(path),
            num_frames=meta["num_frames"],
            fps=meta["fps"],
            height=meta["height"],
            width=meta["width"],
            error=meta["error"],
            seek_unchecked=meta.get("seek_unchecked", 0),
            **arrays,
        )

    def store(self, faces: VideoFaces) -> Path | None:
        """Write ``faces`` to the cache atomically; returns the file (``None`` if unkeyable)."""
        file = self.cache_file(faces.path)
        if file is None:
            return None
        file.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "version": _CACHE_VERSION,
            "path": os.path.abspath(faces.path),
            "detector": self.detector.name,
            "num_frames": faces.num_frames,
            "fps": faces.fps,
            "height": faces.height,
            "width": faces.width,
            "error": faces.error,
            "seek_unchecked": faces.seek_unchecked,
        }
        with atomic_write(file, durable=True) as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **{n: getattr(faces, n) for n in _ARRAYS})
        return file

    def detect(self, path: str | Path) -> VideoFaces:
        """Run detection on ``path`` now and store the result (ignores the cache)."""
        faces = detect_video(path, self.detector, self.num_frames, self.frame_step, self.threads)
        self.store(faces)
        return faces

    def get(self, path: str | Path) -> VideoFaces:
        """The cached result for ``path``, else detect now (and store the result)."""
        return self.cached(path) or self.detect(path)

    def build(
        self, paths: Sequence[str | Path], workers: int = 2, progress: bool = True,
        known: Mapping[str, VideoFaces] | None = None,
    ) -> FaceReport:
        """Make sure every video has a cache entry; detect the missing ones in parallel.

        Videos already cached are skipped. Each worker process builds the detector once and
        writes its own cache entries, so finished work survives an interrupted build. A video
        that fails (decode error, exception, even a crash of the worker process) is recorded
        in the report; the build goes on.

        Args:
            paths: video files.
            workers: worker processes (``spawn`` context), each with ``cores // workers``
                decoder and detector threads; ``0`` runs in this process.
            progress: show a tqdm bar with ETA.
            known: entries already loaded, by path (e.g. from a dataset pack); counted as
                cached without reading their per-video files.
        """
        from tqdm.auto import tqdm

        start = time.perf_counter()
        self._remove_stale_temp_files()
        outcomes: dict[str, VideoOutcome] = {}
        todo: list[str] = []
        for path in dict.fromkeys(str(p) for p in paths):  # de-duplicated, order kept
            faces = known.get(path) if known else None
            if faces is None:
                faces = self.cached(path)
            if faces is None:
                todo.append(path)
            else:
                outcomes[path] = _outcome(faces, "cached")
        bar = tqdm(
            total=len(outcomes) + len(todo),
            initial=len(outcomes),
            disable=not progress,
            desc=f"faces [{self.detector.name}]",
            unit="video",
            dynamic_ncols=True,
        )

        def done(outcome: VideoOutcome) -> None:
            outcomes[outcome.path] = outcome
            bar.update(1)

        try:
            if workers <= 0:
                for path in todo:
                    done(self._safe_detect(path))
            else:
                _run_in_pool(self._spec(max(1, available_cores() // workers)), todo, workers, done)
        finally:
            bar.close()
        return FaceReport(
            detector=self.detector.name,
            num_frames=self.num_frames,
            workers=workers,
            seconds=time.perf_counter() - start,
            videos=[outcomes[str(p)] for p in dict.fromkeys(str(p) for p in paths)],
        )

    def _remove_stale_temp_files(self, age_s: float = 3600.0) -> None:
        """Delete temp files of writers killed mid-write (never read, only wasted space)."""
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if time.time() - tmp.stat().st_mtime > age_s:
                    tmp.unlink()
            except OSError:  # another process removed or replaced it meanwhile
                continue

    def _spec(self, threads: int) -> tuple[str, str, int, dict[str, Any], int, int]:
        return (str(self.cache_dir), self.detector_name, self.num_frames, self.detector_kwargs,
                self.frame_step, threads)

    def _safe_detect(self, path: str) -> VideoOutcome:
        """Detect and store, turning any exception into a failed (uncached) outcome."""
        try:
            return _outcome(self.detect(path), "detected")
        except Exception as err:  # a bug or resource error must not stop a long build
            return VideoOutcome(path, "failed", 0, 0.0, 0, f"{path}: {type(err).__name__}: {err}")


# --------------------------------------------------------------------------- build report


@dataclass
class VideoOutcome:
    """What :meth:`FaceIndex.build` did with one video.

    Attributes:
        path: video file.
        source: ``detected`` (run now), ``cached`` (served from the cache) or ``failed``
            (an exception or a worker crash; nothing was cached).
        sampled: frames sampled.
        found_fraction: fraction of sampled frames with a face.
        detected_frames: frames run through the detector by this build (0 when cached).
        error: why the video failed (names the file), else ``None``.
        num_tracks: face tracks (people) found in the video.
        seek_exact: every seek point checked decodes like a sequential decode (``False``:
            the video is read by decoding forward from verified points only).
        damaged: sampled frames the decoder could not produce.
    """

    path: str
    source: str
    sampled: int
    found_fraction: float
    detected_frames: int = 0
    error: str | None = None
    num_tracks: int = 0
    seek_exact: bool = True
    damaged: int = 0

    @property
    def status(self) -> str:
        """``ok``, ``no_face`` or ``failed``."""
        if self.error is not None:
            return "failed"
        return "ok" if self.found_fraction > 0 else "no_face"


def _outcome(faces: VideoFaces, source: str) -> VideoOutcome:
    sampled = len(faces.frame_indices)
    detected = sampled if source == "detected" else 0
    return VideoOutcome(
        faces.path,
        source,
        sampled,
        faces.found_fraction,
        detected,
        faces.error,
        num_tracks=len(faces.tracks()),
        seek_exact=faces.seek_exact,
        damaged=len(faces.damaged),
    )


@dataclass
class FaceReport:
    """Per-video outcomes of :meth:`FaceIndex.build` and their summary."""

    detector: str
    num_frames: int
    workers: int
    seconds: float
    videos: list[VideoOutcome]

    @property
    def done(self) -> int:
        """Videos run through the detector by this build."""
        return sum(v.source == "detected" for v in self.videos)

    @property
    def cached(self) -> int:
        """Videos served from the cache (skipped)."""
        return sum(v.source == "cached" for v in self.videos)

    @property
    def with_face(self) -> list[str]:
        """Videos with a face on at least one sampled frame."""
        return [v.path for v in self.videos if v.status == "ok"]

    @property
    def no_face(self) -> list[str]:
        """Videos decoded fine but without any face."""
        return [v.path for v in self.videos if v.status == "no_face"]

    @property
    def failures(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every video that could not be processed."""
        return [(v.path, v.error or "") for v in self.videos if v.status == "failed"]

    @property
    def mean_found_fraction(self) -> float:
        """Mean fraction of sampled frames with a face, over videos that decoded."""
        fractions = [v.found_fraction for v in self.videos if v.status != "failed"]
        return float(np.mean(fractions)) if fractions else 0.0

    @property
    def mean_tracks(self) -> float:
        """Mean number of face tracks (people) per video, over videos with a face."""
        counts = [v.num_tracks for v in self.videos if v.status == "ok"]
        return float(np.mean(counts)) if counts else 0.0

    @property
    def multi_person(self) -> int:
        """Videos with two or more face tracks."""
        return sum(v.status == "ok" and v.num_tracks >= 2 for v in self.videos)

    @property
    def not_seek_exact(self) -> list[str]:
        """Videos with a seek point that does not decode like a sequential decode."""
        return [v.path for v in self.videos if v.status != "failed" and not v.seek_exact]

    @property
    def with_damage(self) -> list[str]:
        """Videos with sampled frames the decoder could not produce."""
        return [v.path for v in self.videos if v.damaged]

    @property
    def frames_per_second(self) -> float:
        """Sampled frames decoded and detected per second of this build."""
        frames = sum(v.detected_frames for v in self.videos)
        return frames / self.seconds if self.seconds > 0 else 0.0

    def summary_table(self) -> str:
        """Human-readable summary with the lists of failures and no-face videos."""
        rows = [
            ("videos", f"{len(self.videos)}"),
            ("detected now", f"{self.done}"),
            ("from cache", f"{self.cached}"),
            ("with a face", f"{len(self.with_face)}"),
            ("faces found", f"{100 * self.mean_found_fraction:.1f}% of sampled frames (mean)"),
            (
                "faces per video",
                f"{self.mean_tracks:.2f} tracks (mean), {self.multi_person} videos with 2+ people",
            ),
            ("no face", f"{len(self.no_face)}"),
            ("failed", f"{len(self.failures)}"),
            ("seeking", f"{len(self.not_seek_exact)} videos not seek-exact (read from verified "
                        "points only)"),
            ("damaged", f"{len(self.with_damage)} videos with undecodable sampled frames"),
            ("time", f"{self.seconds:.1f} s, {self.frames_per_second:.1f} frames/s"),
        ]
        lines = [f"Face index {self.detector}-n{self.num_frames} ({self.workers} workers)"]
        lines += [f"  {name:<15} {value}" for name, value in rows]
        if self.failures:
            lines.append("Failures:")
            lines += [
                f"  {reason}" if path in reason else f"  {path}: {reason}"
                for path, reason in self.failures
            ]
        if self.no_face:
            lines.append("No face found:")
            lines += [f"  {path}" for path in self.no_face]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Summary numbers plus every per-video outcome, JSON-ready."""
        return {
            "detector": self.detector,
            "num_frames": self.num_frames,
            "workers": self.workers,
            "seconds": self.seconds,
            "done": self.done,
            "cached": self.cached,
            "with_face": len(self.with_face),
            "no_face": len(self.no_face),
            "failed": len(self.failures),
            "mean_found_fraction": self.mean_found_fraction,
            "mean_tracks": self.mean_tracks,
            "multi_person": self.multi_person,
            "not_seek_exact": len(self.not_seek_exact),
            "with_damage": len(self.with_damage),
            "frames_per_second": self.frames_per_second,
            "videos": [asdict(v) | {"status": v.status} for v in self.videos],
        }

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON; returns the file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path


# --------------------------------------------------------------------------- worker pool

_WORKER_INDEX: FaceIndex | None = None  # set in each worker process by _init_worker


def _init_worker(spec: tuple[str, str, int, dict[str, Any], int, int], parent: int) -> None:
    import cv2

    global _WORKER_INDEX
    cache_dir, detector, num_frames, kwargs, step, threads = spec
    cv2.setNumThreads(threads)
    _WORKER_INDEX = FaceIndex(cache_dir, detector, num_frames, kwargs, frame_step=step, threads=threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker when the parent dies (a killed parent would leave it waiting forever)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _work(path: str) -> VideoOutcome:
    assert _WORKER_INDEX is not None, "worker not initialised"
    return _WORKER_INDEX._safe_detect(path)


def _crashed(path: str) -> VideoOutcome:
    reason = f"{path}: the worker process died while processing it (decoder or detector crash)"
    return VideoOutcome(path, "failed", 0, 0.0, 0, reason)


def _run_in_pool(
    spec: tuple[str, str, int, dict[str, Any], int, int],
    paths: list[str],
    workers: int,
    done: Callable[[VideoOutcome], None],
) -> None:
    """Process ``paths`` in ``spawn`` worker processes, calling ``done`` for each outcome.

    At most ``workers`` videos are in flight. If a worker process dies, the videos in flight
    are retried one at a time in a fresh single-worker pool at the end, so only the video that
    really crashes is reported as failed.
    """
    queue = deque(paths)
    suspects: list[str] = []
    finished = 0

    def count(outcome: VideoOutcome) -> None:
        nonlocal finished
        finished += 1
        done(outcome)

    while queue:
        suspects += _pool_pass(spec, queue, min(workers, len(queue)), count)
    for crashes, path in enumerate(suspects, start=1):
        if not _pool_pass(spec, deque([path]), 1, count):
            continue
        if finished == 0 and crashes >= 3:
            raise RuntimeError(
                "face-detection worker processes die on every video: they cannot start (with "
                "the spawn start method, run from an importable script or module, not from "
                "stdin) or crash at once; run build(..., workers=0) to see the error"
            )
        done(_crashed(path))


def _pool_pass(
    spec: tuple[str, str, int, dict[str, Any], int, int],
    queue: deque[str],
    workers: int,
    done: Callable[[VideoOutcome], None],
) -> list[str]:
    """Run one pool until ``queue`` is empty or a worker dies; return the paths lost in it."""
    context = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(spec, os.getpid())
    )
    running: dict[Future[VideoOutcome], str] = {}
    lost: list[str] = []
    try:
        while queue or running:
            while queue and len(running) < workers and not lost:
                path = queue.popleft()
                running[pool.submit(_work, path)] = path
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                path = running.pop(future)
                try:
                    done(future.result())
                except BrokenProcessPool:
                    lost.append(path)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return lost
