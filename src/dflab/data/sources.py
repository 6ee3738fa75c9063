"""Dataset sources: turn a dataset on disk into a list of labelled videos with splits.

Two generic layouts are read here:

* a **folder layout**: ``real/`` and ``fake/`` (training videos), optionally ``val/real``,
  ``val/fake``, ``test/real`` and ``test/fake``;
* a **CSV manifest** with a header ``path,label[,split,group,method,dataset]``; paths are
  relative to the manifest's folder (or absolute), labels are ``real``/``fake`` or ``0``/``1``
  (1 = fake), ``split`` is ``train``/``val``/``test``, ``group`` is an identity (or source) id
  used to keep related videos in one split, ``method`` names a fake's manipulation and
  ``dataset`` its source (both optional, for per-method and per-dataset metrics).

Videos without an explicit split are split by group (never a group in two splits) with a
seeded shuffle.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SPLITS = ("train", "val", "test")
LABELS = {"real": 0, "fake": 1, "0": 0, "1": 1}


class DatasetLayoutError(ValueError):
    """The dataset on disk does not match the expected layout; the message names the path."""


@dataclass(frozen=True)
class VideoItem:
    """One labelled video.

    Attributes:
        path: absolute path of the video file.
        label: 0 for real, 1 for fake.
        split: ``train``, ``val``, ``test`` or ``""`` when not yet assigned.
        group: identity or source id; videos of one group always share a split.
        method: manipulation method of a fake (``Deepfakes``, ``FaceSwap``, ...); ``""`` for
            real videos and fakes of unknown method.
        dataset: name of the dataset the video comes from (``ffpp``, ``celebdf``, ...), so a
            combined run can break its metrics down per source.
        key: id of the video, unique within its dataset (default: the file name's stem).
        sources: keys of the real videos a fake was made from; they must share its split.
        mask: video marking the manipulated region of a fake (white = forged), as FaceForensics++
            ships; with several people in a fake, training uses the face the mask covers.
    """

    path: str
    label: int
    split: str = ""
    group: str = ""
    method: str = ""
    dataset: str = ""
    key: str = ""
    sources: tuple[str, ...] = ()
    mask: str = ""

    @property
    def video_id(self) -> str:
        return self.key or Path(self.path).stem


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def scan_folder(root: str | Path) -> list[VideoItem]:
    """Read the folder layout ``real/``, ``fake/`` [, ``val/{real,fake}``, ``test/{real,fake}``].

    Raises:
        DatasetLayoutError: ``root`` lacks ``real/`` or ``fake/``, or a folder holds no video.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: dataset folder does not exist")
    items: list[VideoItem] = []
    for prefix, split in (("", ""), ("val", "val"), ("test", "test")):
        base = root / prefix if prefix else root
        present = {lab: (base / lab).is_dir() for lab in ("real", "fake")}
        if not prefix and not all(present.values()):
            missing = [f"{root / lab}/" for lab, ok in present.items() if not ok]
            raise DatasetLayoutError(
                f"{root}: folder layout needs real/ and fake/ subfolders; missing {', '.join(missing)}"
            )
        if prefix and not any(present.values()):
            continue
        for lab, ok in present.items():
            folder = base / lab
            if not ok:
                raise DatasetLayoutError(f"{folder}/: missing (its sibling {base / ('fake' if lab == 'real' else 'real')}/ exists)")
            videos = _videos_in(folder)
            if not videos:
                raise DatasetLayoutError(f"{folder}/: holds no video ({', '.join(VIDEO_EXTENSIONS)})")
            items += [VideoItem(str(p), LABELS[lab], split or "", p.stem) for p in videos]
    if any(it.split for it in items):  # explicit val/test folders: the top level is training data
        items = [it if it.split else replace(it, split="train") for it in items]
    return items


def read_manifest(manifest: str | Path) -> list[VideoItem]:
    """Read a CSV manifest ``path,label[,split,group,method,dataset,mask]``.

    Relative ``path`` and ``mask`` values are relative to the manifest's folder; ``mask`` (a
    video, white where a fake was forged) is read for fakes only.

    Raises:
        DatasetLayoutError: missing file or column, or a bad label/split value (names the row).
    """
    manifest = Path(manifest).resolve()
    if not manifest.is_file():
        raise DatasetLayoutError(f"{manifest}: manifest file does not exist")
    items: list[VideoItem] = []
    with manifest.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if not {"path", "label"} <= cols:
            raise DatasetLayoutError(f"{manifest}: header must start with path,label (found {sorted(cols)})")
        for line, row in enumerate(reader, start=2):
            label = LABELS.get(str(row["label"]).strip().lower())
            if label is None:
                raise DatasetLayoutError(f"{manifest}:{line}: label {row['label']!r} is not real/fake/0/1")
            split = (row.get("split") or "").strip().lower()
            if split and split not in SPLITS:
                raise DatasetLayoutError(f"{manifest}:{line}: split {split!r} is not one of {SPLITS}")
            path = Path(row["path"].strip())
            path = path if path.is_absolute() else manifest.parent / path
            group = (row.get("group") or "").strip() or path.stem
            method = (row.get("method") or "").strip() if label else ""
            dataset = (row.get("dataset") or "").strip()
            mask = (row.get("mask") or "").strip() if label else ""
            if mask and not Path(mask).is_absolute():
                mask = str(manifest.parent / mask)
            items.append(VideoItem(str(path), label, split, group, method, dataset, mask=mask))
    if not items:
        raise DatasetLayoutError(f"{manifest}: manifest lists no video")
    return items


def unit_hash(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``text`` and ``seed`` (adding items never moves the others)."""
    digest = hashlib.sha1(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(
    items: Sequence[VideoItem], val_fraction: float = 0.2, test_fraction: float = 0.0, seed: int = 0
) -> list[VideoItem]:
    """Give a split to every item that has none, by group, so no group spans two splits.

    Items whose group already has an explicit split anywhere join that split. Groups are placed by
    a seeded hash, so adding videos never moves existing groups. Groups are told apart per
    dataset (``VideoItem.dataset``), so two mixed datasets may reuse group names.

    Raises:
        DatasetLayoutError: a group already appears in two explicit splits.
    """
    explicit: dict[tuple[str, str], str] = {}
    for it in items:
        if it.split:
            prev = explicit.setdefault((it.dataset, it.group), it.split)
            if prev != it.split:
                raise DatasetLayoutError(
                    f"group {it.group!r} appears in both {prev!r} and {it.split!r} splits ({it.path})"
                )
    out = []
    for it in items:
        if it.split:
            out.append(it)
            continue
        split = explicit.get((it.dataset, it.group))
        if split is None:
            u = unit_hash(it.group, seed)
            split = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
        out.append(replace(it, split=split))
    return out
