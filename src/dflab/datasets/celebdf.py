"""Celeb-DF v1 and v2 (Li, Yang, Sun, Qi, Lyu, "Celeb-DF: A Large-scale Challenging Dataset for
DeepFake Forensics", CVPR 2020), read as the release unpacks.

Official repository (request form, layout): https://github.com/yuezunli/celeb-deepfakeforensics
(``Celeb-DF-v2/README.md``, ``Celeb-DF-v1/README.md``). Both versions unpack to::

    <root>/Celeb-real/id<N>_<NNNN>.mp4             celebrity interviews (v2: 590, v1: 158)
    <root>/YouTube-real/<NNNNN>.mp4                other YouTube videos (v2: 300, v1: 250)
    <root>/Celeb-synthesis/id<T>_id<S>_<NNNN>.mp4  video <NNNN> of identity T with S's face
    <root>/List_of_testing_videos.txt              lines "<label> <folder>/<file>", 1 = real, 0 = fake

The list is the official test set (v2: 518 videos); every other video is training data, from
which a validation split is drawn so that no identity is in both: a fake links its target and
its source identity, and identities linked by fakes form clusters that go to one split whole
(``split_by: cluster``), or each identity is drawn alone and the fakes linking two splits are
left out (``split_by: identity``). The official test set shares identities with the training
videos; ``exclude_test_identities`` removes them from training and validation.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dflab.datasets.ffpp import resolve_under, video_folder, videos_in
from dflab.datasets.groups import check_fractions, clusters, split_groups
from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import DatasetLayoutError, VideoItem
from dflab.datasets.textfiles import read_lines, relative_path

log = logging.getLogger(__name__)

REAL, YOUTUBE, SYNTH = "Celeb-real", "YouTube-real", "Celeb-synthesis"
FOLDERS = (REAL, YOUTUBE, SYNTH)
VERSIONS = ("v1", "v2")
SPLIT_BY = ("cluster", "identity")
RELEASE_COUNTS = {"v1": {REAL: 158, YOUTUBE: 250, SYNTH: 795}, "v2": {REAL: 590, YOUTUBE: 300, SYNTH: 5639}}
"""Videos per folder in each release (from the official READMEs)."""
_REAL_NAME = re.compile(r"(id\d+)_(\d+)")
_FAKE_NAME = re.compile(r"(id\d+)_(id\d+)_(\d+)")


@dataclass(frozen=True)
class CelebDFOptions:
    """Options of the ``celebdf`` adapter (``data.options``).

    Attributes:
        version: ``v2`` (590 + 300 reals, 5,639 fakes) or ``v1`` (158 + 250 reals, 795 fakes);
            the layout is the same, the counts on disk are compared with the release's.
        test_list: the official test list, absolute or relative to the root;
            ``<root>/List_of_testing_videos.txt`` when null.
        exclude_test_identities: leave out of train and val every video showing an identity of
            the test list (strict, no identity shared with the test set) instead of keeping
            every unlisted video (the official protocol).
        split_by: ``cluster`` (identities linked by fakes go to one split together; every fake
            is kept) or ``identity`` (each identity drawn alone; fakes whose target and source
            fall in different splits are left out).
        val_fraction: target share of the training videos moved to validation.
        seed: seed of the validation draw.
    """

    version: str = "v2"
    test_list: str | None = None
    exclude_test_identities: bool = False
    split_by: str = "cluster"
    val_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if self.version not in VERSIONS:
            raise ValueError(f"version: {self.version!r} is not one of {', '.join(VERSIONS)}")
        if self.split_by not in SPLIT_BY:
            raise ValueError(f"split_by: {self.split_by!r} is not one of {', '.join(SPLIT_BY)}")
        check_fractions(self.val_fraction)


@dataclass(frozen=True)
class _Video:
    key: str  # <folder>/<stem>
    path: Path
    identities: tuple[str, ...]  # target first; a fake also names its source identity
    source: str = ""  # key of the real video a fake was made from


def _parse(path: Path, folder: str) -> _Video:
    key = f"{folder}/{path.stem}"
    if folder == YOUTUBE:  # no identity id: each video is its own identity
        return _Video(key, path, (key,))
    pattern, expected = (_REAL_NAME, "id<N>_<NNNN>") if folder == REAL else (_FAKE_NAME, "id<T>_id<S>_<NNNN>")
    match = pattern.fullmatch(path.stem)
    if not match:
        raise DatasetLayoutError(f"{path}: not a {folder} name {expected}{path.suffix} (e.g. "
                                 f"{'id0_0000' if folder == REAL else 'id0_id1_0000'}.mp4)")
    if folder == REAL:
        return _Video(key, path, (match[1],))
    return _Video(key, path, (match[1], match[2]), source=f"{REAL}/{match[1]}_{match[3]}")


def read_test_list(path: Path) -> list[str]:
    """The videos (``<folder>/<file>``) of the official test list.

    Raises:
        DatasetLayoutError: the file is missing, or a line is malformed or its label disagrees
            with its folder (names the line).
    """
    lines = read_lines(path, "test list", "Celeb-DF test list does not exist (it ships with the release "
                       "as List_of_testing_videos.txt; set test_list to its path)")
    listed: dict[str, str] = {}
    for number, line in lines:
        parts = line.split()
        if not parts:
            continue
        name = str(relative_path(parts[-1])) if len(parts) == 2 else ""
        folder = name.split("/")[0]
        if parts[0] not in ("0", "1") or folder not in FOLDERS or name.count("/") != 1:
            raise DatasetLayoutError(f"{path}:{number}: {line.strip()!r} is not '<label> <folder>/<file>' "
                                     f"with label 1 (real) or 0 (fake) and folder one of {', '.join(FOLDERS)}")
        if (parts[0] == "1") != (folder != SYNTH):
            raise DatasetLayoutError(f"{path}:{number}: label {parts[0]} ({'real' if parts[0] == '1' else 'fake'}) "
                                     f"disagrees with folder {folder}/ (the list uses 1 = real, 0 = fake)")
        listed.setdefault(name, line)
    return list(listed)


def _check_counts(found: Counter[str], version: str) -> None:
    other = next(v for v in VERSIONS if v != version)
    if all(found[f] == RELEASE_COUNTS[other][f] for f in FOLDERS):
        log.warning("celebdf: the folders hold exactly the videos of Celeb-DF %s, but version is %s",
                    other, version)
    elif any(found[f] != RELEASE_COUNTS[version][f] for f in FOLDERS):
        log.info("celebdf: found %s; the %s release has %s", dict(found), version,
                 RELEASE_COUNTS[version])


@register_dataset("celebdf", options=CelebDFOptions)
def scan_celebdf(root: Path, options: CelebDFOptions) -> list[VideoItem]:
    """Celeb-DF v1/v2 (CVPR 2020): official test list, identity-disjoint train/val split.

    Args:
        root: the unpacked release (holds ``Celeb-real/``, ``YouTube-real/``, ``Celeb-synthesis/``).
        options: version, test list, identity protocol and validation split settings.

    Raises:
        DatasetLayoutError: a folder or the test list is missing, a video name or list line is
            malformed.
        ValueError: an option value is invalid.
    """
    options.validate()
    videos: dict[str, _Video] = {}
    found: Counter[str] = Counter()
    for folder in FOLDERS:
        for path in videos_in(video_folder(root / folder, f"Celeb-DF {folder} videos")):
            found[folder] += 1
            videos.setdefault(f"{folder}/{path.stem}", _parse(path, folder))
    _check_counts(found, options.version)
    test_list = resolve_under(root, options.test_list) if options.test_list else root / "List_of_testing_videos.txt"
    test = set()
    for name in read_test_list(test_list):  # listed but not on disk: kept, the check reports it
        folder = name.split("/")[0]
        video = videos.setdefault(f"{folder}/{Path(name).stem}", _parse(root / name, folder))
        test.add(video.key)
    test_ids = {i for key in test for i in videos[key].identities}
    pool = [v for k, v in sorted(videos.items()) if k not in test]
    if options.exclude_test_identities:
        kept = [v for v in pool if not test_ids.intersection(v.identities)]
        log.info("celebdf: %d training video(s) show a test identity and were left out", len(pool) - len(kept))
        if not any(v.source for v in kept):
            log.warning("celebdf: exclude_test_identities leaves no fake outside the test list (the "
                        "official list shows %d celebrities)", len({i for i in test_ids if i.startswith("id")}))
        pool = kept
    if options.split_by == "cluster":
        cluster = clusters((i for v in pool for i in v.identities),
                           ((v.identities[0], v.identities[-1]) for v in pool if v.source))
        group = {v.key: cluster[v.identities[0]] for v in pool}
    else:
        group = {v.key: v.identities[0] for v in pool}
    splits = split_groups(Counter(group.values()), options.val_fraction, 0.0, options.seed)
    split = {v.key: splits[group[v.key]] for v in pool}
    if options.split_by == "identity":
        crossing = {v.key for v in pool if v.source and splits.get(v.identities[1], split[v.key]) != split[v.key]}
        pool = [v for v in pool if v.key not in crossing]
        if crossing:
            log.info("celebdf: %d fake(s) link identities of train and val and were left out", len(crossing))
    prefix = "" if options.exclude_test_identities else "test/"
    for key in sorted(test):
        split[key] = "test"
        group[key] = prefix + videos[key].identities[0]
    items, crossed = [], 0
    for video in [*pool, *(videos[k] for k in sorted(test))]:
        sources: tuple[str, ...] = ()
        if video.source in split:
            if split[video.source] == split[video.key]:
                sources = (video.source,)
            else:
                crossed += 1
        fake = bool(video.source)
        items.append(VideoItem(str(video.path), int(fake), split[video.key], group[video.key],
                               SYNTH if fake else "", key=video.key, sources=sources))
    if crossed:
        log.warning("celebdf: %d fake(s) and their real video sit on two sides of the official test "
                    "list; their source link is not recorded (set exclude_test_identities to avoid it)",
                    crossed)
    if options.val_fraction and not any(it.split == "val" and it.label for it in items):
        log.warning("celebdf: the validation split holds no fake; try another seed or split_by: identity")
    return items
