"""Damaged and short videos never stop a run: clips are replaced or dropped, and recorded.

The damaged video is what a bad download leaves: a 600-frame H.264 face video whose bytes at
45-50 % of the file were overwritten (0.3 % of its size). Its 16 face-detection frames still
decode, so it passes the face stage; only clips that need the broken frames fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.clips.dataset import ClipSpec, FaceClipDataset, collate_clips
from dflab.datasets.sources import VideoItem
from dflab.experiment import build_experiment
from dflab.faces.detect import sample_indices
from dflab.faces.index import FaceIndex
from dflab.video import check_decode, probe, write_video
from dflab.video.faults import damage_bytes
from footage import face_frames, manifest_with


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """The damaged video and the frames that do not decode (none of them sampled for faces)."""
    root = tmp_path_factory.mktemp("damaged")
    clean = write_video(root / "clean.mp4", face_frames(600), fps=25, options={"g": "50"})
    path = damage_bytes(Path(shutil.copy(clean, root / "damaged.mp4")), start=0.46, length=0.003)
    lost = check_decode(str(path), range(probe(path).num_frames), keep=False).damaged
    assert lost and not set(lost) & set(sample_indices(600, 16).tolist())
    return path, lost


@pytest.fixture(scope="module")
def manifest(damaged, small_manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo dataset plus the damaged video as a real video in train and in val."""
    root = tmp_path_factory.mktemp("with_damaged")
    extra = [{"path": str(shutil.copy(damaged[0], root / f"damaged_{split}.mp4")), "label": "real",
              "split": split, "group": f"damaged-{split}"} for split in ("train", "val")]
    return manifest_with(small_manifest, root / "manifest.csv", *extra)


def _dataset(damaged, train: bool, clips: int) -> FaceClipDataset:
    path, _ = damaged
    faces = FaceIndex(Path(path).parent / "cache", "blazeface", num_frames=16).get(path)
    assert faces.ok and len(faces.damaged) == 0
    item = VideoItem(path=str(path), label=0, split="train" if train else "val")
    return FaceClipDataset([item], [faces], ClipSpec(frames_per_clip=4, image_size=32), clips,
                           train=train, split=item.split)


def test_evaluation_drops_the_clips_that_do_not_decode_and_keeps_the_video(damaged) -> None:
    path, lost = damaged
    ds = _dataset(damaged, train=False, clips=60)
    batches = list(DataLoader(ds, batch_size=16, collate_fn=collate_clips))
    kept = sum(len(b["label"]) for b in batches)
    skipped = [r for b in batches for r in b["skipped"]]
    assert skipped and kept + len(skipped) == 60 and kept > 30
    for rec in skipped:
        assert rec["path"] == str(path) and rec["action"] == "dropped" and rec["split"] == "val"
        first = int(rec["frames"].split("-")[0].split(",")[0])
        assert first in lost and str(path) in rec["reason"]
    broken = {r["clip"] for r in skipped}
    for clip in range(60):  # exactly the clips that need a lost frame are dropped
        assert (clip in broken) == bool(set(ds.clip_indices(clip).tolist()) & set(lost))


def test_training_replaces_a_broken_clip_by_another_of_the_same_video(damaged) -> None:
    _, lost = damaged
    ds = _dataset(damaged, train=True, clips=200)
    batches = list(DataLoader(ds, batch_size=50, collate_fn=collate_clips))
    assert sum(len(b["label"]) for b in batches) == 200  # every item delivered
    replaced = [r for b in batches for r in b["skipped"]]
    assert replaced and all(r["action"] == "replaced" for r in replaced)
    assert all(int(r["frames"].split("-")[0].split(",")[0]) in lost for r in replaced)


def test_datamodule_warns_once_and_reports_each_failure(damaged, caplog) -> None:
    cfg = build_experiment({}, ["data.source=folder", f"data.root={Path(damaged[0]).parent}"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    rec = {"path": "v.mp4", "split": "val", "clip": 3, "frames": "279-281", "action": "dropped",
           "reason": "v.mp4: frames 279-281 could not be decoded"}
    with caplog.at_level("WARNING"):
        for _ in range(3):  # the same clip fails every epoch
            dm.record_skipped([rec])
    assert len([r for r in caplog.records if "279-281" in r.getMessage()]) == 1
    assert dm.skipped == [{k: rec[k] for k in ("path", "split", "frames", "action", "reason")} | {"count": 3}]


@pytest.mark.slow
def test_training_with_a_damaged_video_finishes_and_reports_it(manifest, fast_overrides, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    from dflab.training.train import run_experiment

    # Validation clips of 8 frames every 2nd frame (15 frames), 40 per video: they cover every
    # frame of the damaged video, so some need the lost frames.
    cfg = build_experiment({}, [*fast_overrides, f"data.root={manifest}", "data.frames_per_clip=8",
                            "data.frame_stride=2", "data.eval_clips_per_video=40",
                            "data.train_clips_per_video=16"])
    result = run_experiment(cfg, progress=False)
    client = MlflowClient(cfg.logging.tracking_uri)
    local = client.download_artifacts(result.run_id, "data_report.json", str(tmp_path))
    report = json.loads(Path(local).read_text())
    failures = report["decode_failures"]
    assert {f["split"] for f in failures} >= {"val"}
    assert all("damaged_" in f["path"] and f["frames"] and f["count"] >= 1 for f in failures)
    assert not any("damaged_" in e["path"] for e in report["excluded"])  # some clips decoded
    assert client.get_run(result.run_id).info.status == "FINISHED"


def test_a_video_shorter_than_one_clip_is_left_out_and_recorded(fast_overrides, small_manifest, tmp_path, caplog) -> None:
    short = write_video(tmp_path / "short.mp4", face_frames(2), fps=10)
    file = manifest_with(small_manifest, tmp_path / "m.csv",
                         {"path": str(short), "label": "real", "split": "train", "group": "short"})
    cfg = build_experiment({}, [*fast_overrides, f"data.root={file}", "data.frames_per_clip=3"])
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    left = [e for e in dm.report()["excluded"] if e["path"] == str(short)]
    assert left and "shorter than one clip" in left[0]["reason"] and "2 frames" in left[0]["reason"]
    assert any("shorter than one clip" in r.getMessage() for r in caplog.records)
    assert all(it.path != str(short) for it in dm.split_items["train"])


def test_data_check_deep_lists_damaged_videos_with_their_frames(manifest, tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "dflab", "data", "check", "experiments/mesonet4_demo.yaml",
                           "data.source=manifest", f"data.root={manifest}", f"faces.cache_dir={tmp_path}",
                           "--deep", "--workers", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "damaged (2)" in proc.stderr
    assert "damaged_train.mp4: frames" in proc.stderr and "could not be decoded" in proc.stderr
    assert "Seeking (every frame decoded): " in proc.stdout
