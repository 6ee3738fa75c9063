"""Every face track scored in evaluation: track-aware video scores and (video, track) clip units.

The video is the two-person clip of ``tests/test_tracks.py``: a crop of insightface's shipped
``t1.jpg`` holding two people, panned over 12 frames, indexed with dlib's HOG detector.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dflab.clips.dataset import ClipSpec, FaceClipDataset
from dflab.config import ConfigError
from dflab.datasets.sources import VideoItem
from dflab.experiment import build_experiment
from dflab.faces.crop import crop_face
from dflab.faces.index import FaceIndex
from dflab.faces.record import VideoFaces
from dflab.metrics.scores import DetectionMetrics, video_scores
from dflab.video import read_frames, write_video

# --------------------------------------------------------------------------- video scores

PROBS = torch.tensor([0.2, 0.4, 0.9, 0.7, 0.1, 0.3, 0.5, 0.5])
LABELS = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
VIDEOS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
TRACKS = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])  # video 0: 0.3 and 0.8; video 1: 0.2 and 0.5


@pytest.mark.parametrize(("combine", "expected"), [("max", [0.8, 0.5]), ("mean", [0.55, 0.35]),
                                                   ("main", [0.3, 0.2])])
def test_two_tracks_per_video_combine(combine, expected):
    vids, probs, labels = video_scores(PROBS, LABELS, VIDEOS, TRACKS, combine)
    assert vids.tolist() == [0, 1] and labels.tolist() == [1, 0]
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-6)


def test_max_is_the_default_and_tracks_can_come_in_any_order():
    order = torch.tensor([7, 2, 0, 5, 3, 1, 6, 4])
    _, probs, _ = video_scores(PROBS[order], LABELS[order], VIDEOS[order], TRACKS[order])
    np.testing.assert_allclose(probs.numpy(), [0.8, 0.5], rtol=1e-6)


@pytest.mark.parametrize("combine", ["max", "mean", "main"])
def test_one_track_is_the_mean_of_the_clips(combine):
    probs = torch.tensor([0.2, 0.4, 0.9, 0.1, 0.6])
    labels, videos = torch.tensor([1, 1, 1, 0, 0]), torch.tensor([3, 3, 1, 0, 0])
    vids, vprobs, vlabels = video_scores(probs, labels, videos, torch.zeros(5, dtype=torch.long), combine)
    assert vids.tolist() == [0, 1, 3] and vlabels.tolist() == [0, 1, 1]
    np.testing.assert_allclose(vprobs.numpy(), [0.35, 0.9, 0.3], rtol=1e-6)
    untracked = video_scores(probs, labels, videos)
    assert torch.equal(untracked[1], vprobs)


def test_unknown_combine_is_refused():
    with pytest.raises(ValueError, match="combine"):
        video_scores(PROBS, LABELS, VIDEOS, TRACKS, "median")
    with pytest.raises(ValueError, match="combine"):
        DetectionMetrics("median")


def test_metrics_gather_tracks_and_keep_every_clip_for_frame_metrics():
    logits = torch.logit(PROBS)
    m = DetectionMetrics()
    m.update(logits, LABELS, VIDEOS, torch.arange(8), TRACKS)
    m.update(logits[:2], LABELS[:2], VIDEOS[:2], torch.arange(2), TRACKS[:2])  # padding duplicates
    vids, probs, _ = m.video_predictions()
    assert vids.tolist() == [0, 1]
    np.testing.assert_allclose(probs.numpy(), [0.8, 0.5], rtol=1e-5)
    out = m.compute()
    assert out["video_auroc"].item() == 1.0
    # frame AUROC over all 8 clips: fakes 0.2, 0.4, 0.9, 0.7 vs reals 0.1, 0.3, 0.5, 0.5
    assert math.isclose(out["frame_auroc"].item(), 11 / 16, rel_tol=1e-6)
    mean = DetectionMetrics("mean")
    mean.update(logits, LABELS, VIDEOS, torch.arange(8), TRACKS)
    np.testing.assert_allclose(mean.video_predictions()[1].numpy(), [0.55, 0.35], rtol=1e-5)
    untracked = DetectionMetrics()
    untracked.update(logits, LABELS, VIDEOS, torch.arange(8))  # no track_idx: all track 0
    np.testing.assert_allclose(untracked.video_predictions()[1].numpy(), [0.55, 0.35], rtol=1e-5)


def test_config_choices():
    cfg = build_experiment({})
    assert cfg.faces.track_score == "max" and cfg.faces.min_track_coverage == 0.25
    assert build_experiment({}, ["faces.track_score=mean"]).faces.track_score == "mean"
    with pytest.raises(ConfigError, match=r"faces\.track_score"):
        build_experiment({}, ["faces.track_score=median"])
    with pytest.raises(ConfigError, match=r"faces\.min_track_coverage"):
        build_experiment({}, ["faces.min_track_coverage=1.5"])


# --------------------------------------------------------------------------- real video


def _photo() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    return np.asarray(Image.open(Path(root) / "data" / "images" / "t1.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> VideoFaces:
    """Face index entry of a 12-frame clip of two people panning 3 px per frame."""
    photo = _photo()
    x0, y0, w, h = 700, 30, 340, 470
    frames = [photo[y0 : y0 + h, x0 + 3 * i : x0 + 3 * i + w] for i in range(12)]
    folder = tmp_path_factory.mktemp("track_scoring")
    path = write_video(folder / "two_people.mp4", frames, fps=12)
    return FaceIndex(folder / "cache", "dlib_hog", num_frames=8).get(path)


SPEC = ClipSpec(frames_per_clip=2, stride=2, image_size=48, margin=1.3)


def _dataset(faces: VideoFaces, track_score: str = "max", train: bool = False,
             min_track_coverage: float = 0.25) -> FaceClipDataset:
    item = VideoItem(faces.path, 1, "test")
    return FaceClipDataset([item], [faces], SPEC, clips_per_video=3, train=train,
                           track_score=track_score, min_track_coverage=min_track_coverage)


def _old_box_at(faces: VideoFaces, frames: np.ndarray) -> np.ndarray:
    """The main-face interpolation as it was before tracks could be chosen."""
    found = faces.found
    known = faces.frame_indices[found].astype(np.float64)
    return np.stack([np.interp(frames, known, faces.boxes[found][:, c]) for c in range(4)],
                    axis=-1).astype(np.float32)


def test_box_at_track(faces):
    assert len(faces.tracks()) == 2 and faces.scored_tracks(0.25) == [0, 1]
    frames = np.arange(faces.num_frames)
    assert np.array_equal(faces.box_at(frames), _old_box_at(faces, frames))
    assert np.array_equal(faces.box_at(frames, track=0), faces.box_at(frames))
    second = faces.tracks()[1]
    k = int(np.flatnonzero(second.found)[0])
    assert faces.box_at(int(faces.frame_indices[k]), track=1).tolist() == second.boxes[k].tolist()
    assert faces.landmarks_at(frames, track=1).shape == (len(frames), 5, 2)
    assert faces.scored_tracks(1.01) == [0]
    with pytest.raises(IndexError, match="track 2"):
        faces.box_at(0, track=2)


def test_eval_scores_both_tracks_with_distinct_crops(faces):
    ds = _dataset(faces)
    assert ds.units == [(0, 0), (0, 1)] and len(ds) == 6
    items = [ds[i] for i in range(len(ds))]
    assert [int(x["track_idx"]) for x in items] == [0, 0, 0, 1, 1, 1]
    assert {int(x["video_idx"]) for x in items} == {0}
    assert [int(x["clip_idx"]) for x in items] == list(range(6))
    for track in (0, 1):  # clips lie where that track was detected
        found = faces.frame_indices[~np.isnan(faces.tracks()[track].scores)]
        for i in range(3 * track, 3 * track + 3):
            idx = ds.clip_indices(i)
            assert found.min() <= idx.min() and idx.max() <= found.max()
    diff = (items[0]["clip"] - items[3]["clip"]).abs().mean().item()
    assert diff > 0.05  # two different faces


def test_track_zero_crops_are_unchanged(faces):
    ds, main = _dataset(faces), _dataset(faces, "main")
    assert main.units == [(0, 0)] and len(main) == 3
    for i in range(3):
        got = ds[i]["clip"]
        assert torch.equal(got, main[i]["clip"])
        idx = ds.clip_indices(i)
        frames = read_frames(faces.path, idx)
        old = np.stack([crop_face(f, b, SPEC.image_size, SPEC.margin)
                        for f, b in zip(frames, _old_box_at(faces, idx), strict=True)])
        expected = torch.from_numpy(old).permute(0, 3, 1, 2).float().div_(255.0)
        assert torch.equal(got, expected)


def test_training_and_low_coverage_use_the_main_track_only(faces):
    assert _dataset(faces, train=True).units == [(0, 0)]
    assert _dataset(faces, min_track_coverage=1.01).units == [(0, 0)]
    with pytest.raises(ValueError, match="track_score"):
        _dataset(faces, "median")
