"""DeeperForensics-1.0 (Jiang et al., "DeeperForensics-1.0: A Large-Scale Dataset for Real-World
Face Forgery Detection", CVPR 2020), with the FaceForensics++ youtube videos as its reals.

Official repository (terms of use, request form, documentation):
https://github.com/EndlessSora/DeeperForensics-1.0 (``dataset/README.md``). The unzipped
release holds::

    <root>/lists/splits/{train,val,test}.txt          one fake per line: 000_M101.mp4
    <root>/manipulated_videos/<subset>/<target>_<source>.mp4

``<target>`` is the three-digit FaceForensics++ youtube id the face was swapped onto and
``<source>`` the DeeperForensics actor whose face was used (``M``/``W`` + three digits). Each of
the eleven subsets (``end_to_end``, ``reenact_postprocess``, ``end_to_end_level_{1..5}``,
``end_to_end_random_level``, ``end_to_end_mix_{2,3,4}_distortions``) holds the same 1,000 swaps.
The official splits are drawn by source actor. The "real" videos are the target videos, which
the release does not include: they are read from a FaceForensics++ download
(``original_sequences/youtube/<compression>/videos/<target>.mp4``, c23 per the authors), each in
the split of its fakes. The actors' own source recordings are not the real class and are not read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dflab.datasets.ffpp import COMPRESSIONS, resolve_under, video_folder, warn_unlisted
from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import SPLITS, VIDEO_EXTENSIONS, DatasetLayoutError, VideoItem
from dflab.datasets.textfiles import read_lines, relative_path

log = logging.getLogger(__name__)

SUBSETS = (
    "end_to_end",
    "reenact_postprocess",
    *(f"end_to_end_level_{i}" for i in range(1, 6)),
    "end_to_end_random_level",
    *(f"end_to_end_mix_{j}_distortions" for j in range(2, 5)),
)
"""The eleven folders of ``manipulated_videos/`` (the variants of the same 1,000 swaps)."""


@dataclass(frozen=True)
class DeeperForensicsOptions:
    """Options of the ``deeperforensics`` adapter (``data.options``).

    Attributes:
        ffpp_root: FaceForensics++ download root holding the real (target) videos, absolute or
            relative to the DeeperForensics root; required.
        ffpp_compression: compression of those real videos: ``raw``, ``c23`` (the authors'
            choice) or ``c40``.
        subsets: folders of ``manipulated_videos/`` read as fakes (a name or a list).
        train_subsets: subsets whose fakes enter the training split (all of ``subsets`` when
            null), e.g. train on ``end_to_end`` and test on the perturbed subsets too.
        val_subsets: the same for the validation split.
        splits_dir: folder with ``train.txt``, ``val.txt`` and ``test.txt``, relative to the
            root; ``<root>/lists/splits`` when null.
    """

    ffpp_root: str | None = None
    ffpp_compression: str = "c23"
    subsets: list[str] = field(default_factory=lambda: ["end_to_end"])
    train_subsets: list[str] | None = None
    val_subsets: list[str] | None = None
    splits_dir: str | None = None

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if not self.ffpp_root:
            raise ValueError("ffpp_root: required; the real videos of DeeperForensics-1.0 are the "
                             "FaceForensics++ youtube originals (set it to the FF++ download root)")
        if self.ffpp_compression not in COMPRESSIONS:
            raise ValueError(f"ffpp_compression: {self.ffpp_compression!r} is not one of "
                             f"{', '.join(COMPRESSIONS)}")
        if not self.subsets:
            raise ValueError(f"subsets: name at least one of {', '.join(SUBSETS)}")
        for name, chosen in (("subsets", self.subsets), ("train_subsets", self.train_subsets),
                             ("val_subsets", self.val_subsets)):
            if chosen is None:
                continue
            if not chosen:
                raise ValueError(f"{name}: empty; leave it out (null) to use every subset of subsets")
            unknown = [s for s in chosen if s not in SUBSETS]
            if unknown:
                raise ValueError(f"{name}: unknown subset {unknown[0]!r}; valid: {', '.join(SUBSETS)}")
            outside = [s for s in chosen if s not in self.subsets]
            if outside:
                raise ValueError(f"{name}: {outside[0]!r} is not in subsets ({', '.join(self.subsets)})")

    def subsets_for(self, split: str) -> list[str]:
        """Subsets whose fakes are kept in ``split``."""
        chosen = {"train": self.train_subsets, "val": self.val_subsets}.get(split)
        return list(self.subsets if chosen is None else chosen)


def read_split_list(path: Path) -> list[tuple[str, str, str]]:
    """The fakes one split file names, as ``(file stem, target id, source actor)``.

    Raises:
        DatasetLayoutError: the file is missing or a line is not ``<target>_<source>[.mp4]``.
    """
    lines = read_lines(path, "split file", "DeeperForensics-1.0 split file does not exist (it ships in "
                       "lists/splits/ of the release)")
    entries = []
    for number, line in lines:
        name = relative_path(line).name
        if not name:
            continue
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name
        target, _, source = stem.partition("_")
        if not target or not source:
            raise DatasetLayoutError(f"{path}:{number}: {line.strip()!r} is not a fake name "
                                     "<target>_<source>.mp4 (e.g. 000_M101.mp4)")
        entries.append((stem, target, source))
    return entries


@register_dataset("deeperforensics", options=DeeperForensicsOptions)
def scan_deeperforensics(root: Path, options: DeeperForensicsOptions) -> list[VideoItem]:
    """DeeperForensics-1.0 (CVPR 2020): DF-VAE fakes by the official splits, FF++ youtube reals.

    Args:
        root: the unzipped release (holds ``lists/`` and ``manipulated_videos/``).
        options: where the FaceForensics++ reals are, which subsets and split settings.

    Raises:
        DatasetLayoutError: a split file, subset folder or the FF++ originals folder is missing.
        ValueError: an option value is invalid.
    """
    options.validate()
    ffpp_root = resolve_under(root, options.ffpp_root or "")
    originals = video_folder(ffpp_root / "original_sequences" / "youtube" / options.ffpp_compression / "videos",
                             "FaceForensics++ youtube originals (the reals of DeeperForensics-1.0)")
    splits_dir = resolve_under(root, options.splits_dir) if options.splits_dir else root / "lists" / "splits"
    entries = {split: read_split_list(splits_dir / f"{split}.txt") for split in SPLITS}
    subsets = list(dict.fromkeys(options.subsets))
    folders = {s: video_folder(root / "manipulated_videos" / s, f"{s} fakes") for s in subsets}
    listed: dict[Path, set[str]] = {folder: set() for folder in folders.values()}
    reals: dict[str, tuple[str, str]] = {}  # target id -> (split, group) of its first fake
    items: list[VideoItem] = []
    for split in SPLITS:
        kept = options.subsets_for(split)
        for stem, target, source in entries[split]:
            reals.setdefault(target, (split, source))
            for subset, folder in folders.items():
                listed[folder].add(stem)
                if subset in kept:
                    items.append(VideoItem(str(folder / f"{stem}.mp4"), 1, split, source, subset,
                                           key=f"{subset}/{stem}", sources=(f"youtube/{target}",)))
    for target, (split, group) in reals.items():
        items.append(VideoItem(str(originals / f"{target}.mp4"), 0, split, group, key=f"youtube/{target}"))
    warn_unlisted(listed, root, "deeperforensics", log)
    return items
