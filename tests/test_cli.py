import subprocess
import sys

import pytest


def _dflab(*args):
    return subprocess.run([sys.executable, "-m", "dflab", *args], capture_output=True, text=True, timeout=120)


def test_unknown_key_is_refused_before_anything_runs(tmp_path):
    proc = _dflab("train", "experiments/mesonet4_demo.yaml", "trainer.max_epoch=3",
                  f"logging.tracking_uri=sqlite:///{tmp_path}/m.db")
    assert proc.returncode == 2
    assert "unknown config key 'trainer.max_epoch' (did you mean 'trainer.max_epochs'?)" in proc.stderr
    assert not (tmp_path / "m.db").exists()


def test_wrong_type_is_refused():
    proc = _dflab("train", "experiments/mesonet4_demo.yaml", "data.batch_size=big")
    assert proc.returncode == 2
    assert "data.batch_size: expected int, got str 'big'" in proc.stderr


def test_sweep_refuses_unknown_param_key(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("experiment: experiments/mesonet4_demo.yaml\nparams:\n  optim.learning_rate: {low: 0.1, high: 1}\n")
    proc = _dflab("sweep", str(sweep))
    assert proc.returncode == 2
    assert "unknown config key 'optim.learning_rate'" in proc.stderr


def test_missing_dataset_folder_is_named(tmp_path):
    proc = _dflab("faces", "experiments/mesonet4_demo.yaml", "data.source=folder", f"data.root={tmp_path}/nope")
    assert proc.returncode == 2
    assert f"{tmp_path}/nope: dataset root for 'folder' does not exist" in proc.stderr


def test_faces_command_builds_reports_and_packs(small_manifest, tmp_path):
    args = ("faces", "experiments/mesonet4_demo.yaml", "data.source=manifest", f"data.root={small_manifest}",
            "data.options={}", f"faces.cache_dir={tmp_path}/faces", "faces.num_frames=2", "faces.workers=2")
    proc = _dflab(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Face index blazeface-" in proc.stdout and "with a face" in proc.stdout
    assert "packed in" in proc.stdout and list((tmp_path / "faces").rglob("datasets/manifest-*.npz"))
    again = _dflab(*args)  # resumable: everything comes from the cache
    assert "detected now    0" in again.stdout


def test_missing_scrfd_pack_is_explained_before_work(tmp_path):
    proc = _dflab("faces", "experiments/mesonet4_demo.yaml", "faces.detector=scrfd",
                  f"faces.detector_options={{root: {tmp_path}}}")
    assert proc.returncode == 2
    assert f"{tmp_path}/buffalo_l does not exist" in proc.stderr and "faces.detector_options" in proc.stderr


@pytest.mark.slow
def test_faces_command_survives_kill_9_and_resumes(small_manifest, tmp_path):
    """SIGKILL the whole `dflab faces` process group mid-build: every finished entry is intact
    and the rerun detects only the rest."""
    import os
    import signal
    import time

    from dflab.datasets.sources import read_manifest
    from dflab.faces.index import FaceIndex

    cache = tmp_path / "faces"
    args = ("faces", "experiments/mesonet4_demo.yaml", "data.source=manifest", f"data.root={small_manifest}",
            "data.options={}", f"faces.cache_dir={cache}", "faces.num_frames=16", "faces.workers=2",
            "faces.detector=dlib_hog")  # the slow detector leaves time to kill mid-build
    proc = subprocess.Popen([sys.executable, "-m", "dflab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(cache.rglob("*.npz"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    paths = [it.path for it in read_manifest(small_manifest)]
    index = FaceIndex(cache, "dlib_hog", num_frames=16, roots=[small_manifest.parent])  # as the CLI keys it
    done = [p for p in paths if index.cache_file(p).exists()]
    assert 3 <= len(done) < len(paths)
    assert all(index.cached(p) is not None for p in done)  # nothing half-written
    rerun = _dflab(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert f"detected now    {len(paths) - len(done)}" in rerun.stdout
    assert f"from cache      {len(done)}" in rerun.stdout
