"""One face-index file per dataset: written after a build, read at start, rebuilt when stale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dflab.datasets.sources import read_manifest
from dflab.faces.index import _ARRAYS, FaceIndex
from dflab.faces.pack import (
    build_dataset_index,
    dataset_pack_name,
    load_dataset_faces,
    pack_file,
    write_pack,
)


@pytest.fixture
def indexed(small_manifest, tmp_path) -> tuple[FaceIndex, list[str]]:
    paths = [it.path for it in read_manifest(small_manifest)][:6]
    index = FaceIndex(tmp_path / "faces", "blazeface", num_frames=4)
    index.build(paths, workers=0, progress=False)
    return index, paths


def _same(a, b) -> bool:
    return (a.path, a.num_frames, a.height, a.width, a.error) == (b.path, b.num_frames, b.height, b.width, b.error) \
        and all(np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True) for n in _ARRAYS)


def test_pack_round_trip_reads_one_file(indexed):
    index, paths = indexed
    name = dataset_pack_name("demo", paths)
    assert name.startswith("demo-") and name == dataset_pack_name("demo", list(reversed(paths)))
    file = write_pack(index, [index.get(p) for p in paths], name)
    assert file == pack_file(index, name) and file.parent.name == "datasets"
    entries = sorted(index.folder.glob("*.npz"))
    for entry in entries:
        entry.unlink()  # the pack alone must be enough
    loaded = load_dataset_faces(index, paths, name)
    assert not list(index.folder.glob("*.npz"))  # nothing was detected again
    fresh = FaceIndex(index.cache_dir, "blazeface", num_frames=4)
    for path, faces in zip(paths, loaded, strict=True):
        assert _same(faces, fresh.get(path))
        assert len(faces.tracks()) >= 1


def test_build_reads_the_pack_instead_of_every_entry(indexed):
    index, paths = indexed
    report, file = build_dataset_index(index, paths, "demo-built", workers=0, progress=False)
    assert report.cached == len(paths) and file.is_file()
    written = file.stat().st_mtime_ns
    for entry in index.folder.glob("*.npz"):
        entry.unlink()
    again, _ = build_dataset_index(index, paths, "demo-built", workers=0, progress=False)
    assert again.cached == len(paths) and again.done == 0
    assert not list(index.folder.glob("*.npz"))  # neither read nor detected again
    assert file.stat().st_mtime_ns == written  # an up-to-date pack is not rewritten


def test_stale_or_broken_pack_falls_back_and_is_rewritten(indexed):
    index, paths = indexed
    name = "demo-partial"
    write_pack(index, [index.get(p) for p in paths[:3]], name)
    loaded = load_dataset_faces(index, paths, name)  # three videos come from their entries
    assert [f.path for f in loaded] == paths
    again = load_dataset_faces(index, paths, name)
    assert all(_same(a, b) for a, b in zip(loaded, again, strict=True))
    pack_file(index, name).write_bytes(b"PK\x03\x04 cut short")  # e.g. copied while written
    assert all(_same(a, b) for a, b in zip(load_dataset_faces(index, paths, name), loaded, strict=True))
    assert load_dataset_faces(index, paths, name) and pack_file(index, name).stat().st_size > 100


def test_training_setup_writes_the_dataset_pack(fast_overrides):
    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.experiment import build_experiment

    cfg = build_experiment({}, fast_overrides)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    name = dm.face_stage().pack_name(dm.items)  # the source and the videos' dataset-relative paths
    assert name == dataset_pack_name("manifest", [dm.face_index().portable_path(it.path) for it in dm.items])
    file = pack_file(dm.face_index(), name)
    assert file.is_file() and file.parent == Path(dm.face_index().folder, "datasets")
    assert len(load_dataset_faces(dm.face_index(), [it.path for it in dm.items], name)) == len(dm.items)


def test_machines_mounting_a_dataset_at_other_paths_share_its_face_cache(tmp_path, small_manifest, face_cache):
    """The same dataset at another path (as another node mounts it; copied here with its
    modification times) finds every video already indexed: keys are relative to the dataset."""
    import shutil

    from dflab.clips.face_stage import FaceStage
    from dflab.datasets.resolve import resolve_items
    from dflab.experiment import build_experiment

    overrides = ["data.source=manifest", "data.options={}", f"faces.cache_dir={face_cache}", "faces.num_frames=4",
                 "faces.workers=0"]
    first = build_experiment({}, [*overrides, f"data.root={small_manifest}"])
    items = resolve_items(first.data, progress=False)
    _, pack = FaceStage.of(first.data, first.faces).build(items, 0, progress=False)
    other = tmp_path / "mnt" / "datasets" / "demo"
    shutil.copytree(small_manifest.parent, other)  # copy2: modification times kept, as on one NFS export
    second = build_experiment({}, [*overrides, f"data.root={other / small_manifest.name}"])
    moved = resolve_items(second.data, progress=False)
    assert all(it.path.startswith(str(other)) for it in moved)
    stage = FaceStage.of(second.data, second.faces)
    again, pack_again = stage.build(moved, 0, progress=False)
    assert again.done == 0 and again.cached == len(moved), "nothing is detected twice"
    assert pack_again == pack
    assert [f.path for f in stage.load(moved)] == [it.path for it in moved]
