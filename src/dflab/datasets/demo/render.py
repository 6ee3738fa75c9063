"""Rendering of the demo dataset's videos: a virtual camera over a portrait, plus the face swap.

Every video draws from three independent random streams seeded by the spec's seed and the
video's name: the camera (pan, zoom, roll, lighting drift), the swap (blend and colour settings,
per-frame jitter) and the sensor noise. A fake rendered without its source is therefore exactly
its pristine twin, which makes the swap the only difference between the two.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from dflab.datasets.demo.portraits import Portrait, apply_affine, face_mask, match_colour, warp_face

if TYPE_CHECKING:
    from dflab.datasets.demo.spec import DemoSpec, DemoVideo

_TRIANGULAR_STD = float(np.sqrt(2 * (256**2 - 1) / 12))  # std of the sum of two uniform bytes


@dataclass(frozen=True)
class _Camera:
    """Per-frame camera and sensor state of one video."""

    matrices: np.ndarray  # (T, 2, 3) portrait pixels -> frame pixels
    gains: np.ndarray  # (T, 3) RGB multipliers (exposure and colour temperature)
    gammas: np.ndarray  # (T,)
    noise: float


def _wander(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random curve over ``t`` in [0, 1]: offset + drift + one slow wave, within ±amplitude."""
    offset, drift, wave = rng.uniform(-1.0, 1.0, 3)
    freq, phase = rng.uniform(0.4, 1.2), rng.uniform(0.0, 2 * np.pi)
    return amplitude * (
        0.5 * offset + 0.3 * drift * (2 * t - 1) + 0.2 * wave * np.sin(2 * np.pi * freq * t + phase)
    )


def _similarity(pivot: np.ndarray, angle: float, scale: float, position: np.ndarray) -> np.ndarray:
    """``(2, 3)`` matrix rotating by ``angle`` degrees and scaling about ``pivot``, then moving
    ``pivot`` to ``position``."""
    matrix = np.asarray(
        cv2.getRotationMatrix2D((float(pivot[0]), float(pivot[1])), float(angle), float(scale))
    )
    matrix[:, 2] += np.asarray(position, np.float64) - pivot
    return matrix


def camera_path(rng: np.random.Generator, spec: DemoSpec, portrait: Portrait) -> _Camera:
    """Draw a random smooth camera move and lighting drift over ``portrait``."""
    t = np.linspace(0.0, 1.0, spec.num_frames)
    base_scale = rng.uniform(*spec.face_width) * spec.size / portrait.face_width
    scales = base_scale * np.exp(_wander(rng, t, spec.zoom))
    angles = _wander(rng, t, spec.roll)
    centre_x = spec.size * (0.5 + _wander(rng, t, spec.pan))
    centre_y = spec.size * (0.48 + _wander(rng, t, spec.pan))
    positions = np.stack([centre_x, centre_y], axis=1)
    matrices = np.stack(
        [
            _similarity(portrait.centre, a, s, p)
            for a, s, p in zip(angles, scales, positions, strict=True)
        ]
    )
    warm = _wander(rng, t, spec.temperature)
    gains = np.exp(_wander(rng, t, spec.exposure))[:, None] * np.stack(
        [1 + warm, np.ones_like(t), 1 - warm], axis=1
    )
    gammas = np.exp(_wander(rng, t, spec.gamma))
    return _Camera(matrices, gains.astype(np.float32), gammas, float(rng.uniform(*spec.noise)))


@dataclass(frozen=True)
class _Swap:
    """A source face prepared on the target portrait's grid, with its blend mask."""

    face: np.ndarray  # (P, P, 3) uint8
    mask: np.ndarray  # (P, P) float32 in [0, 1]
    centre: np.ndarray  # (2,) target face centre, the pivot of the per-frame jitter
    face_width: float


def prepare_swap(
    rng: np.random.Generator, spec: DemoSpec, target: Portrait, source: Portrait
) -> _Swap:
    """Warp, colour-match and soften the source face onto the target portrait (once per video)."""
    width = target.face_width
    mask = face_mask(
        target.landmarks,
        target.image.shape[:2],
        spec.blend_erode * width,
        rng.uniform(*spec.blend_feather) * width,
    )
    face = match_colour(
        warp_face(source, target), target.image, mask, rng.uniform(*spec.colour_match)
    )
    scale = rng.uniform(*spec.source_scale)
    if scale < 1.0:
        h, w = face.shape[:2]
        small = cv2.resize(
            face, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
        face = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if spec.source_blur > 0:
        face = cv2.GaussianBlur(face, (0, 0), sigmaX=spec.source_blur)
    return _Swap(face, mask, target.centre, width)


def _jitter(rng: np.random.Generator, swap: _Swap, amount: float) -> np.ndarray:
    """A small random similarity about the face centre, as a ``(3, 3)`` matrix."""
    shift = rng.normal(0.0, amount * swap.face_width, 2)
    scale, angle = 1.0 + rng.normal(0.0, amount), np.degrees(rng.normal(0.0, amount))
    matrix = _similarity(swap.centre, angle, scale, swap.centre + shift)
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def _develop(frame: np.ndarray, camera: _Camera, i: int, rng: np.random.Generator) -> np.ndarray:
    """Apply frame ``i``'s gamma, exposure, colour temperature and sensor noise; return ``uint8``."""
    levels = np.arange(256, dtype=np.float32)[:, None] / 255
    table = (
        255 * np.power(levels, camera.gammas[i]) * camera.gains[i]
    )  # (256, 3): one curve per channel
    out = cv2.LUT(frame, table.astype(np.float32).reshape(256, 1, 3))
    # Triangular noise (sum of two uniform bytes): close to Gaussian and ~10x cheaper to draw.
    raw = np.frombuffer(rng.bytes(2 * out.size), np.uint8).reshape(2, *out.shape)
    noise = cv2.add(raw[0], raw[1], dtype=cv2.CV_32F) - np.float32(255)
    out += noise * np.float32(camera.noise / _TRIANGULAR_STD)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _streams(spec: DemoSpec, video: DemoVideo) -> tuple[np.random.Generator, ...]:
    """Independent generators for the camera, the swap and the sensor noise of one video.

    Keeping them apart means a fake rendered without its swap is exactly its pristine twin.
    """
    seeds = np.random.SeedSequence([spec.seed, zlib.crc32(video.name.encode())]).spawn(3)
    return tuple(np.random.default_rng(s) for s in seeds)


def render_video(
    video: DemoVideo, portraits: dict[str, Portrait], spec: DemoSpec
) -> Iterator[np.ndarray]:
    """Yield the RGB ``uint8`` frames of one planned video (deterministic from spec and name).

    A fake with ``source=None`` renders as its pristine twin: same camera, lighting and noise.
    """
    camera_rng, swap_rng, noise_rng = _streams(spec, video)
    target = portraits[video.target]
    camera = camera_path(camera_rng, spec, target)
    swap = (
        None
        if video.source is None
        else prepare_swap(swap_rng, spec, target, portraits[video.source])
    )
    for i, matrix in enumerate(camera.matrices):
        frame = _warp(target.image, matrix, spec.size)
        if swap is not None:
            moved = (
                np.vstack([matrix, [0.0, 0.0, 1.0]]) @ _jitter(swap_rng, swap, spec.warp_jitter)
            )[:2]
            face = _warp(swap.face, moved, spec.size).astype(np.float32)
            face *= (1.0 + swap_rng.normal(0.0, spec.colour_jitter, 3)).astype(np.float32)
            alpha = _warp(swap.mask, moved, spec.size)[..., None]
            frame = np.clip(frame + alpha * (face - frame) + 0.5, 0, 255).astype(np.uint8)
        yield _develop(frame, camera, i, noise_rng)


def frame_landmarks(video: DemoVideo, portraits: dict[str, Portrait], spec: DemoSpec) -> np.ndarray:
    """The target's 68 landmarks in every frame of a video, ``(T, 68, 2)`` (mapped, not detected)."""
    target = portraits[video.target]
    camera = camera_path(_streams(spec, video)[0], spec, target)
    return np.stack([apply_affine(m, target.landmarks) for m in camera.matrices])
