import numpy as np
import pytest
import torch

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.datasets.sources import DatasetLayoutError, read_manifest
from dflab.experiment import build_experiment


@pytest.fixture
def datamodule(fast_overrides):
    cfg = build_experiment({}, [*fast_overrides, "data.frames_per_clip=3", "data.frame_stride=2"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, seed=0, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_clips_stream_from_videos_with_faces(datamodule, small_manifest):
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["clip"].shape == (8, 3, 3, 64, 64)
    assert batch["clip"].dtype == torch.float32
    assert batch["clip"].min() >= 0.0 and batch["clip"].max() <= 1.0
    assert set(batch["label"].tolist()) <= {0, 1}
    report = datamodule.report()
    listed = read_manifest(small_manifest)
    kept = sum(v["real"] + v["fake"] for v in report["videos"].values())
    assert kept + len(report["excluded"]) == len(listed)
    assert all(e["reason"] for e in report["excluded"])


def test_eval_clips_are_fixed_and_train_clips_vary(datamodule):
    val = datamodule.datasets["val"]
    assert np.array_equal(val.clip_indices(1), val.clip_indices(1))
    a = val[0]["clip"]
    assert torch.equal(a, val[0]["clip"])
    train = datamodule.datasets["train"]
    draws = {tuple(train.clip_indices(0)) for _ in range(10)}
    assert len(draws) > 1
    idx = train.clip_indices(0)
    assert np.all(np.diff(idx) == 2)


def test_splits_keep_identities_apart(datamodule):
    groups = {s: {it.group for it in its} for s, its in datamodule.split_items.items()}
    assert groups["train"].isdisjoint(groups["val"])
    assert groups["train"].isdisjoint(groups.get("test", set()))


def test_dataset_without_fakes_in_val_is_refused(tmp_path, small_manifest, fast_overrides):
    rows = small_manifest.read_text().splitlines()
    kept = [rows[0]] + [r for r in rows[1:] if not (",val," in r and ",fake," in r)]
    manifest = small_manifest.parent / "no_val_fakes.csv"
    manifest.write_text("\n".join(kept) + "\n")
    cfg = build_experiment({}, [*fast_overrides, f"data.root={manifest}"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    with pytest.raises(DatasetLayoutError, match="val split holds only real videos"):
        dm.setup("fit")


def test_batches_hold_exactly_the_documented_batch_type(datamodule):
    from typing import get_type_hints

    from dflab.clips.batch import ClipBatch, ClipSample

    batch = next(iter(datamodule.val_dataloader()))
    assert set(batch) == set(get_type_hints(ClipBatch))
    b = len(batch["label"])
    assert batch["clip"].shape == (b, 3, 3, 64, 64) and batch["clip"].dtype == torch.float32
    for key in ("label", "video_idx", "track_idx", "clip_idx"):
        assert batch[key].shape == (b,) and batch[key].dtype == torch.long, key
    assert batch["skipped"] == []
    item = datamodule.datasets["val"][0]
    assert set(item) == set(get_type_hints(ClipSample))
    # video_idx names the clip's video in the split's items: its label is that video's label
    items = datamodule.split_items["val"]
    assert [items[v].label for v in batch["video_idx"].tolist()] == batch["label"].tolist()
