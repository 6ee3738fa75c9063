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

:meth:`FaceIndex.build` runs over many videos in worker processes (:mod:`dflab.utils.pool`) with a
progress bar and never stops on a bad video; it returns a :class:`~dflab.faces.report.FaceReport`.
One video's record is :class:`~dflab.faces.record.VideoFaces`; its detection is
:func:`~dflab.faces.detect.detect_video`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dflab.faces.detect import detect_video, detector_threads
from dflab.faces.detector import create_detector
from dflab.faces.record import VideoFaces
from dflab.faces.report import FaceReport, VideoOutcome, outcome_of
from dflab.utils.atomic import atomic_write
from dflab.utils.pool import run_in_pool
from dflab.utils.threads import available_cores

_CACHE_VERSION = 4  # 3-4: seek check and damaged frames; 2: main face = largest face track



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
        roots: dataset folders; a video under one is keyed by its path relative to that folder
            (with its size and modification time), so machines that mount the same dataset at
            different paths share the cache. Other videos are keyed by their absolute path.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        detector: str = "blazeface",
        num_frames: int = 16,
        detector_kwargs: dict[str, Any] | None = None,
        frame_step: int = 0,
        threads: int = 0,
        roots: Sequence[str | Path] = (),
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
        self.detector = create_detector(detector, **detector_threads(detector, self.detector_kwargs, self.threads))
        step = f"-s{self.frame_step}" if self.frame_step else ""
        self.folder = self.cache_dir / f"{self.detector.name}-n{self.num_frames}{step}"
        # longest first, so a dataset inside another's folder keys by its own relative paths
        self.roots = sorted({os.path.abspath(r) for r in roots}, key=len, reverse=True)

    @classmethod
    def from_config(cls, faces: Any, roots: Sequence[str | Path] = ()) -> FaceIndex:
        """The index described by a :class:`~dflab.config.schema.FacesConfig`, keyed relative
        to the dataset folders ``roots``."""
        return cls(faces.cache_dir, faces.detector, faces.num_frames, faces.detector_options,
                   frame_step=faces.frame_step, roots=roots)

    def __repr__(self) -> str:
        return f"FaceIndex({str(self.folder)!r})"

    def portable_path(self, path: str | Path) -> str:
        """``path`` as the cache names it: relative to the dataset folder holding it
        (``rel:<path>``), else absolute."""
        absolute = os.path.abspath(path)
        for root in self.roots:
            if absolute.startswith(root.rstrip(os.sep) + os.sep):
                return "rel:" + os.path.relpath(absolute, root)
        return absolute

    def key(self, path: str | Path) -> str | None:
        """Cache key of a video (``None`` if the file cannot be stat'ed): a digest of its
        :meth:`portable_path`, size and modification time."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return hashlib.sha1(f"{self.portable_path(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()

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
                outcomes[path] = outcome_of(faces, "cached")
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
                run_in_pool(detection_worker, self._spec(max(1, available_cores() // workers)), todo, workers, done, crashed)
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

    def _spec(self, threads: int) -> tuple[Any, ...]:
        return (str(self.cache_dir), self.detector_name, self.num_frames, self.detector_kwargs,
                self.frame_step, threads, tuple(self.roots))

    def _safe_detect(self, path: str) -> VideoOutcome:
        """Detect and store, turning any exception into a failed (uncached) outcome."""
        try:
            return outcome_of(self.detect(path), "detected")
        except Exception as err:  # a bug or resource error must not stop a long build
            return VideoOutcome(path, "failed", 0, 0.0, 0, f"{path}: {type(err).__name__}: {err}")




def detection_worker(cache_dir: str, detector: str, num_frames: int, kwargs: dict[str, Any], step: int,
                     threads: int, roots: Sequence[str] = ()) -> Callable[[str], VideoOutcome]:
    """Build, inside a worker process, the index a parent's :meth:`FaceIndex.build` described;
    returns the function the pool calls per video."""
    import cv2

    cv2.setNumThreads(threads)
    return FaceIndex(cache_dir, detector, num_frames, kwargs, frame_step=step, threads=threads,
                     roots=roots)._safe_detect


def crashed(path: str) -> VideoOutcome:
    """The outcome of a video whose worker process died on it."""
    reason = f"{path}: the worker process died while processing it (decoder or detector crash)"
    return VideoOutcome(path, "failed", 0, 0.0, 0, reason)
