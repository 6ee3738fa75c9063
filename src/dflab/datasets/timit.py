"""DeepfakeTIMIT (Korshunov and Marcel, "DeepFakes: a New Threat to Face Recognition? Assessment
and Detection", arXiv:1812.08685, 2018), with the VidTIMIT recordings it was made from as reals.

Official page (licence agreement, download): https://www.idiap.ch/dataset/deepfaketimit. The
archive unpacks to::

    <root>/lower_quality/<subject>/<sentence>-video-<face>.avi    64x64 px model (LQ)
    <root>/higher_quality/<subject>/<sentence>-video-<face>.avi   128x128 px model (HQ)

next to each video its audio ``<sentence>.wav`` (not read). ``<subject>`` is the VidTIMIT subject
(``fadg0``, ``fram1``, ...) whose recording ``<sentence>`` (``sa1``, ``si1279``, ``sx19``, ...)
the fake was made from, ``<face>`` the other subject of its pair, whose face was swapped in:
32 subjects in 16 pairs, swapped both ways, 10 recordings each, 320 fakes per quality.

The release holds no real video. The reals are the VidTIMIT recordings the fakes were made from
(Sanderson, http://conradsanderson.id.au/vidtimit/, Zenodo record 158963), which VidTIMIT ships
as folders of JPEG frames (``<subject>/video/<sentence>/001``, ...): this adapter reads videos
converted from them, ``<vidtimit_root>/<subject>/<sentence>.<ext>`` (``.avi``, ``.mp4``, ...).
There is no official split: subjects linked by fakes (the pairs) go to one split whole, drawn
with a seeded hash.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dflab.datasets.ffpp import resolve_under, video_folder, videos_in
from dflab.datasets.groups import check_fractions, clusters, split_groups
from dflab.datasets.registry import register_dataset
from dflab.datasets.sources import VIDEO_EXTENSIONS, DatasetLayoutError, VideoItem

log = logging.getLogger(__name__)

QUALITIES = {"lower": ("lower_quality", "DeepfakeTIMIT-LQ"), "higher": ("higher_quality", "DeepfakeTIMIT-HQ")}
"""Value of ``quality`` -> (folder, method of its fakes)."""
_FAKE_NAME = re.compile(r"(?P<sentence>[^-]+)-video-(?P<face>[^-]+)")


@dataclass(frozen=True)
class DeepfakeTIMITOptions:
    """Options of the ``deepfaketimit`` adapter (``data.options``).

    Attributes:
        quality: which fakes are read: ``lower`` (``lower_quality/``, method
            ``DeepfakeTIMIT-LQ``), ``higher`` (``higher_quality/``, ``DeepfakeTIMIT-HQ``) or both.
        vidtimit_root: folder of VidTIMIT recordings converted to videos,
            ``<subject>/<sentence>.<ext>``; absolute or relative to the root. Null reads the
            fakes only (no real class).
        val_fraction: target share of the videos in the validation split.
        test_fraction: target share of the videos in the test split.
        seed: seed of the split draw.
    """

    quality: list[str] = field(default_factory=lambda: list(QUALITIES))
    vidtimit_root: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the option and its valid values."""
        if not self.quality:
            raise ValueError(f"quality: name at least one of {', '.join(QUALITIES)}")
        unknown = [q for q in self.quality if q not in QUALITIES]
        if unknown:
            raise ValueError(f"quality: {unknown[0]!r} is not one of {', '.join(QUALITIES)}")
        check_fractions(self.val_fraction, self.test_fraction)


@dataclass(frozen=True)
class _Fake:
    path: Path
    key: str
    method: str
    subject: str
    face: str
    source: str  # key of the VidTIMIT recording: VidTIMIT/<subject>/<sentence>


def _fakes(root: Path, quality: str) -> list[_Fake]:
    folder_name, method = QUALITIES[quality]
    folder = video_folder(root / folder_name, f"DeepfakeTIMIT {folder_name} fakes")
    subjects = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subjects:
        raise DatasetLayoutError(f"{folder}/: holds no subject folder (e.g. fadg0/)")
    fakes = []
    for subject in subjects:
        for path in videos_in(subject):
            match = _FAKE_NAME.fullmatch(path.stem)
            if not match:
                raise DatasetLayoutError(f"{path}: not a DeepfakeTIMIT name <sentence>-video-<subject>"
                                         f"{path.suffix} (e.g. sa1-video-fram1.avi)")
            fakes.append(_Fake(path, f"{folder_name}/{subject.name}/{path.stem}", method, subject.name,
                               match["face"], f"VidTIMIT/{subject.name}/{match['sentence']}"))
    return fakes


def _reals(vidtimit: Path, sources: list[str]) -> dict[str, Path]:
    """Path of every recording named in ``sources`` (``VidTIMIT/<subject>/<sentence>``)."""
    if not vidtimit.is_dir():
        raise DatasetLayoutError(f"{vidtimit}/: VidTIMIT folder (vidtimit_root) does not exist")
    found: dict[str, Path] = {}
    for subject in {s.split("/")[1] for s in sources}:
        if (vidtimit / subject).is_dir():
            found.update({f"VidTIMIT/{subject}/{p.stem}": p for p in videos_in(vidtimit / subject)})
    if not found:
        frames = sorted(vidtimit.glob("*/video"))
        hint = (f"; {frames[0]} holds JPEG frame folders: convert each to "
                f"{vidtimit}/<subject>/<sentence>.mp4 first") if frames else ""
        raise DatasetLayoutError(f"{vidtimit}/: holds no <subject>/<sentence> video "
                                 f"({', '.join(VIDEO_EXTENSIONS)}){hint}")
    ext = Counter(p.suffix for p in found.values()).most_common(1)[0][0]
    return {s: found[s] if s in found else (vidtimit / s.partition("/")[2]).with_suffix(ext) for s in sources}


@register_dataset("deepfaketimit", options=DeepfakeTIMITOptions)
def scan_deepfaketimit(root: Path, options: DeepfakeTIMITOptions) -> list[VideoItem]:
    """DeepfakeTIMIT (2018): LQ/HQ face swaps and their VidTIMIT originals, split by subject pair.

    Args:
        root: the unpacked release (holds ``lower_quality/`` and ``higher_quality/``).
        options: qualities, the VidTIMIT videos and split settings.

    Raises:
        DatasetLayoutError: a quality folder or the VidTIMIT folder is missing or empty, or a
            fake is not named ``<sentence>-video-<subject>``.
        ValueError: an option value is invalid.
    """
    options.validate()
    fakes = [f for q in dict.fromkeys(options.quality) for f in _fakes(root, q)]
    sources = sorted({f.source for f in fakes})
    reals: dict[str, Path] = {}
    if options.vidtimit_root:
        reals = _reals(resolve_under(root, options.vidtimit_root), sources)
    else:
        log.warning("deepfaketimit: vidtimit_root is not set; only fakes are read (no real class)")
    subject_cluster = clusters((f.subject for f in fakes), ((f.subject, f.face) for f in fakes))
    members: dict[str, list[str]] = {}
    for subject, cluster in sorted(subject_cluster.items()):
        members.setdefault(cluster, []).append(subject)
    name = {s: "+".join(members[c]) for s, c in subject_cluster.items()}
    group = {f.key: name[f.subject] for f in fakes} | {s: name[s.split("/")[1]] for s in reals}
    split = split_groups(Counter(group.values()), options.val_fraction, options.test_fraction, options.seed)
    items = [VideoItem(str(path), 0, split[group[key]], group[key], key=key) for key, path in reals.items()]
    items += [VideoItem(str(f.path), 1, split[group[f.key]], group[f.key], f.method, key=f.key,
                        sources=(f.source,) if f.source in reals else ()) for f in fakes]
    return items
