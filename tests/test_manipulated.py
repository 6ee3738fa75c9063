"""Training on the manipulated face of a multi-person fake, found through the dataset's masks.

The video: two people cut from insightface's ``t1.jpg`` (the larger face is track 0); the mask
video, at half resolution as masks may be, is white over the smaller face only.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dflab.clips.dataset import ClipSpec, FaceClipDataset
from dflab.clips.manipulated import manipulated_track, track_mask_coverage, training_tracks
from dflab.datasets.sources import VideoItem, read_manifest
from dflab.faces.index import FaceIndex
from dflab.video import write_video

X0, Y0, W, H = 700, 30, 340, 470  # the crop of t1.jpg holding two people
SMALL_FACE = np.array([724, 367, 833, 475])  # bottom-left person in t1.jpg (dlib box)


def _photo() -> np.ndarray:
    root = importlib.util.find_spec("insightface").submodule_search_locations[0]
    return np.asarray(Image.open(Path(root) / "data" / "images" / "t1.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(video, mask video, face cache folder)."""
    root = tmp_path_factory.mktemp("masked")
    photo = _photo()
    frames, masks = [], []
    for i in range(10):
        frames.append(photo[Y0 : Y0 + H, X0 + 3 * i : X0 + 3 * i + W])
        mask = np.zeros((H // 4 * 2, W // 4 * 2, 3), np.uint8)
        x1, y1, x2, y2 = (SMALL_FACE - [X0 + 3 * i, Y0, X0 + 3 * i, Y0]) // 2
        mask[y1 + 5 : y2 - 5, x1 + 5 : x2 - 5] = 255
        masks.append(mask)
    video = write_video(root / "fake.mp4", frames, fps=10)
    mask = write_video(root / "fake_mask.mp4", masks, fps=10)
    return video, mask, root / "cache"


@pytest.fixture(scope="module")
def index(fake) -> FaceIndex:
    index = FaceIndex(fake[2], "blazeface", num_frames=6)
    index.build([fake[0]], workers=0, progress=False)
    return index


def test_the_mask_picks_the_smaller_face(fake, index):
    video, mask, _ = fake
    faces = index.get(video)
    assert len(faces.tracks()) == 2
    coverage = track_mask_coverage(faces, str(mask))
    assert coverage[1] > 0.4 and coverage[0] < 0.02
    assert manipulated_track(faces, str(mask)) == 1


def test_training_uses_the_masked_track_and_caches_it(fake, index):
    video, mask, _ = fake
    faces = index.get(video)
    items = [VideoItem(str(video), 1, "train", mask=str(mask)), VideoItem(str(video), 0, "train"),
             VideoItem(str(video), 1, "train")]
    assert training_tracks(items, [faces] * 3, index) == [1, 0, 0]
    cache = json.loads((index.folder / "manipulated_tracks.json").read_text())
    assert list(cache.values()) == [1]
    ds = FaceClipDataset(items, [faces] * 3, ClipSpec(image_size=32), 2, train=True,
                         train_tracks=[1, 0, 0])
    assert ds.units == [(0, 1), (1, 0), (2, 0)]
    assert int(ds[0]["track_idx"]) == 1 and ds[0]["clip"].shape == (1, 3, 32, 32)


def test_unreadable_mask_falls_back_to_the_main_face(fake, index, tmp_path, caplog):
    video, _, _ = fake
    broken = tmp_path / "broken_mask.mp4"
    broken.write_bytes(b"not a video")
    items = [VideoItem(str(video), 1, "train", mask=str(broken))]
    assert training_tracks(items, [index.get(video)], index) == [0]
    assert str(video) in caplog.text and "mask not used" in caplog.text


def test_manifest_mask_column(tmp_path):
    (tmp_path / "m.csv").write_text("path,label,mask\nv/a.mp4,fake,masks/a.mp4\nv/b.mp4,real,masks/b.mp4\n")
    fake_item, real_item = read_manifest(tmp_path / "m.csv")
    assert fake_item.mask == str(tmp_path / "masks" / "a.mp4") and real_item.mask == ""
