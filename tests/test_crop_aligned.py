"""Landmark-aligned face crops (``faces.crop=aligned``) on a real photo and in training."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
from PIL import Image

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.clips.dataset import ClipSpec, FaceClipDataset
from dflab.config import ConfigError
from dflab.experiment import build_experiment
from dflab.faces.crop import (
    ARCFACE_TEMPLATE,
    aligned_template,
    crop_face,
    crop_face_aligned,
    similarity_transform,
)
from dflab.faces.detector import Detection, create_detector
from dflab.faces.record import VideoFaces
from dflab.training.train import build_module
from dflab.video import read_frames

ROTATION = 20.0  # degrees, counter-clockwise (PIL)


def _eye_angle(points: np.ndarray) -> float:
    """Angle of the line from the left to the right eye, in degrees (0 = level)."""
    dx, dy = points[1] - points[0]
    return math.degrees(math.atan2(dy, dx))


def _centre(det: Detection) -> np.ndarray:
    return (det.box[:2] + det.box[2:]) / 2


@pytest.fixture(scope="module")
def detector():
    return create_detector("dlib_hog")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """insightface's shipped group photo (six faces, several of them tilted)."""
    import insightface

    return Image.open(Path(insightface.__file__).parent / "data/images/t1.jpg").convert("RGB")


@pytest.fixture(scope="module")
def face(photo, detector) -> Detection:
    """The leftmost face of the photo: near-frontal, head tilted by about -25 degrees."""
    return min(detector.detect(np.asarray(photo)), key=lambda d: d.box[0])


@pytest.fixture(scope="module")
def rotated(photo, face, detector) -> tuple[np.ndarray, Detection]:
    """The photo rotated by 20 degrees, and the same face detected in it."""
    image = np.asarray(photo.rotate(ROTATION, resample=Image.BILINEAR, expand=True))
    theta = math.radians(ROTATION)  # counter-clockwise on screen = clockwise in (x, y-down)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    old_half = np.array(photo.size) / 2
    new_half = np.array([image.shape[1], image.shape[0]]) / 2
    expected = rot @ (_centre(face) - old_half) + new_half
    found = min(detector.detect(image), key=lambda d: np.linalg.norm(_centre(d) - expected))
    assert np.linalg.norm(_centre(found) - expected) < 30, "the rotated face was not found"
    return image, found


def _redetect(crop: np.ndarray, detector) -> np.ndarray:
    dets = detector.detect(crop)
    assert dets, "no face found in the aligned crop"
    return max(dets, key=lambda d: d.area).landmarks


def test_transform_and_crop_match_insightface(photo, face):
    from insightface.utils.face_align import estimate_norm, norm_crop

    image, points = np.asarray(photo), face.landmarks.astype(np.float64)
    np.testing.assert_allclose(aligned_template(112, 1.3), ARCFACE_TEMPLATE, atol=1e-9)
    with warnings.catch_warnings():  # skimage >= 0.26 deprecates the estimate insightface uses
        warnings.simplefilter("ignore", FutureWarning)
        reference = estimate_norm(points, 224)
        expected = norm_crop(image, points, 224)
    np.testing.assert_allclose(similarity_transform(points, aligned_template(224)), reference,
                               atol=1e-4)
    crop = crop_face_aligned(image, face.landmarks, 224)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.abs(crop.astype(int) - expected).max() <= 1


def test_margin_zooms_around_the_template_centre():
    tight, wide = aligned_template(112, 1.3), aligned_template(112, 2.6)
    np.testing.assert_allclose(wide - 56, (tight - 56) / 2)
    np.testing.assert_allclose(aligned_template(224, 1.3), ARCFACE_TEMPLATE * 2)


def test_aligned_crop_has_level_eyes_at_the_template(photo, face, detector):
    assert abs(_eye_angle(face.landmarks)) > 20, "the test face is tilted in the photo"
    size = 224  # large enough for dlib to find the face again in the crop
    crop = crop_face_aligned(np.asarray(photo), face.landmarks, size, margin=1.3)
    eyes = _redetect(crop, detector)[:2]
    assert abs(_eye_angle(eyes)) < 4
    error_at_112 = np.abs(eyes - aligned_template(size)[:2]).max() * 112 / size
    assert error_at_112 < 3, f"eyes {error_at_112:.1f} px (at 112) from the template"


def test_aligned_crop_of_a_rotated_photo_has_level_eyes(photo, face, rotated, detector):
    image, moved = rotated
    assert abs(_eye_angle(moved.landmarks)) > 35, "rotating made the head tilt more"
    size = 224
    crop = crop_face_aligned(image, moved.landmarks, size)
    eyes = _redetect(crop, detector)[:2]
    assert abs(_eye_angle(eyes)) < 4
    assert np.abs(eyes - aligned_template(size)[:2]).max() * 112 / size < 4
    # the same face, aligned from either photo, has its eyes in (nearly) the same place
    upright = _redetect(crop_face_aligned(np.asarray(photo), face.landmarks, size), detector)[:2]
    assert np.abs(eyes - upright).max() * 112 / size < 3
    # while box crops of the two photos keep the head's tilt
    box_eyes = _redetect(crop_face(image, moved.box, size), detector)[:2]
    assert abs(_eye_angle(box_eyes)) > 35


def test_shrinking_filters_like_inter_area():
    """Shrinking averages the pixels (no aliasing) and keeps the geometry of the plain warp."""
    theta = math.radians(30)
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = (ARCFACE_TEMPLATE - 56) * 2 @ rot.T + [300, 260]  # face 2x the template, tilted
    yy, xx = np.mgrid[0:600, 0:640].astype(np.float64)
    ramp = np.stack([xx * 0.3, yy * 0.35, (xx + yy) * 0.2], -1).astype(np.uint8)
    for size in (64, 40):  # scale 0.29 and 0.18
        plain = cv2.warpAffine(ramp, similarity_transform(points, aligned_template(size)),
                               (size, size))
        assert np.abs(crop_face_aligned(ramp, points, size).astype(int) - plain).max() <= 1
    checker = np.repeat((((xx // 2 + yy // 2) % 2) * 255).astype(np.uint8)[..., None], 3, -1)
    assert crop_face_aligned(checker, points, 40).std() < 25  # grey, not an aliasing pattern


@pytest.mark.parametrize("bad", [np.full((5, 2), np.nan), np.zeros((5, 2)), np.zeros((4, 2))])
def test_bad_landmarks_are_refused(bad):
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError):
        crop_face_aligned(frame, bad, 32)
    with pytest.raises(ValueError, match="border"):
        crop_face_aligned(frame, ARCFACE_TEMPLATE / 2, 32, border="wrap")


def test_landmarks_at_interpolates_between_samples():
    nan = np.full((5, 2), np.nan)
    a, b = ARCFACE_TEMPLATE, ARCFACE_TEMPLATE + np.array([10.0, -4.0])
    faces = VideoFaces(
        path="clip.mp4", num_frames=30, fps=10.0, height=128, width=128,
        frame_indices=np.array([0, 10, 20, 29]),
        boxes=np.array([[np.nan] * 4, [0, 0, 10, 10], [np.nan] * 4, [20, 10, 40, 30]], np.float32),
        scores=np.array([np.nan, 1, np.nan, 1], np.float32),
        landmarks=np.array([nan, a, nan, b], np.float32),
    )  # fmt: skip
    assert faces.has_landmarks
    np.testing.assert_allclose(faces.landmarks_at(0), a, atol=1e-4)  # nearest before the first
    np.testing.assert_allclose(faces.landmarks_at(35), b, atol=1e-4)  # nearest after the last
    mid = faces.landmarks_at(np.array([10, 19.5, 29]))
    assert mid.shape == (3, 5, 2) and mid.dtype == np.float32
    np.testing.assert_allclose(mid[1], (a + b) / 2, atol=1e-4)
    assert faces.landmarks_at(np.array([10])).shape == (1, 5, 2)

    no_points = replace(faces, landmarks=np.full((4, 5, 2), np.nan, np.float32))
    assert no_points.ok and not no_points.has_landmarks
    with pytest.raises(ValueError, match=r"clip\.mp4"):
        no_points.landmarks_at(3)


def test_aligned_config_trains_one_batch(fast_overrides):
    cfg = build_experiment({}, [*fast_overrides, "faces.crop=aligned"])
    assert cfg.faces.crop == "aligned"
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    val = dm.datasets["val"]
    assert val.spec.crop == "aligned" and all(f.has_landmarks for f in val.faces)

    # the validation clips (no augmentation) are exactly the aligned crops
    item = val[0]
    faces, idx = val.faces[0], val.clip_indices(0)
    frames = read_frames(val.items[0].path, idx)
    expected = np.stack([crop_face_aligned(f, p, cfg.data.image_size, cfg.faces.margin)
                         for f, p in zip(frames, faces.landmarks_at(idx), strict=True)])
    got = (item["clip"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(got, expected)

    # a video without landmarks falls back to the box crop
    bare = replace(faces, landmarks=np.full_like(faces.landmarks, np.nan))
    spec = replace(val.spec, crop="box")
    fallback = FaceClipDataset([val.items[0]], [bare], val.spec, val.clips_per_video, train=False)
    boxed = FaceClipDataset([val.items[0]], [faces], spec, val.clips_per_video, train=False)
    assert np.array_equal(fallback[0]["clip"].numpy(), boxed[0]["clip"].numpy())
    assert not np.array_equal(item["clip"].numpy(), boxed[0]["clip"].numpy())

    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(build_module(cfg), datamodule=dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_unknown_crop_mode_is_refused():
    with pytest.raises(ConfigError, match=r"faces\.crop: 'bogus' is not one of box, aligned"):
        build_experiment({}, ["faces.crop=bogus"])
    with pytest.raises(ValueError, match="crop mode"):
        ClipSpec(crop="bogus")
