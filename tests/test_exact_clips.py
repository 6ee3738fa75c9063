"""Every face crop a model sees is cut from the frame a sequential decode gives.

The video lies in its seek table (every 20th packet marked as a keyframe, as in files whose
sync-sample table is wrong): a reader that trusts the table returns wrong frames for most
clips. The face index finds the lie, the clips are read from verified points only, and each
crop equals the crop cut from a plain forward decode, in training, evaluation and the crop cache.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dflab.clips.dataset import ClipSpec, FaceClipDataset
from dflab.datasets.sources import VideoItem
from dflab.faces.crop_cache import CropCache
from dflab.faces.index import FaceIndex
from dflab.video import write_video
from dflab.video.faults import remux_false_keyframes
from footage import face_frames, manifest_with, sequential_decode


@pytest.fixture(scope="module")
def lying(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FaceIndex]:
    root = tmp_path_factory.mktemp("lying")
    clean = write_video(root / "clean.mp4", face_frames(150), fps=25, options={"g": "50"})
    path = remux_false_keyframes(clean, root / "lying.mp4", every=20)
    index = FaceIndex(root / "cache", "blazeface", num_frames=8)
    report = index.build([path], workers=0, progress=False)
    assert report.not_seek_exact == [str(path)] and "1 videos not seek-exact" in report.summary_table()
    return path, index


def test_face_index_keeps_only_verified_access_points(lying) -> None:
    path, index = lying
    faces = index.cached(path)
    assert faces is not None and faces.ok and not faces.seek_exact
    assert faces.access_points.tolist() == [0, 50, 100]
    assert len(faces.rejected_seeks) >= 5


@pytest.mark.parametrize("train", [False, True])
def test_clips_equal_crops_of_the_sequential_decode(lying, train: bool, tmp_path: Path) -> None:
    path, index = lying
    faces = index.cached(path)
    assert faces is not None
    reference = sequential_decode(path)
    spec = ClipSpec(frames_per_clip=3, stride=2, image_size=48)
    cache = CropCache(tmp_path / "crops")
    item = VideoItem(path=str(path), label=1, split="train" if train else "val")
    for crop_cache in (None, cache, cache):  # decoding, then writing the cache, then reading it
        ds = FaceClipDataset([item], [faces], spec, clips_per_video=12, train=train, crop_cache=crop_cache,
                             video_keys=[index.key(path)] if crop_cache else ())
        for i in range(len(ds)):
            rng = ds.item_rng(i) if train else None
            frames = ds.clip_indices(i, rng)
            crops = ds.crops(i, frames)
            crop = ds._cropper(faces, 0, frames)
            expected = np.stack([crop(reference[int(f)], t) for t, f in enumerate(frames)])
            assert np.array_equal(crops, expected)
            clip = ds[i]["clip"]  # the public path: (T, 3, S, S) in [0, 1]
            assert clip.shape == (3, 3, 48, 48)
            if not train:
                assert np.array_equal((clip.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8), expected)


def test_data_check_counts_videos_that_cannot_be_seeked_exactly(lying, small_manifest, tmp_path) -> None:
    path, _ = lying
    manifest = manifest_with(small_manifest, tmp_path / "m.csv",
                             {"path": str(path), "label": "fake", "split": "test", "group": "lying"})
    n = len(manifest.read_text().splitlines()) - 1
    args = ["experiments/mesonet4_demo.yaml", "data.source=manifest", f"data.root={manifest}",
            f"faces.cache_dir={tmp_path / 'faces'}", "faces.num_frames=4", "faces.workers=0"]
    before = subprocess.run([sys.executable, "-m", "dflab", "data", "check", *args],
                            capture_output=True, text=True, timeout=300)
    assert "Seeking: not checked yet" in before.stdout
    subprocess.run([sys.executable, "-m", "dflab", "faces", *args], check=True, capture_output=True, timeout=300)
    after = subprocess.run([sys.executable, "-m", "dflab", "data", "check", *args],
                           capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr
    assert f"{n - 1} of {n} videos seek exactly; 1 cannot be seeked exactly" in after.stdout
    assert str(path) in after.stdout
