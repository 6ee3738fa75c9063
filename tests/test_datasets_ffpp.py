"""The ``ffpp`` adapter on small FaceForensics++ trees with the official names and split format."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest

import dflab.datasets.ffpp  # noqa: F401  (registers the adapter)
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError, assign_splits

CLASSIC = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
# pairs taken from the official dataset/splits/*.json of ondyari/FaceForensics
PAIRS = {"train": [["071", "054"], ["087", "081"]], "val": [["720", "672"]], "test": [["953", "974"]]}


def write_splits(folder: Path, pairs: dict[str, list[list[str]]] = PAIRS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_pairs in pairs.items():
        (folder / f"{split}.json").write_text(json.dumps(split_pairs, indent=2))


def build_tree(root: Path, place_video, comp: str = "c23", methods=CLASSIC, pairs=PAIRS) -> Path:
    """The download script's layout for ``pairs``, plus one youtube original no split lists."""
    write_splits(root / "splits", pairs)
    for split_pairs in pairs.values():
        for target, source in split_pairs:
            for vid in (target, source):
                place_video(root / f"original_sequences/youtube/{comp}/videos/{vid}.mp4")
            for method in methods:
                for name in (f"{target}_{source}", f"{source}_{target}"):
                    place_video(root / f"manipulated_sequences/{method}/{comp}/videos/{name}.mp4")
    place_video(root / f"original_sequences/youtube/{comp}/videos/999.mp4")
    return root


def add_dfd(root: Path, place_video, comp: str = "c23") -> None:
    for name in ("01__exit_phone_room", "02__kitchen_pan", "03__podium_speech_happy"):
        place_video(root / f"original_sequences/actors/{comp}/videos/{name}.mp4")
    for name in ("01_02__exit_phone_room__YVGY8LOK", "02_03__kitchen_pan__ZK95PQDE"):
        place_video(root / f"manipulated_sequences/DeepFakeDetection/{comp}/videos/{name}.mp4")


def counts(items) -> Counter:
    return Counter((it.split, it.label, it.method) for it in items)


def test_official_layout_counts_labels_and_links(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.ffpp"):
        items = scan_dataset("ffpp", root, {})
    c = counts(items)
    assert c[("train", 0, "")] == 4 and c[("val", 0, "")] == 2 and c[("test", 0, "")] == 2
    for method in CLASSIC:
        assert (c[("train", 1, method)], c[("val", 1, method)], c[("test", 1, method)]) == (4, 2, 2)
    assert len(items) == 8 + 4 * 8
    assert {it.dataset for it in items} == {"ffpp"}
    by_key = {it.key: it for it in items}
    fake = by_key["Deepfakes/054_071"]
    assert fake.label == 1 and fake.split == "train" and fake.group == "071_054"
    assert fake.sources == ("youtube/071", "youtube/054")
    assert fake.path == str(root / "manipulated_sequences/Deepfakes/c23/videos/054_071.mp4")
    real = by_key["youtube/672"]
    assert (real.label, real.split, real.group, real.method) == (0, "val", "720_672", "")
    assert "youtube/999" not in by_key  # on disk but in no split file
    assert "1 video(s) on disk are in no split file" in caplog.text
    assert "original_sequences/youtube/c23/videos (1)" in caplog.text
    report = check_dataset(items, "ffpp")
    assert report.ok, report.message()
    assert assign_splits(items) == items  # every video already has its split


def test_compression_and_method_options(tmp_path, place_video):
    root = build_tree(tmp_path, place_video, comp="c40", methods=("Deepfakes", "FaceSwap"))
    items = scan_dataset("ffpp", root, {"compression": "c40", "methods": ["Deepfakes", "FaceSwap"]})
    assert {it.method for it in items if it.label} == {"Deepfakes", "FaceSwap"}
    assert all("/c40/videos/" in it.path for it in items)
    assert check_dataset(items).ok
    # the default (c23) is not downloaded here: the missing folder is named
    with pytest.raises(DatasetLayoutError, match=r"original_sequences/youtube/c23/videos"):
        scan_dataset("ffpp", root, {"methods": ["Deepfakes"]})
    # a method asked for but not downloaded
    with pytest.raises(DatasetLayoutError, match=r"manipulated_sequences/Face2Face/c40/videos"):
        scan_dataset("ffpp", root, {"compression": "c40", "methods": ["Deepfakes", "Face2Face"]})


def test_train_and_val_methods_restrict_only_their_split(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    items = scan_dataset("ffpp", root, {"train_methods": ["Deepfakes"], "val_methods": "Face2Face"})
    methods = {split: {it.method for it in items if it.split == split and it.label} for split in
               ("train", "val", "test")}
    assert methods == {"train": {"Deepfakes"}, "val": {"Face2Face"}, "test": set(CLASSIC)}
    c = counts(items)
    assert c[("train", 0, "")] == 4 and c[("train", 1, "Deepfakes")] == 4
    assert check_dataset(items).ok


@pytest.mark.parametrize(("options", "expected"), [
    ({"methods": ["DeepFakes"]}, r"unknown method 'DeepFakes'; valid: Deepfakes, Face2Face"),
    ({"compression": "c0"}, r"compression: 'c0' is not one of raw, c23, c40"),
    ({"train_methods": ["FaceShifter"]}, r"train_methods: 'FaceShifter' is not in methods"),
    ({"methods": []}, r"methods: name at least one of"),
    ({"dfd_split": "holdout"}, r"dfd_split: 'holdout' is not one of train, val, test, auto"),
    ({"methods": ["Deepfakes", "DeepFakeDetection"], "dfd_split": "auto", "train_methods": ["Deepfakes"]},
     r"cannot leave out DeepFakeDetection"),
    ({"compresion": "c23"}, r"data\.options\.compresion.*did you mean 'compression'"),
])
def test_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("ffpp", tmp_path, options)


def test_missing_or_malformed_split_file_is_named(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    (root / "splits" / "val.json").unlink()
    with pytest.raises(DatasetLayoutError, match=r"splits/val\.json: FaceForensics\+\+ split file does not exist"):
        scan_dataset("ffpp", root, {})
    (root / "splits" / "val.json").write_text('[["720", "672"], ["953"]]')
    with pytest.raises(DatasetLayoutError, match=r"val\.json: entry 1 is \['953'\]"):
        scan_dataset("ffpp", root, {})
    (root / "splits" / "val.json").write_text("{not json")
    with pytest.raises(DatasetLayoutError, match=r"val\.json:1: not a readable JSON split file"):
        scan_dataset("ffpp", root, {})


def test_splits_dir_relative_to_root(tmp_path, place_video):
    root = build_tree(tmp_path / "ffpp", place_video)
    (root / "splits").rename(root / "official")
    with pytest.raises(DatasetLayoutError, match=r"splits/train\.json"):
        scan_dataset("ffpp", root, {})
    items = scan_dataset("ffpp", root, {"splits_dir": "official"})
    assert len(items) == 40
    write_splits(tmp_path / "elsewhere", {"train": [["071", "054"]], "val": [], "test": []})
    items = scan_dataset("ffpp", root, {"splits_dir": str(tmp_path / "elsewhere")})
    assert counts(items) == Counter({("train", 0, ""): 2, **{("train", 1, m): 2 for m in CLASSIC}})


def test_empty_and_missing_videos_are_reported(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    empty = root / "manipulated_sequences/Face2Face/c23/videos/720_672.mp4"
    empty.unlink()
    empty.touch()
    gone = root / "original_sequences/youtube/c23/videos/953.mp4"
    gone.unlink()
    items = scan_dataset("ffpp", root, {})
    assert str(gone) in {it.path for it in items}  # listed by the split file, so still returned
    report = check_dataset(items, "ffpp")
    assert {(p.kind, p.path) for p in report.problems} == {("empty", str(empty)), ("missing", str(gone))}
    assert "720_672.mp4" in report.message() and "953.mp4" in report.message()


def test_hand_edited_split_leaks_a_source(tmp_path, place_video):
    pairs = {"train": [["071", "054"]], "val": [["720", "672"]], "test": [["054", "953"]]}  # 054 reused
    root = build_tree(tmp_path, place_video, pairs=pairs)
    report = check_dataset(scan_dataset("ffpp", root, {}), "ffpp")
    leaks = {(p.kind, Path(p.path).name) for p in report.problems}
    assert ("source-leak", "071_054.mp4") in leaks  # fake in train, its source 054 also in test
    assert ("source-leak", "054_953.mp4") in leaks
    assert ("split-leak", "054.mp4") in leaks
    assert "'youtube/054' is in test" in report.message()


def test_deepfakedetection_part(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    methods = [*CLASSIC, "DeepFakeDetection"]
    with pytest.raises(DatasetLayoutError, match=r"original_sequences/actors/c23/videos"):
        scan_dataset("ffpp", root, {"methods": methods})
    add_dfd(root, place_video)
    items = scan_dataset("ffpp", root, {"methods": methods})
    dfd = [it for it in items if it.key.startswith(("actors/", "DeepFakeDetection/"))]
    assert len(dfd) == 5 and {it.split for it in dfd} == {"test"}
    fake = next(it for it in dfd if it.key == "DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK")
    assert (fake.label, fake.method, fake.group) == (1, "DeepFakeDetection", "actors/01")
    assert fake.sources == ("actors/01__exit_phone_room",)
    assert check_dataset(items).ok
    # auto: left unassigned, then split by actor so each fake stays with its source
    items = scan_dataset("ffpp", root, {"methods": methods, "dfd_split": "auto"})
    assert {it.split for it in items if it.key.startswith("actors/")} == {""}
    seen = set()
    for seed in range(5):
        placed = {it.key: it for it in assign_splits(items, val_fraction=0.4, test_fraction=0.3, seed=seed)}
        assert check_dataset(list(placed.values())).ok
        fake_split = placed["DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK"].split
        assert fake_split == placed["actors/01__exit_phone_room"].split
        seen |= {placed[k].split for k in placed if k.startswith("actors/")}
    assert len(seen) > 1  # the actors really are spread over splits
    # a fixed training split honours train_methods
    items = scan_dataset("ffpp", root, {"methods": methods, "dfd_split": "train", "train_methods": CLASSIC})
    assert not [it for it in items if it.method == "DeepFakeDetection"]
    assert len([it for it in items if it.key.startswith("actors/")]) == 3


def test_official_masks_are_linked_to_their_fakes(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    mask = place_video(root / "manipulated_sequences/Deepfakes/masks/videos/054_071.mp4")
    by_key = {it.key: it for it in scan_dataset("ffpp", root, {})}
    assert by_key["Deepfakes/054_071"].mask == str(mask)
    assert by_key["Face2Face/054_071"].mask == "" and by_key["youtube/071"].mask == ""
