"""Link per-frame face detections into per-person tracks.

Method: tracking by detection with IoU association, the idea of SORT (Bewley, Ge, Ott, Ramos
and Upcroft, "Simple Online and Realtime Tracking", ICIP 2016, arXiv:1602.00763). The sampled
frames are visited in order; on each one the detections are matched one-to-one to the live
tracks by the IoU of a detection's box with the track's last box. The assignment maximises the
total IoU (Hungarian method, :func:`scipy.optimize.linear_sum_assignment`, when scipy is
installed; otherwise greedily by descending IoU), and pairs below ``iou_threshold`` are
rejected. A detection left unmatched starts a new track; a track left unmatched for more than
``max_gap`` consecutive sampled frames ends and is never resumed.

Afterwards tracks seen on a single sampled frame are dropped when the video has a longer track
(they are mostly false detections), and the tracks are ordered by ``mean_area * coverage``,
so track 0 is the largest, most persistent person: the "main face".

Limits:
    * No motion model (SORT predicts boxes with a Kalman filter; here the last box is used), so
      a face that moves by more than about its own size between two *sampled* frames (sparse
      sampling of a long video, fast motion, a camera cut) loses IoU and starts a new track.
    * No appearance model: two faces that cross or overlap can swap tracks, and a person who
      leaves and comes back after ``max_gap`` sampled frames gets a new track.
    * Association is frame-by-frame and greedy over time (no global optimisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

try:
    from scipy.optimize import linear_sum_assignment
except ImportError:  # scipy is optional: fall back to greedy matching
    linear_sum_assignment = None


@dataclass
class FaceTrack:
    """One person's face over the sampled frames of a video.

    Attributes:
        track_id: rank of the track in its video (0 is the main face).
        boxes: ``(K, 4)`` float32 ``x1, y1, x2, y2``, NaN where the track has no detection.
        scores: ``(K,)`` float32 detector scores, NaN where the track has no detection.
        landmarks: ``(K, 5, 2)`` float32 five points, NaN where the track has no detection.
    """

    track_id: int
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @property
    def found(self) -> np.ndarray:
        """``(K,)`` bool: the track has a detection on the sampled frame."""
        return ~np.isnan(self.scores)

    @property
    def num_found(self) -> int:
        """Sampled frames with a detection."""
        return int(self.found.sum())

    @property
    def coverage(self) -> float:
        """Fraction of sampled frames with a detection (0 when nothing was sampled)."""
        return float(self.found.mean()) if len(self.scores) else 0.0

    @property
    def mean_area(self) -> float:
        """Mean box area in square pixels over the frames with a detection (0 if none)."""
        boxes = self.boxes[self.found]
        if not len(boxes):
            return 0.0
        return float(np.mean(_area(boxes)))

    @property
    def rank_key(self) -> float:
        """``mean_area * coverage``: tracks are ordered by it, largest first."""
        return self.mean_area * self.coverage


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of every ``(N, 4)`` box in ``a`` with every ``(M, 4)`` box in ``b``."""
    a, b = a[:, None, :], b[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-9)


def match_by_iou(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one ``(row, col)`` pairs maximising total IoU, each pair with IoU ``>= threshold``.

    Uses the Hungarian method when scipy is installed, else greedy by descending IoU.
    """
    if iou.size == 0:
        return []
    if linear_sum_assignment is not None:
        rows, cols = linear_sum_assignment(iou, maximize=True)
        pairs = zip(rows.tolist(), cols.tolist(), strict=True)
        return [(r, c) for r, c in pairs if iou[r, c] >= threshold]
    return _greedy_match(iou, threshold)


def _greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        r, c = np.unravel_index(flat, iou.shape)
        if iou[r, c] < threshold:
            break
        if r not in used_rows and c not in used_cols:
            pairs.append((int(r), int(c)))
            used_rows.add(int(r))
            used_cols.add(int(c))
    return pairs


@dataclass
class _Live:
    rows: list[tuple[int, int]]  # (sampled frame, detection row)
    last_box: np.ndarray
    last_seen: int


def link_tracks(
    frame_indices: np.ndarray,
    all_sample: np.ndarray,
    all_boxes: np.ndarray,
    all_scores: np.ndarray,
    all_landmarks: np.ndarray,
    iou_threshold: float = 0.3,
    max_gap: int = 2,
) -> list[FaceTrack]:
    """Group raw detections into face tracks (see the module docstring for the method).

    Args:
        frame_indices: ``(K,)`` sampled frames (only their count is used).
        all_sample: ``(M,)`` position in ``frame_indices`` of each detection.
        all_boxes: ``(M, 4)`` boxes; ``all_scores`` ``(M,)``; ``all_landmarks`` ``(M, 5, 2)``.
        iou_threshold: least IoU between a detection and a track's last box to link them.
        max_gap: sampled frames a track may go undetected and still be continued.

    Returns:
        Tracks ordered by ``mean_area * coverage`` (largest first), ``track_id`` = position.
    """
    k = len(frame_indices)
    finished: list[_Live] = []
    live: list[_Live] = []
    for sample in range(k):
        ended = [t for t in live if sample - t.last_seen - 1 > max_gap]
        finished += ended
        live = [t for t in live if t not in ended]
        rows = np.flatnonzero(all_sample == sample)
        live += _step(live, rows, sample, all_boxes, iou_threshold)
    finished += live
    tracks = [_to_track(t, k, all_boxes, all_scores, all_landmarks) for t in finished]
    return _rank(_drop_spurious(tracks))


def _step(
    live: list[_Live], rows: np.ndarray, sample: int, boxes: np.ndarray, threshold: float
) -> list[_Live]:
    """Extend the live tracks with this frame's detections; return the new tracks."""
    if not len(rows):
        return []
    last = np.stack([t.last_box for t in live]) if live else np.zeros((0, 4), np.float32)
    matched: set[int] = set()
    for ti, di in match_by_iou(iou_matrix(last, boxes[rows]), threshold):
        track, row = live[ti], int(rows[di])
        track.rows.append((sample, row))
        track.last_box, track.last_seen = boxes[row], sample
        matched.add(di)
    return [
        _Live([(sample, int(row))], boxes[row], sample)
        for di, row in enumerate(rows)
        if di not in matched
    ]


def _to_track(
    live: _Live, k: int, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray
) -> FaceTrack:
    out = FaceTrack(
        track_id=-1,
        boxes=np.full((k, 4), np.nan, np.float32),
        scores=np.full(k, np.nan, np.float32),
        landmarks=np.full((k, 5, 2), np.nan, np.float32),
    )
    for sample, row in live.rows:
        out.boxes[sample], out.scores[sample] = boxes[row], scores[row]
        out.landmarks[sample] = landmarks[row]
    return out


def _drop_spurious(tracks: list[FaceTrack]) -> list[FaceTrack]:
    """Drop single-frame tracks when some track spans more than one sampled frame."""
    if any(t.num_found > 1 for t in tracks):
        return [t for t in tracks if t.num_found > 1]
    return tracks


def _rank(tracks: list[FaceTrack]) -> list[FaceTrack]:
    ordered = sorted(tracks, key=lambda t: t.rank_key, reverse=True)  # stable on ties
    for i, track in enumerate(ordered):
        track.track_id = i
    return ordered
