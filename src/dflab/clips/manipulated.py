"""Which face of a multi-person fake video is the manipulated one, from the dataset's masks.

Some datasets say where the forgery is: FaceForensics++ and DeepFakeDetection ship a mask video
per fake (``manipulated_sequences/<method>/masks/videos/<name>.mp4``, white where the face was
replaced), and a manifest may give a ``mask`` column in the same form. Training on a fake with
several people should show the network the face that was changed, not whichever is largest.

For a fake with two or more face tracks and a mask, the manipulated track is the one whose boxes
hold the most mask pixels on a few sampled frames. Videos with one track need no decoding.
Results are cached next to the face index (``manipulated_tracks.json``), keyed by video and mask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dflab.datasets.sources import VideoItem
from dflab.faces.index import FaceIndex
from dflab.faces.record import VideoFaces
from dflab.utils.atomic import atomic_write
from dflab.video import VideoDecodeError, probe, read_frames

log = logging.getLogger(__name__)
MIN_COVERAGE = 0.05  # a track whose boxes hold less mask than this is not "the" fake face


def track_mask_coverage(faces: VideoFaces, mask_path: str, max_frames: int = 4) -> np.ndarray:
    """Mean share of each track's box covered by the mask, on up to ``max_frames`` frames.

    Raises:
        VideoDecodeError: the mask video cannot be decoded (the message names it).
    """
    tracks = faces.tracks()
    found = faces.frame_indices[~np.isnan(faces.scores)]
    picks = found[np.linspace(0, len(found) - 1, min(max_frames, len(found))).round().astype(int)]
    picks = np.minimum(picks, probe(mask_path).num_frames - 1)  # a mask video may be shorter
    masks = read_frames(mask_path, picks).max(axis=3) > 127  # (T, h, w)
    sy, sx = masks.shape[1] / faces.height, masks.shape[2] / faces.width
    coverage = np.zeros(len(tracks))
    for t in range(len(tracks)):
        boxes = faces.box_at(picks, t) * np.array([sx, sy, sx, sy])
        shares = []
        for mask, (x1, y1, x2, y2) in zip(masks, boxes, strict=True):
            if np.isnan(x1):
                continue
            x1, y1 = max(int(x1), 0), max(int(y1), 0)
            x2, y2 = min(int(np.ceil(x2)), mask.shape[1]), min(int(np.ceil(y2)), mask.shape[0])
            if x2 > x1 and y2 > y1:
                shares.append(float(mask[y1:y2, x1:x2].mean()))
        coverage[t] = np.mean(shares) if shares else 0.0
    return coverage


def manipulated_track(faces: VideoFaces, mask_path: str) -> int:
    """The track the mask marks as manipulated; track 0 (the main face) when none stands out."""
    if len(faces.tracks()) < 2:
        return 0
    coverage = track_mask_coverage(faces, mask_path)
    best = int(np.argmax(coverage))
    return best if coverage[best] >= MIN_COVERAGE else 0


def training_tracks(items: Sequence[VideoItem], faces: Sequence[VideoFaces], index: FaceIndex,
                    progress: bool = False) -> list[int]:
    """Training track per item: the masked face of a multi-person fake, else track 0.

    An unreadable mask is logged and the main face is used; every answer is cached.
    """
    cache_file = index.folder / "manipulated_tracks.json"
    try:
        cache: dict[str, int] = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    todo = [k for k, (it, f) in enumerate(zip(items, faces, strict=True))
            if it.mask and it.label == 1 and len(f.tracks()) > 1]
    out = [0] * len(items)
    keys = {k: f"{index.key(items[k].path)}:{index.key(items[k].mask)}" for k in todo}
    missing = [k for k in todo if keys[k] not in cache]
    if missing:
        from tqdm.auto import tqdm

        for k in tqdm(missing, desc="manipulated faces (masks)", disable=not progress):
            try:
                cache[keys[k]] = manipulated_track(faces[k], items[k].mask)
            except VideoDecodeError as err:
                log.warning("%s: mask not used, training on the main face: %s", items[k].path, err)
                cache[keys[k]] = 0
        _write_json(cache_file, cache)
    for k in todo:
        out[k] = cache[keys[k]]
    return out


def _write_json(path: Path, data: dict[str, int]) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh)
