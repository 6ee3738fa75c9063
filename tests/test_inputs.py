"""Text files as other programs save them, in every reader: a UTF-8 byte-order mark, CRLF line
ends and ``\\`` separators are read like plain files; other encodings are refused in one line
naming the file and the line."""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError, read_manifest
from dflab.datasets.textfiles import read_csv, read_json, read_lines, read_text, relative_path
from test_datasets_celebdf import OFFICIAL
from test_datasets_celebdf import build_tree as celebdf_tree
from test_datasets_deeperforensics import OPTIONS as DF_OPTIONS
from test_datasets_deeperforensics import build_tree as deeperforensics_tree
from test_datasets_dfdc import PARTS, build_dfdc, build_preview
from test_datasets_ffpp import build_tree as ffpp_tree


@dataclass(frozen=True)
class Reader:
    """One file a dataset reader takes: how to build a dataset around it and where it is."""

    name: str
    build: Callable[[Path, Callable], tuple[Path, dict, Path]]  # -> (root, options, the file)
    source: str
    has_paths: bool  # the file names videos by relative paths with "/"


def _manifest(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    rows = ["path,label,split,group"]
    for rel, label, split in (("real/a/clip0.mp4", "real", "train"), ("fake/a/clip0.mp4", "fake", "train"),
                              ("real/b/clip1.mp4", "real", "val"), ("fake/b/clip1.mp4", "fake", "val")):
        place_video(tmp_path / "mine" / rel)
        rows.append(f"{rel},{label},{split},")
    manifest = tmp_path / "mine" / "list.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, {}, manifest


def _celebdf(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    root = celebdf_tree(tmp_path, place_video)
    return root, OFFICIAL, root / "List_of_testing_videos.txt"


def _deeperforensics(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    root = deeperforensics_tree(tmp_path, place_video)
    return root, DF_OPTIONS, root / "lists/splits/train.txt"


def _dfdc_labels(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    test_set = {"public/tstaaaaaaa.mp4": 0, "public/tstbbbbbbb.mp4": 1, "tstccccccc.mp4": 1}
    root = build_dfdc(tmp_path / "dfdc", place_video, parts={0: PARTS[0]}, test_set=test_set)
    return root, {}, root / "test/labels.csv"


def _dfdc_metadata(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    root = build_dfdc(tmp_path / "dfdc", place_video, parts={0: PARTS[0], 1: PARTS[1]}, test_set=None)
    meta = root / "dfdc_train_part_0/metadata.json"
    meta.write_text(json.dumps(json.loads(meta.read_text()), indent=1))  # several lines
    return root, {}, meta


def _dfdc_preview(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    root = build_preview(tmp_path / "dfdc_preview_set", place_video)
    index = root / "dataset.json"
    index.write_text(json.dumps(json.loads(index.read_text()), indent=1))
    return root, {"val_fraction": 0.4}, index


def _ffpp(tmp_path: Path, place_video) -> tuple[Path, dict, Path]:
    root = ffpp_tree(tmp_path / "FaceForensics++", place_video)
    return root, {}, root / "splits/train.json"


READERS = [
    Reader("manifest", _manifest, "manifest", True),
    Reader("celebdf test list", _celebdf, "celebdf", True),
    Reader("deeperforensics split list", _deeperforensics, "deeperforensics", False),
    Reader("dfdc test labels.csv", _dfdc_labels, "dfdc", True),
    Reader("dfdc metadata.json", _dfdc_metadata, "dfdc", False),
    Reader("dfdc_preview dataset.json", _dfdc_preview, "dfdc_preview", True),
    Reader("ffpp split json", _ffpp, "ffpp", False),
]


def _videos(source: str, root: Path, options: dict) -> list[tuple]:
    return sorted((it.path, it.label, it.split, it.group, it.key, it.method, it.sources)
                  for it in scan_dataset(source, root, options))


def _as_saved_on_windows(file: Path, backslashes: bool) -> None:
    """Rewrite ``file`` with a UTF-8 byte-order mark, CRLF line ends and, optionally, ``\\`` paths."""
    text = file.read_text()
    if backslashes:
        text = text.replace("/", "\\\\" if file.suffix == ".json" else "\\")
    file.write_bytes(codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode())


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_bom_and_crlf_read_like_a_plain_file(reader, tmp_path, place_video):
    root, options, file = reader.build(tmp_path, place_video)
    plain = _videos(reader.source, root, options)
    assert plain
    _as_saved_on_windows(file, backslashes=False)
    assert file.read_bytes().startswith(codecs.BOM_UTF8) and b"\r\n" in file.read_bytes()
    assert _videos(reader.source, root, options) == plain


@pytest.mark.parametrize("reader", [r for r in READERS if r.has_paths], ids=lambda r: r.name)
def test_backslash_separators_read_like_slashes(reader, tmp_path, place_video):
    root, options, file = reader.build(tmp_path, place_video)
    plain = _videos(reader.source, root, options)
    _as_saved_on_windows(file, backslashes=True)
    assert b"\\" in file.read_bytes()
    assert _videos(reader.source, root, options) == plain
    assert check_dataset(scan_dataset(reader.source, root, options)).ok


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.name)
def test_latin1_bytes_are_refused_naming_the_file_and_line(reader, tmp_path, place_video):
    root, options, file = reader.build(tmp_path, place_video)
    lines = file.read_bytes().split(b"\n")
    lines[1] = lines[1][:1] + "é".encode("latin-1") + lines[1][1:]  # one Latin-1 byte on line 2
    file.write_bytes(b"\n".join(lines))
    with pytest.raises(DatasetLayoutError) as err:
        scan_dataset(reader.source, root, options)
    message = str(err.value)
    assert message.startswith(f"{file.resolve()}:2: ") and "\n" not in message
    assert "is not UTF-8 text (byte 0xe9 at column 2); save it as UTF-8" in message


def test_a_latin1_manifest_stops_the_cli_with_one_line(tmp_path, place_video):
    manifest, _, _ = _manifest(tmp_path, place_video)
    manifest.write_bytes(manifest.read_bytes().replace(b"real/b/clip1", "réal/b/clip1".encode("latin-1")))
    cfg = tmp_path / "ds.yaml"
    cfg.write_text(f"data:\n  source: manifest\n  root: {manifest}\n")
    proc = subprocess.run([sys.executable, "-m", "dflab", "data", "check", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dflab data check: error: {manifest}:4: the manifest is not UTF-8 text (byte 0xe9 at "
        "column 2); save it as UTF-8"]


def test_shared_reader_lines_columns_and_errors(tmp_path):
    file = tmp_path / "list.txt"
    file.write_bytes(codecs.BOM_UTF8 + b"a\r\n\r\nb\rc\n")
    assert read_text(file, "list") == "a\n\nb\nc\n"
    assert read_lines(file, "list") == [(1, "a"), (2, ""), (3, "b"), (4, "c"), (5, "")]

    table = tmp_path / "t.csv"
    table.write_bytes(codecs.BOM_UTF8 + b' path , label\r\n\r\n"x,1.mp4",real\r\n"multi\r\nline.mp4",fake\r\ny.mp4\r\n')
    header, rows = read_csv(table, "table", ("path", "label"))
    assert header == ["path", "label"]
    assert [(r.line, r.get("path"), r.get("label")) for r in rows] == [
        (3, "x,1.mp4", "real"), (5, "multi\nline.mp4", "fake"), (6, "y.mp4", "")]
    with pytest.raises(DatasetLayoutError, match=r"t\.csv: header must hold path,group \(found path,label\)"):
        read_csv(table, "table", ("path", "group"))

    with pytest.raises(DatasetLayoutError, match=r"nope\.csv: table does not exist"):
        read_csv(tmp_path / "nope.csv", "table", ())
    with pytest.raises(DatasetLayoutError, match=r"nope\.csv: ships with the release"):
        read_text(tmp_path / "nope.csv", "table", "ships with the release")
    utf16 = tmp_path / "u16.csv"
    utf16.write_text("path,label\nx.mp4,real\n", encoding="utf-16")
    with pytest.raises(DatasetLayoutError, match=r"u16\.csv:1: the table is UTF-16 text, not UTF-8; save it as UTF-8"):
        read_csv(utf16, "table", ("path",))
    late = tmp_path / "late.txt"
    late.write_bytes(b"one\r\ntwo\r\nth\xfcree\r\n")
    with pytest.raises(DatasetLayoutError, match=r"late\.txt:3: the list is not UTF-8 text \(byte 0xfc at column 3\)"):
        read_lines(late, "list")
    broken = tmp_path / "broken.json"
    broken.write_bytes(codecs.BOM_UTF8 + b'{\r\n  "a": 1,\r\n  "b": \r\n}\r\n')
    with pytest.raises(DatasetLayoutError, match=r"broken\.json:4: not a readable index \(Expecting value, column 1\)"):
        read_json(broken, "index")
    broken.write_bytes(codecs.BOM_UTF8 + b'{"a\\\\b": [1]}\r\n')
    assert read_json(broken, "index") == {"a\\b": [1]}

    assert relative_path(" sub\\dir\\x.mp4 ") == relative_path("sub/dir/x.mp4")
    assert str(relative_path("Celeb-real\\id0_0000.mp4")) == "Celeb-real/id0_0000.mp4"


def test_manifest_with_windows_paths_and_bom_names_the_same_files(tmp_path, place_video):
    for rel in ("real/a.mp4", "fake/a.mp4", "masks/a.mp4"):
        place_video(tmp_path / rel)
    (tmp_path / "m.csv").write_bytes(codecs.BOM_UTF8 + b"path,label,mask\r\nreal\\a.mp4,real,\r\n"
                                     b".\\fake\\a.mp4,fake,masks\\a.mp4\r\n")
    real, fake = read_manifest(tmp_path / "m.csv")
    assert (real.path, real.key) == (str(tmp_path / "real/a.mp4"), "real/a.mp4")
    assert (fake.path, fake.key, fake.mask) == (str(tmp_path / "fake/a.mp4"), "fake/a.mp4",
                                                str(tmp_path / "masks/a.mp4"))
    (tmp_path / "m.csv").write_bytes(b"path,label\r\n ,real\r\n")
    with pytest.raises(DatasetLayoutError, match=r"m\.csv:2: empty path"):
        read_manifest(tmp_path / "m.csv")
