"""The optional face-crop cache: lossless, keyed by video and crop settings, safe to kill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.experiment import load_experiment
from dflab.faces.crop_cache import CropCache


def _datamodule(fast_overrides: list[str], tmp_path: Path, *extra: str) -> DeepfakeDataModule:
    cfg = load_experiment("experiments/mesonet4_demo.yaml", [*fast_overrides, *extra])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_cached_crops_equal_decoded_crops(fast_overrides, tmp_path):
    plain = _datamodule(fast_overrides, tmp_path).datasets["val"]
    cached = _datamodule(fast_overrides, tmp_path, "faces.crop_cache=true").datasets["val"]
    cache = cached.crop_cache
    assert cache is not None and plain.crop_cache is None
    assert cache.root.parts[-3:-1] == ("crops", Path(cache.root).parent.name)
    assert cache.root.name == "box-64px-m1.3"
    first = [cached[i]["clip"] for i in range(len(cached))]
    files = sorted(cache.root.rglob("*.npy"))
    assert files and not list(cache.root.rglob("*.tmp")) and cache.size_bytes() > 0
    # the second epoch reads the cache: same pixels as decoding, without touching the videos
    stamps = {f: f.stat().st_mtime_ns for f in files}
    second = [cached[i]["clip"] for i in range(len(cached))]
    assert all(f.stat().st_mtime_ns == stamps[f] for f in files)
    for i, (a, b) in enumerate(zip(first, second, strict=True)):
        assert torch.equal(a, b) and torch.equal(a, plain[i]["clip"])


def test_cache_is_read_instead_of_decoding(fast_overrides, tmp_path):
    """A cached crop is what the dataset returns (proof that the video is not decoded again)."""
    ds = _datamodule(fast_overrides, tmp_path, "faces.crop_cache=true").datasets["val"]
    ds[0]
    video, track = ds.unit(0)
    idx = ds.clip_indices(0)
    key = ds.video_keys[video]
    marked = np.full((len(idx), 64, 64, 3), 7, np.uint8)
    for frame, crop in zip(idx, marked, strict=True):
        np.save(ds.crop_cache._file(key, track, frame), crop)
    assert torch.allclose(ds[0]["clip"], torch.full_like(ds[0]["clip"], 7 / 255))


def test_broken_or_partial_entries_are_decoded_again(tmp_path):
    cache = CropCache(tmp_path / "c")
    frames = np.array([3, 5])
    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), np.uint8)
    assert cache.load("k", 0, frames) is None
    cache.store("k", 0, frames, crops)
    assert np.array_equal(cache.load("k", 0, frames), crops)
    assert cache.load("k", 1, frames) is None and cache.load("k", 0, np.array([3, 6])) is None
    cache._file("k", 0, 5).write_bytes(b"\x93NUMPY half-written")  # e.g. a killed copy
    assert cache.load("k", 0, frames) is None
    (tmp_path / "c" / "k" / "x.tmp").write_bytes(b"")  # a killed writer's temporary file
    assert np.array_equal(cache.load("k", 0, frames[:1]), crops[:1])


def test_crop_settings_get_their_own_cache(tmp_path):
    a = CropCache.for_index(tmp_path, "blazeface-n16", "box", 96, 1.3)
    b = CropCache.for_index(tmp_path, "blazeface-n16", "aligned", 96, 1.3)
    c = CropCache.for_index(tmp_path, "dlib_hog-n16", "box", 96, 1.3)
    assert len({a.root, b.root, c.root}) == 3


@pytest.mark.parametrize("value", ["yes please", "2"])
def test_crop_cache_key_is_a_boolean(value, fast_overrides):
    from dflab.config import ConfigError

    with pytest.raises(ConfigError, match=r"faces\.crop_cache"):
        load_experiment("experiments/mesonet4_demo.yaml", [*fast_overrides, f"faces.crop_cache={value}"])


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    import os

    from dflab.utils.atomic import atomic_write

    target = tmp_path / "sub" / "entry.json"
    with atomic_write(target, "w") as fh:
        fh.write("first")
    assert target.read_text() == "first" and oct(os.stat(target).st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError), atomic_write(target, "w") as fh:
        fh.write("half of the second")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "first"  # the old file, never a part of the new one
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry.json"]  # no temp file left
