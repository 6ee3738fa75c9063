"""Face tracks: IoU linking of raw detections, on synthetic boxes and on a real two-person video.

The video is cut from insightface's shipped ``t1.jpg`` (six people): a crop holding two of
them, panned slowly over 12 frames and encoded as H.264, then run through dlib's HOG detector.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dflab.faces import tracks as tracks_module
from dflab.faces.detect import detect_video
from dflab.faces.detector import create_detector
from dflab.faces.index import FaceIndex
from dflab.faces.record import VideoFaces
from dflab.faces.report import FaceReport
from dflab.faces.report import outcome_of as _outcome
from dflab.faces.tracks import FaceTrack, link_tracks
from dflab.video import write_video

# --------------------------------------------------------------------------- synthetic boxes


def _link(per_frame: list[list[list[float]]], **kwargs) -> list[FaceTrack]:
    """Run :func:`link_tracks` on boxes given per sampled frame (score = box index + 1)."""
    sample = [k for k, boxes in enumerate(per_frame) for _ in boxes]
    boxes = np.array([b for frame in per_frame for b in frame], np.float32).reshape(-1, 4)
    m = len(boxes)
    return link_tracks(
        np.arange(len(per_frame)) * 10,
        np.array(sample, np.int64),
        boxes,
        np.arange(1, m + 1, dtype=np.float32),
        np.zeros((m, 5, 2), np.float32),
        **kwargs,
    )


def _small(k: int) -> list[float]:
    return [k, 0, 20 + k, 20]  # 20 x 20, drifting right


def _big(k: int) -> list[float]:
    return [100, 100 + k, 130, 130 + k]  # 30 x 30, drifting down


def test_two_tracks_survive_a_missing_detection():
    frames = [[_small(k), _big(k)] if k != 2 else [_big(k)] for k in range(6)]
    tracks = _link(frames, max_gap=2)
    assert [t.track_id for t in tracks] == [0, 1]
    big, small = tracks  # 900 px * 1.0 before 400 px * 5/6
    assert big.coverage == 1.0 and big.mean_area == pytest.approx(900.0)
    assert small.found.tolist() == [True, True, False, True, True, True]
    assert np.isnan(small.boxes[2]).all() and np.isnan(small.landmarks[2]).all()
    assert small.boxes[3].tolist() == _small(3)
    assert (big.boxes[:, 0] == 100).all() and (small.boxes[small.found, 0] < 10).all()


def test_greedy_fallback_without_scipy(monkeypatch):
    monkeypatch.setattr(tracks_module, "linear_sum_assignment", None)
    frames = [[_big(k), _small(k)] if k != 4 else [_small(k)] for k in range(6)]
    big, small = _link(frames, max_gap=1)
    assert small.coverage == 1.0 and big.found.tolist() == [True] * 4 + [False, True]
    assert (big.boxes[big.found, 0] == 100).all() and (small.boxes[:, 0] < 10).all()


def test_one_frame_spurious_detection_is_dropped():
    frames = [[_small(k), _big(k)] for k in range(5)]
    frames[3].append([300, 300, 340, 340])  # bigger than both, but on one frame only
    tracks = _link(frames)
    assert len(tracks) == 2
    assert all(t.coverage == 1.0 for t in tracks)


def test_single_frame_tracks_are_kept_when_nothing_is_longer():
    tracks = _link([[_small(0), _big(0)]])
    assert [t.mean_area for t in tracks] == [900.0, 400.0]
    assert _link([[], []]) == []


def test_gap_longer_than_max_gap_splits_a_track():
    frames = [[_big(k)] + ([_small(k)] if k in (0, 1, 5, 6, 7) else []) for k in range(8)]
    split = _link(frames, max_gap=2)  # 3 missed frames > 2
    assert len(split) == 3
    starts = sorted(int(np.flatnonzero(t.found)[0]) for t in split[1:])
    assert starts == [0, 5]
    joined = _link(frames, max_gap=3)
    assert len(joined) == 2 and joined[1].num_found == 5


def test_low_iou_starts_a_new_track():
    frames = [[[0, 0, 20, 20]], [[15, 0, 35, 20]], [[16, 0, 36, 20]]]  # IoU 5/35 then 19/21
    tracks = _link(frames, iou_threshold=0.3)
    assert [t.num_found for t in tracks] == [2]  # the first box is a one-frame track: dropped
    assert tracks[0].found.tolist() == [False, True, True]


# --------------------------------------------------------------------------- real video


def _photo() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    return np.asarray(Image.open(Path(root) / "data" / "images" / "t1.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def two_people(tmp_path_factory) -> Path:
    """12-frame H.264 clip of two people from ``t1.jpg``, panning 3 px per frame.

    The crop holds the person at the top right (about 130 px face) and one at the bottom
    left (about 108 px face); the other four are outside it.
    """
    photo = _photo()
    x0, y0, w, h = 700, 30, 340, 470
    frames = [photo[y0 : y0 + h, x0 + 3 * i : x0 + 3 * i + w] for i in range(12)]
    return write_video(tmp_path_factory.mktemp("tracks") / "two_people.mp4", frames, fps=12)


@pytest.fixture(scope="module")
def faces(two_people) -> VideoFaces:
    return detect_video(two_people, create_detector("dlib_hog"), num_frames=8)


def _centres(track: FaceTrack) -> np.ndarray:
    boxes = track.boxes[track.found]
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def test_real_video_has_two_stable_tracks(faces):
    assert faces.ok and len(faces.frame_indices) == 8
    tracks = faces.tracks()
    assert len(tracks) == 2 and [t.track_id for t in tracks] == [0, 1]
    assert all(t.coverage >= 0.75 for t in tracks)
    first, second = (_centres(t) for t in tracks)
    gap = np.linalg.norm(first.mean(axis=0) - second.mean(axis=0))
    assert gap > 200  # two different people
    for centres in (first, second):
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        assert steps.max() < 40  # moves smoothly (pan + detector jitter), never jumps across
    assert (first[:, 1] < 200).all() and (second[:, 1] > 250).all()  # top vs bottom person
    assert tracks[0].mean_area > tracks[1].mean_area
    assert faces.tracks() is tracks  # computed once


def test_main_face_is_track_zero(faces):
    main = faces.tracks()[0]
    np.testing.assert_array_equal(faces.boxes, main.boxes)
    np.testing.assert_array_equal(faces.scores, main.scores)
    np.testing.assert_array_equal(faces.landmarks, main.landmarks)
    assert faces.box_at(faces.frame_indices[0]).tolist() == main.boxes[0].tolist()


def test_cache_round_trip_and_old_version_is_missing(faces, tmp_path):
    index = FaceIndex(tmp_path / "cache", "dlib_hog", num_frames=8)
    file = index.store(faces)
    loaded = index.cached(faces.path)
    assert loaded is not None and len(loaded.tracks()) == 2
    np.testing.assert_array_equal(loaded.boxes, faces.boxes)

    with np.load(file) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    meta["version"] = 1  # main face picked by the old rule
    with open(file, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    assert index.cached(faces.path) is None


def test_report_counts_people(faces):
    outcome = _outcome(faces, "cached")
    assert outcome.num_tracks == 2
    report = FaceReport("dlib_hog", 8, 0, 1.0, [outcome])
    assert report.mean_tracks == 2.0 and report.multi_person == 1
    assert "2.00 tracks (mean), 1 videos with 2+ people" in report.summary_table()
    assert report.to_dict()["videos"][0]["num_tracks"] == 2
