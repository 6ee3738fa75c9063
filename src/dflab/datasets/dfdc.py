"""The Deepfake Detection Challenge datasets: DFDC (Dolhansky et al., "The DeepFake Detection
Challenge (DFDC) Dataset", arXiv:2006.07397, 2020) and the DFDC Preview (Dolhansky et al., "The
Deepfake Detection Challenge (DFDC) Preview Dataset", arXiv:1910.08854, 2019).

Downloads: https://ai.meta.com/datasets/dfdc/ (both; the full set through AWS) and the Kaggle
competition https://www.kaggle.com/c/deepfake-detection-challenge/data (training parts). Layouts::

    <dfdc>/dfdc_train_part_<N>/metadata.json   N = 0..49 (or under <dfdc>/train/)
        {"abc.mp4": {"label": "FAKE", "split": "train", "original": "xyz.mp4"},
         "xyz.mp4": {"label": "REAL", "split": "train"}, ...}
    <dfdc>/test/labels.csv                     the labelled public test set: filename,label (1 = fake)
    <preview>/dataset.json                     dfdc_preview_set/dataset.json
        {"method_A/<target>/<target>_<scene>/<swapped>_<target>_<scene>_<clip>.mp4":
             {"label": "fake", "set": "train", "target_id": ..., "swapped_id": ..., ...},
         "original_videos/<target>/<target>_<scene>_<clip>.mp4": {"label": "real", "set": "test", ...}}

DFDC has no official train/validation split: a real video and all the fakes made from it (its
cluster) are kept in one split, chosen by part or by a seeded hash of the cluster into folds.
DFDC Preview has an official train/test split; validation is carved out of train by identity.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import DatasetLayoutError, VideoItem, unit_hash
from dflab.datasets.textfiles import read_csv, read_json, relative_path

log = logging.getLogger(__name__)

NUM_PARTS = 50
PART_RE = re.compile(r"dfdc_train_part_(\d+)")
PREVIEW_METHODS = ("method_A", "method_B")


def _read_json(path: Path, what: str) -> dict[str, Any]:
    data = read_json(path, "JSON file", f"{what} does not exist")
    if not isinstance(data, dict):
        raise DatasetLayoutError(f"{path}: expected a JSON object mapping video files to labels")
    return data


@dataclass(frozen=True)
class DFDCOptions:
    """Options of the ``dfdc`` adapter (``data.options``).

    Attributes:
        split_by: ``fold`` (each cluster hashed into ``folds`` folds) or ``part`` (whole parts
            held out as ``val_parts``/``test_parts``).
        parts: numbers of the training parts to read (all part folders found when null).
        folds: number of folds (``split_by: fold``).
        val_fold: the fold used for validation.
        test_fold: a fold used as test split (null: none; the public test set is the test split).
        val_parts: parts held out for validation (``split_by: part``).
        test_parts: parts held out for test (``split_by: part``).
        seed: seed of the fold hash.
        use_test_set: read the labelled public test set as the test split when it is present.
        test_dir: folder of the public test set, relative to the root.
    """

    split_by: str = "fold"
    parts: list[int] | None = None
    folds: int = 5
    val_fold: int = 0
    test_fold: int | None = None
    val_parts: list[int] = field(default_factory=list)
    test_parts: list[int] = field(default_factory=list)
    seed: int = 0
    use_test_set: bool = True
    test_dir: str = "test"

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if self.split_by not in ("fold", "part"):
            raise ValueError(f"split_by: {self.split_by!r} is not one of fold, part")
        for name, chosen in (("parts", self.parts or []), ("val_parts", self.val_parts),
                             ("test_parts", self.test_parts)):
            bad = [n for n in chosen if not 0 <= n < NUM_PARTS]
            if bad:
                raise ValueError(f"{name}: part {bad[0]} is not in 0..{NUM_PARTS - 1}")
        if set(self.val_parts) & set(self.test_parts):
            raise ValueError(f"test_parts: part {sorted(set(self.val_parts) & set(self.test_parts))[0]} "
                             "is also in val_parts")
        outside = [n for n in (*self.val_parts, *self.test_parts) if self.parts is not None and n not in self.parts]
        if outside:
            raise ValueError(f"val_parts/test_parts: part {outside[0]} is not in parts ({self.parts})")
        if self.folds < 2:
            raise ValueError(f"folds: {self.folds} is below 2")
        if not 0 <= self.val_fold < self.folds:
            raise ValueError(f"val_fold: {self.val_fold} is not in 0..{self.folds - 1}")
        if self.test_fold is not None and (not 0 <= self.test_fold < self.folds or self.test_fold == self.val_fold):
            raise ValueError(f"test_fold: {self.test_fold} is not in 0..{self.folds - 1} or equals val_fold")
        if self.split_by == "fold" and (self.val_parts or self.test_parts):
            raise ValueError("val_parts/test_parts: only used with split_by: part")
        if self.split_by == "part" and self.test_fold is not None:
            raise ValueError("test_fold: only used with split_by: fold")
        if self.split_by == "part" and not self.val_parts and self.parts != []:
            raise ValueError("val_parts: name the parts held out for validation (e.g. [45, 46, 47, 48, 49]) "
                             "or use split_by: fold")


def _part_folders(root: Path) -> tuple[Path, dict[int, Path]]:
    """The folder holding the parts (``root`` or ``root/train``) and part number -> folder."""
    for base in (root, root / "train"):
        found: dict[int, Path] = {}
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            match = PART_RE.fullmatch(folder.name)
            if match and folder.is_dir():
                number = int(match.group(1))
                if number in found:
                    raise DatasetLayoutError(f"{folder}/: part {number} is also {found[number]}/")
                found[number] = folder
        if found:
            return base, found
    return root, {}


def _read_test_set(folder: Path) -> list[VideoItem]:
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise DatasetLayoutError(f"{labels}: DFDC test-set labels do not exist (filename,label with 1 = "
                                 "fake); set use_test_set: false to ignore the folder")
    items = []
    for row in read_csv(labels, "DFDC test-set labels", ("filename", "label"))[1]:
        label = {"0": 0, "1": 1, "real": 0, "fake": 1}.get(row.get("label").lower())
        if label is None:
            raise DatasetLayoutError(f"{labels}:{row.line}: label {row.values['label']!r} is not 0 (real) or 1 (fake)")
        if not row.get("filename"):
            raise DatasetLayoutError(f"{labels}:{row.line}: empty filename")
        name = relative_path(row.get("filename"))
        key = f"test/{name.with_suffix('')}"  # the file's path under the test folder
        items.append(VideoItem(str(folder / name), label, "test", key, key=key))
    return items


@register_dataset("dfdc", options=DFDCOptions)
def scan_dfdc(root: Path, options: DFDCOptions) -> list[VideoItem]:
    """DFDC (2020): training parts split by cluster (fold or part), the public test set as test.

    Args:
        root: folder holding ``dfdc_train_part_<N>/`` (directly or in ``train/``) and ``test/``.
        options: which parts, how to split them, whether to read the public test set.

    Raises:
        DatasetLayoutError: no part folder, a missing part or ``metadata.json``, a bad entry.
        ValueError: an option value is invalid, or the test split is asked twice.
    """
    options.validate()
    base, found = _part_folders(root)
    if options.parts is None and not found:
        raise DatasetLayoutError(f"{root}: no dfdc_train_part_<N>/ folder (N = 0..49) here or in "
                                 f"{root / 'train'}/; set parts: [] to read only the test set")
    wanted = sorted(found) if options.parts is None else sorted(set(options.parts))
    for number in (*wanted, *options.val_parts, *options.test_parts):
        if number not in found:
            raise DatasetLayoutError(f"{base / f'dfdc_train_part_{number}'}/: DFDC part folder does not exist")
    test_folder = (root / Path(options.test_dir).expanduser()).resolve()
    use_test = options.use_test_set and test_folder.is_dir()
    if use_test and (options.test_parts or options.test_fold is not None):
        raise ValueError(f"test_parts/test_fold: the public test set {test_folder}/ is the test split; "
                         "set use_test_set: false to test on training parts")

    entries: list[tuple[int, Path, int, str]] = []  # part, path, label, original file name
    for number in wanted:
        meta = found[number] / "metadata.json"
        for name, info in _read_json(meta, "DFDC part metadata (ships in every part)").items():
            label = {"REAL": 0, "FAKE": 1}.get(str(info.get("label")).upper() if isinstance(info, dict) else "")
            if label is None:
                raise DatasetLayoutError(f"{meta}: entry {name!r} has no label REAL or FAKE ({info!r})")
            original = info.get("original") if label else None
            original = str(relative_path(original)) if isinstance(original, str) and original.strip() else ""
            entries.append((number, found[number] / relative_path(name), label, original))

    def cluster(path: Path, original: str) -> str:
        return PurePosixPath(original).stem if original else path.stem

    real_part = {path.stem: number for number, path, label, _ in entries if not label}
    fake_parts: dict[str, Counter[int]] = defaultdict(Counter)
    for number, path, label, original in entries:
        if label:
            fake_parts[cluster(path, original)][number] += 1
    home = {c: real_part[c] if c in real_part else max(sorted(n.items()), key=lambda kv: kv[1])[0]
            for c, n in fake_parts.items()}
    home.update({c: n for c, n in real_part.items() if c not in home})
    moved = sum(1 for number, path, label, original in entries
                if label and home[cluster(path, original)] != number)
    if moved and options.split_by == "part":
        log.info("dfdc: %d fake(s) sit in another part than their original (or most fakes of it); "
                 "each follows the part of its cluster", moved)

    def split_of(group: str) -> str:
        if options.split_by == "part":
            part = home[group]
            return "val" if part in options.val_parts else "test" if part in options.test_parts else "train"
        fold = int(unit_hash(group, options.seed) * options.folds)
        return "val" if fold == options.val_fold else "test" if fold == options.test_fold else "train"

    # keys are file stems: DFDC names each video uniquely across the parts, and a fake's "original"
    # names its real video by that file name alone (often in another part)
    items = []
    for _, path, label, original in entries:
        group = cluster(path, original)
        sources = (group,) if label and original and group != path.stem else ()
        items.append(VideoItem(str(path), label, split_of(group), group, key=path.stem, sources=sources))
    if use_test:
        items += _read_test_set(test_folder)
    elif options.parts == []:
        raise DatasetLayoutError(f"{test_folder}/: parts is empty and the public test set is not read")
    if not items:
        raise DatasetLayoutError(f"{root}: the DFDC metadata lists no video")
    return items


@dataclass(frozen=True)
class DFDCPreviewOptions:
    """Options of the ``dfdc_preview`` adapter (``data.options``).

    Attributes:
        split: ``official`` (the ``set`` of ``dataset.json``; validation carved out of train) or
            ``identity`` (everything re-split by identity with ``val_fraction``/``test_fraction``).
        val_fraction: share of the (training) identity groups moved to validation.
        test_fraction: share of the identity groups moved to test (``split: identity`` only).
        seed: seed of the identity hash.
        identity: ``target`` (the filmed person; a fake sits with its source) or ``both`` (the
            filmed and the swapped-in person: groups join every identity a fake involves).
        on_leak: with ``split: official``, ``drop`` the training videos whose group is also in
            the official test set (logged), or ``keep`` them (the check then reports them).
        methods: fake folders read (``method_A``, ``method_B``).
    """

    split: str = "official"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    identity: str = "target"
    on_leak: str = "drop"
    methods: list[str] = field(default_factory=lambda: list(PREVIEW_METHODS))

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        for name, value, valid in (("split", self.split, ("official", "identity")),
                                   ("identity", self.identity, ("target", "both")),
                                   ("on_leak", self.on_leak, ("drop", "keep"))):
            if value not in valid:
                raise ValueError(f"{name}: {value!r} is not one of {', '.join(valid)}")
        if not self.methods or any(m not in PREVIEW_METHODS for m in self.methods):
            raise ValueError(f"methods: {self.methods} must name some of {', '.join(PREVIEW_METHODS)}")
        test = self.test_fraction if self.split == "identity" else 0.0
        if not (0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1 and self.val_fraction + test < 1):
            raise ValueError("val_fraction/test_fraction: each in [0, 1) and their sum below 1")


class _Clip(NamedTuple):
    """One entry of the preview's ``dataset.json``."""

    key: str  # relative path without extension
    label: int
    official: str  # the entry's set: train or test
    method: str
    ids: tuple[str, ...]  # identities the clip shows (target first)
    source: str  # key of the real clip a fake was made from ("" for reals)


@register_dataset("dfdc_preview", options=DFDCPreviewOptions)
def scan_dfdc_preview(root: Path, options: DFDCPreviewOptions) -> list[VideoItem]:
    """DFDC Preview (2019): method_A/method_B fakes, official train/test, validation by identity.

    Args:
        root: ``dfdc_preview_set/`` (holds ``dataset.json``), or the folder holding it.
        options: split mode, identity definition and fractions.

    Raises:
        DatasetLayoutError: ``dataset.json`` is missing or an entry lacks a label or set.
        ValueError: an option value is invalid.
    """
    options.validate()
    if not (root / "dataset.json").is_file() and (root / "dfdc_preview_set" / "dataset.json").is_file():
        root = root / "dfdc_preview_set"
    index = root / "dataset.json"
    clips: list[_Clip] = []
    for rel, info in _read_json(index, "DFDC Preview index (top of dfdc_preview_set/)").items():
        info = info if isinstance(info, dict) else {}
        label = {"real": 0, "fake": 1}.get(str(info.get("label")).lower())
        official = str(info.get("set")).lower()
        if label is None or official not in ("train", "test"):
            raise DatasetLayoutError(f"{index}: entry {rel!r} needs label real/fake and set train/test ({info!r})")
        path = relative_path(rel)
        method = path.parts[0] if label else ""
        if label and method not in options.methods:
            continue
        folder_id = path.parts[1] if len(path.parts) > 2 else ""
        ids = [str(info.get("target_id") or folder_id or path.with_suffix(""))]
        if options.identity == "both" and info.get("swapped_id"):
            ids.append(str(info["swapped_id"]))
        # a fake <swapped>_<target>_<scene>_<clip> is made from the real <target>_<scene>_<clip>
        source = f"original_videos/{folder_id}/{path.stem.partition('_')[2]}" if label else ""
        clips.append(_Clip(str(path.with_suffix("")), label, official, method, tuple(ids), source))

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)

    first_id = {c.key: c.ids[0] for c in clips if not c.label}
    for c in clips:
        for other in c.ids[1:]:
            union(c.ids[0], other)
        if c.source in first_id:
            union(c.ids[0], first_id[c.source])
    group_of = {c.key: f"id:{find(c.ids[0])}" for c in clips}

    splits: dict[str, str] = {}
    for c in clips:
        u = unit_hash(group_of[c.key], options.seed)
        if options.split == "identity":
            t, v = options.test_fraction, options.val_fraction
            splits[c.key] = "test" if u < t else "val" if u < t + v else "train"
        else:
            splits[c.key] = "val" if c.official == "train" and u < options.val_fraction else c.official
    leaking = ({group_of[k] for k, s in splits.items() if s == "test"}
               & {group_of[k] for k, s in splits.items() if s != "test"})
    if leaking and options.on_leak == "drop":
        dropped = [k for k, s in splits.items() if s != "test" and group_of[k] in leaking]
        log.warning("dfdc_preview: %d training video(s) of %d identity group(s) that are also in the official "
                    "test set were left out (on_leak: drop)", len(dropped), len(leaking))
        for key in dropped:
            del splits[key]
    return [VideoItem(str(root / f"{c.key}.mp4"), c.label, splits[c.key], group_of[c.key], c.method,
                      key=c.key, sources=(c.source,) if c.source in first_id else ())
            for c in clips if c.key in splits]
