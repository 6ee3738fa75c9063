"""One video's face record: its sampled frames, every detection with landmarks, the tracks
linked from them, and what the decoder found (verified seek points, damaged frames).

:class:`VideoFaces` is what the face index stores per video (:mod:`dflab.faces.index`) and what
the clip stage reads boxes and landmarks from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dflab.faces.detector import Detection
from dflab.faces.tracks import FaceTrack, link_tracks


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



def failed_record(path: str, error: str) -> VideoFaces:
    """The record of a video that could not be read: no frames, no face, ``error`` says why."""
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
