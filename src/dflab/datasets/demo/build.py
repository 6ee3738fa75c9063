"""The built-in demo dataset: short real and face-swapped videos made from shipped photographs.

Nothing is downloaded. The faces come from photographs inside installed packages (the six
people of insightface's ``t1.jpg``, its aligned ``Tom_Hanks_54745.png``, scikit-image's
``astronaut`` and matplotlib's ``grace_hopper``); dlib finds each face and its 68 landmarks, and each identity becomes a portrait
(:mod:`dflab.datasets.demo.portraits`; the greyscale Tom Hanks crop is outpainted and warm-toned).

* A **real** video is a virtual camera moving over a portrait: a smooth pan, zoom and slight
  roll, a slow drift of exposure, gamma and colour temperature, and sensor noise.
* A **fake** video is the same kind of footage of a *target* identity whose inner face is
  replaced by a *source* identity's, in the spirit of the FaceSwap method of FaceForensics++
  (Rössler et al., "FaceForensics++: Learning to Detect Manipulated Facial Images", ICCV 2019):
  the source face is warped onto the target's landmarks (piecewise affine over a Delaunay mesh
  of the 68 points), colour-matched (mean/std transfer in LAB), slightly softened, and blended
  through the landmarks' convex hull, eroded and Gaussian-feathered. Every frame jitters the
  warp a little and the colour a little, as a per-frame swap would.

Real and fake footage share one camera, lighting, noise and H.264 path, so the swap is the only
thing that tells them apart. Identities are split between train, val and test (a fake's target
and source always share a split), and everything follows from :attr:`DemoSpec.seed`.

Layout under the root folder::

    manifest.csv                 path,label,split,group (group = target identity)
    demo.json                    DEMO_VERSION and the spec the videos were made with
    {train,val,test}/{real,fake}/<name>.mp4
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from dflab.datasets.demo.portraits import load_portraits
from dflab.datasets.demo.render import frame_landmarks, render_video
from dflab.datasets.demo.spec import (
    DEMO_VERSION,
    DemoSpec,
    DemoVideo,
    plan_videos,
    split_identities,
)
from dflab.datasets.sources import SPLITS
from dflab.utils.atomic import atomic_write
from dflab.utils.report import report
from dflab.video import write_video

__all__ = [
    "DEMO_VERSION",
    "DemoSpec",
    "DemoVideo",
    "ensure_demo_dataset",
    "frame_landmarks",
    "plan_videos",
    "render_video",
    "split_identities",
]

def _stamp(spec: DemoSpec) -> dict:
    """What ``demo.json`` must hold for a dataset to be reused (JSON round-tripped)."""
    return json.loads(json.dumps({"version": DEMO_VERSION, "spec": asdict(spec)}))


def _stamp_matches(path: Path, spec: DemoSpec) -> bool:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    stamp = _stamp(spec)
    return isinstance(saved, dict) and all(saved.get(key) == stamp[key] for key in stamp)


def _write_atomic(path: Path, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)


def _remove_videos(root: Path, keep: set[Path]) -> None:
    """Delete every video under the split folders that is not in ``keep`` (stale or partial)."""
    for split in SPLITS:
        for label in ("real", "fake"):
            for path in (root / split / label).glob("*.mp4"):
                if path not in keep:
                    path.unlink()


def _write_manifest(path: Path, videos: Sequence[DemoVideo]) -> None:
    lines = ["path,label,split,group"] + [
        f"{v.relpath},{v.label},{v.split},{v.target}" for v in videos
    ]
    _write_atomic(path, "\n".join(lines) + "\n")


def ensure_demo_dataset(
    root: str | Path = "data/demo", spec: DemoSpec | None = None, progress: bool = True
) -> Path:
    """Generate the demo dataset under ``root`` unless it is already there for this spec.

    The dataset is reused when ``root/manifest.csv`` exists and ``root/demo.json`` records this
    spec and :data:`DEMO_VERSION`. Otherwise the stamp is written first, then the videos (each
    atomically), then the manifest (atomically), so a killed run never leaves a manifest naming
    missing or half-written files; a rerun of the same spec keeps the videos already finished.

    Args:
        root: dataset folder.
        spec: dataset settings (default :class:`DemoSpec`).
        progress: show a progress bar and print a one-line summary.

    Returns:
        Path of the manifest, readable by :func:`dflab.datasets.sources.read_manifest`.

    Raises:
        FileExistsError: ``root`` holds files but no ``demo.json`` (it is not a demo dataset
            folder, and generating would delete its videos).
    """
    from tqdm import tqdm

    root, spec = Path(root), spec or DemoSpec()
    manifest, stamp_file = root / "manifest.csv", root / "demo.json"
    resume = _stamp_matches(stamp_file, spec)
    if resume and manifest.is_file():
        return manifest
    if not stamp_file.is_file() and root.is_dir() and any(root.iterdir()):
        raise FileExistsError(
            f"{root}: not empty and not a demo dataset (no demo.json); pick another root"
        )
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    portraits = {p.identity: p for p in load_portraits()}
    videos = plan_videos(list(portraits), spec)
    # Finished videos of an interrupted run of this very spec are kept (rendering is deterministic).
    _remove_videos(root, keep={root / v.relpath for v in videos} if resume else set())
    stamp = {**_stamp(spec), "identities": sorted(portraits)}
    _write_atomic(stamp_file, json.dumps(stamp, indent=2) + "\n")
    for video in tqdm(videos, desc="demo dataset", unit="video", disable=not progress):
        path = root / video.relpath
        if not path.is_file():
            write_video(path, render_video(video, portraits, spec), fps=spec.fps, crf=spec.crf)
    _write_manifest(manifest, videos)
    if progress:
        counts = Counter(v.split for v in videos)
        per_split = ", ".join(f"{split} {counts[split]}" for split in SPLITS)
        seconds = time.perf_counter() - start
        report(f"demo dataset: {len(videos)} videos ({per_split}) in {root} ({seconds:.1f} s)")
    return manifest
