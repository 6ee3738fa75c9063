"""FaceForensics++ (Rössler et al., "FaceForensics++: Learning to Detect Manipulated Facial
Images", ICCV 2019), read as the official download script writes it.

Official repository (access form, download script, split files):
https://github.com/ondyari/FaceForensics. The download script (``-t videos``) writes::

    <root>/original_sequences/youtube/<compression>/videos/000.mp4 ... 999.mp4
    <root>/original_sequences/actors/<compression>/videos/01__exit_phone_room.mp4 ...
    <root>/manipulated_sequences/<method>/<compression>/videos/000_003.mp4 ...
    <root>/manipulated_sequences/DeepFakeDetection/<compression>/videos/01_02__exit_phone_room__YVGY8LOK.mp4

with ``<compression>`` one of ``raw``, ``c23``, ``c40``. The official splits
(``dataset/splits/{train,val,test}.json`` in the repository) are JSON lists of
``[target, source]`` pairs of youtube ids; every pair gives its two originals and, per method,
the two fakes ``<target>_<source>.mp4`` and ``<source>_<target>.mp4``, all in the pair's split.
The DeepFakeDetection part (Google/Jigsaw actors) has no official split: it goes to one split
(``dfd_split``) or is split by actor later (``auto``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import SPLITS, VIDEO_EXTENSIONS, DatasetLayoutError, VideoItem
from dflab.datasets.textfiles import read_json, relative_path

log = logging.getLogger(__name__)

COMPRESSIONS = ("raw", "c23", "c40")
PAIR_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
"""Methods whose fakes are named ``<target>_<source>`` after the official youtube pairs."""
DFD = "DeepFakeDetection"
METHODS = (*PAIR_METHODS, DFD)
CLASSIC_METHODS = PAIR_METHODS[:4]
"""The four methods of the paper's benchmark (the default)."""
DFD_SPLITS = (*SPLITS, "auto")


@dataclass(frozen=True)
class FFppOptions:
    """Options of the ``ffpp`` adapter (``data.options``).

    Attributes:
        compression: ``raw`` (lossless), ``c23`` (light, HQ) or ``c40`` (strong, LQ).
        methods: manipulation methods whose fakes are read (the four classic ones by default;
            also ``FaceShifter`` and ``DeepFakeDetection``).
        train_methods: methods whose fakes enter the training split (all of ``methods`` when
            null); e.g. ``[Deepfakes]`` to train on one method and test on every method.
        val_methods: the same for the validation split (all of ``methods`` when null).
        splits_dir: folder holding the official ``train.json``, ``val.json`` and ``test.json``;
            relative to the dataset root; ``<root>/splits`` when null.
        dfd_split: split of the DeepFakeDetection videos and their actor originals (read only
            when ``DeepFakeDetection`` is in ``methods``): ``train``, ``val``, ``test``, or
            ``auto`` to split them by actor with ``data.val_fraction``/``data.test_fraction``.
    """

    compression: str = "c23"
    methods: list[str] = field(default_factory=lambda: list(CLASSIC_METHODS))
    train_methods: list[str] | None = None
    val_methods: list[str] | None = None
    splits_dir: str | None = None
    dfd_split: str = "test"

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression: {self.compression!r} is not one of {', '.join(COMPRESSIONS)}")
        if not self.methods:
            raise ValueError(f"methods: name at least one of {', '.join(METHODS)}")
        for name, chosen in (("methods", self.methods), ("train_methods", self.train_methods),
                             ("val_methods", self.val_methods)):
            if chosen is None:
                continue
            if not chosen:
                raise ValueError(f"{name}: empty; leave it out (null) to use every method of methods")
            unknown = [m for m in chosen if m not in METHODS]
            if unknown:
                raise ValueError(f"{name}: unknown method {unknown[0]!r}; valid: {', '.join(METHODS)}")
            outside = [m for m in chosen if m not in self.methods]
            if outside:
                raise ValueError(f"{name}: {outside[0]!r} is not in methods ({', '.join(self.methods)})")
        if self.dfd_split not in DFD_SPLITS:
            raise ValueError(f"dfd_split: {self.dfd_split!r} is not one of {', '.join(DFD_SPLITS)}")
        restricted = [n for n, m in (("train_methods", self.train_methods), ("val_methods", self.val_methods))
                      if m is not None and DFD not in m]
        if self.dfd_split == "auto" and DFD in self.methods and restricted:
            raise ValueError(f"{restricted[0]}: cannot leave out {DFD} when dfd_split is 'auto' (its "
                             "splits are drawn later); set dfd_split to train, val or test")

    def methods_for(self, split: str) -> list[str]:
        """Methods whose fakes are kept in ``split``."""
        chosen = {"train": self.train_methods, "val": self.val_methods}.get(split)
        return list(self.methods if chosen is None else chosen)


def video_folder(path: Path, what: str) -> Path:
    """``path`` if it is a folder.

    Raises:
        DatasetLayoutError: it is not (names the path and what it should hold).
    """
    if not path.is_dir():
        raise DatasetLayoutError(f"{path}/: folder of {what} does not exist")
    return path


def videos_in(folder: Path) -> list[Path]:
    """The video files directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def resolve_under(root: Path, path: str) -> Path:
    """``path`` with ``~`` expanded, relative to ``root`` unless absolute, resolved."""
    return (root / Path(str(relative_path(path))).expanduser()).resolve()


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """The ``[target, source]`` pairs of one official split file.

    Raises:
        DatasetLayoutError: the file is missing, not JSON, or not a list of id pairs.
    """
    data = read_json(path, "JSON split file", "FaceForensics++ split file does not exist (copy "
                     "dataset/splits/*.json from https://github.com/ondyari/FaceForensics)")
    if not isinstance(data, list):
        raise DatasetLayoutError(f"{path}: expected a JSON list of [target, source] pairs")
    pairs = []
    for i, pair in enumerate(data):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) and v for v in pair)):
            raise DatasetLayoutError(f"{path}: entry {i} is {pair!r}, not a [target, source] pair of ids")
        pairs.append((pair[0], pair[1]))
    return pairs


def warn_unlisted(listed: dict[Path, set[str]], root: Path, dataset: str, logger: logging.Logger = log) -> int:
    """Log one warning counting the videos in ``listed``'s folders that no split file names.

    Args:
        listed: folder -> stems of the videos the split files name in it.
        root: dataset root (folders are named relative to it).
        dataset: adapter name the warning starts with.
        logger: where the warning goes.

    Returns:
        how many videos were left out.
    """
    left: Counter[str] = Counter()
    for folder, stems in listed.items():
        for p in videos_in(folder):
            if p.stem not in stems:
                left[str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)] += 1
    total = sum(left.values())
    if total:
        where = ", ".join(f"{folder} ({n})" for folder, n in sorted(left.items()))
        logger.warning("%s: %d video(s) on disk are in no split file and were left out: %s",
                    dataset, total, where)
    return total


def _mask(root: Path, method: str, name: str) -> str:
    """The official mask video of a fake (``<method>/masks/videos/<name>.mp4``), if downloaded."""
    path = root / "manipulated_sequences" / method / "masks" / "videos" / f"{name}.mp4"
    return str(path) if path.is_file() else ""


def _scan_dfd(root: Path, options: FFppOptions) -> list[VideoItem]:
    comp = options.compression
    split = "" if options.dfd_split == "auto" else options.dfd_split
    reals = video_folder(root / "original_sequences" / "actors" / comp / "videos", "DeepFakeDetection originals")
    fakes = video_folder(root / "manipulated_sequences" / DFD / comp / "videos", f"{DFD} fakes")
    items = []
    for folder in (reals, fakes):
        if not videos_in(folder):
            raise DatasetLayoutError(f"{folder}/: holds no video ({', '.join(VIDEO_EXTENSIONS)})")
    for p in videos_in(reals):  # <actor>__<scene>.mp4
        actor = p.stem.split("__")[0]
        items.append(VideoItem(str(p), 0, split, f"actors/{actor}", key=f"actors/{p.stem}"))
    if not split or DFD in options.methods_for(split):
        for p in videos_in(fakes):  # <target>_<source>__<scene>__<hash>.mp4
            actors, _, rest = p.stem.partition("__")
            target = actors.split("_")[0]
            scene = rest.rpartition("__")[0] or rest
            items.append(VideoItem(str(p), 1, split, f"actors/{target}", DFD, key=f"{DFD}/{p.stem}",
                                   sources=(f"actors/{target}__{scene}",), mask=_mask(root, DFD, p.stem)))
    return items


@register_dataset("ffpp", options=FFppOptions)
def scan_ffpp(root: Path, options: FFppOptions) -> list[VideoItem]:
    """FaceForensics++ (ICCV 2019): youtube originals and fakes by the official JSON splits.

    Args:
        root: the download root (holds ``original_sequences/`` and ``manipulated_sequences/``).
        options: compression, methods and split settings.

    Raises:
        DatasetLayoutError: a split file, compression folder or method folder is missing.
        ValueError: an option value is invalid.
    """
    options.validate()
    comp = options.compression
    methods = list(dict.fromkeys(options.methods))
    splits_dir = resolve_under(root, options.splits_dir) if options.splits_dir else root / "splits"
    pairs = {split: read_pairs(splits_dir / f"{split}.json") for split in SPLITS}
    originals = video_folder(root / "original_sequences" / "youtube" / comp / "videos", "youtube originals")
    folders = {m: video_folder(root / "manipulated_sequences" / m / comp / "videos", f"{m} fakes")
               for m in methods if m != DFD}
    listed: dict[Path, set[str]] = {folder: set() for folder in (originals, *folders.values())}
    items: list[VideoItem] = []
    for split in SPLITS:
        kept = options.methods_for(split)
        for target, source in pairs[split]:
            group = f"{target}_{source}"
            sources = (f"youtube/{target}", f"youtube/{source}")
            for vid in (target, source):
                listed[originals].add(vid)
                items.append(VideoItem(str(originals / f"{vid}.mp4"), 0, split, group, key=f"youtube/{vid}"))
            for method, folder in folders.items():
                for name in (f"{target}_{source}", f"{source}_{target}"):
                    listed[folder].add(name)
                    if method in kept:
                        items.append(VideoItem(str(folder / f"{name}.mp4"), 1, split, group, method,
                                               key=f"{method}/{name}", sources=sources,
                                               mask=_mask(root, method, name)))
    warn_unlisted(listed, root, "ffpp")
    if DFD in methods:
        items += _scan_dfd(root, options)
    return items
