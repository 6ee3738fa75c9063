"""Several datasets in one run: per-source sampling weights, and videos that remember their source."""

from __future__ import annotations

import csv
import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import ConfigError
from dflab.experiment import build_experiment
from dflab.training.train import build_module


def _own_folder_dataset(small_manifest: Path, root: Path) -> Path:
    """A folder-layout dataset of copies of a few demo videos (2 train + 1 val per class)."""
    with small_manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    for label in ("real", "fake"):
        picked = [r for r in rows if r["split"] == "train" and r["label"] in (label, str(int(label == "fake")))]
        for i, r in enumerate(picked[:3]):
            dest = root / ("val" if i == 2 else "") / label / f"own_{label}_{i}.mp4"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(small_manifest.parent / r["path"], dest)
    return root


def test_two_datasets_mix_with_weights_and_keep_their_names(fast_overrides, small_manifest, tmp_path):
    own = _own_folder_dataset(small_manifest, tmp_path / "own")
    cfg = build_experiment({"data": {"extra_sources": [{"source": "folder", "root": str(own), "name": "mine",
                                                    "weight": 3.0}]}}, fast_overrides)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.split_items["train"]
    assert Counter(it.dataset for it in train) == {"manifest": sum(it.dataset == "manifest" for it in train),
                                                    "mine": 4}
    assert {it.dataset for it in dm.split_items["val"]} == {"manifest", "mine"}

    sampler = dm.train_sampler()
    assert sampler is not None
    clips = cfg.data.train_clips_per_video
    by_source = Counter()
    for index, weight in enumerate(sampler.weights.tolist()):
        by_source[train[index // clips].dataset] += weight
    share = by_source["mine"] / sum(by_source.values())
    assert share == pytest.approx(0.75), "weight 3 against 1: three quarters of the clips"
    drawn = Counter(train[i // clips].dataset for _ in range(20) for i in sampler)
    assert 0.6 < drawn["mine"] / sum(drawn.values()) < 0.9

    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(build_module(cfg), datamodule=dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    batch = next(iter(dm.train_dataloader()))
    assert torch.all((batch["label"] == 0) | (batch["label"] == 1))


def test_mixed_sources_are_checked_by_name():
    with pytest.raises(ConfigError, match=r"data\.extra_sources\[0\]\.root"):
        build_experiment({"data": {"extra_sources": [{"source": "folder"}]}})
    with pytest.raises(ConfigError, match=r"data\.extra_sources\[0\]\.source: 'nope'"):
        build_experiment({"data": {"extra_sources": [{"source": "nope", "root": "x"}]}})
    with pytest.raises(ConfigError, match=r"unknown config key 'data\.extra_sources\[0\]\.wieght'"):
        build_experiment({"data": {"extra_sources": [{"source": "folder", "root": "x", "wieght": 2}]}})
    with pytest.raises(ConfigError, match="repeat"):
        build_experiment({"data": {"source": "folder", "root": "a",
                               "extra_sources": [{"source": "folder", "root": "b"}]}})
