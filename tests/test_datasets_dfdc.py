"""The ``dfdc`` and ``dfdc_preview`` adapters on small trees in the official layouts."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import dflab.datasets.dfdc  # noqa: F401  (registers the adapters)
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError

# part -> {file: (label, original)}; every fake's original is a real of the same part
PARTS: dict[int, dict[str, tuple[str, str | None]]] = {
    n: {**{f"r{n}{c}.mp4": ("REAL", None) for c in "abcd"},
        **{f"f{n}{c}{i}.mp4": ("FAKE", f"r{n}{c}.mp4") for c in "abcd" for i in (1, 2)}}
    for n in range(4)
}
TEST_SET = {"tstaaaaaaa.mp4": 0, "tstbbbbbbb.mp4": 1, "tstccccccc.mp4": 1}


def build_dfdc(root: Path, place_video, parts=PARTS, test_set=TEST_SET, base: str = "") -> Path:
    """Part folders with the official metadata.json, and the public test set with labels.csv."""
    for number, entries in parts.items():
        folder = root / base / f"dfdc_train_part_{number}"
        meta = {}
        for name, (label, original) in entries.items():
            meta[name] = {"label": label, "split": "train", **({"original": original} if original else {})}
            place_video(folder / name)
        (folder / "metadata.json").write_text(json.dumps(meta))
    if test_set is not None:
        for name in test_set:
            place_video(root / "test" / name)
        rows = "".join(f"{name},{label}\n" for name, label in test_set.items())
        (root / "test/labels.csv").write_text("filename,label\n" + rows)
    return root


def by_group(items) -> dict[str, set[str]]:
    splits: dict[str, set[str]] = defaultdict(set)
    for it in items:
        splits[it.group].add(it.split)
    return splits


def test_dfdc_fold_split_keeps_clusters_and_reads_test_set(tmp_path, place_video):
    root = build_dfdc(tmp_path / "dfdc", place_video)
    items = scan_dataset("dfdc", root, {})
    assert len(items) == 4 * 12 + 3 and {it.dataset for it in items} == {"dfdc"}
    train_parts = [it for it in items if it.split != "test"]
    assert Counter(it.label for it in train_parts) == Counter({0: 16, 1: 32})
    assert {it.split for it in train_parts} == {"train", "val"}  # 16 clusters hashed into 5 folds
    assert all(len(s) == 1 for s in by_group(items).values())
    fake = next(it for it in items if it.key == "f2c1")
    assert (fake.label, fake.group, fake.sources, fake.method) == (1, "r2c", ("r2c",), "")
    assert fake.path == str(root / "dfdc_train_part_2/f2c1.mp4")
    real = next(it for it in items if it.key == "r2c")
    assert (real.label, real.group, real.sources, real.split) == (0, "r2c", (), fake.split)
    test = sorted((it.key, it.label, it.split) for it in items if it.path.startswith(str(root / "test")))
    assert test == [("test/tstaaaaaaa", 0, "test"), ("test/tstbbbbbbb", 1, "test"), ("test/tstccccccc", 1, "test")]
    report = check_dataset(items, "dfdc")
    assert report.ok, report.message()

    other_seed = scan_dataset("dfdc", root, {"seed": 7})
    assert {it.key: it.split for it in other_seed} != {it.key: it.split for it in items}
    subset = scan_dataset("dfdc", root, {"parts": [0, 2], "use_test_set": False})
    assert {it.path.split("/")[-2] for it in subset} == {"dfdc_train_part_0", "dfdc_train_part_2"}
    full = {it.key: it.split for it in items}
    assert all(full[it.key] == it.split for it in subset)  # reading fewer parts moves no cluster


def test_dfdc_fold_options_give_three_splits(tmp_path, place_video):
    root = build_dfdc(tmp_path / "dfdc", place_video, test_set=None)
    items = scan_dataset("dfdc", root, {"folds": 3, "val_fold": 1, "test_fold": 2})
    assert {it.split for it in items} == {"train", "val", "test"}
    assert all(len(s) == 1 for s in by_group(items).values())
    assert check_dataset(items).ok
    with pytest.raises(ValueError, match=r"test_parts/test_fold: the public test set .*test/ is the test split"):
        scan_dataset("dfdc", build_dfdc(tmp_path / "with_test", place_video), {"test_fold": 2})


def test_dfdc_part_split_counts(tmp_path, place_video):
    root = build_dfdc(tmp_path / "dfdc", place_video)
    options = {"split_by": "part", "val_parts": [1], "test_parts": [2, 3], "use_test_set": False}
    items = scan_dataset("dfdc", root, options)
    counts = Counter((it.split, it.label) for it in items)
    assert counts == Counter({("train", 0): 4, ("train", 1): 8, ("val", 0): 4, ("val", 1): 8,
                              ("test", 0): 8, ("test", 1): 16})
    assert {it.split for it in items if "dfdc_train_part_1/" in it.path} == {"val"}
    assert check_dataset(items).ok
    with_test = scan_dataset("dfdc", root, {"split_by": "part", "val_parts": [3]})
    assert Counter(it.split for it in with_test) == Counter({"train": 36, "val": 12, "test": 3})


def test_dfdc_fake_with_original_in_another_part_follows_its_cluster(tmp_path, place_video, caplog):
    parts = {n: dict(entries) for n, entries in PARTS.items()}
    parts[2]["x2a1.mp4"] = ("FAKE", "r0a.mp4")  # its original is a real of part 0
    parts[1]["g1a1.mp4"] = ("FAKE", "ghost.mp4")  # an original in no part read: majority of its fakes
    parts[1]["g1a2.mp4"] = ("FAKE", "ghost.mp4")
    parts[2]["g2a1.mp4"] = ("FAKE", "ghost.mp4")
    root = build_dfdc(tmp_path / "dfdc", place_video, parts=parts, test_set=None)
    with caplog.at_level(logging.INFO, logger="dflab.datasets.dfdc"):
        items = scan_dataset("dfdc", root, {"split_by": "part", "val_parts": [1], "test_parts": [2]})
    assert "2 fake(s) sit in another part than their original" in caplog.text  # x2a1 and g2a1
    moved = next(it for it in items if it.key == "x2a1")
    assert moved.path == str(root / "dfdc_train_part_2/x2a1.mp4")
    assert (moved.split, moved.group, moved.sources) == ("train", "r0a", ("r0a",))  # with its original
    assert {it.split for it in items if it.group == "ghost"} == {"val"}  # 2 fakes in part 1, 1 in 2
    report = check_dataset(items)
    assert report.ok, report.message()

    folded = scan_dataset("dfdc", root, {})
    assert len({it.split for it in folded if it.group == "r0a"}) == 1
    assert check_dataset(folded).ok

    # the same fake forced into the test split with its original in train: both leaks named
    leaked = [dataclasses.replace(it, split="test") if it.key == "x2a1" else it for it in items]
    problems = {(p.kind, Path(p.path).name) for p in check_dataset(leaked).problems}
    assert ("source-leak", "x2a1.mp4") in problems
    assert any(kind == "group-leak" for kind, _ in problems)
    assert "its source 'r0a' is in train" in check_dataset(leaked).message()


def test_dfdc_train_subfolder_and_test_set_only(tmp_path, place_video):
    root = build_dfdc(tmp_path / "DFDC", place_video, parts={0: PARTS[0]}, base="train")
    items = scan_dataset("dfdc", root, {})  # DeepfakeBench layout: DFDC/train/dfdc_train_part_0
    assert sum(it.split != "test" for it in items) == 12
    only_test = scan_dataset("dfdc", root, {"parts": []})
    assert Counter((it.split, it.label) for it in only_test) == Counter({("test", 1): 2, ("test", 0): 1})
    assert len(scan_dataset("dfdc", root, {"use_test_set": False})) == 12
    (root / "test").rename(root / "dfdc_test")
    assert len(scan_dataset("dfdc", root, {})) == 12  # no test folder: no test split
    moved = scan_dataset("dfdc", root, {"test_dir": "dfdc_test"})
    assert sorted(Path(it.path).parent.name for it in moved if it.split == "test") == ["dfdc_test"] * 3


def test_dfdc_layout_errors_name_the_path(tmp_path, place_video):
    root = build_dfdc(tmp_path / "dfdc", place_video, test_set=None)
    (root / "dfdc_train_part_1/metadata.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"dfdc_train_part_1/metadata\.json: DFDC part metadata"):
        scan_dataset("dfdc", root, {})
    assert len(scan_dataset("dfdc", root, {"parts": [0, 2]})) == 24
    with pytest.raises(DatasetLayoutError, match=r"dfdc_train_part_7/: DFDC part folder does not exist"):
        scan_dataset("dfdc", root, {"parts": [0, 7]})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match=rf"{empty}: no dfdc_train_part_<N>/ folder"):
        scan_dataset("dfdc", empty, {})
    (root / "dfdc_train_part_2/metadata.json").write_text('{"a.mp4": {"label": "MAYBE"}}')
    with pytest.raises(DatasetLayoutError, match=r"part_2/metadata\.json: entry 'a\.mp4' has no label"):
        scan_dataset("dfdc", root, {"parts": [2]})
    test = root / "test"
    test.mkdir()
    with pytest.raises(DatasetLayoutError, match=r"test/labels\.csv: DFDC test-set labels do not exist"):
        scan_dataset("dfdc", root, {"parts": [0]})
    (test / "labels.csv").write_text("filename,label\nzz.mp4,FAKEISH\n")
    with pytest.raises(DatasetLayoutError, match=r"labels\.csv:2: label 'FAKEISH' is not 0"):
        scan_dataset("dfdc", root, {"parts": [0]})


def test_dfdc_empty_and_missing_videos_are_reported(tmp_path, place_video):
    root = build_dfdc(tmp_path / "dfdc", place_video)
    empty = root / "dfdc_train_part_0/f0a1.mp4"
    empty.write_bytes(b"")
    gone = root / "dfdc_train_part_3/r3b.mp4"
    gone.unlink()
    gone_test = root / "test/tstccccccc.mp4"
    gone_test.unlink()
    items = scan_dataset("dfdc", root, {})
    assert len(items) == 51  # listed videos stay listed
    problems = {(p.kind, p.path) for p in check_dataset(items, "dfdc").problems}
    assert problems == {("empty", str(empty)), ("missing", str(gone)), ("missing", str(gone_test))}


@pytest.mark.parametrize(("options", "expected"), [
    ({"split_by": "cluster"}, r"split_by: 'cluster' is not one of fold, part"),
    ({"split_by": "part"}, r"val_parts: name the parts held out"),
    ({"val_parts": [3]}, r"val_parts/test_parts: only used with split_by: part"),
    ({"split_by": "part", "val_parts": [1], "test_parts": [1]}, r"test_parts: part 1 is also in val_parts"),
    ({"split_by": "part", "parts": [0, 1], "val_parts": [4]}, r"part 4 is not in parts"),
    ({"parts": [50]}, r"parts: part 50 is not in 0\.\.49"),
    ({"folds": 3, "val_fold": 3}, r"val_fold: 3 is not in 0\.\.2"),
    ({"test_fold": 0}, r"test_fold: 0 .* equals val_fold"),
    ({"fold": 3}, r"data\.options\.fold.*did you mean 'folds'"),
])
def test_dfdc_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("dfdc", tmp_path, options)


# ---- DFDC Preview ------------------------------------------------------------------------------

def preview_entries(train_targets=("100", "101", "102", "103", "104", "105"), test_targets=("200", "201")):
    """dataset.json: per target one real clip and a method_A and a method_B fake of it."""
    entries = {}
    for official, targets in (("train", train_targets), ("test", test_targets)):
        for i, target in enumerate(targets):
            scene = "ABCDEFGH"[i]
            entries[f"original_videos/{target}/{target}_{scene}_001.mp4"] = {
                "augmentations": [], "label": "real", "set": official, "swapped_id": target, "target_id": target}
            for method, swapped in (("method_A", "9" + target), ("method_B", "8" + target)):
                entries[f"{method}/{target}/{target}_{scene}/{swapped}_{target}_{scene}_001.mp4"] = {
                    "augmentations": [], "label": "fake", "set": official, "swapped_id": swapped,
                    "target_id": target}
    return entries


def build_preview(root: Path, place_video, entries=None) -> Path:
    entries = preview_entries() if entries is None else entries
    for rel in entries:
        place_video(root / rel)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(entries))
    return root


def test_preview_official_split_with_identity_validation(tmp_path, place_video):
    root = build_preview(tmp_path / "dfdc_preview_set", place_video)
    items = scan_dataset("dfdc_preview", root, {"val_fraction": 0.4})
    assert len(items) == 24 and {it.dataset for it in items} == {"dfdc_preview"}
    c = Counter((it.split, it.label, it.method) for it in items)
    assert c[("test", 0, "")] == 2 and c[("test", 1, "method_A")] == 2 and c[("test", 1, "method_B")] == 2
    assert c[("train", 0, "")] + c[("val", 0, "")] == 6
    assert c[("val", 0, "")] > 0 and c[("train", 0, "")] > 0
    assert all(len(s) == 1 for s in by_group(items).values())
    assert {it.group for it in items if it.split == "test"} == {"id:200", "id:201"}
    fake = next(it for it in items if it.key == "method_B/101/101_B/8101_101_B_001")
    assert (fake.label, fake.method, fake.group) == (1, "method_B", "id:101")
    assert fake.sources == ("original_videos/101/101_B_001",)
    assert fake.path == str(root / "method_B/101/101_B/8101_101_B_001.mp4")
    report = check_dataset(items, "dfdc_preview")
    assert report.ok, report.message()
    assert not any(it.split == "val" for it in scan_dataset("dfdc_preview", root, {"val_fraction": 0.0}))
    only_a = scan_dataset("dfdc_preview", tmp_path, {"methods": ["method_A"]})  # parent of dfdc_preview_set
    assert {it.method for it in only_a} == {"", "method_A"} and len(only_a) == 16


def test_preview_identity_resplit(tmp_path, place_video):
    root = build_preview(tmp_path / "dfdc_preview_set", place_video)
    items = scan_dataset("dfdc_preview", root, {"split": "identity", "val_fraction": 0.25,
                                                "test_fraction": 0.25, "seed": 3})
    assert len(items) == 24
    assert all(len(s) == 1 for s in by_group(items).values())
    assert check_dataset(items).ok
    per_group = {it.group: it.split for it in items}
    assert len(per_group) == 8 and set(per_group.values()) == {"train", "val", "test"}
    assert {g for g, s in per_group.items() if s == "test"} != {"id:200", "id:201"}  # official set ignored
    again = scan_dataset("dfdc_preview", root, {"split": "identity", "val_fraction": 0.25,
                                                "test_fraction": 0.25, "seed": 3})
    assert [(it.key, it.split) for it in again] == [(it.key, it.split) for it in items]


def test_preview_leaking_official_split_is_dropped_or_reported(tmp_path, place_video, caplog):
    entries = preview_entries()
    leak = "method_A/200/200_Z/9100_200_Z_002.mp4"  # a training fake of test identity 200
    entries[leak] = {"augmentations": [], "label": "fake", "set": "train", "swapped_id": "9100", "target_id": "200"}
    swap = "method_A/103/103_D/200_103_D_002.mp4"  # test identity 200 swapped into a training clip
    entries[swap] = {"augmentations": [], "label": "fake", "set": "train", "swapped_id": "200", "target_id": "103"}
    root = build_preview(tmp_path / "dfdc_preview_set", place_video, entries)

    with caplog.at_level(logging.WARNING, logger="dflab.datasets.dfdc"):
        items = scan_dataset("dfdc_preview", root, {})
    keys = {it.key for it in items}
    assert leak[:-4] not in keys and swap[:-4] in keys  # identity "target": only the filmed person
    assert "1 training video(s) of 1 identity group(s)" in caplog.text
    assert check_dataset(items).ok

    both = scan_dataset("dfdc_preview", root, {"identity": "both"})
    assert swap[:-4] not in {it.key for it in both}  # identity "both": 103 joins 200's group
    assert not {it.group for it in both if it.split == "test"} & {it.group for it in both if it.split != "test"}
    assert check_dataset(both).ok

    kept = scan_dataset("dfdc_preview", root, {"on_leak": "keep"})
    problems = {(p.kind, p.detail.split("'")[1]) for p in check_dataset(kept).problems}
    assert ("group-leak", "id:200") in problems


def test_preview_layout_errors_and_broken_videos(tmp_path, place_video):
    missing = tmp_path / "nothing"
    missing.mkdir()
    with pytest.raises(DatasetLayoutError, match=r"nothing/dataset\.json: DFDC Preview index"):
        scan_dataset("dfdc_preview", missing, {})
    root = build_preview(tmp_path / "dfdc_preview_set", place_video)
    empty = root / "method_A/100/100_A/9100_100_A_001.mp4"
    empty.write_bytes(b"")
    gone = root / "original_videos/201/201_B_001.mp4"
    gone.unlink()
    problems = {(p.kind, p.path) for p in check_dataset(scan_dataset("dfdc_preview", root, {})).problems}
    assert problems == {("empty", str(empty)), ("missing", str(gone))}
    entries = preview_entries()
    entries["original_videos/100/100_A_001.mp4"]["set"] = "dev"
    (root / "dataset.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetLayoutError, match=r"dataset\.json: entry 'original_videos/100/100_A_001\.mp4' needs"):
        scan_dataset("dfdc_preview", root, {})


@pytest.mark.parametrize(("options", "expected"), [
    ({"split": "random"}, r"split: 'random' is not one of official, identity"),
    ({"identity": "swapped"}, r"identity: 'swapped' is not one of target, both"),
    ({"methods": ["method_C"]}, r"methods: \['method_C'\] must name some of method_A, method_B"),
    ({"split": "identity", "val_fraction": 0.5, "test_fraction": 0.5}, r"sum below 1"),
    ({"on_leak": "ignore"}, r"on_leak: 'ignore' is not one of drop, keep"),
])
def test_preview_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("dfdc_preview", tmp_path, options)
