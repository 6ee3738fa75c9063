"""The ``uadfv`` adapter on a small UADFV tree (``real/<NNNN>.mp4``, ``fake/<NNNN>_fake.mp4``)."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import pytest

import dflab.datasets.uadfv  # noqa: F401  (registers the adapter)
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError

IDS = [f"{i:04d}" for i in range(10)]


def build_tree(tmp_path: Path, place_video, real="real", fake="fake") -> Path:
    root = tmp_path / "UADFV"
    for pid in IDS:
        place_video(root / real / f"{pid}.mp4")
        place_video(root / fake / f"{pid}_fake.mp4")
    return root


def test_layout_counts_labels_pairs_and_split(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    items = scan_dataset("uadfv", root, {})
    # 10 pairs: 20 % test and 10 % validation are two pairs and one pair
    assert Counter((it.split, it.label) for it in items) == Counter(
        {("train", 0): 7, ("train", 1): 7, ("val", 0): 1, ("val", 1): 1, ("test", 0): 2, ("test", 1): 2})
    by_key = {it.key: it for it in items}
    fake, real = by_key["fake/0003_fake"], by_key["real/0003"]
    assert fake.path == str(root / "fake/0003_fake.mp4") and real.path == str(root / "real/0003.mp4")
    assert (fake.label, fake.method, fake.group, fake.sources) == (1, "FakeApp", "0003", ("real/0003",))
    assert (real.label, real.method, real.group, real.split) == (0, "", "0003", fake.split)
    for pid in IDS:  # each pair whole in one split
        assert by_key[f"real/{pid}"].split == by_key[f"fake/{pid}_fake"].split
    assert {it.dataset for it in items} == {"uadfv"}
    report = check_dataset(items, "uadfv")
    assert report.ok, report.message()


def test_seed_fractions_and_folders(tmp_path, place_video):
    root = build_tree(tmp_path, place_video, real="original/real/videos", fake="manipulated/fake/videos")
    with pytest.raises(DatasetLayoutError, match=r"UADFV/real/: folder of UADFV real videos does not exist"):
        scan_dataset("uadfv", root, {})
    folders = {"real_dir": "original/real/videos", "fake_dir": "manipulated/fake/videos"}
    tests = {frozenset(it.group for it in scan_dataset("uadfv", root, {**folders, "seed": s}) if it.split == "test")
             for s in range(5)}
    assert len(tests) > 1 and all(len(t) == 2 for t in tests)
    items = scan_dataset("uadfv", root, {**folders, "val_fraction": 0.0, "test_fraction": 0.5})
    assert Counter(it.split for it in items) == Counter({"train": 10, "test": 10})
    assert check_dataset(items).ok
    everything = scan_dataset("uadfv", root, {**folders, "val_fraction": 0.0, "test_fraction": 1.0})
    assert {it.split for it in everything} == {"test"} and len(everything) == 20  # test-only use


@pytest.mark.parametrize(("options", "expected"), [
    ({"test_fraction": -0.1}, r"test_fraction: -0\.1 is not in \[0, 1\]"),
    ({"val_fraction": 1.0}, r"val_fraction: 1\.0 is not in \[0, 1\)"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, r"0\.6 \+ 0\.5 is more than 1"),
    ({"fakes_dir": "fake"}, r"data\.options\.fakes_dir.*did you mean 'fake_dir'"),
])
def test_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("uadfv", tmp_path, options)


def test_missing_folder_and_bad_names_are_named(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    place_video(root / "fake/0010.mp4")
    with pytest.raises(DatasetLayoutError, match=r"fake/0010\.mp4: not a UADFV fake name <NNNN>_fake\.mp4"):
        scan_dataset("uadfv", root, {})
    (root / "fake/0010.mp4").rename(root / "real/0010_fake.mp4")
    with pytest.raises(DatasetLayoutError, match=r"real/0010_fake\.mp4: not a UADFV real name"):
        scan_dataset("uadfv", root, {})
    (root / "real/0010_fake.mp4").unlink()
    (root / "fake").rename(root / "fakes")
    with pytest.raises(DatasetLayoutError, match=r"UADFV/fake/: folder of UADFV fake videos does not exist"):
        scan_dataset("uadfv", root, {})


def test_empty_and_missing_partner_are_reported(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    empty = root / "fake/0007_fake.mp4"
    empty.write_bytes(b"")
    gone = root / "real/0002.mp4"
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.uadfv"):
        items = scan_dataset("uadfv", root, {})
    assert "1 video(s) have no partner on disk" in caplog.text
    assert len(items) == 20
    report = check_dataset(items, "uadfv")
    assert {(p.kind, p.path) for p in report.problems} == {("empty", str(empty)), ("missing", str(gone))}
    assert "0007_fake.mp4: file is empty" in report.message()


def test_fake_moved_away_from_its_real_is_a_leak(tmp_path, place_video):
    items = scan_dataset("uadfv", build_tree(tmp_path, place_video), {})
    index, fake = next((i, it) for i, it in enumerate(items) if it.key == "fake/0005_fake")
    moved = "val" if fake.split != "val" else "train"
    items[index] = dataclasses.replace(fake, split=moved)
    report = check_dataset(items, "uadfv")
    assert {(p.kind, p.path) for p in report.problems} >= {("source-leak", fake.path)}
    assert any(p.kind == "group-leak" and "'0005'" in p.detail for p in report.problems)
    assert f"fake in {moved} but its source 'real/0005' is in {fake.split}" in report.message()
