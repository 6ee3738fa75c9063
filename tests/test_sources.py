import numpy as np
import pytest

from dflab.datasets.sources import DatasetLayoutError, assign_splits, read_manifest, scan_folder
from dflab.video import write_video


def _video(path):
    write_video(path, [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(4)], fps=5)


def test_folder_layout_with_val(tmp_path):
    for rel in ("real/a.mp4", "real/b.mp4", "fake/c.mp4", "val/real/d.mp4", "val/fake/e.mp4"):
        _video(tmp_path / rel)
    items = scan_folder(tmp_path)
    assert {(it.video_id, it.label, it.split) for it in items} == {
        ("real/a.mp4", 0, "train"), ("real/b.mp4", 0, "train"), ("fake/c.mp4", 1, "train"),
        ("val/real/d.mp4", 0, "val"), ("val/fake/e.mp4", 1, "val")}


def test_folder_layout_errors_name_the_folder(tmp_path):
    _video(tmp_path / "real/a.mp4")
    with pytest.raises(DatasetLayoutError, match=r"missing .*fake/"):
        scan_folder(tmp_path)
    (tmp_path / "fake").mkdir()  # an empty training fake/ is allowed (data.self_blend)
    assert [it.label for it in scan_folder(tmp_path)] == [0]
    (tmp_path / "val/fake").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"val/real/: missing"):
        scan_folder(tmp_path)
    (tmp_path / "val/real").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"val/real/: holds no video"):
        scan_folder(tmp_path)


def test_manifest_and_group_split(tmp_path):
    rows = ["path,label,split,group"]
    for i in range(40):
        _video(tmp_path / f"v{i}.mp4") if i < 2 else None
        rows.append(f"v{i}.mp4,{'fake' if i % 2 else 'real'},,id{i // 4}")
    rows.append("x.mp4,real,test,idx")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    items = assign_splits(read_manifest(tmp_path / "m.csv"), val_fraction=0.3, seed=3)
    by_group = {}
    for it in items:
        by_group.setdefault(it.group, set()).add(it.split)
    assert all(len(s) == 1 for s in by_group.values()), "a group spans two splits"
    assert {"train", "val", "test"} == {it.split for it in items}
    assert items[0].path == str(tmp_path / "v0.mp4")


@pytest.mark.parametrize(("row", "message"), [("a.mp4,maybe", "label 'maybe'"), ("a.mp4,real,dev", "split 'dev'")])
def test_manifest_errors_name_the_line(tmp_path, row, message):
    (tmp_path / "m.csv").write_text(f"path,label,split\n{row}\n")
    with pytest.raises(DatasetLayoutError, match=rf"m.csv:2: {message}"):
        read_manifest(tmp_path / "m.csv")


def _split_of(items):
    return {it.key: it.split for it in items}


def test_same_file_name_under_real_and_fake_is_two_videos(tmp_path, place_video):
    from dflab.datasets import scan_dataset
    from dflab.datasets.check import check_dataset

    for rel in ("real/clip0.mp4", "fake/clip0.mp4", "real/clip1.mp4", "fake/clip1.mp4"):
        place_video(tmp_path / rel)
    items = assign_splits(scan_dataset("folder", tmp_path), val_fraction=0.5, seed=1)
    assert sorted(it.video_id for it in items) == ["fake/clip0.mp4", "fake/clip1.mp4", "real/clip0.mp4",
                                                   "real/clip1.mp4"]
    assert len({it.group for it in items}) == 4, "no group guessed from the file stem"
    report = check_dataset(items)
    assert report.ok, report.message()


def test_same_file_name_in_two_split_folders_is_no_leak(tmp_path, place_video):
    from dflab.datasets import scan_dataset
    from dflab.datasets.check import check_dataset

    for rel in ("real/clip0.mp4", "fake/clip0.mp4", "val/real/clip0.mp4", "val/fake/clip0.mp4",
                "test/real/clip0.mp4", "test/fake/clip0.mp4"):
        place_video(tmp_path / rel)
    items = assign_splits(scan_dataset("folder", tmp_path))
    assert _split_of(items) == {"real/clip0.mp4": "train", "fake/clip0.mp4": "train",
                                "val/real/clip0.mp4": "val", "val/fake/clip0.mp4": "val",
                                "test/real/clip0.mp4": "test", "test/fake/clip0.mp4": "test"}
    report = check_dataset(items)
    assert report.ok, report.message()


def test_folder_group_by_stem_keeps_a_pair_in_one_split(tmp_path, place_video):
    from dflab.config import ConfigError
    from dflab.datasets import scan_dataset

    for i in range(12):
        place_video(tmp_path / f"real/clip{i}.mp4")
        place_video(tmp_path / f"fake/clip{i}.mp4")
    for seed in range(4):
        items = assign_splits(scan_dataset("folder", tmp_path, {"group_by": "stem"}), 0.3, 0.3, seed)
        assert {it.group for it in items} == {f"clip{i}" for i in range(12)}
        split = _split_of(items)
        assert all(split[f"real/clip{i}.mp4"] == split[f"fake/clip{i}.mp4"] for i in range(12))
        assert set(split.values()) == {"train", "val", "test"}
    by_path = assign_splits(scan_dataset("folder", tmp_path), 0.3, 0.3, 0)
    assert any(s != _split_of(by_path)[k.replace("real/", "fake/")]
               for k, s in _split_of(by_path).items() if k.startswith("real/")), "path groups split pairs"
    place_video(tmp_path / "val/real/clip0.mp4")  # the user said one stem is one group: leakage
    place_video(tmp_path / "val/fake/other.mp4")
    with pytest.raises(DatasetLayoutError, match=r"group 'clip0' appears in both 'train' and 'val' splits"):
        assign_splits(scan_dataset("folder", tmp_path, {"group_by": "stem"}))
    with pytest.raises(ConfigError, match=r"data\.options: group_by: 'name' is not one of path, stem"):
        scan_dataset("folder", tmp_path, {"group_by": "name"})


def test_manifest_ids_are_relative_paths_and_groups_come_from_the_group_column(tmp_path, place_video):
    from dflab.datasets.check import check_dataset

    rows = ["path,label,split,group"]
    for i in range(10):
        for label in ("real", "fake"):
            place_video(tmp_path / f"{label}/clip{i}.mp4")
            rows.append(f"{label}/clip{i}.mp4,{label},,{f'pair{i}' if i < 5 else ''}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    items = read_manifest(tmp_path / "m.csv")
    assert {it.key for it in items} == {f"{lab}/clip{i}.mp4" for lab in ("real", "fake") for i in range(10)}
    assert {it.group for it in items if it.key.endswith(("clip7.mp4",))} == {"real/clip7.mp4", "fake/clip7.mp4"}
    for seed in range(4):
        placed = assign_splits(items, 0.4, 0.3, seed)
        assert check_dataset(placed).ok
        split = _split_of(placed)
        assert all(split[f"real/clip{i}.mp4"] == split[f"fake/clip{i}.mp4"] for i in range(5)), "group column"


def test_manifest_duplicates_and_leaks_are_still_refused(tmp_path, place_video):
    from dflab.datasets.check import check_dataset

    place_video(tmp_path / "real/a.mp4")
    place_video(tmp_path / "fake/a.mp4")
    (tmp_path / "m.csv").write_text("path,label\nreal/a.mp4,real\nfake/a.mp4,fake\nsub/../real/a.mp4,real\n")
    items = assign_splits(read_manifest(tmp_path / "m.csv"), 0.0)
    assert [it.key for it in items] == ["real/a.mp4", "fake/a.mp4", "real/a.mp4"]
    problems = [(p.kind, p.path, p.detail) for p in check_dataset(items).problems]
    assert problems == [("duplicate", str(tmp_path / "real/a.mp4"), "listed 2 times")]

    (tmp_path / "m.csv").write_text("path,label,split\nreal/a.mp4,real,val\nfake/a.mp4,fake,val\n"
                                    "real/a.mp4,real,test\n")
    items = read_manifest(tmp_path / "m.csv")
    with pytest.raises(DatasetLayoutError, match=r"group 'real/a\.mp4' appears in both 'val' and 'test'"):
        assign_splits(items)
    kinds = {(p.kind, p.path) for p in check_dataset(items).problems}
    assert kinds == {("split-leak", str(tmp_path / "real/a.mp4")), ("group-leak", str(tmp_path / "real/a.mp4"))}
