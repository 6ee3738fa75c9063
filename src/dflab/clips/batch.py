"""The batch every DataLoader of dflab yields and every LightningModule step reads.

:class:`ClipBatch` names each key with its shape, dtype and units. ``B`` is the batch size (0
when every clip of the batch failed to decode: the step then skips it), ``T`` the frames per clip
(``data.frames_per_clip``, taken every ``data.frame_stride`` frames) and ``S`` the crop side
(``data.image_size``).
"""

from __future__ import annotations

from typing import Any, TypedDict

import torch

__all__ = ["ClipBatch", "ClipSample", "SkippedClip"]


class SkippedClip(TypedDict):
    """A clip whose frames did not decode (also listed in the run's ``data_report.json``)."""

    path: str  #: the video file
    split: str  #: ``train``, ``val`` or ``test``
    clip: int  #: the clip's index in the split's dataset
    frames: str  #: the frames that failed, as ranges (``"10-17, 40"``)
    action: str  #: ``replaced`` (training reads another clip of the video) or ``dropped``
    reason: str  #: the decoder's error, naming the file


class ClipSample(TypedDict):
    """One item of :class:`~dflab.clips.dataset.FaceClipDataset` (no batch dimension)."""

    clip: torch.Tensor  #: ``(T, 3, S, S)`` float32 RGB in ``[0, 1]``
    label: torch.Tensor  #: ``()`` int64, 1 = fake (also for a self-blended pseudo-fake)
    video_idx: torch.Tensor  #: ``()`` int64, the video's position in the split's items
    track_idx: torch.Tensor  #: ``()`` int64, the face track (0 = main face)
    clip_idx: torch.Tensor  #: ``()`` int64, the item's index in the dataset


class ClipBatch(TypedDict):
    """A collated batch (:func:`~dflab.clips.dataset.collate_clips`).

    Keys:
        clip: ``(B, T, 3, S, S)`` float32 RGB in ``[0, 1]`` (the network normalises).
        label: ``(B,)`` int64, 1 = fake.
        video_idx: ``(B,)`` int64 position of each clip's video in the split's items; joined to
            video ids once, by :func:`dflab.metrics.predictions.keyed_predictions`.
        track_idx: ``(B,)`` int64 face track of each clip (0 = the video's main face).
        clip_idx: ``(B,)`` int64 index of each item in its dataset.
        skipped: :class:`SkippedClip` records of the batch's clips that did not decode.
    """

    clip: torch.Tensor
    label: torch.Tensor
    video_idx: torch.Tensor
    track_idx: torch.Tensor
    clip_idx: torch.Tensor
    skipped: list[Any]
