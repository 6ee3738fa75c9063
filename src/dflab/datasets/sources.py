"""Dataset sources: turn a dataset on disk into a list of labelled videos with splits.

Two generic layouts are read here:

* a **folder layout**: ``real/`` and ``fake/`` (training videos), optionally ``val/real``,
  ``val/fake``, ``test/real`` and ``test/fake``; ``fake/`` may be empty (training from reals
  alone with ``data.self_blend``);
* a **CSV manifest** with a header ``path,label[,split,group,method,dataset]``; paths are
  relative to the manifest's folder (or absolute), labels are ``real``/``fake`` or ``0``/``1``
  (1 = fake), ``split`` is ``train``/``val``/``test``, ``group`` is an identity (or source) id
  used to keep related videos in one split, ``method`` names a fake's manipulation and
  ``dataset`` its source (both optional, for per-method and per-dataset metrics).

A video's id is its path relative to the dataset root (the folder, or the manifest's folder), so
``real/clip0.mp4`` and ``fake/clip0.mp4`` are two videos. Without a group (a manifest's ``group``
column, or the folder option ``group_by: stem``) each video is a group of its own: groups are
never guessed from file names. Videos without an explicit split are split by group (never a
group in two splits) with a seeded shuffle.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dflab.datasets.errors import DatasetLayoutError
from dflab.datasets.textfiles import read_csv, relative_path

__all__ = ["GROUP_BY", "LABELS", "SPLITS", "VIDEO_EXTENSIONS", "DatasetLayoutError", "VideoItem",
           "assign_splits", "read_manifest", "scan_folder", "unit_hash"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
SPLITS = ("train", "val", "test")
LABELS = {"real": 0, "fake": 1, "0": 0, "1": 1}


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
        key: id of the video, unique within its dataset (the generic layouts use the path
            relative to the dataset root; default: the path).
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
        return self.key or self.path


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


GROUP_BY = ("path", "stem")
"""Groups of the folder layout: each video alone, or the videos sharing a file stem."""


def scan_folder(root: str | Path, group_by: str = "path") -> list[VideoItem]:
    """Read the folder layout ``real/``, ``fake/`` [, ``val/{real,fake}``, ``test/{real,fake}``].

    Each video's key is its path relative to ``root`` (``real/clip0.mp4``), so the same file name
    may appear under ``real/`` and ``fake/`` or in two split folders.

    Args:
        root: the dataset folder.
        group_by: ``path``: each video is a group of its own; ``stem``: videos whose file names
            share a stem (``real/clip0.mp4`` and ``fake/clip0.mp4``) form one group, kept in one
            split (the same stem in two split folders is then leakage).

    Raises:
        DatasetLayoutError: ``root`` lacks ``real/`` or ``fake/``, or a folder other than the
            training ``fake/`` holds no video.
        ValueError: ``group_by`` is not one of :data:`GROUP_BY`.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by: {group_by!r} is not one of {', '.join(GROUP_BY)}")
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
            if not videos and (prefix or lab == "real"):  # training fakes may come from data.self_blend
                raise DatasetLayoutError(f"{folder}/: holds no video ({', '.join(VIDEO_EXTENSIONS)})")
            for p in videos:
                key = p.relative_to(root).as_posix()
                items.append(VideoItem(str(p), LABELS[lab], split, key if group_by == "path" else p.stem,
                                       key=key))
    if any(it.split for it in items):  # explicit val/test folders: the top level is training data
        items = [it if it.split else replace(it, split="train") for it in items]
    return items


def read_manifest(manifest: str | Path) -> list[VideoItem]:
    """Read a CSV manifest ``path,label[,split,group,method,dataset,mask]``.

    Relative ``path`` and ``mask`` values are relative to the manifest's folder (``\\`` separators
    are read as ``/``); ``mask`` (a video, white where a fake was forged) is read for fakes only.
    A video's key is its path relative to the manifest's folder (absolute when outside it); an
    empty ``group`` makes the video a group of its own. The file may start with a UTF-8
    byte-order mark and end its lines with CRLF.

    Raises:
        DatasetLayoutError: missing or non-UTF-8 file, missing column, an empty path, or a bad
            label/split value (names the line).
    """
    manifest = Path(manifest).resolve()
    folder = manifest.parent
    _, rows = read_csv(manifest, "manifest", ("path", "label"), missing="manifest file does not exist")
    items: list[VideoItem] = []
    for row in rows:
        line = row.line
        label = LABELS.get(row.get("label").lower())
        if label is None:
            raise DatasetLayoutError(f"{manifest}:{line}: label {row.values['label']!r} is not real/fake/0/1")
        split = row.get("split").lower()
        if split and split not in SPLITS:
            raise DatasetLayoutError(f"{manifest}:{line}: split {split!r} is not one of {SPLITS}")
        if not row.get("path"):
            raise DatasetLayoutError(f"{manifest}:{line}: empty path")
        path = Path(os.path.normpath(folder / relative_path(row.get("path"))))
        key = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.as_posix()
        group = row.get("group") or key
        method = row.get("method") if label else ""
        dataset = row.get("dataset")
        mask = row.get("mask") if label else ""
        if mask:
            mask = os.path.normpath(folder / relative_path(mask))
        items.append(VideoItem(str(path), label, split, group, method, dataset, key=key, mask=mask))
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
