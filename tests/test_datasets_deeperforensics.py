"""The ``deeperforensics`` adapter on small DeeperForensics-1.0 + FaceForensics++ trees."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

import dflab.datasets.deeperforensics  # noqa: F401  (registers the adapter)
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError

SPLIT_LISTS = {"train": ["000_M101.mp4", "001_M101.mp4", "002_W102.mp4"], "val": ["003_M004.mp4"],
               "test": ["004_W135.mp4", "005_W135.mp4"]}
SUBSETS = ("end_to_end", "end_to_end_level_3", "end_to_end_mix_2_distortions")


def build_tree(tmp_path: Path, place_video, lists=SPLIT_LISTS, subsets=SUBSETS, comp="c23") -> Path:
    """``DeeperForensics-1.0/`` (root) next to a FaceForensics++ download ``FaceForensics++/``."""
    root = tmp_path / "DeeperForensics-1.0"
    (root / "lists/splits").mkdir(parents=True)
    for split, names in lists.items():
        (root / f"lists/splits/{split}.txt").write_text("".join(f"{n}\n" for n in names))
    for names in lists.values():
        for name in names:
            for subset in subsets:
                place_video(root / "manipulated_videos" / subset / name)
            target = name.split("_")[0]
            place_video(tmp_path / f"FaceForensics++/original_sequences/youtube/{comp}/videos/{target}.mp4")
    place_video(root / "manipulated_videos/end_to_end/999_M999.mp4")  # the hidden part: in no list
    place_video(tmp_path / f"FaceForensics++/original_sequences/youtube/{comp}/videos/998.mp4")
    return root


OPTIONS = {"ffpp_root": "../FaceForensics++"}


def counts(items) -> Counter:
    return Counter((it.split, it.label, it.method) for it in items)


def test_official_layout_counts_labels_and_links(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.deeperforensics"):
        items = scan_dataset("deeperforensics", root, OPTIONS)
    assert counts(items) == Counter({("train", 1, "end_to_end"): 3, ("train", 0, ""): 3,
                                     ("val", 1, "end_to_end"): 1, ("val", 0, ""): 1,
                                     ("test", 1, "end_to_end"): 2, ("test", 0, ""): 2})
    by_key = {it.key: it for it in items}
    fake = by_key["end_to_end/002_W102"]
    assert (fake.label, fake.split, fake.group, fake.sources) == (1, "train", "W102", ("youtube/002",))
    assert fake.path == str(root / "manipulated_videos/end_to_end/002_W102.mp4")
    real = by_key["youtube/004"]
    assert (real.label, real.split, real.group, real.method) == (0, "test", "W135", "")
    assert real.path == str(tmp_path / "FaceForensics++/original_sequences/youtube/c23/videos/004.mp4")
    assert "youtube/998" not in by_key and "end_to_end/999_M999" not in by_key
    assert "deeperforensics: 1 video(s) on disk are in no split file" in caplog.text
    assert {it.dataset for it in items} == {"deeperforensics"}
    report = check_dataset(items, "deeperforensics")
    assert report.ok, report.message()


def test_subsets_and_train_subsets(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    items = scan_dataset("deeperforensics", root, {**OPTIONS, "subsets": list(SUBSETS),
                                                   "train_subsets": "end_to_end"})
    c = counts(items)
    assert c[("train", 1, "end_to_end")] == 3 and c[("train", 1, "end_to_end_level_3")] == 0
    for subset in SUBSETS:
        assert c[("val", 1, subset)] == 1 and c[("test", 1, subset)] == 2
    assert c[("test", 0, "")] == 2  # one real per target, whatever the number of subsets
    keys = [it.key for it in items]
    assert len(keys) == len(set(keys))
    assert check_dataset(items).ok
    with pytest.raises(DatasetLayoutError, match=r"manipulated_videos/end_to_end_level_5/: folder"):
        scan_dataset("deeperforensics", root, {**OPTIONS, "subsets": ["end_to_end", "end_to_end_level_5"]})


def test_ffpp_root_and_compression(tmp_path, place_video):
    root = build_tree(tmp_path, place_video, comp="c40")
    with pytest.raises(DatasetLayoutError, match=r"FaceForensics\+\+/original_sequences/youtube/c23/videos"):
        scan_dataset("deeperforensics", root, OPTIONS)
    absolute = {"ffpp_root": str(tmp_path / "FaceForensics++"), "ffpp_compression": "c40"}
    items = scan_dataset("deeperforensics", root, absolute)
    assert all("/c40/videos/" in it.path for it in items if it.label == 0)
    assert check_dataset(items).ok


@pytest.mark.parametrize(("options", "expected"), [
    ({}, r"ffpp_root: required"),
    ({**OPTIONS, "ffpp_compression": "hq"}, r"ffpp_compression: 'hq' is not one of raw, c23, c40"),
    ({**OPTIONS, "subsets": ["end_to_end_level_6"]}, r"unknown subset 'end_to_end_level_6'; valid: end_to_end,"),
    ({**OPTIONS, "val_subsets": ["reenact_postprocess"]}, r"val_subsets: 'reenact_postprocess' is not in subsets"),
    ({**OPTIONS, "subset": "end_to_end"}, r"data\.options\.subset.*did you mean 'subsets'"),
])
def test_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("deeperforensics", tmp_path, options)


def test_missing_or_malformed_split_file_is_named(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    (root / "lists/splits/test.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"lists/splits/test\.txt: DeeperForensics-1\.0 split file does not"):
        scan_dataset("deeperforensics", root, OPTIONS)
    (root / "lists/splits/test.txt").write_text("004_W135.mp4\n\nM101.mp4\n")
    with pytest.raises(DatasetLayoutError, match=r"test\.txt:3: 'M101\.mp4' is not a fake name"):
        scan_dataset("deeperforensics", root, OPTIONS)
    (root / "lists/splits/test.txt").write_text("004_W135\n")  # names without extension are accepted
    items = scan_dataset("deeperforensics", root, OPTIONS)
    assert counts(items)[("test", 1, "end_to_end")] == 1


def test_empty_and_missing_videos_are_reported(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    empty = root / "manipulated_videos/end_to_end/003_M004.mp4"
    empty.write_bytes(b"")
    gone = tmp_path / "FaceForensics++/original_sequences/youtube/c23/videos/005.mp4"
    gone.unlink()
    items = scan_dataset("deeperforensics", root, OPTIONS)
    report = check_dataset(items, "deeperforensics")
    assert {(p.kind, p.path) for p in report.problems} == {("empty", str(empty)), ("missing", str(gone))}
    assert "003_M004.mp4" in report.message() and "005.mp4" in report.message()


def test_hand_edited_split_leaks_source_and_identity(tmp_path, place_video):
    lists = {"train": ["000_M101.mp4"], "val": ["001_M004.mp4"],
             "test": ["000_W135.mp4", "002_M101.mp4"]}  # target 000 and actor M101 in two splits
    root = build_tree(tmp_path, place_video, lists=lists)
    report = check_dataset(scan_dataset("deeperforensics", root, OPTIONS), "deeperforensics")
    problems = {(p.kind, Path(p.path).name) for p in report.problems}
    assert ("source-leak", "000_W135.mp4") in problems  # its real (000) sits in train
    assert ("group-leak", "000_M101.mp4") in problems  # actor M101 in train and test
    assert "'youtube/000' is in train" in report.message()
