"""Tests of the built-in demo dataset (a small spec, generated once per module)."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dflab.datasets.demo.build import (
    DemoSpec,
    DemoVideo,
    ensure_demo_dataset,
    frame_landmarks,
    plan_videos,
    render_video,
)
from dflab.datasets.demo.portraits import load_portraits
from dflab.datasets.sources import read_manifest
from dflab.video import probe, read_frames

# 128 px: libx264 output is bit-identical run to run at this size (not at every size).
SPEC = DemoSpec(size=128, num_frames=6, reals_per_identity=1, fakes_per_identity=2)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_dataset(tmp_path_factory.mktemp("demo"), SPEC, progress=False)


@pytest.fixture(scope="module")
def portraits() -> dict:
    return {p.identity: p for p in load_portraits()}


def _source(item_path: str) -> str:
    """Source identity of a fake from its name ``<target>_from_<source>_fNN``."""
    return Path(item_path).stem.split("_from_")[1].rsplit("_f", 1)[0]


def _all_frames(path: str) -> np.ndarray:
    return read_frames(path, range(probe(path).num_frames))


def test_manifest_counts_match_the_spec(manifest: Path) -> None:
    assert manifest.read_text().splitlines()[0] == "path,label,split,group"
    items = read_manifest(manifest)
    groups = {
        split: {it.group for it in items if it.split == split} for split in ("train", "val", "test")
    }
    assert len(groups["val"]) == SPEC.val_identities and len(groups["test"]) == SPEC.test_identities
    assert len(groups["train"]) >= 2
    every = {"astronaut", "grace_hopper", "tom_hanks", *(f"t1_{k}" for k in range(6))}
    assert set().union(*groups.values()) == every
    assert "tom_hanks" in groups["train"]  # pinned to training by DemoSpec.train_only
    counts = Counter((it.split, it.label) for it in items)
    for split, members in groups.items():
        assert counts[(split, 0)] == len(members) * SPEC.reals_per_identity
        assert counts[(split, 1)] == len(members) * SPEC.fakes_per_identity
    for it in items:
        assert Path(it.path).parent.parts[-2:] == (it.split, "real" if it.label == 0 else "fake")


def test_every_video_decodes_to_the_spec_size(manifest: Path) -> None:
    for it in read_manifest(manifest):
        frames = _all_frames(it.path)
        assert frames.shape == (SPEC.num_frames, SPEC.size, SPEC.size, 3), it.path


def test_no_identity_spans_two_splits(manifest: Path) -> None:
    items = read_manifest(manifest)
    split_of: dict[str, str] = {}
    for it in items:
        assert split_of.setdefault(it.group, it.split) == it.split
    for it in (it for it in items if it.label == 1):
        source = _source(it.path)
        assert source != it.group
        assert split_of[source] == it.split, f"{it.path}: source {source} is in {split_of[source]}"


def test_fake_sources_stay_in_the_target_split_for_many_seeds() -> None:
    ids = [f"id{k}" for k in range(8)]
    for seed in range(20):
        videos = plan_videos(ids, replace(SPEC, seed=seed))
        split_of = {v.target: v.split for v in videos}
        assert all(split_of[v.source] == v.split for v in videos if v.source is not None)


def test_generation_is_deterministic(manifest: Path, tmp_path: Path) -> None:
    twin = ensure_demo_dataset(tmp_path / "twin", SPEC, progress=False)
    other = ensure_demo_dataset(tmp_path / "other", replace(SPEC, seed=1), progress=False)
    ours = {Path(it.path).stem: it.path for it in read_manifest(manifest)}
    theirs = {Path(it.path).stem: it.path for it in read_manifest(twin)}
    assert ours.keys() == theirs.keys()
    for name, path in ours.items():
        assert np.array_equal(_all_frames(path), _all_frames(theirs[name])), name
    reseeded = {Path(it.path).stem: it.path for it in read_manifest(other)}
    name = "astronaut_r00"
    assert not np.array_equal(_all_frames(ours[name]), _all_frames(reseeded[name]))


def test_swap_changes_mostly_the_face(manifest: Path, portraits: dict) -> None:
    fakes = [it for it in read_manifest(manifest) if it.label == 1]
    for it in fakes[:4]:
        video = DemoVideo(Path(it.path).stem, it.split, "fake", it.group, _source(it.path))
        pristine = np.stack(list(render_video(replace(video, source=None), portraits, SPEC)))
        diff = np.abs(_all_frames(it.path).astype(np.float32) - pristine).mean(axis=3)
        for frame_diff, points in zip(diff, frame_landmarks(video, portraits, SPEC), strict=True):
            face = np.zeros(frame_diff.shape, np.uint8)
            cv2.fillConvexPoly(face, cv2.convexHull(np.round(points).astype(np.int32)), 1)
            inside, outside = frame_diff[face == 1].mean(), frame_diff[face == 0].mean()
            assert inside > 4.0 and inside > 3 * outside, (it.path, inside, outside)


def test_dlib_finds_faces_in_real_and_fake_frames(manifest: Path) -> None:
    import dlib

    detector = dlib.get_frontal_face_detector()
    found: Counter = Counter()
    tried: Counter = Counter()
    for it in read_manifest(manifest):
        for frame in read_frames(it.path, [0, SPEC.num_frames // 2, SPEC.num_frames - 1]):
            tried[it.label] += 1
            found[it.label] += len(detector(frame, 1)) > 0
    assert all(found[label] >= 0.9 * tried[label] for label in (0, 1)), (found, tried)


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_reuse_resume_and_regenerate(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(manifest.parent, root)
    before = _mtimes(root)
    assert ensure_demo_dataset(root, SPEC, progress=False) == root / "manifest.csv"
    assert _mtimes(root) == before  # nothing regenerated

    # A killed run: the manifest never got written and one video is missing.
    (root / "manifest.csv").unlink()
    lost = Path(read_manifest(manifest)[0].path.replace(str(manifest.parent), str(root)))
    lost.unlink()
    ensure_demo_dataset(root, SPEC, progress=False)
    after = _mtimes(root)
    assert lost.is_file() and (root / "manifest.csv").is_file()
    assert all(after[p] == t for p, t in before.items() if p.suffix == ".mp4" and p != lost)

    bigger = replace(SPEC, num_frames=SPEC.num_frames + 2)
    capsys.readouterr()
    ensure_demo_dataset(root, bigger, progress=True)
    assert len(capsys.readouterr().out.strip().splitlines()) == 1  # the one-line summary
    items = read_manifest(root / "manifest.csv")
    assert {probe(it.path).num_frames for it in items} == {bigger.num_frames}
    assert len(list(root.rglob("*.mp4"))) == len(items)  # no stale or partial files


def test_refuses_a_folder_that_is_not_a_demo_dataset(tmp_path: Path) -> None:
    (tmp_path / "train" / "real").mkdir(parents=True)
    (tmp_path / "train" / "real" / "mine.mp4").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match=r"demo\.json"):
        ensure_demo_dataset(tmp_path, SPEC, progress=False)
    assert (tmp_path / "train" / "real" / "mine.mp4").is_file()


def test_spec_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="size"):
        DemoSpec(size=101)
    with pytest.raises(ValueError, match="val_identities"):
        DemoSpec(val_identities=1)
    with pytest.raises(ValueError, match="noise"):
        DemoSpec(noise=(3.0, 1.0))
    assert DemoSpec(face_width=[0.3, 0.4]).face_width == (0.3, 0.4)  # type: ignore[arg-type]


def test_the_demo_is_an_ordinary_dataset_adapter(manifest: Path) -> None:
    """``data.source: demo`` goes through the dataset registry like every benchmark: its prepare
    step makes the videos (the generator), its scan reads the manifest."""
    from dflab.datasets import get_adapter
    from dflab.datasets.demo.adapter import DemoOptions
    from dflab.datasets.resolve import source_options
    from dflab.experiment import build_experiment

    adapter = get_adapter("demo")
    assert adapter.prepare is not None and adapter.options is DemoOptions
    items = adapter.scan(manifest.parent, DemoOptions())
    assert len(items) == len(read_manifest(manifest))
    assert {it.dataset for it in items} == {"demo"}
    assert {it.method for it in items if it.label} == {"faceswap"} and not any(it.method for it in items if not it.label)
    cfg = build_experiment({}, ["data.demo_seed=7"])
    assert source_options(cfg.data) == {"seed": 7}  # the documented key feeds the adapter's option
    with pytest.raises(Exception, match="not generated yet"):
        adapter.scan(manifest.parent / "nowhere", DemoOptions())
