"""Dataset check, adapter registry and per-method breakdown on small real trees."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dflab.config import ConfigError
from dflab.datasets import build_options, dataset_names, scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError, VideoItem
from dflab.experiment import build_experiment
from dflab.metrics.breakdown import breakdown, breakdown_metrics
from dflab.metrics.predictions import keyed_predictions


def _folder_tree(root: Path, place_video) -> Path:
    for rel in ("real/a.mp4", "real/b.mp4", "fake/c.mp4", "fake/d.mp4", "val/real/e.mp4", "val/fake/f.mp4"):
        place_video(root / rel)
    return root


def test_clean_folder_dataset_passes_with_counts(tmp_path, place_video):
    items = scan_dataset("folder", _folder_tree(tmp_path, place_video))
    report = check_dataset(items, "mine", probe=True)
    assert report.ok, report.message()
    assert report.counts[("folder", "train", 0, "")] == 2
    assert report.counts[("folder", "val", 1, "")] == 1
    table = report.table()
    assert "mine" in table and "train" in table


def test_missing_empty_unreadable_and_duplicates_are_named(tmp_path, place_video):
    root = _folder_tree(tmp_path, place_video)
    (root / "fake" / "empty.mp4").touch()
    (root / "fake" / "corrupt.mp4").write_bytes(b"not a video at all" * 100)
    items = scan_dataset("folder", root)
    items.append(VideoItem(str(root / "fake" / "gone.mp4"), 1, "train", "gone"))
    items.append(items[0])  # the same video listed twice
    report = check_dataset(items, "mine", probe=True)
    kinds = {(p.kind, Path(p.path).name) for p in report.problems}
    assert {("empty", "empty.mp4"), ("unreadable", "corrupt.mp4"), ("missing", "gone.mp4"),
            ("duplicate", "a.mp4")} <= kinds
    message = report.message()
    assert "empty.mp4" in message and "gone.mp4" in message
    with pytest.raises(DatasetLayoutError, match=r"gone\.mp4"):
        report.raise_if_broken()


def test_leaks_between_splits_are_found(tmp_path, place_video):
    items = scan_dataset("folder", _folder_tree(tmp_path, place_video))
    real = next(it for it in items if it.split == "train" and it.label == 0)
    fake = next(it for it in items if it.split == "val" and it.label == 1)
    items = [replace(it, sources=(real.video_id,)) if it == fake else it for it in items]
    items.append(replace(real, path=str(tmp_path / "val" / "real" / "e.mp4"), split="val", key="dup"))
    items.append(replace(real, split="test"))  # the same file in a second split
    kinds = {p.kind for p in check_dataset(items).problems}
    assert {"source-leak", "group-leak", "split-leak"} <= kinds


def test_training_refuses_a_broken_layout_naming_the_file(tmp_path, place_video, fast_overrides):
    from dflab.datasets.resolve import resolve_items

    root = _folder_tree(tmp_path / "data", place_video)
    (root / "real" / "zero.mp4").touch()
    cfg = build_experiment({}, [*fast_overrides, "data.source=folder", f"data.root={root}"])
    with pytest.raises(DatasetLayoutError, match=r"(?s)empty.*zero\.mp4"):
        resolve_items(cfg.data)


def test_adapter_options_are_strict():
    assert {"demo", "folder", "manifest"} <= set(dataset_names())
    with pytest.raises(ConfigError, match=r"data\.options\.compression"):
        build_options("folder", {"compression": "c23"})
    with pytest.raises(ConfigError, match=r"data\.source: 'foldr'.*did you mean 'folder'"):
        build_experiment({"data": {"source": "foldr"}})


def test_cli_data_check_exits_nonzero_and_lists_problems(tmp_path, place_video):
    root = _folder_tree(tmp_path / "data", place_video)
    (root / "fake" / "zero.mp4").touch()
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(f"data:\n  source: folder\n  root: {root}\n  val_fraction: 0.0\n")
    proc = subprocess.run([sys.executable, "-m", "dflab", "data", "check", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "zero.mp4" in proc.stderr and "empty" in proc.stderr
    assert "videos per split" in proc.stdout
    (root / "fake" / "zero.mp4").unlink()
    proc = subprocess.run([sys.executable, "-m", "dflab", "data", "check", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no problem found" in proc.stdout


def test_breakdown_scores_each_method_against_the_reals():
    items = [VideoItem(f"/v/{i}.mp4", 0) for i in range(4)]
    items += [VideoItem(f"/v/a{i}.mp4", 1, method="Alpha") for i in range(2)]
    items += [VideoItem(f"/v/b{i}.mp4", 1, method="Beta") for i in range(2)]
    probs = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.9, 0.8, 0.1, 0.25])  # Alpha caught, Beta missed
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    rows = {r.name: r for r in breakdown(keyed_predictions(items, torch.arange(8), probs, labels))}
    assert rows["Alpha"].scores["auroc"] == pytest.approx(1.0)
    assert rows["Beta"].scores["auroc"] < 0.2
    assert (rows["Alpha"].n_real, rows["Alpha"].n_fake) == (4, 2)
    assert "test/by_method/Beta/video_auroc" in breakdown_metrics("test", rows.values())


def test_videos_are_told_apart_by_path_not_by_file_name(tmp_path):
    items = [VideoItem("/d/real/a.mp4", 0, "train", "g1"), VideoItem("/d/fake/a.mp4", 1, "train", "g2"),
             VideoItem("/d/val/real/a.mp4", 0, "val", "g3"), VideoItem("/d/test/real/a.mp4", 0, "test", "g4")]
    assert {p.kind for p in check_dataset(items).problems} == {"missing"}, "no duplicate, no leak"
    keyed = [VideoItem("/d/x/a.mp4", 0, "train", "g1", key="youtube/a"),
             VideoItem("/d/y/a.mp4", 0, "train", "g2", key="youtube/a")]
    assert [(p.kind, p.detail) for p in check_dataset(keyed).problems if p.kind != "missing"] == [
        ("duplicate", "video id 'youtube/a' of the dataset is also /d/y/a.mp4")]
    twice = [VideoItem("/d/real/a.mp4", 0, "train", "g1"), VideoItem("/d/real/a.mp4", 0, "train", "g1")]
    assert [(p.kind, p.detail) for p in check_dataset(twice).problems if p.kind != "missing"] == [
        ("duplicate", "listed 2 times")]


def test_cli_data_check_accepts_one_file_name_in_several_folders(tmp_path, place_video):
    root = tmp_path / "data"
    for rel in ("real/clip0.mp4", "fake/clip0.mp4", "val/real/clip0.mp4", "val/fake/clip0.mp4",
                "test/real/clip0.mp4", "test/fake/clip0.mp4"):
        place_video(root / rel)
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(f"data:\n  source: folder\n  root: {root}\n")
    proc = subprocess.run([sys.executable, "-m", "dflab", "data", "check", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no problem found" in proc.stdout
