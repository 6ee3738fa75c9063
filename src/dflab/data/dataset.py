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
from dflab.data.sources import VideoItem
from dflab.data.transforms import apply_to_clip, build_transform
from dflab.data.video import read_frames
from dflab.faces.crop import crop_face, crop_face_aligned
from dflab.faces.index import VideoFaces

CROP_MODES = ("box", "aligned")


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


def _face_range(faces: VideoFaces) -> tuple[int, int]:
    """Frames between the first and last sampled frame with a face (inclusive-exclusive)."""
    found = faces.frame_indices[faces.found]
    return int(found.min()), int(found.max()) + 1


class FaceClipDataset(Dataset):
    """Clips of the tracked face in each video.

    Training mode draws ``clips_per_video`` random clips per video each time an item is read;
    evaluation mode uses ``clips_per_video`` evenly spaced clips, the same every epoch.

    Args:
        items: the videos (all must have a face in the index).
        faces: face index entry per item, same order.
        spec: clip geometry.
        clips_per_video: clips per video per epoch.
        train: random clips and augmentation when true.
        augment: augmentation preset name (training only).
        seed: base seed of the random clip choice.
    """

    def __init__(self, items: Sequence[VideoItem], faces: Sequence[VideoFaces], spec: ClipSpec,
                 clips_per_video: int, train: bool, augment: str = "none", seed: int = 0) -> None:
        if len(items) != len(faces):
            raise ValueError("items and faces differ in length")
        self.items, self.faces, self.spec = list(items), list(faces), spec
        self.clips_per_video, self.train, self.seed = clips_per_video, train, seed
        self.transform = build_transform(augment if train else "none", spec.frames_per_clip)

    def __len__(self) -> int:
        return len(self.items) * self.clips_per_video

    def clip_indices(self, index: int) -> np.ndarray:
        """Frame indices of clip ``index``."""
        video, k = divmod(index, self.clips_per_video)
        faces, spec = self.faces[video], self.spec
        lo, hi = _face_range(faces)
        if self.train:
            # torch's RNG is seeded per worker and epoch (and by seed_everything), so clips change
            # every epoch yet repeat for the same seed.
            rng = np.random.default_rng([self.seed, index, int(torch.randint(2**31, (1,)))])
            return random_clip(faces.num_frames, spec.frames_per_clip, spec.stride, rng, lo, hi)
        return uniform_clips(faces.num_frames, spec.frames_per_clip, spec.stride, self.clips_per_video, lo, hi)[k]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video = index // self.clips_per_video
        item, faces, spec = self.items[video], self.faces[video], self.spec
        idx = self.clip_indices(index)
        frames = read_frames(item.path, idx)
        if spec.crop == "aligned" and faces.has_landmarks:
            points = faces.landmarks_at(idx)
            crops = np.stack([crop_face_aligned(f, p, spec.image_size, spec.margin)
                              for f, p in zip(frames, points, strict=True)])
        else:
            boxes = faces.box_at(idx)
            crops = np.stack([crop_face(f, b, spec.image_size, spec.margin) for f, b in zip(frames, boxes, strict=True)])
        crops = apply_to_clip(self.transform, crops)
        clip = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        return {
            "clip": clip,
            "label": torch.tensor(item.label, dtype=torch.long),
            "video_idx": torch.tensor(video, dtype=torch.long),
            "clip_idx": torch.tensor(index, dtype=torch.long),
        }
