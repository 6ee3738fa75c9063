"""Face detection, the per-video face index with its cache, and face crops, on real faces.

Images: insightface's ``t1.jpg`` (six people) and scikit-image's astronaut; videos are tiny
H.264 files written into a temporary folder (a moving astronaut, noise, an empty and a
truncated file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.faces.crop import crop_face, square_box
from dflab.faces.detect import box_iou, sample_indices
from dflab.faces.detector import Detection, create_detector, landmarks68_to_5
from dflab.faces.index import FaceIndex
from dflab.faces.record import VideoFaces
from dflab.video import write_video

NUM_FRAMES = 8  # frames sampled per video in these tests
SHIFT = (2.0, 1.0)  # astronaut video: content moves 2 px right and 1 px down per frame
ASTRONAUT_FACE = np.array([175, 76, 266, 167], np.float32)  # in the 512 px photo (dlib HOG)


def _t1() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    image = cv2.imread(str(Path(root) / "data" / "images" / "t1.jpg"))
    assert image is not None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _assert_sane_landmarks(det: Detection, tolerance: float = 0.15) -> None:
    lm, (x1, y1, x2, y2) = det.landmarks, det.box
    assert lm.shape == (5, 2) and lm.dtype == np.float32
    pad_x, pad_y = tolerance * (x2 - x1), tolerance * (y2 - y1)
    assert ((lm[:, 0] >= x1 - pad_x) & (lm[:, 0] <= x2 + pad_x)).all()
    assert ((lm[:, 1] >= y1 - pad_y) & (lm[:, 1] <= y2 + pad_y)).all()
    eyes_y, mouth_y = lm[:2, 1].mean(), lm[3:, 1].mean()
    assert eyes_y < lm[2, 1] < mouth_y  # eyes above nose above mouth
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # image-left point first


@pytest.fixture(scope="module")
def detector():
    return create_detector("dlib_hog")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    face = cv2.resize(_astronaut(), (256, 256), interpolation=cv2.INTER_AREA)

    def moving(n: int = 20):
        for t in range(n):
            shift = np.float32([[1, 0, SHIFT[0] * t - 20], [0, 1, SHIFT[1] * t - 10]])
            yield cv2.warpAffine(face, shift, (256, 256), borderMode=cv2.BORDER_REFLECT)

    rng = np.random.default_rng(0)
    paths = {
        "face": write_video(root / "astronaut.mp4", moving(), fps=10),
        "noise": write_video(
            root / "noise.mp4", (rng.integers(0, 256, (128, 128, 3), np.uint8) for _ in range(12))
        ),
        "empty": root / "empty.mp4",
        "truncated": root / "truncated.mp4",
    }
    paths["empty"].write_bytes(b"")
    data = paths["face"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


@pytest.fixture(scope="module")
def built(tmp_path_factory, videos):
    """A one-worker build over all test videos: (index, report)."""
    index = FaceIndex(tmp_path_factory.mktemp("cache"), num_frames=NUM_FRAMES)
    return index, index.build(list(videos.values()), workers=1, progress=False)


# --------------------------------------------------------------------------- detector


def test_detector_finds_six_faces_in_t1(detector):
    image = _t1()
    dets = detector.detect(image)
    assert len(dets) == 6
    for det in dets:
        assert det.box.shape == (4,) and det.box.dtype == np.float32
        assert 0 <= det.box[0] < det.box[2] <= image.shape[1]
        assert 0 <= det.box[1] < det.box[3] <= image.shape[0]
        assert isinstance(det.score, float)
        _assert_sane_landmarks(det)
    assert (
        max(box_iou(a.box, np.stack([b.box for b in dets if b is not a])).max() for a in dets) < 0.1
    )


def test_detector_finds_astronaut_face(detector):
    dets = detector.detect(_astronaut())
    best = max(dets, key=lambda d: d.score)
    assert box_iou(best.box, ASTRONAUT_FACE[None])[0] > 0.7
    _assert_sane_landmarks(best)


def test_detector_downscale_maps_back_to_full_image(detector):
    image = _t1()
    full = np.stack([d.box for d in detector.detect(image)])
    small = create_detector("dlib_hog", max_side=640)
    assert small.name != detector.name and "max640" in small.name
    dets = small.detect(image)
    assert len(dets) >= 5
    for det in dets:
        assert box_iou(det.box, full).max() > 0.6
        _assert_sane_landmarks(det)


def test_detector_registry_and_pickling(detector):
    with pytest.raises(ValueError, match="dlib_hog"):
        create_detector("no_such_detector")
    assert create_detector("dlib_hog", upsample=0).name != detector.name
    image = cv2.resize(_astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    before = detector.detect(image)  # models are loaded now; pickling must still work
    clone = pickle.loads(pickle.dumps(detector))
    after = clone.detect(image)
    assert clone.name == detector.name and len(after) == len(before)
    np.testing.assert_allclose(after[0].box, before[0].box)


def test_landmarks68_to_5():
    points = np.zeros((68, 2), np.float32)
    points[36:42] = [10, 20]
    points[42:48] = [30, 20]
    points[30], points[48], points[54] = [20, 30], [12, 40], [28, 40]
    np.testing.assert_array_equal(
        landmarks68_to_5(points), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]]
    )


# --------------------------------------------------------------------------- tracking & index


def test_sample_indices():
    assert sample_indices(5, 16).tolist() == [0, 1, 2, 3, 4]
    idx = sample_indices(100, 8)
    assert len(idx) == 8 and idx[0] == 0 and idx[-1] == 99 and (np.diff(idx) > 0).all()
    assert sample_indices(100, 5, step=3).tolist() == [0, 3, 6, 9, 12]  # every 3rd, at most 5
    assert sample_indices(7, 16, step=3).tolist() == [0, 3, 6]


def test_every_kth_frame_index_has_its_own_cache(videos, tmp_path, detector):
    stepped = FaceIndex(tmp_path / "cache", num_frames=4, frame_step=2)
    even = FaceIndex(tmp_path / "cache", num_frames=4)
    assert stepped.folder != even.folder
    faces = stepped.get(videos["face"])
    assert faces.ok and faces.frame_indices.tolist() == [0, 2, 4, 6]
    assert stepped.cached(videos["face"]) is not None and even.cached(videos["face"]) is None
    with pytest.raises(ValueError, match="frame_step"):
        FaceIndex(tmp_path / "cache", frame_step=-1)


def test_box_at_interpolates_and_extrapolates_nearest():
    nan = [np.nan] * 4
    faces = VideoFaces(
        path="clip.mp4", num_frames=30, fps=10.0, height=64, width=64,
        frame_indices=np.array([0, 10, 20, 29]),
        boxes=np.array([nan, [0, 0, 10, 10], nan, [20, 10, 40, 30]], np.float32),
        scores=np.array([np.nan, 1, np.nan, 1], np.float32),
        landmarks=np.full((4, 5, 2), np.nan, np.float32),
    )  # fmt: skip
    assert faces.ok and faces.found.tolist() == [False, True, False, True]
    np.testing.assert_allclose(faces.box_at(0), [0, 0, 10, 10])
    np.testing.assert_allclose(faces.box_at(35), [20, 10, 40, 30])
    mid = faces.box_at(np.array([10, 19.5, 29]))
    assert mid.shape == (3, 4) and mid.dtype == np.float32
    np.testing.assert_allclose(mid[1], [10, 5, 25, 20])
    empty = VideoFaces("nothing.mp4", 30, 10.0, 64, 64, np.array([0]), np.full((1, 4), np.nan),
                       np.full(1, np.nan), np.full((1, 5, 2), np.nan))  # fmt: skip
    with pytest.raises(ValueError, match=r"nothing\.mp4"):
        empty.box_at(3)


def test_index_finds_and_tracks_the_moving_face(built, videos):
    index, _ = built
    faces = index.get(videos["face"])
    assert faces.ok and faces.error is None
    assert (faces.num_frames, faces.height, faces.width) == (20, 256, 256)
    assert faces.frame_indices.tolist() == sample_indices(20, NUM_FRAMES).tolist()
    assert faces.found.mean() >= 0.75
    found = faces.found
    centre = (faces.boxes[found, :2] + faces.boxes[found, 2:]) / 2
    for axis in range(2):  # the box centre moves with the content
        slope = np.polyfit(faces.frame_indices[found], centre[:, axis], 1)[0]
        assert slope == pytest.approx(SHIFT[axis], abs=0.6)
    for box, score, lm in zip(
        faces.boxes[found], faces.scores[found], faces.landmarks[found], strict=True
    ):
        _assert_sane_landmarks(Detection(box, float(score), lm))
    assert len(faces.all_boxes) >= found.sum()
    assert faces.box_at(np.arange(20)).shape == (20, 4)


def test_build_reports_no_face_and_failures(built, videos, tmp_path):
    index, report = built
    assert report.done == 4 and report.cached == 0
    assert report.no_face == [str(videos["noise"])]
    assert report.with_face == [str(videos["face"])]
    failed = dict(report.failures)
    assert set(failed) == {str(videos["empty"]), str(videos["truncated"])}
    for path, reason in failed.items():
        assert path in reason
    assert 0.4 <= report.mean_found_fraction <= 0.5  # noise 0, astronaut >= 0.75
    table = report.summary_table()
    assert "failed" in table and str(videos["truncated"]) in table and str(videos["noise"]) in table
    data = json.loads(report.to_json(tmp_path / "report.json").read_text())
    assert data["failed"] == 2 and data["no_face"] == 1 and len(data["videos"]) == 4
    # the reflect border may mirror part of the face into the frame (a second, shorter track)
    tracks = len(index.get(videos["face"]).tracks())
    assert 1 <= tracks <= 2 and data["mean_tracks"] == tracks
    assert data["multi_person"] == int(tracks > 1)
    assert f"faces per video {tracks:.2f} tracks (mean), {tracks - 1} videos with 2+ people" in table

    noise = index.get(videos["noise"])
    assert not noise.ok and noise.error is None and "no face" in noise.reason
    truncated = index.get(videos["truncated"])
    assert not truncated.ok and str(videos["truncated"]) in truncated.error
    assert len(truncated.frame_indices) == 0
    with pytest.raises(ValueError, match="truncated"):
        truncated.box_at(0)


def test_second_build_is_served_from_cache(built, videos):
    index, _ = built
    files = [index.cache_file(p) for p in videos.values()]
    assert all(f.is_file() for f in files)  # errors and no-face results are cached too
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = index.build(list(videos.values()), workers=1, progress=False)
    assert again.cached == 4 and again.done == 0
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert dict(again.failures).keys() == {str(videos["empty"]), str(videos["truncated"])}
    assert not list(index.folder.glob("*.tmp")) and not list(index.folder.glob(".*"))


def test_two_workers_match_one(built, videos, tmp_path):
    index, report = built
    index2 = FaceIndex(tmp_path / "cache2", num_frames=NUM_FRAMES)
    report2 = index2.build(list(videos.values()), workers=2, progress=False)
    assert [(v.path, v.status, v.found_fraction) for v in report2.videos] == [
        (v.path, v.status, v.found_fraction) for v in report.videos
    ]
    for path in videos.values():
        a, b = index.cached(path), index2.cached(path)
        assert a.error == b.error
        for name in ("frame_indices", "boxes", "scores", "landmarks"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


CRASHING_SCRIPT = """
import os, signal, sys
from dflab.faces.detector import DlibHogDetector, register_detector
from dflab.faces.index import FaceIndex

@register_detector("crash_on_small")  # module level: spawn workers import it too
class CrashOnSmall(DlibHogDetector):
    prefix = "crash_on_small"

    def detect(self, image):
        if image.shape[1] == 128:  # the noise video: kill the worker like a decoder segfault
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().detect(image)

if __name__ == "__main__":
    index = FaceIndex(sys.argv[1], detector="crash_on_small", num_frames=2)
    index.build(sys.argv[3:], workers=2, progress=False).to_json(sys.argv[2])
"""


def test_build_survives_a_worker_crash(videos, tmp_path):
    script = tmp_path / "crashing.py"
    script.write_text(CRASHING_SCRIPT)
    paths = [str(videos[name]) for name in ("face", "noise", "empty", "face")]
    paths[3] = str(shutil.copy(videos["face"], tmp_path / "face2.mp4"))
    result = tmp_path / "report.json"
    cmd = [sys.executable, str(script), str(tmp_path / "cache"), str(result), *paths]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    status = {
        v["path"]: (v["status"], v["error"]) for v in json.loads(result.read_text())["videos"]
    }
    assert status[paths[0]] == ("ok", None) and status[paths[3]] == ("ok", None)
    assert status[paths[1]][0] == "failed" and "worker process died" in status[paths[1]][1]
    assert status[paths[2]][0] == "failed" and "empty" in status[paths[2]][1]


def test_changed_file_invalidates_its_entry(videos, tmp_path, detector):
    index = FaceIndex(tmp_path / "cache", num_frames=4)
    clip = shutil.copy(videos["face"], tmp_path / "clip.mp4")
    assert index.cached(clip) is None
    assert index.get(clip).ok and index.cached(clip) is not None
    shutil.copy(videos["noise"], clip)  # same name, new content (size and mtime change)
    assert index.cached(clip) is None
    faces = index.get(clip)
    assert not faces.ok and faces.width == 128
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched only
    assert index.cached(clip) is None


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_entry_is_recomputed(videos, tmp_path, damage):
    index = FaceIndex(tmp_path / "cache", num_frames=4)
    first = index.get(videos["face"])
    file = index.cache_file(videos["face"])
    content = file.read_bytes()
    file.write_bytes(
        {"garbage": b"not an npz", "truncated": content[: len(content) // 2], "empty": b""}[damage]
    )
    assert index.cached(videos["face"]) is None
    again = index.get(videos["face"])
    np.testing.assert_array_equal(again.boxes, first.boxes)
    assert index.cached(videos["face"]) is not None  # rewritten


def test_interrupted_write_leaves_no_entry(videos, tmp_path, monkeypatch):
    index = FaceIndex(tmp_path / "cache", num_frames=4)
    faces = index.get(videos["face"])
    file = index.cache_file(videos["face"])
    file.unlink()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        index.store(faces)
    assert not file.exists() and not list(index.folder.iterdir())


# --------------------------------------------------------------------------- crops


def test_square_box():
    np.testing.assert_allclose(square_box([10, 20, 30, 60], margin=1.0), [0, 20, 40, 60])
    np.testing.assert_allclose(square_box([10, 20, 30, 60], margin=1.5), [-10, 10, 50, 70])


@pytest.mark.parametrize(
    "box", [[-30, -30, 20, 20], [90, 40, 140, 100], [0, 0, 100, 80], [300, 300, 320, 330]]
)
@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_crop_face_shape_at_borders(box, border):
    frame = np.random.default_rng(1).integers(1, 256, (80, 100, 3), np.uint8)
    crop = crop_face(frame, box, 64, border=border)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8


def test_crop_face_content_and_padding():
    frame = np.full((100, 100, 3), 200, np.uint8)
    inside = crop_face(frame, [40, 40, 60, 60], 32, margin=1.0)
    assert (inside == 200).all()
    corner = crop_face(frame, [-10, -10, 10, 10], 40, margin=1.0)  # top-left quarter is outside
    assert (corner[:15, :15] == 0).all() and (corner[25:, 25:] == 200).all()
    replicated = crop_face(frame, [-10, -10, 10, 10], 40, margin=1.0, border="replicate")
    assert (replicated == 200).all()
    ramp = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))
    np.testing.assert_array_equal(
        crop_face(ramp, [20, 30, 40, 50], 20, margin=1.0), ramp[30:50, 20:40]
    )
    with pytest.raises(ValueError):
        crop_face(frame, [np.nan, 0, 10, 10], 32)
