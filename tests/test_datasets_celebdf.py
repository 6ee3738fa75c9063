"""The ``celebdf`` adapter on a small Celeb-DF tree with an official-format test list."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

import pytest

import dflab.datasets.celebdf as celebdf  # registers the adapter
from dflab.config import ConfigError
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError

# Three identity clusters linked by fakes ({id0, id1}, {id2, id3}, {id4, id5}) and six YouTube videos.
CELEB_REAL = ["id0_0000", "id0_0001", "id1_0000", "id1_0001", "id2_0000", "id2_0001", "id3_0000",
              "id3_0001", "id4_0000", "id4_0001", "id5_0000", "id5_0001"]
SYNTHESIS = ["id0_id1_0000", "id0_id1_0001", "id1_id0_0000", "id1_id0_0001", "id2_id3_0000",
             "id3_id2_0001", "id4_id5_0000", "id4_id5_0001", "id5_id4_0000", "id5_id4_0001"]
YOUTUBE = [f"{i:05d}" for i in range(6)]
# Official format: "<label> <folder>/<file>", 1 = real, 0 = fake (as in the v2 release).
TEST_LIST = ["1 YouTube-real/00000.mp4", "1 YouTube-real/00001.mp4", "1 Celeb-real/id0_0001.mp4",
             "0 Celeb-synthesis/id0_id1_0001.mp4", "0 Celeb-synthesis/id2_id3_0000.mp4"]
OFFICIAL = {"val_fraction": 0.3}


def build_tree(tmp_path: Path, place_video, test_list=TEST_LIST, newline="\n") -> Path:
    root = tmp_path / "Celeb-DF-v2"
    for folder, stems in (("Celeb-real", CELEB_REAL), ("Celeb-synthesis", SYNTHESIS), ("YouTube-real", YOUTUBE)):
        for stem in stems:
            place_video(root / folder / f"{stem}.mp4")
    (root / "List_of_testing_videos.txt").write_text("".join(f"{line}{newline}" for line in test_list))
    return root


def identities(item) -> set[str]:
    """Identities a video shows (its key names them)."""
    stem = item.key.split("/")[1]
    return {item.key} if item.key.startswith("YouTube-real/") else set(stem.split("_")[:-1])


def split_identities(items) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for it in items:
        out[it.split] |= identities(it)
    return out


def test_official_protocol_counts_labels_sources_and_no_leak(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video, newline="\r\n")
    with caplog.at_level(logging.INFO, logger="dflab.datasets.celebdf"):
        items = scan_dataset("celebdf", root, OFFICIAL)
    assert len(items) == len(CELEB_REAL) + len(SYNTHESIS) + len(YOUTUBE)
    by_key = {it.key: it for it in items}
    test = Counter((it.label, it.method) for it in items if it.split == "test")
    assert test == Counter({(0, ""): 3, (1, "Celeb-synthesis"): 2})
    assert Counter(it.split for it in items) == Counter({"train": 16, "val": 7, "test": 5})
    assert {it.label for it in items if it.key.startswith("Celeb-synthesis/")} == {1}
    assert {it.label for it in items if not it.key.startswith("Celeb-synthesis/")} == {0}
    fake = by_key["Celeb-synthesis/id0_id1_0001"]
    assert (fake.split, fake.group, fake.sources) == ("test", "test/id0", ("Celeb-real/id0_0001",))
    assert fake.path == str(root / "Celeb-synthesis/id0_id1_0001.mp4")
    # its real (id2_0000) is a training video: the official list splits them, the link is not kept
    assert by_key["Celeb-synthesis/id2_id3_0000"].sources == ()
    assert by_key["Celeb-real/id2_0000"].split != "test"
    assert "1 fake(s) and their real video sit on two sides" in caplog.text
    train_fake = by_key["Celeb-synthesis/id5_id4_0000"]
    assert train_fake.sources == ("Celeb-real/id5_0000",)
    assert train_fake.split == by_key["Celeb-real/id5_0000"].split == by_key["Celeb-real/id4_0000"].split
    # a fake joins target and source identity: each cluster sits whole in train or val
    ids = split_identities(items)
    assert not ids["train"] & ids["val"]
    assert ids["val"] == {"id0", "id1", "YouTube-real/00005"}  # one whole cluster and a YouTube video
    assert ids["test"] & (ids["train"] | ids["val"]) == {"id0", "id1", "id2", "id3"}  # the official overlap
    assert {it.dataset for it in items} == {"celebdf"}
    report = check_dataset(items, "celebdf")
    assert report.ok, report.message()


def test_exclude_test_identities_drops_them_from_train_and_val(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    with caplog.at_level(logging.INFO, logger="dflab.datasets.celebdf"):
        items = scan_dataset("celebdf", root, {**OFFICIAL, "exclude_test_identities": True})
    ids = split_identities(items)
    assert ids["test"] == {"id0", "id1", "id2", "id3", "YouTube-real/00000", "YouTube-real/00001"}
    assert not ids["test"] & (ids["train"] | ids["val"])
    assert not ids["train"] & ids["val"]
    kept = {it.key for it in items if it.split != "test"}
    assert {k.split("/")[1] for k in kept if not k.startswith("YouTube")} == {
        "id4_0000", "id4_0001", "id5_0000", "id5_0001", "id4_id5_0000", "id4_id5_0001", "id5_id4_0000",
        "id5_id4_0001"}
    assert "11 training video(s) show a test identity and were left out" in caplog.text
    test = {it.key: it for it in items if it.split == "test"}
    assert test["Celeb-real/id0_0001"].group == "id0"  # strict: test groups are plain identities
    assert check_dataset(items).ok, check_dataset(items).message()
    (root / "List_of_testing_videos.txt").write_text("\n".join([*TEST_LIST, "1 Celeb-real/id5_0001.mp4"]))
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.celebdf"):
        items = scan_dataset("celebdf", root, {**OFFICIAL, "exclude_test_identities": True})
    assert not any(it.label for it in items if it.split != "test")
    assert "leaves no fake outside the test list (the official list shows 5 celebrities)" in caplog.text


def test_split_by_identity_drops_fakes_linking_train_and_val(tmp_path, place_video, caplog):
    root = build_tree(tmp_path, place_video)
    with caplog.at_level(logging.INFO, logger="dflab.datasets.celebdf"):
        runs = {seed: scan_dataset("celebdf", root, {"split_by": "identity", "val_fraction": 0.3,
                                                     "seed": seed}) for seed in range(6)}
    dropped = 0
    for items in runs.values():
        ids = split_identities(items)
        assert not ids["train"] & ids["val"]
        assert {it.group for it in items if it.key.startswith("Celeb-real/id4")} == {"id4"}
        dropped += len(CELEB_REAL) + len(SYNTHESIS) + len(YOUTUBE) - len(items)
        assert check_dataset(items).ok
    assert dropped > 0 and "link identities of train and val and were left out" in caplog.text
    assert len({frozenset(it.key for it in items if it.split == "val") for items in runs.values()}) > 1


def test_seed_and_val_fraction(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    none = scan_dataset("celebdf", root, {"val_fraction": 0.0})
    assert {it.split for it in none} == {"train", "test"}
    vals = {frozenset(it.key for it in scan_dataset("celebdf", root, {**OFFICIAL, "seed": s}) if it.split == "val")
            for s in range(6)}
    assert len(vals) > 1
    again = scan_dataset("celebdf", root, OFFICIAL)
    assert again == scan_dataset("celebdf", root, OFFICIAL)


def test_version_is_checked_against_the_release_counts(tmp_path, place_video, caplog, monkeypatch):
    root = build_tree(tmp_path, place_video)
    found = {"Celeb-real": len(CELEB_REAL), "YouTube-real": len(YOUTUBE), "Celeb-synthesis": len(SYNTHESIS)}
    monkeypatch.setitem(celebdf.RELEASE_COUNTS, "v1", found)  # pretend the tree is a full v1 copy
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.celebdf"):
        scan_dataset("celebdf", root, {})
    assert "hold exactly the videos of Celeb-DF v1, but version is v2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dflab.datasets.celebdf"):
        assert scan_dataset("celebdf", root, {"version": "v1"})
    assert "exactly the videos" not in caplog.text


@pytest.mark.parametrize(("options", "expected"), [
    ({"version": "v3"}, r"version: 'v3' is not one of v1, v2"),
    ({"split_by": "video"}, r"split_by: 'video' is not one of cluster, identity"),
    ({"val_fraction": 1.0}, r"val_fraction: 1\.0 is not in \[0, 1\)"),
    ({"exclude_test_identity": True}, r"data\.options\.exclude_test_identity.*did you mean 'exclude_test_identities'"),
])
def test_invalid_options_are_refused_by_name(tmp_path, options, expected):
    with pytest.raises(ConfigError, match=expected):
        scan_dataset("celebdf", tmp_path, options)


def test_missing_test_list_or_folder_and_bad_lines_are_named(tmp_path, place_video):
    root = build_tree(tmp_path, place_video)
    (root / "List_of_testing_videos.txt").rename(root / "lists.txt")
    with pytest.raises(DatasetLayoutError, match=r"List_of_testing_videos\.txt: Celeb-DF test list does not exist"):
        scan_dataset("celebdf", root, {})
    assert len(scan_dataset("celebdf", root, {"test_list": "lists.txt"})) == 28
    (root / "lists.txt").write_text("1 YouTube-real/00000.mp4\n\n0 Celeb-real/id0_0001.mp4\n")
    with pytest.raises(DatasetLayoutError, match=r"lists\.txt:3: label 0 \(fake\) disagrees with folder Celeb-real/"):
        scan_dataset("celebdf", root, {"test_list": "lists.txt"})
    (root / "lists.txt").write_text("real Celeb-real/id0_0001.mp4\n")
    with pytest.raises(DatasetLayoutError, match=r"lists\.txt:1: 'real Celeb-real/id0_0001\.mp4' is not '<label> <folder>/<file>'"):
        scan_dataset("celebdf", root, {"test_list": "lists.txt"})
    place_video(root / "Celeb-synthesis/id0-id1.mp4")
    with pytest.raises(DatasetLayoutError, match=r"Celeb-synthesis/id0-id1\.mp4: not a Celeb-synthesis name"):
        scan_dataset("celebdf", root, {"test_list": "lists.txt"})
    (root / "Celeb-synthesis/id0-id1.mp4").unlink()
    for p in (root / "YouTube-real").iterdir():
        p.unlink()
    (root / "YouTube-real").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"Celeb-DF-v2/YouTube-real/: folder of Celeb-DF YouTube-real"):
        scan_dataset("celebdf", root, {"test_list": "lists.txt"})


def test_empty_and_listed_but_missing_videos_are_reported(tmp_path, place_video):
    root = build_tree(tmp_path, place_video, test_list=[*TEST_LIST, "1 Celeb-real/id9_0003.mp4"])
    empty = root / "Celeb-real/id4_0000.mp4"
    empty.write_bytes(b"")
    items = scan_dataset("celebdf", root, OFFICIAL)
    gone = next(it for it in items if it.key == "Celeb-real/id9_0003")
    assert (gone.split, gone.label) == ("test", 0)
    report = check_dataset(items, "celebdf")
    assert {(p.kind, p.path) for p in report.problems} == {
        ("empty", str(empty)), ("missing", str(root / "Celeb-real/id9_0003.mp4"))}
    assert "id4_0000.mp4: file is empty" in report.message()


def test_fake_moved_away_from_its_source_is_a_leak(tmp_path, place_video):
    items = scan_dataset("celebdf", build_tree(tmp_path, place_video), OFFICIAL)
    index, fake = next((i, it) for i, it in enumerate(items)
                       if it.key == "Celeb-synthesis/id5_id4_0000")
    moved = "val" if fake.split == "train" else "train"
    items[index] = dataclasses.replace(fake, split=moved)
    report = check_dataset(items, "celebdf")
    kinds = {(p.kind, p.path) for p in report.problems}
    assert ("source-leak", fake.path) in kinds
    assert any(kind == "group-leak" for kind, _ in kinds)
    assert f"fake in {moved} but its source 'Celeb-real/id5_0000' is in {fake.split}" in report.message()
