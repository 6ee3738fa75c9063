"""LightningDataModule: dataset source → face index → streamed face clips.

``prepare_data`` (once per machine) resolves the dataset (an adapter with a ``prepare`` step,
such as the demo, makes its videos first) and builds the face index in parallel; ``setup``
(every process) reads the cached faces, leaves out videos that cannot be decoded, hold no face
or are shorter than one clip (recorded in
:attr:`DeepfakeDataModule.excluded`) and builds one dataset per split. Clips whose frames do not
decode while training or evaluating are recorded in :attr:`DeepfakeDataModule.skipped`, each
with one warning; both lists go into ``data_report.json``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from dflab.clips.dataset import ClipSpec, FaceClipDataset, collate_clips
from dflab.clips.face_stage import FaceStage
from dflab.clips.manipulated import training_tracks
from dflab.config.schema import DataConfig, FacesConfig
from dflab.datasets.resolve import refuse_train_without_fakes, resolve_items
from dflab.datasets.sources import DatasetLayoutError, VideoItem
from dflab.faces.crop_cache import CropCache
from dflab.faces.index import FaceIndex
from dflab.faces.record import VideoFaces
from dflab.faces.report import FaceReport
from dflab.utils.report import report
from dflab.utils.threads import worker_init

log = logging.getLogger(__name__)


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
        #: clips that did not decode during training or evaluation (see :func:`collate_clips`)
        self.skipped: list[dict[str, Any]] = []
        self._skip_index: dict[tuple, dict[str, Any]] = {}
        self._failed_clips: dict[str, set[int]] = {}
        self.face_report: FaceReport | None = None
        self.datasets: dict[str, FaceClipDataset] = {}
        self.split_items: dict[str, list[VideoItem]] = {}

    def face_index(self) -> FaceIndex:
        return self.face_stage().index

    def face_stage(self) -> FaceStage:
        return FaceStage.of(self.data_cfg, self.faces_cfg)

    def prepare_data(self) -> None:
        if self.face_report is not None:  # fit, validate and test each call this
            return
        items = resolve_items(self.data_cfg, self.progress)
        if "train" in self.required:  # said before the face stage, not after it
            refuse_train_without_fakes(items, self.data_cfg)
        self.face_report, _ = self.face_stage().build(items, self.faces_cfg.workers, self.progress)
        if self.progress and self.face_report.done:  # new detections: show what was found
            report(self.face_report.summary_table())

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.items = resolve_items(self.data_cfg, progress=False)
        face_stage = self.face_stage()
        index = face_stage.index
        assert self.data_cfg.image_size is not None, "data.image_size is resolved at config load"
        spec = ClipSpec(self.data_cfg.frames_per_clip, self.data_cfg.frame_stride,
                        self.data_cfg.image_size, self.faces_cfg.margin, self.faces_cfg.crop)
        crop_cache = None
        if self.faces_cfg.crop_cache:
            crop_cache = CropCache.for_index(self.faces_cfg.cache_dir, index.folder.name,
                                             spec.crop, spec.image_size, spec.margin)
        self.excluded = []
        loaded = face_stage.load(self.items)
        faces_of = dict(zip(map(id, self.items), loaded, strict=True))
        for split in ("train", "val", "test"):
            kept: list[tuple[VideoItem, VideoFaces]] = []
            for it in (i for i in self.items if i.split == split):
                faces = faces_of[id(it)]
                if not faces.ok:
                    self.excluded.append({"path": it.path, "split": split, "reason": faces.reason or ""})
                elif faces.num_frames < spec.span:
                    reason = (f"{it.path}: {faces.num_frames} frames, shorter than one clip "
                              f"({spec.span} frames: data.frames_per_clip x data.frame_stride)")
                    log.warning("left out: %s", reason)
                    self.excluded.append({"path": it.path, "split": split, "reason": reason})
                else:
                    kept.append((it, faces))
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
                self_blend=self.data_cfg.self_blend, split=split,
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
                hint = ("; add fake videos or turn on data.self_blend (pseudo-fakes from real videos)"
                        if split == "train" and labels == {0} else "")
                raise DatasetLayoutError(
                    f"{self.data_cfg.root}: the {split} split holds only "
                    f"{'real' if labels == {0} else 'fake'} videos after leaving out "
                    f"{len(self.excluded)} without a usable face; it needs both classes{hint}"
                )

    def _loader(self, split: str, shuffle: bool, sampler: WeightedRandomSampler | None = None) -> DataLoader:
        workers = self.data_cfg.num_workers
        return DataLoader(
            self.datasets[split], batch_size=self.data_cfg.batch_size, shuffle=shuffle,
            sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=False, drop_last=False, collate_fn=collate_clips,
            worker_init_fn=worker_init if workers > 0 else None,
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
        return self._loader("train", shuffle=sampler is None, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if "test" not in self.datasets:
            raise DatasetLayoutError(f"{self.data_cfg.root}: the dataset has no test split")
        return self._loader("test", shuffle=False)

    def has_split(self, split: str) -> bool:
        return split in self.datasets

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Take the records of clips that did not decode out of the batch (see :meth:`record_skipped`)."""
        if isinstance(batch, dict) and "skipped" in batch:
            self.record_skipped(batch.pop("skipped"))
        return batch

    def record_skipped(self, records: Sequence[dict[str, Any]]) -> None:
        """Keep records of clips that did not decode, one per file, frames, split and action
        (counting the passes); warn once for each."""
        for rec in records:
            key = (rec["path"], rec["frames"], rec["split"], rec["action"])
            self._failed_clips.setdefault(rec["split"], set()).add(rec["clip"])
            if key in self._skip_index:
                self._skip_index[key]["count"] += 1
                continue
            entry = {k: rec[k] for k in ("path", "split", "frames", "action", "reason")} | {"count": 1}
            self._skip_index[key] = entry
            self.skipped.append(entry)
            log.warning("%s clip %s (%s): %s", rec["split"], rec["action"],
                        "another clip of the video was read instead" if rec["action"] == "replaced"
                        else "left out of this pass", rec["reason"])

    def gather_skipped(self, trainer: pl.Trainer) -> None:
        """Merge every process's :attr:`skipped` records into each process (no-op without DDP)."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (self.skipped, self._failed_clips))
            merged: dict[tuple, dict[str, Any]] = {}
            for records, _ in gathered:
                for rec in records:
                    key = (rec["path"], rec["frames"], rec["split"], rec["action"])
                    if key in merged:
                        merged[key]["count"] += rec["count"]
                    else:
                        merged[key] = dict(rec)
            self.skipped = list(merged.values())
            for _, failed in gathered:
                for split, clips in failed.items():
                    self._failed_clips.setdefault(split, set()).update(clips)

    def undecodable_videos(self) -> list[dict[str, str]]:
        """Evaluation videos none of whose clips decoded (they have no score)."""
        out = []
        for split, dataset in self.datasets.items():
            failed = self._failed_clips.get(split, set())
            if dataset.train or not failed:
                continue
            clips_of: dict[int, set[int]] = {}
            n = dataset.clips_per_video
            for u, (video, _) in enumerate(dataset.units):
                clips_of.setdefault(video, set()).update(range(u * n, (u + 1) * n))
            for video, clips in clips_of.items():
                if clips <= failed:
                    path = dataset.items[video].path
                    reason = next(r["reason"] for r in self.skipped if r["split"] == split and r["path"] == path)
                    out.append({"path": path, "split": split, "reason": f"no clip could be decoded ({reason})"})
        return out

    def dataset_digests(self) -> list[dict[str, Any]]:
        """What each split trains or evaluates on, for MLflow dataset inputs.

        One entry per split: ``name`` (``<source>-<split>``), ``digest`` (sha256 of the sorted
        rows *video path relative to the dataset root, file size, label, group, method,
        dataset* of the videos used, plus the face-detection and crop settings, so the same
        files seen through another detector or crop differ), ``source`` (the dataset root)
        and ``profile`` (video counts per label, and the videos left out).
        """
        import hashlib
        import os

        settings = json.dumps({"faces": {k: getattr(self.faces_cfg, k) for k in (
            "detector", "detector_options", "num_frames", "frame_step", "margin", "crop")},
            "clip": {k: getattr(self.data_cfg, k) for k in (
                "image_size", "frames_per_clip", "frame_stride")}}, sort_keys=True, default=str)
        root = os.path.abspath(self.data_cfg.root)
        out = []
        for split, items in self.split_items.items():
            rows = []
            for it in items:
                try:
                    size = os.path.getsize(it.path)
                except OSError:
                    size = -1
                rel = os.path.relpath(os.path.abspath(it.path), root if os.path.isdir(root) else os.path.dirname(root))
                rows.append("\t".join(map(str, (rel, size, it.label, it.group, it.method, it.dataset))))
            digest = hashlib.sha256("\n".join([settings, *sorted(rows)]).encode()).hexdigest()
            profile = {"videos": len(items), "real": sum(i.label == 0 for i in items),
                       "fake": sum(i.label == 1 for i in items),
                       "left_out": sum(e["split"] == split for e in self.excluded)}
            out.append({"split": split, "name": f"{self.data_cfg.source}-{split}", "digest": digest,
                        "source": self.data_cfg.root, "profile": profile})
        return out

    def report(self) -> dict[str, Any]:
        """Counts per split and label, the videos left out with their reasons, and the clips
        that did not decode (one entry per clip and pass)."""
        counts = {
            split: {"real": sum(i.label == 0 for i in its), "fake": sum(i.label == 1 for i in its)}
            for split, its in self.split_items.items()
        }
        return {"videos": counts, "excluded": self.excluded + self.undecodable_videos(),
                "decode_failures": self.skipped}

    def write_report(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report(), indent=2))
        return path
