"""Detect faces in one video: sample frames, decode exactly those (checking the decode as it
goes), run the detector and link the detections into tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dflab.faces.detector import FaceDetector
from dflab.faces.record import VideoFaces, failed_record
from dflab.faces.tracks import iou_matrix
from dflab.video import VideoDecodeError, probe
from dflab.video.background import CheckInBackground


def detector_threads(detector: str, kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
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
    path: str | Path, detector: FaceDetector, num_frames: int = 16, step: int = 0, threads: int = 1,
    keep: dict[int, np.ndarray] | None = None, also: Sequence[int] | np.ndarray = (),
) -> VideoFaces:
    """Decode ``num_frames`` sampled frames of a video, detect faces and link them into tracks.

    The frames are decoded in one forward pass that also checks where the video can be
    seeked exactly (:func:`dflab.video.check_decode`), in a background thread while the
    detector runs on the frames already decoded. The main face (``boxes``, ``scores``,
    ``landmarks``) is track 0 of :meth:`VideoFaces.tracks`. Decode errors do not raise: they
    are returned in :attr:`VideoFaces.error`; sampled frames that do not decode (a damaged
    file) have no face and are listed in :attr:`VideoFaces.damaged`. ``threads``: decoder
    threads.

    ``keep`` (a dict) receives the decoded RGB frames of the sampled indices and of ``also``
    (more display indices decoded in the same pass, without detection), so a caller that cuts
    face crops from them afterwards does not decode the video again.
    """
    path = str(path)
    found: dict[int, list] = {}
    try:
        info = probe(path)
        indices = sample_indices(info.num_frames, num_frames, step)
        extra = {int(i) for i in also if 0 <= int(i) < info.num_frames} - set(indices.tolist())
        wanted = np.union1d(indices, np.fromiter(extra, np.int64, len(extra)))
        with CheckInBackground(path, wanted, threads) as pending:  # decoding overlaps detection
            for i, rgb in pending:
                if keep is not None:
                    keep[i] = rgb
                if i not in extra:
                    found[i] = detector.detect(rgb)
            decoded = pending.result
    except VideoDecodeError as err:
        return failed_record(path, str(err))
    for i in decoded.damaged:  # handed over, then not decoded again (see check_decode)
        found.pop(i, None)
        if keep is not None:
            keep.pop(i, None)
    if not found:
        reason = decoded.errors[0] if decoded.errors else "no frame came out"
        return failed_record(path, f"{path}: none of {len(indices)} sampled frames could be decoded ({reason})")
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
