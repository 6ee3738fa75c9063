import numpy as np
import pytest

from dflab.data.sources import DatasetLayoutError, assign_splits, read_manifest, scan_folder
from dflab.video import write_video


def _video(path):
    write_video(path, [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(4)], fps=5)


def test_folder_layout_with_val(tmp_path):
    for rel in ("real/a.mp4", "real/b.mp4", "fake/c.mp4", "val/real/d.mp4", "val/fake/e.mp4"):
        _video(tmp_path / rel)
    items = scan_folder(tmp_path)
    assert {(it.video_id, it.label, it.split) for it in items} == {
        ("a", 0, "train"), ("b", 0, "train"), ("c", 1, "train"), ("d", 0, "val"), ("e", 1, "val")}


def test_folder_layout_errors_name_the_folder(tmp_path):
    _video(tmp_path / "real/a.mp4")
    with pytest.raises(DatasetLayoutError, match=r"missing .*fake/"):
        scan_folder(tmp_path)
    (tmp_path / "fake").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"fake/: holds no video"):
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
