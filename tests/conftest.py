"""Shared fixtures: a small real demo dataset (H.264 videos, real faces) and fast run settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo dataset (8 identities, 2 real + 2 fake videos each, 16 frames, 128 px)."""
    from dflab.datasets.demo.build import DemoSpec, ensure_demo_dataset

    root = tmp_path_factory.mktemp("small_demo")
    spec = DemoSpec(seed=1, size=128, num_frames=16, reals_per_identity=2, fakes_per_identity=2)
    return ensure_demo_dataset(root, spec, progress=False)


@pytest.fixture(scope="session")
def face_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faces")


@pytest.fixture
def fast_overrides(small_manifest: Path, face_cache: Path, tmp_path: Path) -> list[str]:
    """Overrides that make any experiment a seconds-long run on the small dataset."""
    return [
        "data.source=manifest",
        f"data.root={small_manifest}",
        "data.options={}",
        "data.image_size=64",
        "data.batch_size=8",
        "data.train_clips_per_video=2",
        "data.eval_clips_per_video=2",
        "data.num_workers=0",
        f"faces.cache_dir={face_cache}",
        "faces.num_frames=4",
        "faces.workers=0",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        f"logging.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        f"logging.artifact_location={tmp_path}/artifacts",
        f"logging.output_dir={tmp_path}/outputs",
    ]


@pytest.fixture(scope="session")
def tiny_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny real H.264 MP4 (8 frames, 64x64, moving gradient) to copy into fixture trees."""
    import numpy as np

    from dflab.video import write_video

    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    frames = [np.stack([np.roll(ramp, 4 * k)[None, :].repeat(64, 0)] * 3, -1).astype(np.uint8)
              for k in range(8)]
    return write_video(tmp_path_factory.mktemp("tiny") / "tiny.mp4", frames, fps=8)


@pytest.fixture
def place_video(tiny_mp4: Path):
    """``place_video(path)`` copies the tiny MP4 to ``path`` (creating folders) and returns it."""
    import shutil

    def place(path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_mp4, path)
        return path

    return place


@pytest.fixture
def training_losses():
    """``training_losses(params, loss_fn, steps, lr)``: AdamW steps on ``loss_fn()``, the losses."""
    import torch

    def run(params, loss_fn, steps: int, lr: float = 3e-3) -> list[float]:
        opt = torch.optim.AdamW(params, lr)
        losses = []
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    return run
