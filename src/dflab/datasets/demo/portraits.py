"""Face photographs and face-swap primitives behind the built-in demo dataset.

The photographs ship inside installed packages (insightface's sample images, scikit-image's
``astronaut`` and matplotlib's ``grace_hopper``), so nothing is downloaded. dlib finds every face and its 68
landmarks; each face becomes a :class:`Portrait`, an upright square crop with context around
the face. The swap primitives (:func:`warp_face`, :func:`face_mask`, :func:`match_colour`)
work in the target portrait's pixel grid; :mod:`dflab.datasets.demo.build` moves a camera over the result.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dflab.faces.dlib_models import dlib_model_file

log = logging.getLogger(__name__)

PORTRAIT_SIZE = 448
"""Side of every portrait in pixels."""
PORTRAIT_FACE_WIDTH = 0.29
"""Jaw width (landmarks 0 to 16) as a share of the portrait side."""


@dataclass(frozen=True)
class Photo:
    """A photograph holding one or more identities.

    Attributes:
        name: identity prefix (``t1`` gives ``t1_0``, ``t1_1``, ...; single faces keep the name).
        image: ``(H, W, 3)`` RGB ``uint8``.
        max_faces: faces kept, the most confident first, then ordered left to right.
    """

    name: str
    image: np.ndarray
    max_faces: int = 1


@dataclass(frozen=True)
class Portrait:
    """One identity: an upright square crop centred on the face.

    Attributes:
        identity: identity id, e.g. ``t1_3`` or ``astronaut``.
        image: ``(PORTRAIT_SIZE, PORTRAIT_SIZE, 3)`` RGB ``uint8``.
        landmarks: ``(68, 2)`` float32 dlib landmarks in ``image`` pixels.
    """

    identity: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def face_width(self) -> float:
        """Jaw width in pixels (landmark 0 to 16)."""
        return float(np.linalg.norm(self.landmarks[16] - self.landmarks[0]))

    @property
    def centre(self) -> np.ndarray:
        """Mean of the 68 landmarks (about the nose), ``(2,)`` float32."""
        return self.landmarks.mean(axis=0)


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_rgb(path: Path) -> np.ndarray:
    """Read an image as RGB ``uint8`` with Pillow (its decoders do not depend on which other
    native libraries the process loaded before; OpenCV's PNG reader once did)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise FileNotFoundError(f"{path}: cannot read image ({err})") from err


def outpaint(image: np.ndarray, pad: int) -> np.ndarray:
    """Extend a tight face crop by ``pad`` pixels per side with a blurred reflected border.

    The reflection is blurred hard enough that its mirrored face features are no longer a face,
    and the original is blended in with a soft edge so no seam shows.
    """
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101).astype(
        np.float32
    )
    h, w = image.shape[:2]
    near = cv2.GaussianBlur(padded, (0, 0), sigmaX=max(h, w) / 6)
    far = cv2.GaussianBlur(padded, (0, 0), sigmaX=max(h, w) / 2)
    inner = np.zeros(padded.shape[:2], np.uint8)
    inner[pad : pad + h, pad : pad + w] = 1
    distance = cv2.distanceTransform(1 - inner, cv2.DIST_L2, 5)  # 0 inside the original
    fade = np.clip(distance / pad, 0.0, 1.0)[..., None]
    background = (1.0 - fade) * near + fade * far  # ever softer away from the photo
    edge = max(2, min(h, w) // 12)
    alpha = np.zeros(padded.shape[:2], np.float32)
    alpha[pad + edge : pad + h - edge, pad + edge : pad + w - edge] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=edge / 2)[..., None]
    return (alpha * padded + (1.0 - alpha) * background).round().astype(np.uint8)


def tone_grey(image: np.ndarray, a: float = 9.0, b: float = 16.0) -> np.ndarray:
    """Give a greyscale photo a warm, skin-like tint (strongest in the mid-tones, none at black
    and white), so its face can be colour-matched with colour faces and vice versa."""
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    weight = np.sin(np.pi * np.clip(lab[..., 0] / 100.0, 0.0, 1.0))
    lab[..., 1] += a * weight
    lab[..., 2] += b * weight
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _is_grey(image: np.ndarray) -> bool:
    return bool(np.abs(image.astype(np.int16) - image[..., :1]).max() <= 2)


def shipped_photos() -> list[Photo]:
    """The face photographs found in installed packages (insightface, scikit-image, matplotlib).

    A greyscale photo is warm-toned and a small tight face crop (insightface's 112 px aligned
    Tom Hanks) is outpainted, so the camera has background to move over. A photo whose file is
    missing or unreadable is skipped with a warning.
    """
    from skimage import data as skdata

    photos = [Photo("astronaut", skdata.astronaut())]
    shipped = (
        ("t1", "insightface", "data/images/t1.jpg", 6),
        ("tom_hanks", "insightface", "data/images/Tom_Hanks_54745.png", 1),
        ("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", 1),
    )
    for name, package, relpath, max_faces in shipped:
        try:
            image = _read_rgb(_package_dir(package) / relpath)
        except FileNotFoundError as err:
            log.warning("demo dataset: skipping photo %r: %s", name, err)
            continue
        if _is_grey(image):
            image = tone_grey(image)
        if max(image.shape[:2]) < 256:
            image = outpaint(image, pad=max(image.shape[:2]))
        photos.append(Photo(name, image, max_faces))
    return photos


def find_faces(
    image: np.ndarray, max_faces: int, detector: Any, predictor: Any, upsample: int = 1
) -> list[np.ndarray]:
    """Detect faces with dlib's HOG detector and fit the 68 landmarks.

    Args:
        image: RGB ``uint8`` photo.
        max_faces: faces to keep.
        detector: ``dlib.get_frontal_face_detector()``.
        predictor: dlib 68-point ``shape_predictor``.
        upsample: times dlib upsamples the image before detecting.

    Returns:
        Up to ``max_faces`` ``(68, 2)`` float32 landmark arrays, the most confident faces,
        ordered left to right.
    """
    rects, scores, _ = detector.run(np.ascontiguousarray(image), upsample, 0.0)
    best = sorted(zip(scores, range(len(rects)), strict=True), reverse=True)[:max_faces]
    faces = []
    for _, i in best:
        shape = predictor(image, rects[i])
        faces.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
    return sorted(faces, key=lambda lm: float(lm[:, 0].mean()))


def make_portrait(identity: str, image: np.ndarray, landmarks: np.ndarray) -> Portrait:
    """Crop an upright square portrait: eyes level, face centred, jaw at a fixed width."""
    left_eye, right_eye = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    dx, dy = right_eye - left_eye
    angle = np.degrees(np.arctan2(dy, dx))
    scale = (
        PORTRAIT_FACE_WIDTH * PORTRAIT_SIZE / float(np.linalg.norm(landmarks[16] - landmarks[0]))
    )
    centre = landmarks.mean(axis=0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), scale)
    matrix[:, 2] += PORTRAIT_SIZE / 2 - centre
    crop = cv2.warpAffine(
        image,
        matrix,
        (PORTRAIT_SIZE, PORTRAIT_SIZE),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return Portrait(identity, crop, apply_affine(matrix, landmarks))


def load_portraits(photos: list[Photo] | None = None) -> list[Portrait]:
    """Find every face of the shipped photographs and make one portrait per identity.

    A photo in which dlib finds no face is skipped with a logged warning.
    """
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_file("landmarks68")))
    portraits = []
    for photo in shipped_photos() if photos is None else photos:
        faces = find_faces(photo.image, photo.max_faces, detector, predictor)
        if not faces:
            log.warning("demo dataset: dlib found no face in photo %r; skipping it", photo.name)
            continue
        for k, landmarks in enumerate(faces):
            identity = photo.name if photo.max_faces == 1 else f"{photo.name}_{k}"
            portraits.append(make_portrait(identity, photo.image, landmarks))
    return portraits


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through a ``(2, 3)`` affine matrix."""
    x, y = points[:, 0], points[:, 1]  # elementwise: no BLAS call for a 2x2 product
    return np.stack(
        [
            matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2],
            matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2],
        ],
        axis=1,
    ).astype(np.float32)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    The estimate of :func:`dflab.faces.crop.similarity_transform`, computed in the landmarks'
    own precision (float32) rather than float64: kept so the demo videos stay bit-identical
    for a seed (the float64 version moves a few pixel values by a few levels).

    Returns:
        ``(2, 3)`` float64 matrix.
    """
    src_c, dst_c = src - src.mean(axis=0), dst - dst.mean(axis=0)
    a = float((src_c * dst_c).sum())
    b = float((src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum())
    norm = float((src_c**2).sum())
    linear = np.array([[a, -b], [b, a]]) / norm
    shift = dst.mean(axis=0) - linear @ src.mean(axis=0)
    return np.hstack([linear, shift[:, None]])


def _barycentric(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(n, 3)`` of ``points`` ``(n, 2)`` in ``triangles`` ``(n, 3, 2)``.

    The coordinates are clipped to ``[0, 1]`` and renormalised, so a point just outside its
    triangle maps onto the triangle's edge.
    """
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-6, 1e-6, den)
    l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
    l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
    bary = np.clip(np.stack([1.0 - l1 - l2, l1, l2], axis=1), 0.0, 1.0)
    return bary / np.maximum(bary.sum(axis=1, keepdims=True), 1e-6)


def warp_face(source: Portrait, target: Portrait) -> np.ndarray:
    """Warp the source portrait so its landmarks land on the target's.

    Inside the landmarks' convex hull the warp is piecewise affine over a Delaunay triangulation
    of the 68 points; outside it is the best similarity, so the result is defined everywhere.

    Returns:
        The warped source, an image on the target portrait's pixel grid (RGB ``uint8``).
    """
    from scipy.spatial import Delaunay

    h, w = target.image.shape[:2]
    to_source = fit_similarity(target.landmarks, source.landmarks).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = to_source[0, 0] * xs + to_source[0, 1] * ys + to_source[0, 2]
    map_y = to_source[1, 0] * xs + to_source[1, 1] * ys + to_source[1, 2]
    # Piecewise affine inside the hull: rasterise the Delaunay triangles, then map each pixel
    # through its triangle's barycentric coordinates (clipped, so rounding at slivers stays put).
    triangles = Delaunay(target.landmarks.astype(np.float64)).simplices
    labels = np.full((h, w), -1, np.int32)
    for k, triangle in enumerate(triangles):
        cv2.fillConvexPoly(labels, np.round(target.landmarks[triangle]).astype(np.int32), k)
    rows, cols = np.nonzero(labels >= 0)
    corners = triangles[labels[rows, cols]]  # (n, 3) landmark indices
    bary = _barycentric(
        np.stack([cols, rows], axis=1).astype(np.float32), target.landmarks[corners]
    )
    mapped = np.einsum("ni,nij->nj", bary, source.landmarks[corners])
    map_x[rows, cols], map_y[rows, cols] = mapped[:, 0], mapped[:, 1]
    return cv2.remap(
        source.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def face_mask(
    landmarks: np.ndarray, shape: tuple[int, int], erode: float, feather: float
) -> np.ndarray:
    """Soft face mask: the landmarks' convex hull, eroded, then Gaussian-feathered.

    Args:
        landmarks: ``(68, 2)`` points.
        shape: ``(H, W)`` of the mask.
        erode: erosion radius in pixels.
        feather: Gaussian sigma of the soft edge in pixels.

    Returns:
        ``(H, W)`` float32 mask in ``[0, 1]``.
    """
    hull_mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull_mask, cv2.convexHull(np.round(landmarks).astype(np.int32)), 255)
    radius = max(0, round(erode))
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        hull_mask = np.asarray(cv2.erode(hull_mask, kernel))
    mask = hull_mask.astype(np.float32) / 255.0
    if feather > 0:
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigmaX=feather))
    return mask


def match_colour(
    face: np.ndarray, reference: np.ndarray, mask: np.ndarray, strength: float
) -> np.ndarray:
    """Move ``face``'s colours towards ``reference``'s inside ``mask`` (mean/std transfer in LAB).

    Args:
        face: RGB ``uint8`` image to recolour.
        reference: RGB ``uint8`` image of the same size whose statistics are the goal.
        mask: ``(H, W)`` weights; statistics are taken where it exceeds 0.5.
        strength: 0 keeps ``face``, 1 applies the full transfer.

    Returns:
        The recoloured face, RGB ``uint8``.
    """
    region = mask > 0.5
    lab_face = cv2.cvtColor(face.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    lab_ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    f_mean, f_std = lab_face[region].mean(axis=0), lab_face[region].std(axis=0) + 1e-3
    r_mean, r_std = lab_ref[region].mean(axis=0), lab_ref[region].std(axis=0) + 1e-3
    ratio = np.clip(r_std / f_std, 0.25, 4.0)  # bounded: a grey photo has no chroma spread to scale
    moved = (lab_face - f_mean) * ratio + r_mean
    lab = lab_face + strength * (moved - lab_face)
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
