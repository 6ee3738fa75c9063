"""LightningDataModule: dataset source → face index → streamed face clips.

``prepare_data`` (once per machine) generates the demo dataset when asked and builds the face
index in parallel; ``setup`` (every process) reads the cached faces, leaves out videos that
cannot be decoded or hold no face (recorded in :attr:`DeepfakeDataModule.excluded`) and builds
one dataset per split.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from dflab.config.schema import DataConfig, FacesConfig
from dflab.data.dataset import ClipSpec, FaceClipDataset
from dflab.data.items import resolve_items
from dflab.data.sources import DatasetLayoutError, VideoItem
from dflab.faces.crop_cache import CropCache
from dflab.faces.index import FaceIndex, FaceReport, VideoFaces
from dflab.faces.manipulated import training_tracks
from dflab.faces.pack import build_dataset_index, dataset_pack_name, load_dataset_faces


class DeepfakeDataModule(pl.LightningDataModule):
    """Face clips for training, validation and test.

    Args:
        data: dataset and clip settings.
        faces: face-detection settings.
        seed: seed of the random training clips.
        progress: show progress bars while preparing.
        required: splits that must hold usable videos of both classes (``("test",)`` when
            only evaluating).
    """

    def __init__(self, data: DataConfig, faces: FacesConfig, seed: int = 0, progress: bool = True,
                 required: Sequence[str] = ("train", "val")) -> None:
        super().__init__()
        self.data_cfg, self.faces_cfg, self.seed, self.progress = data, faces, seed, progress
        self.required = tuple(required)
        self.items: list[VideoItem] = []
        self.excluded: list[dict[str, str]] = []
        self.face_report: FaceReport | None = None
        self.datasets: dict[str, FaceClipDataset] = {}
        self.split_items: dict[str, list[VideoItem]] = {}

    def face_index(self) -> FaceIndex:
        return FaceIndex.from_config(self.faces_cfg)

    def prepare_data(self) -> None:
        if self.face_report is not None:  # fit, validate and test each call this
            return
        items = resolve_items(self.data_cfg, self.progress)
        paths = [it.path for it in items]
        self.face_report, _ = build_dataset_index(
            self.face_index(), paths, dataset_pack_name(self.data_cfg.source, paths),
            workers=self.faces_cfg.workers, progress=self.progress,
        )
        if self.progress and self.face_report.done:  # new detections: show what was found
            print(self.face_report.summary_table())

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.items = resolve_items(self.data_cfg, progress=False)
        index = self.face_index()
        assert self.data_cfg.image_size is not None, "data.image_size is resolved at config load"
        spec = ClipSpec(self.data_cfg.frames_per_clip, self.data_cfg.frame_stride,
                        self.data_cfg.image_size, self.faces_cfg.margin, self.faces_cfg.crop)
        crop_cache = None
        if self.faces_cfg.crop_cache:
            crop_cache = CropCache.for_index(self.faces_cfg.cache_dir, index.folder.name,
                                             spec.crop, spec.image_size, spec.margin)
        self.excluded = []
        loaded = load_dataset_faces(index, [it.path for it in self.items], dataset_pack_name(self.data_cfg.source, [it.path for it in self.items]))
        faces_of = dict(zip(map(id, self.items), loaded, strict=True))
        for split in ("train", "val", "test"):
            kept: list[tuple[VideoItem, VideoFaces]] = []
            for it in (i for i in self.items if i.split == split):
                faces = faces_of[id(it)]
                if faces.ok:
                    kept.append((it, faces))
                else:
                    self.excluded.append({"path": it.path, "split": split, "reason": faces.reason or ""})
            if not kept:
                continue
            items, faces_list = zip(*kept, strict=True)
            self.split_items[split] = list(items)
            train = split == "train"
            clips = self.data_cfg.train_clips_per_video if train else self.data_cfg.eval_clips_per_video
            self.datasets[split] = FaceClipDataset(
                items, faces_list, spec, clips, train=train, augment=self.data_cfg.augment,
                seed=self.seed, track_score=self.faces_cfg.track_score,
                min_track_coverage=self.faces_cfg.min_track_coverage, crop_cache=crop_cache,
                video_keys=[index.key(it.path) for it in items] if crop_cache else (),
                train_tracks=training_tracks(items, faces_list, index, self.progress) if train else (),
                self_blend=self.data_cfg.self_blend,
            )
        for split in self.required:
            if split not in self.datasets:
                raise DatasetLayoutError(
                    f"{self.data_cfg.root}: no usable {split} video (after leaving out "
                    f"{len(self.excluded)} without a face or unreadable); check the layout or "
                    f"data.val_fraction"
                )
            labels = {it.label for it in self.split_items[split]}
            if split == "train" and self.data_cfg.self_blend > 0:
                labels.add(1)  # self-blended pseudo-fakes are the fake class
            if labels != {0, 1}:
                raise DatasetLayoutError(
                    f"{self.data_cfg.root}: the {split} split holds only "
                    f"{'real' if labels == {0} else 'fake'} videos; it needs both classes"
                )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        workers = self.data_cfg.num_workers
        return DataLoader(
            self.datasets[split], batch_size=self.data_cfg.batch_size, shuffle=shuffle,
            num_workers=workers, persistent_workers=workers > 0, pin_memory=False,
            drop_last=False,
        )

    def train_sampler(self) -> WeightedRandomSampler | None:
        """Draws training clips so each dataset gets its weight's share (None: one dataset).

        The main dataset (``data.weight``) and each of ``data.extra_sources`` (its ``weight``)
        get a share of the clips equal to their weight over the sum of weights, whatever their
        sizes; within a dataset all videos are equally likely.
        """
        if not self.data_cfg.extra_sources:
            return None
        extra = {(e.name or e.source): e.weight for e in self.data_cfg.extra_sources}
        items = self.split_items["train"]
        stream = [it.dataset if it.dataset in extra else "" for it in items]  # "" = main dataset
        weights = {"": self.data_cfg.weight, **extra}
        sizes = Counter(stream)
        total = sum(weights[name] for name in sizes)
        per_video = [weights[name] / total / sizes[name] for name in stream]
        per_clip = torch.tensor(per_video, dtype=torch.double).repeat_interleave(
            self.data_cfg.train_clips_per_video)
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(per_clip.tolist(), num_samples=len(per_clip), replacement=True,
                                     generator=generator)

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler()
        if sampler is None:
            return self._loader("train", shuffle=True)
        workers = self.data_cfg.num_workers
        return DataLoader(
            self.datasets["train"], batch_size=self.data_cfg.batch_size, sampler=sampler,
            num_workers=workers, persistent_workers=workers > 0, drop_last=False,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            raise DatasetLayoutError(f"{self.data_cfg.root}: the dataset has no test split")
        return self._loader("test", shuffle=False)

    def has_split(self, split: str) -> bool:
        return split in self.datasets

    def report(self) -> dict[str, Any]:
        """Counts per split and label, and the videos left out with their reasons."""
        counts = {
            split: {"real": sum(i.label == 0 for i in its), "fake": sum(i.label == 1 for i in its)}
            for split, its in self.split_items.items()
        }
        return {"videos": counts, "excluded": self.excluded}

    def write_report(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report(), indent=2))
        return path
