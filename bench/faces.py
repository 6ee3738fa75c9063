"""Face-stage benchmark for docs/benchmarks.md (``make bench``): recall, false positives and
throughput of every face detector on real photographs and H.264 videos made from them.

Real faces that ship inside installed packages:
- insightface's ``t1.jpg`` (six people), scikit-image's astronaut, matplotlib's Grace Hopper and
  insightface's Tom Hanks crop (padded to a photo): 9 faces with hand-checked boxes;
- scikit-image's LFW subset: 100 faces of 100 people (25 px crops, upscaled 4x and set on a
  grey canvas with context) and 100 non-face background patches (false positives);
each under four conditions: as is, half size, rotated 20 degrees and JPEG quality 20.
Videos: a pan across ``t1.jpg`` encoded at CRF 23 and CRF 38 at 640x360 (six people per frame),
and the demo dataset (90 videos).

A face counts as found when a detection's centre lies in its true box and the detection's side
is within 0.5-2x the true side. Prints Markdown and writes ``outputs/bench_faces.md``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

Boxes = np.ndarray  # (N, 4) x1, y1, x2, y2


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0], *parts)


def photos() -> list[tuple[str, np.ndarray, Boxes]]:
    """``(name, image, true boxes)``; boxes checked by eye against all three detectors."""
    t1 = _rgb(_package_file("insightface", "data", "images", "t1.jpg"))
    t1_boxes = np.array([[1118, 283, 1227, 391], [67, 283, 176, 391], [724, 367, 833, 475],
                         [450, 295, 558, 403], [870, 67, 1000, 197], [275, 176, 365, 266]], float)
    astronaut = _rgb(_package_file("skimage", "data", "astronaut.png"))
    hopper = _rgb(_package_file("matplotlib", "mpl-data", "sample_data", "grace_hopper.jpg"))
    hanks = _rgb(_package_file("insightface", "data", "images", "Tom_Hanks_54745.png"))
    hanks = cv2.copyMakeBorder(cv2.resize(hanks, (224, 224), interpolation=cv2.INTER_CUBIC),
                               112, 112, 112, 112, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return [
        ("t1", t1, t1_boxes),
        ("astronaut", astronaut, np.array([[175, 76, 266, 167]], float)),
        ("grace_hopper", hopper, np.array([[180, 139, 367, 326]], float)),
        ("tom_hanks", hanks, np.array([[112 + 12, 112 + 52, 112 + 194, 112 + 234]], float)),
    ]


def lfw(faces: bool) -> list[tuple[str, np.ndarray, Boxes]]:
    """LFW subset crops, upscaled 4x onto a 200 px grey canvas (faces or background patches)."""
    from skimage import data

    patches = data.lfw_subset()[:100] if faces else data.lfw_subset()[100:]
    out = []
    for k, patch in enumerate(patches):
        big = cv2.resize((patch * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        canvas = np.full((200, 200), 128, np.uint8)
        canvas[50:150, 50:150] = big
        out.append((f"lfw{k}", cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB),
                    np.array([[50, 50, 150, 150]], float) if faces else np.zeros((0, 4))))
    return out


def condition(name: str) -> Callable[[np.ndarray, Boxes], tuple[np.ndarray, Boxes]]:
    """An image degradation and how it moves the true boxes."""
    if name == "as is":
        return lambda im, b: (im, b)
    if name == "half size":
        return lambda im, b: (cv2.resize(im, (im.shape[1] // 2, im.shape[0] // 2),
                                         interpolation=cv2.INTER_AREA), b / 2)
    if name == "JPEG q20":
        def jpeg(im: np.ndarray, b: Boxes) -> tuple[np.ndarray, Boxes]:
            _, buf = cv2.imencode(".jpg", im[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 20])
            return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy(), b
        return jpeg
    if name == "rotated 20°":
        def rotate(im: np.ndarray, b: Boxes) -> tuple[np.ndarray, Boxes]:
            h, w = im.shape[:2]
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
            out = cv2.warpAffine(im, m, (w, h), borderMode=cv2.BORDER_REFLECT)
            centres = np.c_[(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, np.ones(len(b))] @ m.T
            half = (b[:, 2:] - b[:, :2]) / 2
            return out, np.c_[centres - half, centres + half]
        return rotate
    raise ValueError(name)


def matches(found: list, truth: Boxes) -> tuple[int, int]:
    """``(true faces found, detections matching no true face)``."""
    used = np.zeros(len(found), bool)
    hits = 0
    for box in truth:
        side = max(box[2] - box[0], box[3] - box[1])
        for k, det in enumerate(found):
            cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
            dside = max(det.box[2] - det.box[0], det.box[3] - det.box[1])
            if (not used[k] and box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
                    and 0.5 * side <= dside <= 2 * side):
                used[k] = True
                hits += 1
                break
    return hits, int((~used).sum())


def pan_video(path: Path, crf: int) -> tuple[Path, list[Boxes]]:
    """A 640x360 pan across t1.jpg (all six people in every frame, faces about 57 px wide),
    with the true boxes per frame."""
    from dflab.video import write_video

    _, t1, boxes = photos()[0]
    frames, truth = [], []
    for k in range(48):
        x0, y0 = 10 + k, 40  # a 1220x686 window moving 1 px per frame
        crop = t1[y0 : y0 + 686, x0 : x0 + 1220]
        frames.append(cv2.resize(crop, (640, 360), interpolation=cv2.INTER_AREA))
        sx, sy = 640 / crop.shape[1], 360 / crop.shape[0]
        truth.append((boxes - [x0, y0, x0, y0]) * [sx, sy, sx, sy])
    return write_video(path, frames, fps=25, crf=crf), truth


def main() -> None:
    from dflab.datasets.demo.build import DemoSpec, ensure_demo_dataset
    from dflab.datasets.sources import read_manifest
    from dflab.faces.detector import create_detector
    from dflab.faces.index import FaceIndex
    from dflab.faces.scrfd import sample_pack_root
    from dflab.video import read_frames

    out = Path("outputs/bench")
    out.mkdir(parents=True, exist_ok=True)
    scrfd = {"root": str(sample_pack_root()), "pack": "scrfd_2.5g"}
    detectors = {
        "blazeface (default: full+short range, tiles)": ("blazeface", {}),
        "blazeface full range only": ("blazeface", {"model": "full_range", "tiles": False}),
        "scrfd 2.5G": ("scrfd", scrfd),
        "dlib HOG": ("dlib_hog", {}),
    }
    conditions = ["as is", "half size", "rotated 20°", "JPEG q20"]
    photo_set, lfw_faces, lfw_background = photos(), lfw(True), lfw(False)
    rec_rows, fp_rows, speed_rows = [], [], []
    videos = {crf: pan_video(out / f"pan_crf{crf}.mp4", crf) for crf in (23, 38)}
    for label, (name, kwargs) in detectors.items():
        det = create_detector(name, **kwargs)
        cells, fps = [], 0
        for cond in conditions:
            change = condition(cond)
            hits = total = 0
            for _, image, truth in photo_set + lfw_faces:
                image2, truth2 = change(image, truth)
                h, f = matches(det.detect(np.ascontiguousarray(image2)), truth2)
                hits, total, fps = hits + h, total + len(truth2), fps + f
            cells.append(f"{100 * hits / total:.1f} %")
        bg = sum(len(det.detect(image)) > 0 for _, image, _ in lfw_background)
        for path, truth in videos.values():
            frames = read_frames(path, np.arange(len(truth)))
            found = [matches(det.detect(f), t) for f, t in zip(frames, truth, strict=True)]
            hits = sum(h for h, _ in found)
            fps += sum(f for _, f in found)
            cells.append(f"{100 * hits / (6 * len(truth)):.1f} %")
        rec_rows.append((label, *cells))
        fp_rows.append((label, f"{bg} / 100", f"{fps}"))
        # single-image latency at video resolutions
        t1 = photo_set[0][1]
        for res in ((1280, 720), (1920, 1080)):
            frame = cv2.resize(t1, res)
            det.detect(frame)
            start = time.perf_counter()
            for _ in range(5):
                det.detect(frame)
            ms = (time.perf_counter() - start) / 5 * 1000
            speed_rows.append((label, f"{res[0]}x{res[1]}", f"{ms:.1f} ms", f"{1000 / ms:.1f}"))

    demo = out / "demo"
    ensure_demo_dataset(demo, DemoSpec(), progress=False)
    items = read_manifest(demo / "manifest.csv")
    index_rows = []
    for label, (name, kwargs) in detectors.items():
        if "only" in label:
            continue
        for workers in (1, 2):
            index = FaceIndex(out / f"faces_{name}_{workers}", name, 16, kwargs)
            if index.folder.exists():
                import shutil

                shutil.rmtree(index.folder)  # measure detection, not the cache
            start = time.perf_counter()
            report = index.build([it.path for it in items], workers=workers, progress=False)
            seconds = time.perf_counter() - start
            index_rows.append((label, f"{workers}", f"{len(items) * 16 / seconds:.1f}",
                               f"{100 * report.mean_found_fraction:.1f} %", f"{seconds:.1f} s"))

    def table(header: tuple[str, ...], rows: list) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

    text = "\n\n".join([
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "Recall: share of true faces found (109 faces per photo condition; 288 face-frames per video)\n\n"
        + table(("detector", *(f"photos {c}" for c in conditions), "pan video CRF 23",
                 "pan video CRF 38"), rec_rows),
        "False positives\n\n" + table(("detector", "LFW background patches with a detection",
                                       "detections that match no face (4x109 photos, 2x48 video frames)"), fp_rows),
        "Single-image latency (one thread, detect + landmarks)\n\n"
        + table(("detector", "frame", "time", "frames/s"), speed_rows),
        "Face index on the demo dataset (90 videos x 16 frames, decode included)\n\n"
        + table(("detector", "workers", "frames/s", "frames with a face", "wall clock"), index_rows),
    ])
    (Path("outputs") / "bench_faces.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
