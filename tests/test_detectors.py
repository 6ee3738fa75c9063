"""The face detectors behind one protocol: BlazeFace (the offline default), insightface SCRFD
from a local model pack, and dlib HOG, on real photographs and a real H.264 video.

SCRFD runs the SCRFD-2.5G model that ``make install`` unpacks from the ``scrfd`` package's
source distribution into ``.venv/share/dflab/insightface/scrfd_2.5g`` (a local model pack in
insightface's layout), and is checked box for box against insightface's own implementation.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.config import ConfigError
from dflab.experiment import build_experiment
from dflab.faces.blazeface import keypoints_to_5, ssd_anchors
from dflab.faces.detector import Detection, available_detectors, create_detector
from dflab.faces.index import FaceIndex
from dflab.faces.scrfd import find_scrfd_model, sample_pack_root
from dflab.video import write_video

SAMPLE_PACK = "scrfd_2.5g"


def _t1() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    image = cv2.imread(str(Path(root) / "data" / "images" / "t1.jpg"))
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _centres(dets: list[Detection]) -> np.ndarray:
    return np.array([[(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2] for d in dets])


def _match(a: list[Detection], b: list[Detection]) -> list[tuple[Detection, Detection]]:
    """Pair each face of ``a`` with the nearest face of ``b`` (by box centre)."""
    cb = _centres(b)
    return [(d, b[int(np.argmin(np.linalg.norm(cb - c, axis=1)))]) for d, c in zip(a, _centres(a), strict=True)]


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return _t1()


@pytest.fixture(scope="module")
def dlib_faces(t1) -> list[Detection]:
    return create_detector("dlib_hog").detect(t1)


@pytest.fixture(scope="module")
def scrfd():
    if not (sample_pack_root() / SAMPLE_PACK).is_dir():
        pytest.fail(f"{sample_pack_root() / SAMPLE_PACK} is missing: run `make install`")
    return create_detector("scrfd", root=str(sample_pack_root()), pack=SAMPLE_PACK)


def test_registry_lists_every_detector():
    assert {"blazeface", "scrfd", "dlib_hog", "dlib_cnn"} <= set(available_detectors())


@pytest.mark.parametrize(
    "options", [{}, {"landmarks": "keypoints"}, {"model": "full_range", "tiles": False}]
)
def test_blazeface_finds_the_six_people_of_t1(t1, dlib_faces, options):
    dets = create_detector("blazeface", **options).detect(t1)
    assert len(dets) == 6
    for det, ref in _match(dets, dlib_faces):
        assert det.box.shape == (4,) and det.box.dtype == np.float32
        assert det.landmarks.shape == (5, 2) and det.landmarks.dtype == np.float32
        assert 0.5 <= det.score <= 1.0
        side = ref.box[2] - ref.box[0]
        # the same face as dlib's, with its five landmarks on dlib's within a tenth of the face
        assert np.linalg.norm(_centres([det])[0] - _centres([ref])[0]) < 0.2 * side
        # dlib-fitted points match dlib's; BlazeFace's own eye points differ on turned heads
        tolerance = 0.04 if "landmarks" not in options else 0.25
        assert np.abs(det.landmarks - ref.landmarks).max() < tolerance * side + 2
        assert det.landmarks[0, 0] < det.landmarks[1, 0] and det.landmarks[3, 0] < det.landmarks[4, 0]


def test_blazeface_sparse_and_short_range_variants(t1):
    assert len(create_detector("blazeface", model="full_range_sparse").detect(t1)) >= 5
    # the short-range model is for faces near the camera: it finds the astronaut's close-up
    from skimage import data

    assert len(create_detector("blazeface", model="short_range").detect(data.astronaut())) == 1


def test_blazeface_default_finds_close_ups_and_small_faces(t1):
    """Both models and the tiles: a tight close-up (LFW) and a 640x360 group frame."""
    from skimage import data

    patch = cv2.resize((data.lfw_subset()[3] * 255).astype(np.uint8), (100, 100))
    canvas = cv2.cvtColor(cv2.copyMakeBorder(patch, 50, 50, 50, 50, cv2.BORDER_CONSTANT, value=128),
                          cv2.COLOR_GRAY2RGB)
    group = cv2.resize(t1[40:726, 10:1230], (640, 360), interpolation=cv2.INTER_AREA)
    default, full_only = create_detector("blazeface"), create_detector("blazeface", model="full_range", tiles=False)
    assert len(default.detect(canvas)) == 1 and len(default.detect(group)) == 6
    assert len(full_only.detect(canvas)) + len(full_only.detect(group)) < 7


def test_blazeface_finds_nothing_in_noise_or_a_blank_frame():
    det = create_detector("blazeface")
    noise = np.random.default_rng(0).integers(0, 256, (360, 640, 3), np.uint8)
    assert det.detect(noise) == [] and det.detect(np.zeros((240, 320, 3), np.uint8)) == []


def test_blazeface_maps_boxes_back_through_the_letterbox(t1):
    """A tall crop (padded left and right) and a wide one (padded top and bottom) agree."""
    det = create_detector("blazeface", model="full_range", tiles=False)
    full = det.detect(t1)
    x1, y1, x2, y2 = (int(v) for v in max(full, key=lambda d: d.area).box)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    for h, w in ((300, 150), (150, 300)):
        top, left = max(cy - h // 2, 0), max(cx - w // 2, 0)
        crop = t1[top : top + h, left : left + w]
        found = max(det.detect(np.ascontiguousarray(crop)), key=lambda d: d.area)
        moved = found.box + np.array([left, top, left, top], np.float32)
        assert np.abs(_centres([found])[0] + (left, top) - (cx, cy)).max() < 12, (h, w, moved)


def test_blazeface_pickles_after_use_for_worker_processes(t1):
    det = create_detector("blazeface")
    before = det.detect(t1)
    clone = pickle.loads(pickle.dumps(det))
    assert clone.name == det.name and clone._interpreters == {}
    after = clone.detect(t1)
    assert np.allclose(np.stack([d.box for d in before]), np.stack([d.box for d in after]))


def test_blazeface_helpers():
    # MediaPipe's anchor layouts: 896 anchors for short range, 2304 for full range
    assert ssd_anchors(128, (8, 16, 16, 16), True).shape == (896, 2)
    assert ssd_anchors(192, (4,), False).shape == (2304, 2)
    det = create_detector("blazeface")
    assert det._tiles((360, 640)) == [(0, 0, 360), (280, 0, 360)]  # two squares on 16:9
    assert det._tiles((640, 360)) == [(0, 0, 360), (0, 280, 360)]
    assert det._tiles((500, 520)) == []  # near-square: the whole frame is enough
    assert det.name == "blazeface-full_range+short_range-s0.5-ss0.7-dlib-tiles"
    points = np.array([[40, 50], [60, 50], [50, 60], [50, 70], [30, 50], [70, 50]], np.float32)
    five = keypoints_to_5(points)
    assert five[3, 1] == five[4, 1] == 70 and five[3, 0] < 50 < five[4, 0]
    assert np.isclose(five[4, 0] - five[3, 0], 20 * (70.7299 - 41.5493) / (73.5318 - 38.2946))
    with pytest.raises(ValueError, match="unknown BlazeFace model"):
        create_detector("blazeface", model="long_range")


def test_scrfd_matches_insightface_reference_box_for_box(t1, scrfd):
    from insightface.model_zoo.scrfd import SCRFD

    dets = scrfd.detect(t1)
    assert len(dets) == 6 and scrfd.name == "scrfd-det_2.5g-640-s0.5"
    ref = SCRFD(model_file=str(scrfd.model_file))
    ref.prepare(-1, input_size=(640, 640), det_thresh=0.5)
    boxes, points = ref.detect(np.ascontiguousarray(t1[:, :, ::-1]), input_size=(640, 640))
    assert np.abs(np.stack([d.box for d in dets]) - boxes[:, :4]).max() < 1e-3
    assert np.abs(np.stack([d.landmarks for d in dets]) - points).max() < 1e-3
    assert np.allclose([d.score for d in dets], boxes[:, 4], atol=1e-5)


def test_scrfd_and_blazeface_agree_on_faces_and_landmarks(t1, scrfd):
    ours = create_detector("blazeface").detect(t1)
    for det, ref in _match(scrfd.detect(t1), ours):
        side = ref.box[2] - ref.box[0]
        assert np.abs(det.landmarks - ref.landmarks).max() < 0.1 * side


def test_scrfd_missing_pack_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        create_detector("scrfd", root=str(tmp_path))
    text = str(err.value)
    assert str(tmp_path / "buffalo_l") in text and "det_10g.onnx" in text
    assert "faces.detector_options.root" in text and "downloads nothing" in text
    (tmp_path / "buffalo_l").mkdir()
    with pytest.raises(FileNotFoundError, match="has no SCRFD detection model"):
        find_scrfd_model(tmp_path, "buffalo_l")
    # at config load time, naming the key, before any work starts
    with pytest.raises(ConfigError, match=r"faces.detector_options \(scrfd\).*buffalo_l"):
        build_experiment({"faces": {"detector": "scrfd", "detector_options": {"root": str(tmp_path)}}})


def test_scrfd_reads_a_pack_in_insightface_layout(tmp_path, scrfd):
    pack = tmp_path / "buffalo_s"
    pack.mkdir()
    (pack / "det_500m.onnx").symlink_to(scrfd.model_file)
    (pack / "w600k_mbf.onnx").write_bytes(b"")  # other models of the pack are ignored
    assert find_scrfd_model(tmp_path, "buffalo_s") == pack / "det_500m.onnx"


def test_detector_options_are_checked_at_config_load():
    cfg = build_experiment({"faces": {"detector": "blazeface", "detector_options": {"model": "short_range"}}})
    assert cfg.faces.detector_options == {"model": "short_range"}
    with pytest.raises(ConfigError, match=r"faces.detector_options.modle: .*did you mean 'model'"):
        build_experiment({"faces": {"detector_options": {"modle": "short_range"}}})
    with pytest.raises(ConfigError, match=r"faces.detector: 'blazefase' .*did you mean 'blazeface'"):
        build_experiment({"faces": {"detector": "blazefase"}})
    with pytest.raises(ConfigError, match=r"faces.detector_options .*landmarks"):
        build_experiment({"faces": {"detector_options": {"landmarks": "mesh"}}})


@pytest.mark.parametrize("name", ["blazeface", "scrfd"])
def test_every_detector_builds_the_same_face_index(tmp_path, t1, name, scrfd):
    """A video panning over the group photo: every detector fills the same index format."""
    frames = [np.ascontiguousarray(t1[200:520, 10 + 12 * k : 650 + 12 * k]) for k in range(10)]
    video = write_video(tmp_path / "group.mp4", frames, fps=10)
    options = {"root": str(sample_pack_root()), "pack": SAMPLE_PACK} if name == "scrfd" else {}
    index = FaceIndex(tmp_path / "cache", name, num_frames=5, detector_kwargs=options)
    report = index.build([video], workers=1, progress=False)
    assert report.failures == [] and report.no_face == []
    faces = index.get(video)
    assert faces.ok and faces.found_fraction == 1.0 and faces.has_landmarks
    assert len(faces.tracks()) >= 3  # three of the six people are in every frame
    assert index.folder.name.startswith(name)
