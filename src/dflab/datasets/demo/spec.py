"""What the demo dataset holds: its settings (:class:`DemoSpec`) and the plan of its videos.

Every video follows from :attr:`DemoSpec.seed`: the identity split, each fake's source, and (in
:mod:`dflab.datasets.demo.render`) every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEMO_VERSION = 3
"""Bumped whenever the generated videos change for the same spec."""

Range = tuple[float, float]
_RANGES = ("face_width", "noise", "blend_feather", "colour_match", "source_scale")


@dataclass(frozen=True)
class DemoSpec:
    """Every setting of the demo dataset (the defaults make 90 videos of 9 identities).

    Attributes:
        seed: seeds the identity split, the source choice and every video.
        size: side of the square frames in pixels (even). At 128 and 256 the H.264 files come
            out bit-identical run to run; at some other sizes (160, 192, 320 were seen) libx264
            output varies slightly between runs although the rendered frames never do.
        fps: frame rate.
        num_frames: frames per video.
        reals_per_identity: real videos per identity.
        fakes_per_identity: fake videos per identity as the target.
        val_identities: identities in the validation split.
        test_identities: identities in the test split (the rest train).
        face_width: range of the jaw width as a share of the frame side.
        pan: largest drift of the face centre, as a share of the frame side.
        zoom: largest zoom drift (log scale).
        roll: largest camera roll in degrees.
        exposure: largest exposure drift (log gain).
        gamma: largest gamma drift (log gamma).
        temperature: largest colour-temperature drift (red up, blue down).
        noise: range of the sensor noise standard deviation (0-255 scale).
        crf: x264 constant rate factor.
        blend_erode: erosion of the swap mask, as a share of the jaw width.
        blend_feather: range of the mask's Gaussian feather sigma, as a share of the jaw width.
        colour_match: range of the LAB colour-transfer strength (1 = full transfer).
        source_scale: range of the swapped face's resolution factor (1 = as sharp as the frame).
        source_blur: Gaussian blur sigma of the swapped face, in portrait pixels.
        warp_jitter: per-frame jitter of the swap's placement (share of the jaw width for the
            shift, relative for the scale, radians for the rotation).
        colour_jitter: per-frame relative jitter of the swapped face's colour channels.
        train_only: identities always dealt to training. The default keeps the one greyscale
            photograph (tinted to skin tones, so its swaps stand out) out of validation and test.
    """

    seed: int = 0
    size: int = 256
    fps: int = 15
    num_frames: int = 40
    reals_per_identity: int = 5
    fakes_per_identity: int = 5
    val_identities: int = 2
    test_identities: int = 2
    face_width: Range = (0.36, 0.44)
    pan: float = 0.05
    zoom: float = 0.1
    roll: float = 4.0
    exposure: float = 0.15
    gamma: float = 0.1
    temperature: float = 0.05
    noise: Range = (1.0, 3.0)
    crf: int = 23
    blend_erode: float = 0.05
    blend_feather: Range = (0.02, 0.05)
    colour_match: Range = (0.5, 0.9)
    source_scale: Range = (0.5, 0.8)
    source_blur: float = 0.7
    warp_jitter: float = 0.004
    colour_jitter: float = 0.01
    train_only: tuple[str, ...] = ("tom_hanks",)

    def __post_init__(self) -> None:
        for name in _RANGES:  # accept lists (from YAML or JSON) and store tuples
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "train_only", tuple(self.train_only))
        if self.size < 64 or self.size % 2:
            raise ValueError(f"size must be even and >= 64, got {self.size}")
        if self.fps < 1 or self.num_frames < 1:
            raise ValueError(
                f"fps and num_frames must be >= 1, got {self.fps} and {self.num_frames}"
            )
        if min(self.reals_per_identity, self.fakes_per_identity) < 0:
            raise ValueError("reals_per_identity and fakes_per_identity must be >= 0")
        if self.reals_per_identity + self.fakes_per_identity == 0:
            raise ValueError("the spec makes no video")
        least = 2 if self.fakes_per_identity else 1  # a fake needs a second identity in its split
        if min(self.val_identities, self.test_identities) < least:
            raise ValueError(f"val_identities and test_identities must be >= {least}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        for name in _RANGES:
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high")


@dataclass(frozen=True)
class DemoVideo:
    """One planned video: its name, split, label and identities (``source`` is None if real)."""

    name: str
    split: str
    label: str
    target: str
    source: str | None = None

    @property
    def relpath(self) -> str:
        """Path relative to the dataset root, e.g. ``train/fake/t1_2_from_t1_4_f01.mp4``."""
        return f"{self.split}/{self.label}/{self.name}.mp4"


def split_identities(identities: Sequence[str], spec: DemoSpec) -> dict[str, list[str]]:
    """Shuffle the identities with the seed and deal them to test, val and train.

    Raises:
        ValueError: fewer identities than the splits need (train needs two when there are fakes).
    """
    need = spec.val_identities + spec.test_identities + (2 if spec.fakes_per_identity else 1)
    if len(identities) < need:
        raise ValueError(f"the demo spec needs at least {need} identities, found {len(identities)}")
    pinned = sorted(set(identities) & set(spec.train_only))
    free = sorted(set(identities) - set(pinned))
    order = [free[i] for i in np.random.default_rng([spec.seed, 1]).permutation(len(free))]
    test, rest = order[: spec.test_identities], order[spec.test_identities :]
    val, train = rest[: spec.val_identities], rest[spec.val_identities :] + pinned
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def plan_videos(identities: Sequence[str], spec: DemoSpec) -> list[DemoVideo]:
    """List every video of the dataset; each fake's source is another identity of its split."""
    rng = np.random.default_rng([spec.seed, 2])
    videos = []
    for split, members in split_identities(identities, spec).items():
        for target in members:
            videos += [
                DemoVideo(f"{target}_r{k:02d}", split, "real", target)
                for k in range(spec.reals_per_identity)
            ]
            others = [members[i] for i in rng.permutation(len(members)) if members[i] != target]
            for k in range(spec.fakes_per_identity):
                source = others[k % len(others)]
                videos.append(
                    DemoVideo(f"{target}_from_{source}_f{k:02d}", split, "fake", target, source)
                )
    return videos
