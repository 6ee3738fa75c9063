"""Face-clip datasets streamed straight from the videos.

Each item decodes only the frames of one clip (decord, one thread, opened inside the worker),
cuts the tracked face from each frame with the cached face index and applies the same
augmentation to every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from dflab.data.clips import random_clip, uniform_clips
from dflab.data.self_blend import self_blend_clip
from dflab.data.sources import VideoItem
from dflab.data.transforms import apply_to_clip, build_transform
from dflab.data.video import read_frames
from dflab.faces.crop import aligned_template, crop_face, crop_face_aligned, square_box
from dflab.faces.crop_cache import CropCache
from dflab.faces.index import VideoFaces

CROP_MODES = ("box", "aligned")
TRACK_SCORES = ("max", "mean", "main")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut: frames, stride, crop size, margin and crop mode.

    ``crop`` is ``box`` (square around the face box) or ``aligned`` (warped onto the ArcFace
    five-point template; videos without landmarks fall back to ``box``).
    """

    frames_per_clip: int = 1
    stride: int = 1
    image_size: int = 96
    margin: float = 1.3
    crop: str = "box"

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(f"unknown crop mode {self.crop!r}; choose from {', '.join(CROP_MODES)}")


def _face_range(faces: VideoFaces, track: int = 0) -> tuple[int, int]:
    """Frames between the first and last sampled frame with the track's face (inclusive-exclusive)."""
    scores = faces.scores if track == 0 else faces.tracks()[track].scores
    found = faces.frame_indices[~np.isnan(scores)]
    return int(found.min()), int(found.max()) + 1


class FaceClipDataset(Dataset):
    """Clips of the tracked faces in each video.

    Training mode draws ``clips_per_video`` random clips of one face per video each time an
    item is read: the manipulated face where the dataset marks it (``train_tracks``), else the
    main face (track 0). Evaluation mode scores every face track of a video: it
    enumerates (video, track) units, track 0 always and each other track found on at least
    ``min_track_coverage`` of the sampled frames (only track 0 with ``track_score="main"``), and
    cuts ``clips_per_video`` evenly spaced clips per unit within the frames where that track
    was detected, the same every epoch.

    Args:
        items: the videos (all must have a face in the index).
        faces: face index entry per item, same order.
        spec: clip geometry.
        clips_per_video: clips per video (per scored track in evaluation) per epoch.
        train: random clips and augmentation when true.
        augment: augmentation preset name (training only).
        seed: base seed of the random clip choice.
        track_score: how video scores combine tracks (``max``, ``mean`` or ``main``); ``main``
            scores only track 0.
        min_track_coverage: share of sampled frames a track other than 0 needs to be scored.
        crop_cache: where crops are cached (``None``: always decode).
        video_keys: face-index key per item (needed with ``crop_cache``).
        train_tracks: track used for training per item (default: track 0, the main face).
        self_blend: probability that a real training clip is turned into a self-blended
            pseudo-fake (label 1; see :mod:`dflab.data.self_blend`).
    """

    def __init__(self, items: Sequence[VideoItem], faces: Sequence[VideoFaces], spec: ClipSpec,
                 clips_per_video: int, train: bool, augment: str = "none", seed: int = 0,
                 track_score: str = "max", min_track_coverage: float = 0.25,
                 crop_cache: CropCache | None = None, video_keys: Sequence[str | None] = (),
                 train_tracks: Sequence[int] = (), self_blend: float = 0.0) -> None:
        if len(items) != len(faces):
            raise ValueError("items and faces differ in length")
        if track_score not in TRACK_SCORES:
            raise ValueError(f"unknown track_score {track_score!r}; choose from {', '.join(TRACK_SCORES)}")
        self.items, self.faces, self.spec = list(items), list(faces), spec
        self.clips_per_video, self.train, self.seed = clips_per_video, train, seed
        self.track_score, self.min_track_coverage = track_score, min_track_coverage
        self.transform = build_transform(augment if train else "none", spec.frames_per_clip)
        if crop_cache is not None and len(video_keys) != len(self.items):
            raise ValueError("a crop cache needs one video key per item")
        self.crop_cache, self.video_keys = crop_cache, list(video_keys)
        self.self_blend = self_blend if train else 0.0
        tracks = list(train_tracks) or [0] * len(self.items)
        #: ``(video, track)`` per scored unit; ``clips_per_video`` consecutive items each
        self.units: list[tuple[int, int]] = (
            list(enumerate(tracks)) if train
            else [(v, 0) for v in range(len(self.items))] if track_score == "main"
            else [(v, t) for v, f in enumerate(self.faces) for t in f.scored_tracks(min_track_coverage)]
        )

    def __len__(self) -> int:
        return len(self.units) * self.clips_per_video

    def unit(self, index: int) -> tuple[int, int]:
        """``(video, track)`` of item ``index``."""
        return self.units[index // self.clips_per_video]

    def clip_indices(self, index: int) -> np.ndarray:
        """Frame indices of clip ``index``."""
        (video, track), k = self.unit(index), index % self.clips_per_video
        faces, spec = self.faces[video], self.spec
        lo, hi = _face_range(faces, track)
        if self.train:
            # torch's RNG is seeded per worker and epoch (and by seed_everything), so clips change
            # every epoch yet repeat for the same seed.
            rng = np.random.default_rng([self.seed, index, int(torch.randint(2**31, (1,)))])
            return random_clip(faces.num_frames, spec.frames_per_clip, spec.stride, rng, lo, hi)
        return uniform_clips(faces.num_frames, spec.frames_per_clip, spec.stride, self.clips_per_video, lo, hi)[k]

    def _crop_landmarks(self, faces: VideoFaces, track: int, idx: np.ndarray) -> np.ndarray:
        """The track's five landmarks ``(T, 5, 2)`` in the pixels of its crops."""
        spec = self.spec
        if spec.crop == "aligned":
            return np.repeat(aligned_template(spec.image_size, spec.margin)[None], len(idx), axis=0)
        points, boxes = faces.landmarks_at(idx, track), faces.box_at(idx, track)
        squares = np.stack([square_box(b, spec.margin) for b in boxes])
        scale = spec.image_size / (squares[:, 2] - squares[:, 0])
        return (points - squares[:, None, :2]) * scale[:, None, None]

    def _cut(self, path: str, faces: VideoFaces, track: int, idx: np.ndarray) -> np.ndarray:
        """Decode frames ``idx`` and cut the track's face from each: ``(T, S, S, 3)`` uint8."""
        spec = self.spec
        frames = read_frames(path, idx)
        if spec.crop == "aligned" and faces.track_has_landmarks(track):
            points = faces.landmarks_at(idx, track)
            return np.stack([crop_face_aligned(f, p, spec.image_size, spec.margin)
                             for f, p in zip(frames, points, strict=True)])
        boxes = faces.box_at(idx, track)
        return np.stack([crop_face(f, b, spec.image_size, spec.margin)
                         for f, b in zip(frames, boxes, strict=True)])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video, track = self.unit(index)
        item, faces = self.items[video], self.faces[video]
        idx = self.clip_indices(index)
        key = self.video_keys[video] if self.crop_cache is not None else None
        crops = None if key is None else self.crop_cache.load(key, track, idx)  # type: ignore[union-attr]
        if crops is None:
            crops = self._cut(item.path, faces, track, idx)
            if key is not None:
                self.crop_cache.store(key, track, idx, crops)  # type: ignore[union-attr]
        label = item.label
        if self.self_blend > 0 and label == 0 and faces.track_has_landmarks(track):
            rng = np.random.default_rng([self.seed, index, int(torch.randint(2**31, (1,))), 7])
            if rng.random() < self.self_blend:
                crops = self_blend_clip(crops, self._crop_landmarks(faces, track, idx), rng)
                label = 1
        crops = apply_to_clip(self.transform, crops)
        clip = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        return {
            "clip": clip,
            "label": torch.tensor(label, dtype=torch.long),
            "video_idx": torch.tensor(video, dtype=torch.long),
            "track_idx": torch.tensor(track, dtype=torch.long),
            "clip_idx": torch.tensor(index, dtype=torch.long),
        }
