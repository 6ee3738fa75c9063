"""UADFV (Yang, Li, Lyu, "Exposing Deep Fakes Using Inconsistent Head Poses", ICASSP 2019,
arXiv:1811.00661; also used by Li and Lyu, "Exposing DeepFake Videos By Detecting Face Warping
Artifacts", CVPR Workshops 2019, arXiv:1811.00656), read as the archive unpacks.

The dataset has no repository of its own: it is requested from the authors' lab at the University
at Albany (Siwei Lyu); the Celeb-DF repository https://github.com/yuezunli/celeb-deepfakeforensics
cites it as a first-generation set. The archive holds::

    <root>/real/<NNNN>.mp4        49 real videos (0000.mp4, 0001.mp4, ...)
    <root>/fake/<NNNN>_fake.mp4   the same video with another face swapped in (FakeApp)

There is no official split and no identity id: each real and its fake form a pair, which goes to
one split whole, drawn with a seeded hash.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dflab.datasets.ffpp import resolve_under, video_folder, videos_in
from dflab.datasets.groups import check_fractions, split_groups
from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import VIDEO_EXTENSIONS, DatasetLayoutError, VideoItem

log = logging.getLogger(__name__)

FAKE_SUFFIX = "_fake"
METHOD = "FakeApp"
"""The tool the fakes were made with (Celeb-DF paper, Table 1)."""


@dataclass(frozen=True)
class UADFVOptions:
    """Options of the ``uadfv`` adapter (``data.options``).

    Attributes:
        real_dir: folder of the real videos ``<NNNN>.mp4``, relative to the root.
        fake_dir: folder of the fakes ``<NNNN>_fake.mp4``, relative to the root.
        val_fraction: target share of the videos in the validation split.
        test_fraction: target share of the videos in the test split.
        seed: seed of the split draw.
    """

    real_dir: str = "real"
    fake_dir: str = "fake"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the option when a value is out of range."""
        check_fractions(self.val_fraction, self.test_fraction)


def _pairs(folder: Path, fake: bool) -> dict[str, Path]:
    """Pair id -> video, for the videos of one folder.

    Raises:
        DatasetLayoutError: the folder is missing or empty, or a name does not fit it.
    """
    videos = videos_in(video_folder(folder, f"UADFV {'fake' if fake else 'real'} videos"))
    if not videos:
        raise DatasetLayoutError(f"{folder}/: holds no video ({', '.join(VIDEO_EXTENSIONS)})")
    out = {}
    for path in videos:
        if path.stem.endswith(FAKE_SUFFIX) != fake:
            expected = f"<NNNN>{FAKE_SUFFIX}" if fake else "<NNNN> (no _fake)"
            raise DatasetLayoutError(f"{path}: not a UADFV {'fake' if fake else 'real'} name {expected}{path.suffix}")
        out[path.stem.removesuffix(FAKE_SUFFIX)] = path
    return out


@register_dataset("uadfv", options=UADFVOptions)
def scan_uadfv(root: Path, options: UADFVOptions) -> list[VideoItem]:
    """UADFV (2018): 49 real videos and their face swaps, split by pair.

    A video whose partner is not on disk is still listed with the partner's expected path, so
    ``dflab data check`` reports the partner as missing.

    Args:
        root: the unpacked archive (holds ``real/`` and ``fake/``).
        options: folders and split settings.

    Raises:
        DatasetLayoutError: a folder is missing or empty, or a video is misnamed.
        ValueError: an option value is invalid.
    """
    options.validate()
    real_dir, fake_dir = resolve_under(root, options.real_dir), resolve_under(root, options.fake_dir)
    reals, fakes = _pairs(real_dir, fake=False), _pairs(fake_dir, fake=True)
    ids = sorted(reals.keys() | fakes.keys())
    unpaired = len(ids) - len(reals.keys() & fakes.keys())
    if unpaired:
        log.warning("uadfv: %d video(s) have no partner on disk; the partner is listed as missing", unpaired)
    split = split_groups(Counter({i: 2 for i in ids}), options.val_fraction, options.test_fraction, options.seed)
    items = []
    for pid in ids:
        real = reals.get(pid) or real_dir / f"{pid}{fakes[pid].suffix}"
        fake = fakes.get(pid) or fake_dir / f"{pid}{FAKE_SUFFIX}{reals[pid].suffix}"
        items.append(VideoItem(str(real), 0, split[pid], pid, key=f"real/{pid}"))
        items.append(VideoItem(str(fake), 1, split[pid], pid, METHOD, key=f"fake/{pid}{FAKE_SUFFIX}",
                               sources=(f"real/{pid}",)))
    return items
