"""Score one video or image the way evaluation scores a test video.

A video: faces are detected on ``detection_frames`` sampled frames and linked into tracks
(:func:`~dflab.faces.detect.detect_video`); every track worth scoring (track 0 always, others
seen on ``min_track_coverage`` of the sampled frames) gets ``clips_per_track`` evenly spaced clips
within the frames where it was seen, cut by the same :class:`~dflab.clips.dataset.FaceClipDataset`
as validation and test; a track's score is the mean of its clips' fake probabilities and the
file's score combines the tracks (``max``, ``mean`` or ``main``;
:func:`~dflab.metrics.video.video_scores`). The frames the clips most likely need are decoded
in the detection pass and kept, so a video is usually decoded once; every frame is exact (what
playback shows). Probabilities are then calibrated with the model's temperature.

An image: every detected face is a track of one frame (largest first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dflab.faces.record import VideoFaces
from dflab.predict.models import Scorer
from dflab.predict.results import (
    FAILED,
    NO_FACE,
    SCORED,
    UNREADABLE,
    FileResult,
    FrameScore,
    TrackResult,
)

BATCH = 64
"""Clips per model call."""


@dataclass
class Scored:
    """A file's result and what drawing it needs (the face record of a video, the RGB image)."""

    result: FileResult
    faces: VideoFaces | None = None
    image: np.ndarray | None = None
    crops: dict[tuple[int, int], np.ndarray] | None = None


def model_detector(scorer: Scorer, threads: int = 2) -> Any:
    """The face detector the model was trained with (its name and options), using ``threads``."""
    from dflab.faces.detect import detector_threads
    from dflab.faces.detector import create_detector

    s = scorer.settings
    return create_detector(s.detector, **detector_threads(s.detector, dict(s.detector_options), threads))


def _logit(p: float) -> float:
    """The logit of a probability clamped to ``[1e-6, 1 - 1e-6]`` (as the calibration's video logits)."""
    from scipy.special import logit

    return float(logit(min(max(p, 1e-6), 1 - 1e-6)))


def calibrated(scorer: Scorer, logit: float | np.ndarray) -> Any:
    """Fake probability after the scorer's temperature (plain sigmoid without calibration)."""
    from scipy.special import expit  # overflow-safe sigmoid

    t = scorer.calibration.temperature if scorer.calibration is not None else 1.0
    if isinstance(logit, np.ndarray):
        return expit(logit.astype(np.float64) / t)
    return float(expit(float(logit) / t))


def _combine(track_probs: dict[int, float], how: str) -> float:
    """The file's raw probability from its tracks' (as :func:`~dflab.metrics.video.video_scores`)."""
    import torch

    from dflab.metrics.video import video_scores

    tracks = sorted(track_probs)
    probs = torch.tensor([track_probs[t] for t in tracks], dtype=torch.float64)
    zeros = torch.zeros(len(tracks), dtype=torch.long)
    _, out, _ = video_scores(probs, zeros, zeros, torch.tensor(tracks), how)
    return float(out[0])


def _finish(result: FileResult, scorer: Scorer, clip_logits: dict[int, list[float]],
            frames: dict[int, list[FrameScore]], threshold: float) -> FileResult:
    """Track and file scores from the clips' raw logits; verdict at ``threshold``."""
    from scipy.special import expit

    raw = {t: float(np.mean(expit(np.asarray(v, np.float64)))) for t, v in clip_logits.items()}
    result.tracks = [TrackResult(t, float(calibrated(scorer, _logit(raw[t]))), frames[t]) for t in sorted(raw)]
    result.raw_score = _combine(raw, scorer.settings.track_score)
    result.score = float(calibrated(scorer, _logit(result.raw_score)))
    result.verdict = "fake" if result.score >= threshold else "real"
    result.status = SCORED
    return result


def score_video(path: str, scorer: Scorer, detector: Any, threshold: float, frames: int | None = None,
                threads: int = 2, keep_crops: bool = False) -> Scored:
    """Score one video file.

    Args:
        path: video file.
        scorer: the model.
        detector: a :class:`~dflab.faces.detector.FaceDetector` built from the model's settings.
        threshold: calibrated probability at or above which the verdict is ``fake``.
        frames: frames scored per face track (default ``clips_per_track * frames_per_clip``,
            as at evaluation).
        threads: decoder threads.
        keep_crops: keep the first clip frame's crop of each scored clip (for Grad-CAM).

    Returns:
        The result (``unreadable`` / ``no_face`` / ``failed`` with a reason, never a default score).
    """
    from dflab.clips.dataset import ClipSpec, FaceClipDataset
    from dflab.clips.sampling import clip_span, uniform_clips
    from dflab.datasets.sources import VideoItem
    from dflab.faces.detect import detect_video
    from dflab.video import VideoDecodeError, probe

    start = time.perf_counter()
    s = scorer.settings
    result = FileResult(path, "video", FAILED)
    clips = max(1, (frames or s.clips_per_track * s.frames_per_clip) // s.frames_per_clip)
    try:
        info = probe(path)
    except VideoDecodeError as err:
        result.status, result.reason = UNREADABLE, str(err)
        return Scored(result)
    result.num_frames, result.fps, result.width, result.height = info.num_frames, info.fps, info.width, info.height
    span = clip_span(s.frames_per_clip, s.frame_stride)
    if frames is not None:  # more clips than start positions would only repeat clips
        clips = min(clips, max(1, info.num_frames - span + 1))
    likely = uniform_clips(info.num_frames, s.frames_per_clip, s.frame_stride, clips).ravel() \
        if info.num_frames >= span else np.zeros(0, np.int64)
    kept: dict[int, np.ndarray] = {}
    faces = detect_video(path, detector, s.detection_frames, s.frame_step, threads, keep=kept, also=likely)
    if faces.error is not None:
        result.status, result.reason = UNREADABLE, faces.error
    elif not faces.ok:
        result.status, result.reason = NO_FACE, f"no face found on {len(faces.frame_indices)} sampled frames"
    elif faces.num_frames < span:
        result.reason = f"shorter than one clip ({span} frames)"
    if result.reason:
        result.seconds = time.perf_counter() - start
        return Scored(result, faces)

    spec = ClipSpec(s.frames_per_clip, s.frame_stride, s.image_size, s.margin, s.crop)
    dataset = FaceClipDataset([VideoItem(path, 0)], [faces], spec, clips, train=False,
                              track_score=s.track_score, min_track_coverage=s.min_track_coverage,
                              decoded=[kept])
    stamps = info.timestamps  # presentation times: right for variable frame rates too
    kept_crops: dict[tuple[int, int], np.ndarray] = {}
    listed: set[tuple[int, int]] = set()
    clip_logits: dict[int, list[float]] = {}
    frame_scores: dict[int, list[FrameScore]] = {}
    problems: list[str] = []
    for lo in range(0, len(dataset), BATCH):
        items = dataset.__getitems__(list(range(lo, min(lo + BATCH, len(dataset)))))
        samples = [it for it in items if "clip" in it]
        problems += [r["reason"] for it in items for r in it.get("skipped", ())]
        if not samples:
            continue
        logits = scorer.logits(np.stack([it["clip"].numpy() for it in samples]))
        for it, logit in zip(samples, logits.tolist(), strict=True):
            index, track = int(it["clip_idx"]), int(it["track_idx"])
            idx = dataset.clip_indices(index)
            boxes = faces.box_at(idx, track)
            clip_logits.setdefault(track, []).append(logit)  # repeats count, as at evaluation
            prob = float(calibrated(scorer, logit))
            if (track, int(idx[0])) in listed:  # a clip that repeats (a short track) is listed once
                continue
            listed.add((track, int(idx[0])))
            frame_scores.setdefault(track, []).extend(
                FrameScore(int(f), round(float(stamps[f]), 4) if info.ordered else round(f / (info.fps or 1), 4),
                           [round(float(v), 2) for v in b], round(logit, 5), round(prob, 5))
                for f, b in zip(idx.tolist(), boxes, strict=True))
            if keep_crops:
                kept_crops[(track, int(idx[0]))] = it["clip"][0].numpy()
    result.seconds = time.perf_counter() - start
    if not clip_logits:
        result.reason = f"none of the {len(dataset)} face clips could be decoded ({problems[0] if problems else '?'})"
        return Scored(result, faces)
    for t in frame_scores:
        frame_scores[t].sort(key=lambda f: f.frame)
    _finish(result, scorer, clip_logits, frame_scores, threshold)
    result.seconds = time.perf_counter() - start
    return Scored(result, faces, crops=kept_crops if keep_crops else None)


def read_image(path: str) -> np.ndarray | None:
    """An image file as ``(H, W, 3)`` uint8 RGB (EXIF orientation applied), ``None`` if unreadable."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def score_image(path: str, scorer: Scorer, detector: Any, threshold: float, keep_crops: bool = False) -> Scored:
    """Score one image: every detected face (largest first) is a one-frame track."""
    from dflab.faces.crop import crop_face, crop_face_aligned

    start = time.perf_counter()
    s = scorer.settings
    result = FileResult(path, "image", FAILED, num_frames=1)
    rgb = read_image(path)
    if rgb is None:
        result.status, result.reason = UNREADABLE, f"{path}: not a readable image"
        return Scored(result)
    result.height, result.width = rgb.shape[:2]
    if s.temporal:
        result.reason = (f"a temporal model ({s.backbone}) scores clips of {s.frames_per_clip} frames; "
                         "a still image has one")
        return Scored(result, image=rgb)
    found = sorted(detector.detect(rgb), key=lambda d: -d.area)
    if not found:
        result.status, result.reason = NO_FACE, "no face found"
        return Scored(result, image=rgb)
    crops = []
    for det in found:
        aligned = s.crop == "aligned" and np.isfinite(det.landmarks).all()
        crops.append(crop_face_aligned(rgb, det.landmarks, s.image_size, s.margin) if aligned
                     else crop_face(rgb, det.box, s.image_size, s.margin))
    clips = np.stack(crops).transpose(0, 3, 1, 2)[:, None].astype(np.float32) / 255.0  # (F, 1, 3, S, S)
    logits = scorer.logits(clips).tolist()
    frames = {t: [FrameScore(0, 0.0, [round(float(v), 2) for v in det.box], round(logit, 5),
                             round(float(calibrated(scorer, logit)), 5))]
              for t, (det, logit) in enumerate(zip(found, logits, strict=True))}
    _finish(result, scorer, {t: [v] for t, v in enumerate(logits)}, frames, threshold)
    result.seconds = time.perf_counter() - start
    kept = {(t, 0): clips[t, 0] for t in range(len(found))} if keep_crops else None
    return Scored(result, image=rgb, crops=kept)


def score_file(path: str, kind: str, scorer: Scorer, detector: Any, threshold: float, frames: int | None = None,
               threads: int = 2, keep_crops: bool = False) -> Scored:
    """Score a file of ``kind`` ``image`` (:func:`score_image`) or ``video`` (:func:`score_video`)."""
    if kind == "image":
        return score_image(path, scorer, detector, threshold, keep_crops=keep_crops)
    return score_video(path, scorer, detector, threshold, frames, threads, keep_crops=keep_crops)
