"""Self-blended pseudo-fakes (Shiohara & Yamasaki, CVPR 2022) on real face crops."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from dflab.clips.self_blend import face_mask, self_blend_clip
from dflab.config import ConfigError
from dflab.datasets.sources import DatasetLayoutError
from dflab.experiment import build_experiment
from dflab.faces.crop import aligned_template, crop_face_aligned
from dflab.faces.detector import create_detector


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, np.ndarray]:
    """Three aligned 128 px crops of the astronaut's face and their landmarks."""
    from skimage import data

    photo = data.astronaut()
    face = create_detector("blazeface").detect(photo)[0]
    crop = crop_face_aligned(photo, face.landmarks, 128, 1.6)
    points = aligned_template(128, 1.6)
    return np.stack([crop] * 3), np.stack([points] * 3)


def test_blend_changes_the_face_and_nothing_outside_it(clip):
    crops, points = clip
    out = self_blend_clip(crops, points, np.random.default_rng(3))
    assert out.shape == crops.shape and out.dtype == np.uint8
    mask = face_mask(points[0], 128, 1.3, 1.7, 0.04) > 1e-3  # the widest mask the draw allows
    diff = np.abs(out.astype(int) - crops.astype(int)).max(axis=3)
    assert diff[0][~mask].max() == 0  # outside the face: untouched
    assert diff[0][mask].mean() > 1.0  # inside: blended with the altered copy
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])  # one draw per clip


def test_blends_differ_between_draws_and_repeat_for_a_seed(clip):
    crops, points = clip
    a = self_blend_clip(crops, points, np.random.default_rng(1))
    b = self_blend_clip(crops, points, np.random.default_rng(2))
    assert not np.array_equal(a, b)
    assert np.array_equal(a, self_blend_clip(crops, points, np.random.default_rng(1)))


def test_mask_covers_the_landmarks(clip):
    _, points = clip
    mask = face_mask(points[0], 128, 1.0, 1.3, 0.01)
    for x, y in points[0]:
        assert mask[int(y), int(x)] > 0.9
    assert mask[2, 2] < 1e-3 and mask[125, 125] < 1e-3


def _real_only_train(small_manifest: Path, out: Path) -> Path:
    with small_manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "group"])
        for r in rows:
            if r["split"] != "train" or r["label"] in ("0", "real"):
                w.writerow([small_manifest.parent / r["path"], r["label"], r["split"], r["group"]])
    return out


@pytest.mark.parametrize("crop", ["box", "aligned"])
def test_training_from_real_videos_alone(fast_overrides, small_manifest, tmp_path, crop):
    import pytorch_lightning as pl

    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.training.train import build_module

    manifest = _real_only_train(small_manifest, tmp_path / "reals.csv")
    base = [*fast_overrides, f"data.root={manifest}", f"faces.crop={crop}"]
    with pytest.raises(DatasetLayoutError, match=r"train split holds only real videos .* turn on data\.self_blend"):
        dm = DeepfakeDataModule(build_experiment({}, base).data, build_experiment({}, base).faces, progress=False)
        dm.prepare_data()
        dm.setup("fit")
    cfg = build_experiment({}, [*base, "data.self_blend=1.0"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert all(it.label == 0 for it in train.items)
    labels = [int(train[i]["label"]) for i in range(0, len(train), 3)]
    assert set(labels) == {1}  # every real clip became a pseudo-fake
    assert {int(dm.datasets["val"][i]["label"]) for i in range(len(dm.datasets["val"]))} == {0, 1}
    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(build_module(cfg), datamodule=dm)
    assert torch.isfinite(torch.tensor(float(trainer.callback_metrics["train/loss"])))


def test_self_blend_is_a_probability(fast_overrides):
    with pytest.raises(ConfigError, match=r"data\.self_blend: must be in \[0, 1\]"):
        build_experiment({}, [*fast_overrides, "data.self_blend=1.5"])


def test_half_of_the_real_clips_blend_at_one_half(fast_overrides, small_manifest, tmp_path):
    from dflab.clips.datamodule import DeepfakeDataModule

    manifest = _real_only_train(small_manifest, tmp_path / "reals.csv")
    cfg = build_experiment({}, [*fast_overrides, f"data.root={manifest}", "data.self_blend=0.5",
                            "data.train_clips_per_video=8"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    share = np.mean([int(train[i]["label"]) for i in range(len(train))])
    assert 0.3 < share < 0.7




def _folder_of_reals(small_manifest: Path, root: Path) -> Path:
    """A folder dataset: demo reals in real/, an empty fake/, and val/real + val/fake."""
    import shutil

    with small_manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    reals = [r for r in rows if r["label"] in ("0", "real")]
    fakes = [r for r in rows if r["label"] in ("1", "fake")]
    for dest, picked in (("real", reals[:4]), ("val/real", reals[4:6]), ("val/fake", fakes[:2])):
        for r in picked:
            (root / dest).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(small_manifest.parent / r["path"], root / dest / Path(r["path"]).name)
    (root / "fake").mkdir()
    return root


def test_training_from_a_folder_of_reals_with_an_empty_fake_folder(fast_overrides, small_manifest, tmp_path):
    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.datasets.resolve import resolve_items

    root = _folder_of_reals(small_manifest, tmp_path / "mine")
    base = [*fast_overrides, "data.source=folder", f"data.root={root}"]
    refused = build_experiment({}, base)
    assert len(resolve_items(refused.data)) == 8  # listing (evaluate, faces) needs no fakes
    with pytest.raises(DatasetLayoutError) as err:  # training does: said before the face stage
        DeepfakeDataModule(refused.data, refused.faces, progress=False).prepare_data()
    assert str(err.value) == (
        f"{root}: the train split holds only real videos (4) and no fake; add fake videos or turn on "
        "data.self_blend (data.self_blend=1.0 trains from real videos alone on self-blended pseudo-fakes)")
    cfg = build_experiment({}, [*base, "data.self_blend=1.0"])
    items = resolve_items(cfg.data)
    assert sorted((it.split, it.label) for it in items) == [("train", 0)] * 4 + [("val", 0)] * 2 + [("val", 1)] * 2
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert train.items and all(it.label == 0 for it in train.items)
    assert {int(train[i]["label"]) for i in range(len(train))} == {1}  # every real clip a pseudo-fake
    assert {it.label for it in dm.split_items["val"]} == {0, 1}
