"""Face-clip datasets streamed straight from the videos.

Clips are read a batch at a time (``__getitems__``): the clips of one video in a batch are
decoded in one exact pass (:func:`dflab.video.iter_frames`, starting only at the video's
verified access points), and each frame is cut into the face crops that need it as soon as it
is decoded. Every frame a model sees therefore equals what playback shows.

A clip whose frames do not decode (a damaged file) is replaced by another clip of the same
video in training and dropped in evaluation; either way the batch carries a record of it under
``"skipped"`` for the DataModule's report. All randomness of an item (clip choice, self-blend,
augmentation) comes from one generator seeded by the run seed, the item index and a draw from
torch's per-worker generator, so the same seed gives the same batches.
"""

from __future__ import annotations

import random
import typing
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dflab.clips.batch import ClipBatch, ClipSample
from dflab.clips.sampling import clip_span, random_clip, uniform_clips
from dflab.clips.self_blend import self_blend_clip
from dflab.clips.transforms import apply_to_clip, build_transform
from dflab.datasets.sources import VideoItem
from dflab.faces.crop import aligned_template, crop_face, crop_face_aligned, square_box
from dflab.faces.crop_cache import CropCache
from dflab.faces.record import VideoFaces
from dflab.video import Undecoded, VideoDecodeError, format_ranges, iter_frames

CROP_MODES = ("box", "aligned")
TRACK_SCORES = ("max", "mean", "main")
MAX_REDRAWS = 8
"""Other clips of a video tried in training when a clip's frames do not decode."""


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

    @property
    def span(self) -> int:
        """Video frames one clip covers."""
        return clip_span(self.frames_per_clip, self.stride)


def _face_range(faces: VideoFaces, track: int = 0) -> tuple[int, int]:
    """Frames between the first and last sampled frame with the track's face (inclusive-exclusive)."""
    scores = faces.scores if track == 0 else faces.tracks()[track].scores
    found = faces.frame_indices[~np.isnan(scores)]
    return int(found.min()), int(found.max()) + 1


@dataclass
class _Request:
    """One clip to cut: its position in the batch, video, track and frames."""

    slot: int
    index: int
    video: int
    track: int
    frames: np.ndarray
    rng: np.random.Generator | None
    crops: np.ndarray | None = None


class FaceClipDataset(Dataset):
    """Clips of the tracked faces in each video.

    Training mode draws ``clips_per_video`` random clips of one face per video each time an
    item is read: the manipulated face where the dataset marks it (``train_tracks``), else the
    main face (track 0). Evaluation mode scores every face track of a video: it
    enumerates (video, track) units, track 0 always and each other track found on at least
    ``min_track_coverage`` of the sampled frames (only track 0 with ``track_score="main"``), and
    cuts ``clips_per_video`` evenly spaced clips per unit within the frames where that track
    was detected, the same every epoch.

    An item is a :class:`~dflab.clips.batch.ClipSample`: ``clip`` ``(T, 3, S, S)`` float32 RGB
    in ``[0, 1]``, ``label`` (1 = fake), ``video_idx``, ``track_idx`` and ``clip_idx`` (the item
    index); :func:`collate_clips` stacks them into a :class:`~dflab.clips.batch.ClipBatch`.

    Args:
        items: the videos (all must have a face in the index and at least one clip's frames).
        faces: face index entry per item, same order.
        spec: clip geometry.
        clips_per_video: clips per video (per scored track in evaluation) per epoch.
        train: random clips and augmentation when true.
        augment: augmentation preset name (training only).
        seed: base seed of every random choice.
        track_score: how video scores combine tracks (``max``, ``mean`` or ``main``); ``main``
            scores only track 0.
        min_track_coverage: share of sampled frames a track other than 0 needs to be scored.
        crop_cache: where crops are cached (``None``: always decode).
        video_keys: face-index key per item (needed with ``crop_cache``).
        train_tracks: track used for training per item (default: track 0, the main face).
        self_blend: probability that a real training clip is turned into a self-blended
            pseudo-fake (label 1; see :mod:`dflab.clips.self_blend`).
        split: the split's name in ``skipped`` records.
        decoded: per item, frames already decoded (display index → ``(H, W, 3)`` uint8 RGB, as
            :func:`~dflab.faces.detect.detect_video` keeps them); crops are cut from these and
            only the other frames are decoded.

    Raises:
        ValueError: a video is shorter than one clip, or the arguments disagree in length.
    """

    def __init__(self, items: Sequence[VideoItem], faces: Sequence[VideoFaces], spec: ClipSpec,
                 clips_per_video: int, train: bool, augment: str = "none", seed: int = 0,
                 track_score: str = "max", min_track_coverage: float = 0.25,
                 crop_cache: CropCache | None = None, video_keys: Sequence[str | None] = (),
                 train_tracks: Sequence[int] = (), self_blend: float = 0.0,
                 split: str = "", decoded: Sequence[Mapping[int, np.ndarray] | None] = ()) -> None:
        if len(items) != len(faces):
            raise ValueError("items and faces differ in length")
        if track_score not in TRACK_SCORES:
            raise ValueError(f"unknown track_score {track_score!r}; choose from {', '.join(TRACK_SCORES)}")
        short = [it.path for it, f in zip(items, faces, strict=True) if f.num_frames < spec.span]
        if short:
            raise ValueError(f"{short[0]}: shorter than one clip ({spec.span} frames); "
                             f"{len(short)} such video(s)")
        self.items, self.faces, self.spec = list(items), list(faces), spec
        self.clips_per_video, self.train, self.seed = clips_per_video, train, seed
        self.track_score, self.min_track_coverage = track_score, min_track_coverage
        self.transform = build_transform(augment if train else "none", spec.frames_per_clip)
        if crop_cache is not None and len(video_keys) != len(self.items):
            raise ValueError("a crop cache needs one video key per item")
        self.crop_cache, self.video_keys = crop_cache, list(video_keys)
        self.self_blend = self_blend if train else 0.0
        self.split = split or ("train" if train else "eval")
        self.decoded = list(decoded) or [None] * len(self.items)
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

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of every random choice of training item ``index``.

        Seeded by the run seed, the index and one draw from torch's generator, which Lightning
        seeds per DataLoader worker and which moves on every epoch: clips differ between epochs
        and repeat for the same seed.
        """
        return np.random.default_rng([self.seed, index, int(torch.randint(2**31, (1,)))])

    def clip_indices(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Frame indices of clip ``index`` (training: a new random clip from ``rng``)."""
        (video, track), k = self.unit(index), index % self.clips_per_video
        faces, spec = self.faces[video], self.spec
        lo, hi = _face_range(faces, track)
        if self.train:
            rng = rng if rng is not None else self.item_rng(index)
            return random_clip(faces.num_frames, spec.frames_per_clip, spec.stride, rng, lo, hi)
        return uniform_clips(faces.num_frames, spec.frames_per_clip, spec.stride, self.clips_per_video, lo, hi)[k]

    def crops(self, index: int, frames: np.ndarray | None = None) -> np.ndarray:
        """Face crops of item ``index``'s track before augmentation, ``(T, S, S, 3)`` uint8.

        Args:
            index: item index.
            frames: frame indices (default: :meth:`clip_indices` of the item).

        Raises:
            VideoDecodeError: some of the frames do not decode (names the file and frames).
        """
        video, track = self.unit(index)
        frames = self.clip_indices(index) if frames is None else np.asarray(frames, np.int64)
        req = _Request(0, index, video, track, frames, None)
        failed = self._read([req])
        if failed:
            raise failed[0]
        assert req.crops is not None
        return req.crops

    def _crop_landmarks(self, faces: VideoFaces, track: int, idx: np.ndarray) -> np.ndarray:
        """The track's five landmarks ``(T, 5, 2)`` in the pixels of its crops."""
        spec = self.spec
        if spec.crop == "aligned":
            return np.repeat(aligned_template(spec.image_size, spec.margin)[None], len(idx), axis=0)
        points, boxes = faces.landmarks_at(idx, track), faces.box_at(idx, track)
        squares = np.stack([square_box(b, spec.margin) for b in boxes])
        scale = spec.image_size / (squares[:, 2] - squares[:, 0])
        return (points - squares[:, None, :2]) * scale[:, None, None]

    def _cropper(self, faces: VideoFaces, track: int, idx: np.ndarray):
        """``crop(frame, t)``: the face crop ``(S, S, 3)`` of the ``t``-th frame of ``idx``."""
        spec = self.spec
        if spec.crop == "aligned" and faces.track_has_landmarks(track):
            points = faces.landmarks_at(idx, track)
            return lambda frame, t: crop_face_aligned(frame, points[t], spec.image_size, spec.margin)
        boxes = faces.box_at(idx, track)
        return lambda frame, t: crop_face(frame, boxes[t], spec.image_size, spec.margin)

    def _read(self, requests: list[_Request]) -> dict[int, VideoDecodeError]:
        """Fill ``crops`` of every request; the clips whose frames did not decode, by slot.

        Crops come from the crop cache where it has them; otherwise the clips of one video are
        decoded together in one pass and each frame is cut as it comes.
        """
        failed: dict[int, VideoDecodeError] = {}
        by_video: dict[int, list[_Request]] = defaultdict(list)
        for req in requests:
            key = self.video_keys[req.video] if self.crop_cache is not None else None
            req.crops = None if key is None else self.crop_cache.load(key, req.track, req.frames)  # type: ignore[union-attr]
            if req.crops is None:
                by_video[req.video].append(req)
        for video, reqs in by_video.items():
            faces, size = self.faces[video], self.spec.image_size
            users: dict[int, list[tuple[_Request, int, Any]]] = defaultdict(list)
            for req in reqs:
                req.crops = np.zeros((len(req.frames), size, size, 3), np.uint8)
                crop = self._cropper(faces, req.track, req.frames)
                for t, f in enumerate(req.frames.tolist()):
                    users[f].append((req, t, crop))
            undecoded = Undecoded()
            path = self.items[video].path
            kept = self.decoded[video] or {}
            for f in [f for f in users if f in kept]:
                for req, t, crop in users.pop(f):
                    req.crops[t] = crop(kept[f], t)  # type: ignore[index]
            try:
                for f, frame in iter_frames(path, sorted(users), faces.access_points, undecoded=undecoded) \
                        if users else ():
                    for req, t, crop in users[f]:
                        req.crops[t] = crop(frame, t)  # type: ignore[index]
            except VideoDecodeError as err:  # the file cannot be opened any more
                undecoded = Undecoded(sorted(users), [str(err)])
            bad = set(undecoded.frames)
            for req in reqs:
                hit = sorted(bad.intersection(req.frames.tolist()))
                if hit:
                    failed[req.slot] = Undecoded(hit, undecoded.errors).error(path)
                    req.crops = None
                elif self.crop_cache is not None:
                    self.crop_cache.store(self.video_keys[video], req.track, req.frames, req.crops)  # type: ignore[arg-type]
        return failed

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The items ``indices`` (a batch), read together; see :func:`collate_clips`."""
        requests = []
        for slot, index in enumerate(indices):
            video, track = self.unit(index)
            rng = self.item_rng(index) if self.train else None
            requests.append(_Request(slot, index, video, track, self.clip_indices(index, rng), rng))
        failed = self._read(requests)
        skipped: list[dict[str, Any]] = []
        for slot, err in sorted(failed.items()):
            req = requests[slot]
            if self.train:
                err = self._redraw(req, err)
            skipped.append(self._record(req, err))
        out: list[dict[str, Any]] = [typing.cast(dict, self._sample(r)) for r in requests if r.crops is not None]
        if skipped:
            out.append({"skipped": skipped})
        return out

    def _redraw(self, req: _Request, err: VideoDecodeError) -> VideoDecodeError:
        """Replace a training clip that did not decode by another clip of the same video."""
        bad = set(err.frames)
        for _ in range(MAX_REDRAWS):
            frames = self.clip_indices(req.index, req.rng)
            if bad.intersection(frames.tolist()):
                continue
            req.frames = frames
            again = self._read([req]).get(req.slot)
            if again is None:
                return err
            bad.update(again.frames)
        req.crops = None
        return err

    def _record(self, req: _Request, err: VideoDecodeError) -> dict[str, Any]:
        action = ("replaced" if req.crops is not None else "dropped") if self.train else "dropped"
        return {"path": self.items[req.video].path, "split": self.split, "clip": req.index,
                "frames": format_ranges(err.frames), "action": action, "reason": str(err)}

    def _sample(self, req: _Request) -> ClipSample:
        crops, label = req.crops, self.items[req.video].label
        faces = self.faces[req.video]
        rng = req.rng
        assert crops is not None
        if (self.self_blend > 0 and label == 0 and rng is not None
                and faces.track_has_landmarks(req.track) and rng.random() < self.self_blend):
            crops = self_blend_clip(crops, self._crop_landmarks(faces, req.track, req.frames), rng)
            label = 1
        if self.transform is not None and rng is not None:
            seed = int(rng.integers(2**63))
            self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
        crops = apply_to_clip(self.transform, crops)
        clip = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
        return {
            "clip": clip,
            "label": torch.tensor(label, dtype=torch.long),
            "video_idx": torch.tensor(req.video, dtype=torch.long),
            "track_idx": torch.tensor(req.track, dtype=torch.long),
            "clip_idx": torch.tensor(req.index, dtype=torch.long),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` alone.

        Raises:
            VideoDecodeError: in evaluation, the clip's frames do not decode (in training
                another clip of the video is read instead).
        """
        out = self.__getitems__([index])
        if "clip" not in out[0]:
            raise VideoDecodeError(out[0]["skipped"][0]["reason"], self.items[self.unit(index)[0]].path)
        return out[0]


def collate_clips(samples: list[dict[str, Any]]) -> ClipBatch:
    """Stack :class:`FaceClipDataset` items into a batch.

    Returns:
        A :class:`~dflab.clips.batch.ClipBatch`: ``clip`` ``(B, T, 3, S, S)`` float32 in
        ``[0, 1]``; ``label``, ``video_idx``, ``track_idx``, ``clip_idx`` ``(B,)`` int64;
        ``skipped``: records of clips that did not decode (possibly empty). ``B`` may be 0 when
        every clip of the batch failed.
    """
    clips = [s for s in samples if "clip" in s]
    skipped = [r for s in samples for r in s.get("skipped", ())]
    if clips:
        batch: dict[str, Any] = {k: torch.stack([s[k] for s in clips]) for k in clips[0]}
    else:
        batch = {"clip": torch.zeros(0, 1, 3, 1, 1)} | {
            k: torch.zeros(0, dtype=torch.long) for k in ("label", "video_idx", "track_idx", "clip_idx")}
    batch["skipped"] = skipped
    return typing.cast(ClipBatch, batch)
