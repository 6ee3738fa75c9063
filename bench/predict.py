"""Prediction benchmark: seconds per video to score a 10-second 1080p video on the CPU.

Two pipelines score the same videos, each with two CPU threads (``torch.set_num_threads(2)``,
``cv2.setNumThreads(2)``, two LiteRT threads for BlazeFace, ONNX Runtime's default pool):

(A) ``dflab predict`` on ONNX Runtime, the real code path: :func:`dflab.predict.run.predict`
    with an export folder (``model.onnx`` + ``export.json``) and ``frames=32``. It probes the
    file, decodes it once forward from the start while checking every seek point it passes
    (:func:`dflab.video.check_decode`, in a background thread), runs BlazeFace on 32 evenly
    spaced frames, links the faces into tracks and scores 32 evenly spaced face crops of every
    track worth scoring (its own model and detector loaded by each ``predict`` call); warm, it is
    :func:`dflab.predict.score.score_video` with the model and the detector loaded.
(B) the usual research pipeline, written out plainly (as in the DFDC winner's and DeepfakeBench's
    predict scripts): ``cv2.VideoCapture`` grabs every frame in order and retrieves the 32 evenly
    spaced ones, the same BlazeFace detector (dflab's, same settings) runs on each, the largest
    face is cut as a square of 1.3 times the box side (clipped to the frame) and resized to 224
    pixels, and eager PyTorch EfficientNet-B0 (timm, ``num_classes=1``) scores the 32 crops in
    one batch under ``torch.inference_mode()``; the video's score is the mean sigmoid.

Both use the same randomly initialised EfficientNet-B0 weights (exported to ONNX for (A) with
dflab's parity check, loaded into timm for (B)); nothing is trained or downloaded. The videos
are 1920x1080, 30 fps, H.264 (libx264 CRF 23, default GOP): scikit-image's astronaut, scaled up
so the face is about 160 pixels wide, drifting about a pixel per frame over a photographed
background with sensor noise, a different drift per video. Videos and the export are cached
under ``outputs/bench/predict/``.

Each round, each pipeline is first loaded and run over all the videos (the seconds of that,
divided by the number of videos: what a user of either waits per file), then run warm, with
everything loaded, on each video again, the two alternating video by video so that machine
noise hits both. Both run in this process after one warm-up round; with ``--isolated`` each runs
in a fresh worker process per round instead (true cold starts: the first calls into ONNX Runtime,
LiteRT, dlib and PyTorch of a process are slower), the order swapped every round. The table
gives medians over ``--rounds`` rounds, and the CPU time other processes took meanwhile (a busy
machine is flagged). With ``--profile``, and whenever (A) misses the target (at most 2 s per
video and faster than (B), loading included), one warm ``score_video`` call is dissected: its
phases run one by one, and cProfile of its main and decoding threads.

Prints Markdown and writes ``outputs/bench_predict.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
OUT = Path("outputs/bench/predict")
EXPORT = OUT / "export"
WIDTH, HEIGHT, FPS = 1920, 1080, 30
FRAMES = 32  # frames scored per video (and frames BlazeFace runs on)
IMAGE_SIZE, MARGIN, BACKBONE = 224, 1.3, "efficientnet_b0"
THREADS = 2
TARGET_S = 2.0


# ---------------------------------------------------------------------------------------------
# inputs: videos and the exported model


def face_frames(count: int, seed: int) -> Iterator[np.ndarray]:
    """``count`` 1080p RGB frames: the astronaut (face about 160 px wide) drifting about one
    pixel per frame over the coffee photograph, with sensor noise."""
    import cv2
    from skimage import data

    rng = np.random.default_rng(seed)
    back = cv2.GaussianBlur(cv2.resize(data.coffee(), (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR), (0, 0), 3)
    side = 900
    person = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC)
    x0, y0 = (WIDTH - side) // 2 + 60 * (seed - 1), HEIGHT - side
    phase = 1.7 * seed
    for t in range(count):
        x = round(x0 + 45 * np.sin(t / 45 + phase))
        y = round(y0 + 12 * (1 + np.cos(t / 35 + phase)))
        frame = back.copy()
        xs, xe, ye = max(0, x), min(WIDTH, x + side), min(HEIGHT, y + side)
        frame[y:ye, xs:xe] = person[: ye - y, xs - x : xe - x]
        noise = rng.integers(-4, 5, frame.shape, dtype=np.int16)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8)


def make_videos(count: int, seconds: float) -> list[Path]:
    """The benchmark videos, encoded once and cached."""
    from dflab.video import write_video

    paths = []
    for k in range(count):
        path = OUT / f"face_1080p_{seconds:g}s_{k}.mp4"
        if not path.exists():
            print(f"writing {path} ...", flush=True)
            write_video(path, face_frames(round(seconds * FPS), seed=k), fps=FPS, crf=23)
        paths.append(path)
    return paths


def make_export(folder: Path) -> dict[str, Any]:
    """An export folder as ``dflab export`` writes it, for a randomly initialised EfficientNet-B0;
    returns the timm backbone's state dict (the same weights, for the research pipeline)."""
    import torch

    from dflab.export.export import export_model
    from dflab.export.settings import PredictSettings
    from dflab.models import create_model

    weights = folder / "backbone_state.pt"
    if not all((folder / f).is_file() for f in ("model.onnx", "export.json", weights.name)):
        print(f"exporting a random {BACKBONE} to {folder} ...", flush=True)
        torch.manual_seed(0)
        net = create_model(BACKBONE, img_size=IMAGE_SIZE).eval()
        result = export_model(net, torch.rand(4, 3, IMAGE_SIZE, IMAGE_SIZE), folder)
        settings = PredictSettings(image_size=IMAGE_SIZE, frames_per_clip=1, clips_per_track=FRAMES,
                                   detector="blazeface", detection_frames=FRAMES, backbone=BACKBONE,
                                   margin=MARGIN, crop="box")
        meta = {"run_id": "bench", "model_id": f"bench/{BACKBONE}-random-init", "experiment": "bench",
                "predict": settings.to_dict(), "calibration": None, "backbone": BACKBONE, "temporal": "none",
                "input": ["B", 3, IMAGE_SIZE, IMAGE_SIZE], "input_name": "frames", "input_range": [0.0, 1.0],
                "outputs": ["logit", "fake_probability"], "face_margin": MARGIN, "face_crop": "box",
                "face_detector": "blazeface", "face_detector_options": {},
                "onnx_max_abs_diff": result.onnx_max_abs_diff, "pt2_max_abs_diff": result.pt2_max_abs_diff}
        (folder / "export.json").write_text(json.dumps(meta, indent=2))
        torch.save(net.backbone.state_dict(), weights)
    return torch.load(weights, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------
# (B) the research pipeline


class ResearchPipeline:
    """OpenCV reader, BlazeFace, largest-face box crop, eager PyTorch EfficientNet-B0."""

    def __init__(self, state: dict[str, Any], detector: Any) -> None:
        import timm
        import torch
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        self.net = timm.create_model(BACKBONE, pretrained=False, num_classes=1).eval()
        self.net.load_state_dict(state)
        self.mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
        self.detector = detector

    @staticmethod
    def read(path: Path, count: int) -> tuple[list[np.ndarray], int]:
        """``count`` evenly spaced RGB frames, grabbing every frame in order; and frames decoded."""
        import cv2

        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, THREADS])
        try:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            wanted = set(np.linspace(0, total - 1, count).round().astype(int).tolist())
            frames, decoded = [], 0
            for i in range(max(wanted) + 1):
                if not cap.grab():
                    break
                decoded += 1
                if i in wanted:
                    ok, bgr = cap.retrieve()
                    if ok:
                        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            cap.release()
        return frames, decoded

    @staticmethod
    def crop(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The square of ``MARGIN`` times the box's longer side around its centre, clipped to the
        frame, resized to ``IMAGE_SIZE``."""
        import cv2

        x1, y1, x2, y2 = (float(v) for v in box)
        half = MARGIN * max(x2 - x1, y2 - y1) / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        h, w = rgb.shape[:2]
        xa, ya = max(0, round(cx - half)), max(0, round(cy - half))
        xb, yb = min(w, round(cx + half)), min(h, round(cy + half))
        return cv2.resize(rgb[ya:yb, xa:xb], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)

    def __call__(self, path: Path) -> tuple[float | None, int, int]:
        """The video's score (``None`` without a face), frames decoded and faces scored."""
        import torch

        frames, decoded = self.read(path, FRAMES)
        crops = []
        for rgb in frames:
            found = self.detector.detect(rgb)
            if found:
                crops.append(self.crop(rgb, max(found, key=lambda d: d.area).box))
        if not crops:
            return None, decoded, 0
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(255)
        with torch.inference_mode():
            logits = self.net((x - self.mean) / self.std).reshape(-1)
        return float(torch.sigmoid(logits).mean()), decoded, len(crops)


# ---------------------------------------------------------------------------------------------
# (A) dflab predict


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """dflab's report lines (model, threshold, results table) off stdout while timing."""
    log = logging.getLogger("dflab.report")
    saved = log.level
    log.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        log.setLevel(saved)


def dflab_predict(paths: list[Path]) -> tuple[float, list[Any]]:
    """Seconds of one ``predict`` call over ``paths`` (model loading included) and its results."""
    from dflab.predict.run import predict

    with quiet():
        start = time.perf_counter()
        out = predict([str(p) for p in paths], [str(EXPORT)], out=OUT / "run", frames=FRAMES, threshold=0.5,
                      progress=False, threads=THREADS)
        seconds = time.perf_counter() - start
    return seconds, out.results


def load_a() -> tuple[Any, Any]:
    """The scorer and the detector ``predict`` builds for the export."""
    from dflab.faces.detect import detector_threads
    from dflab.faces.detector import create_detector
    from dflab.predict.models import load_models

    scorer = load_models([str(EXPORT)])
    s = scorer.settings
    return scorer, create_detector(s.detector, **detector_threads(s.detector, dict(s.detector_options), THREADS))


def dflab_decoded(path: Path) -> str:
    """Frames (A)'s decode pass goes through: every frame up to the last one wanted, plus the
    frames the second decoder compares after each seek point (an upper bound: it skips
    non-reference frames it does not compare)."""
    from dflab.clips.sampling import uniform_clips
    from dflab.faces.detect import sample_indices
    from dflab.video import probe
    from dflab.video.access import CHECK_WINDOW, MAX_CHECKED_SEEK_POINTS, _checkpoints

    info = probe(str(path))
    last = int(max(sample_indices(info.num_frames, FRAMES).max(),
                   uniform_clips(info.num_frames, 1, 1, FRAMES).max()))
    checks, _ = _checkpoints(info.keyframes, last, CHECK_WINDOW, MAX_CHECKED_SEEK_POINTS)
    second = sum(frames[-1] - k + 1 for k, frames in checks.items())
    return f"{last + 1} + ≤{second} (seek check)"


# ---------------------------------------------------------------------------------------------
# timing


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def _threads() -> None:
    import cv2
    import torch

    torch.set_num_threads(THREADS)
    cv2.setNumThreads(THREADS)


Samples = dict[str, list[float]]


def research_pipeline() -> ResearchPipeline:
    from dflab.faces.detector import create_detector

    return ResearchPipeline(make_export(EXPORT), create_detector("blazeface", threads=THREADS))


def cold_a(videos: list[Path]) -> Samples:
    """One ``predict()`` call over the videos, loading its model and detector; per video."""
    t_all, results = dflab_predict(videos)
    assert all(r.status == "scored" for r in results), [r.reason for r in results]
    return {"a_cold": [t_all / len(videos)]}


def cold_b(videos: list[Path]) -> tuple[Samples, ResearchPipeline]:
    """(B) built, then run over the videos; per video, building included."""
    start = time.perf_counter()
    research = research_pipeline()
    for path in videos:
        assert research(path)[0] is not None, f"(B) found no face in {path}"
    return {"b_cold": [(time.perf_counter() - start) / len(videos)]}, research


def warm_a(path: Path, scorer: Any, detector: Any) -> Samples:
    """``score_video`` on one video with a loaded scorer and detector."""
    from dflab.predict.score import score_video

    t, scored = _timed(score_video, str(path), scorer, detector, 0.5, FRAMES, THREADS)
    assert scored.result.status == "scored", f"(A) did not score {path}: {scored.result.reason}"
    return {"a_warm": [t], "a_faces": [sum(len(t.frames) for t in scored.result.tracks)],
            "a_tracks": [len(scored.result.tracks)]}


def warm_b(path: Path, research: ResearchPipeline) -> Samples:
    """(B) on one video with the pipeline built."""
    t, (score, decoded, faces) = _timed(research, path)
    assert score is not None, f"(B) found no face in {path}"
    return {"b_warm": [t], "b_faces": [faces], "b_decoded": [decoded]}


def _add(total: Samples, more: Samples) -> None:
    for key, values in more.items():
        total.setdefault(key, []).extend(values)


def worker(pipeline: str, videos: list[Path]) -> None:
    """One round of one pipeline in this fresh process; the samples as JSON on stdout's last line.

    (A): ``predict()`` over the videos (a cold start: the first call of the process), then
    ``score_video`` on each with a scorer and detector loaded and warmed up on the first video.
    (B): built and run over the videos (the first run of the process), then each video again.
    """
    from dflab.predict.score import score_video

    _threads()
    samples: Samples = {}
    if pipeline == "a":
        samples = cold_a(videos)
        scorer, detector = load_a()
        score_video(str(videos[0]), scorer, detector, 0.5, FRAMES, THREADS)
        for path in videos:
            _add(samples, warm_a(path, scorer, detector))
    else:
        samples, research = cold_b(videos)
        for path in videos:
            _add(samples, warm_b(path, research))
    print(json.dumps(samples))


def in_worker(pipeline: str, args: argparse.Namespace) -> Samples:
    cmd = [sys.executable, __file__, "--worker", pipeline, "--videos", str(args.videos),
           "--seconds", str(args.seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"worker {pipeline} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _say(rnd: int, total: Samples, n: int) -> None:
    a, b = total["a_warm"][-n:], total["b_warm"][-n:]
    print(f"round {rnd}: loading included {total['a_cold'][-1]:.2f} (A) / {total['b_cold'][-1]:.2f} (B) "
          f"s/video; warm (A) {', '.join(f'{t:.2f}' for t in a)}, (B) {', '.join(f'{t:.2f}' for t in b)}",
          flush=True)


def same_process_rounds(videos: list[Path], rounds: int) -> Samples:
    """Both pipelines in this process. Per round: (A) and (B) each loaded and run over all the
    videos, then both warm, alternating video by video. Round 0 warms up and is not counted."""
    _threads()
    scorer, detector = load_a()
    total: Samples = {}
    for rnd in range(rounds + 1):
        samples = cold_a(videos)
        more, research = cold_b(videos)
        _add(samples, more)
        for path in videos:
            _add(samples, warm_a(path, scorer, detector))
            _add(samples, warm_b(path, research))
        if rnd:
            _add(total, samples)
            _say(rnd, total, len(videos))
    return total


def isolated_rounds(args: argparse.Namespace) -> Samples:
    """Per round, (A) and (B) each in a fresh worker process (see :func:`worker`), the order
    swapped every round."""
    total: Samples = {}
    for rnd in range(1, args.rounds + 1):
        for pipeline in ("a", "b") if rnd % 2 else ("b", "a"):
            _add(total, in_worker(pipeline, args))
        _say(rnd, total, args.videos)
    return total


def cpu_seconds() -> tuple[float, float, float]:
    """Machine-wide busy CPU seconds, of which stolen by the hypervisor, and this process's
    (with its waited-for children); NaN where ``/proc/stat`` is missing."""
    import resource

    ours = sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return float("nan"), float("nan"), ours
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick, ours


def other_load(before: tuple[float, float, float], after: tuple[float, float, float], wall: float) -> str:
    """What else ran on the machine during the timed rounds."""
    busy, steal, ours = (b - a for a, b in zip(before, after, strict=True))
    if busy != busy:  # NaN
        return "Other load during the timed rounds: unknown (no /proc/stat)."
    others = max(0.0, busy - steal - ours)
    share = others / (wall * (os.cpu_count() or 1))
    warn = " **The machine was busy: these timings are not clean; rerun when it is idle.**" if share > 0.05 else ""
    return (f"Other load during the timed rounds: other processes {others:.1f} CPU-s and hypervisor steal "
            f"{steal:.1f} CPU-s over {wall:.0f} s ({100 * share:.0f} % of the {os.cpu_count()} cores).{warn}")


# ---------------------------------------------------------------------------------------------
# profile of (A)


def _top(profile: cProfile.Profile, sort: str, count: int) -> str:
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).strip_dirs().sort_stats(sort).print_stats(count)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def profile_a(path: Path) -> str:
    """Where one ``score_video`` call spends its time: its phases run one by one (each as
    ``score_video`` runs it), and cProfile of a whole call, main thread and decoding thread."""
    import av

    from dflab.clips.dataset import ClipSpec, FaceClipDataset
    from dflab.clips.sampling import uniform_clips
    from dflab.datasets.sources import VideoItem
    from dflab.faces.detect import detect_video, sample_indices
    from dflab.predict.score import score_video
    from dflab.video import check_decode, probe
    from dflab.video.backend import open_stream

    _threads()
    scorer, detector = load_a()
    p = str(path)
    score_video(p, scorer, detector, 0.5, FRAMES, THREADS)  # warm-up
    s = scorer.settings
    rows: list[tuple[str, float]] = []
    t, info = _timed(probe, p)
    rows.append(("probe (container index)", t))
    detect = sample_indices(info.num_frames, s.detection_frames)
    likely = uniform_clips(info.num_frames, 1, 1, FRAMES).ravel()
    wanted = np.union1d(detect, likely)

    def plain_pass(thread_type: str) -> None:
        with av.open(p) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = thread_type, THREADS
            for n, frame in enumerate(container.decode(stream)):
                if n in wanted:
                    frame.to_ndarray(format="rgb24")
                if n >= wanted[-1]:
                    break

    rows.append(("  reference: plain PyAV decode, same frames, frame threads (as OpenCV)",
                 _timed(plain_pass, "AUTO")[0]))
    rows.append(("  reference: plain PyAV decode, same frames, slice threads (dflab's setting)",
                 _timed(plain_pass, "SLICE")[0]))

    def main_pass_only() -> None:
        stream = open_stream(info, threads=THREADS, skip=False)
        try:
            stream.start_at(0)
            for frame in stream.decode(set(range(int(wanted[-1]) + 1)), int(wanted[-1])):
                if frame.index in wanted:
                    frame.rgb()
        finally:
            stream.close()

    rows.append(("decode pass without seek checks (dflab stream: every frame, RGB of the wanted)",
                 _timed(main_pass_only)[0]))
    t, decoded = _timed(check_decode, p, wanted, threads=THREADS)
    rows.append(("`check_decode`: the decode pass with seek checks", t))
    frames = [decoded.frames[int(i)] for i in detect]
    rows.append((f"BlazeFace on the {len(frames)} sampled frames alone (no decoding)",
                 _timed(lambda: [detector.detect(f) for f in frames])[0]))
    kept: dict[int, np.ndarray] = {}
    t, faces = _timed(detect_video, p, detector, s.detection_frames, s.frame_step, THREADS, keep=kept, also=likely)
    rows.append(("`detect_video`: decode pass + checks in a thread, BlazeFace alongside, tracks", t))
    spec = ClipSpec(s.frames_per_clip, s.frame_stride, s.image_size, s.margin, s.crop)
    dataset = FaceClipDataset([VideoItem(p, 0)], [faces], spec, FRAMES, train=False, track_score=s.track_score,
                              min_track_coverage=s.min_track_coverage, decoded=[kept])
    t, items = _timed(dataset.__getitems__, list(range(len(dataset))))
    rows.append((f"face crops of {len(dataset)} clips (frames kept from the pass; torch uint8 -> float)", t))
    clips = np.stack([it["clip"].numpy() for it in items if "clip" in it])
    rows.append((f"ONNX Runtime on {len(clips)} crops, right after the crops", _timed(scorer.logits, clips)[0]))
    rows.append((f"ONNX Runtime on {len(clips)} crops, run again at once", _timed(scorer.logits, clips)[0]))

    # cProfile: the main thread, and the decoding thread CheckInBackground starts
    profiles: list[cProfile.Profile] = []

    def in_thread(frame: Any, event: str, arg: Any) -> None:
        if threading.current_thread().name.startswith("decode "):
            threading.setprofile(None)
            profile = cProfile.Profile()
            profiles.append(profile)
            profile.enable()

    main = cProfile.Profile()
    threading.setprofile(in_thread)
    main.enable()
    total = _timed(score_video, p, scorer, detector, 0.5, FRAMES, THREADS)[0]
    main.disable()
    threading.setprofile(None)
    for profile in profiles:
        profile.disable()
    rows.append(("`score_video`, whole (under cProfile)", total))

    table = "\n".join([f"| {name} | {seconds:.3f} |" for name, seconds in rows])
    parts = [f"Profile of (A) on {path.name} ({info.num_frames} frames, seek points at "
             f"{info.keyframes.tolist()}), model and detector warm: phases run one by one\n\n"
             f"| phase | s |\n|---|---|\n{table}",
             "cProfile of that `score_video` call, main thread, by cumulative time (wall clock: "
             "time the decoding thread takes from the main thread shows in the main thread's "
             "functions):\n\n```\n" + _top(main, "cumulative", 25) + "\n```",
             "main thread, by own time:\n\n```\n" + _top(main, "tottime", 12) + "\n```"]
    parts += ["decoding thread (`check_decode`), by own time:\n\n```\n" + _top(profile, "tottime", 12) + "\n```"
              for profile in profiles[:1]]
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3, help="videos (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="video length in seconds (default 10)")
    parser.add_argument("--isolated", action="store_true",
                        help="each pipeline in a fresh worker process per round (cold starts), not in this one")
    parser.add_argument("--profile", action="store_true", help="profile (A) even when it meets the target")
    parser.add_argument("--worker", choices=("a", "b"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    videos = make_videos(args.videos, args.seconds)
    make_export(EXPORT)
    if args.worker:
        worker(args.worker, videos)
        return

    import cv2
    import onnxruntime
    import torch

    before, start = cpu_seconds(), time.perf_counter()
    samples = isolated_rounds(args) if args.isolated else same_process_rounds(videos, args.rounds)
    noise = other_load(before, cpu_seconds(), time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in samples.items()}
    n_cold, n_warm = len(samples["a_cold"]), len(samples["a_warm"])
    decoded_a, faces_a = dflab_decoded(videos[0]), f"{med['a_faces']:.0f}"
    fresh = "a fresh process per round" if args.isolated else "reloaded every round"
    rows = [
        (f"(A) `dflab predict` on ONNX Runtime: one `predict()` over the {len(videos)} videos, model and "
         f"detector loading included ({fresh})", f"{med['a_cold']:.2f} (median of {n_cold})", decoded_a,
         f"{faces_a} ({med['a_tracks']:.0f} face track)"),
        (f"(B) research pipeline: OpenCV reader, BlazeFace, eager PyTorch; building included ({fresh})",
         f"{med['b_cold']:.2f} (median of {n_cold})", f"{med['b_decoded']:.0f}", f"{med['b_faces']:.0f}"),
        ("(A) warm: `score_video` with the model and detector loaded", f"{med['a_warm']:.2f} (median of {n_warm})",
         decoded_a, faces_a),
        ("(B) warm: the pipeline built", f"{med['b_warm']:.2f} (median of {n_warm})", f"{med['b_decoded']:.0f}",
         f"{med['b_faces']:.0f}"),
    ]
    met = med["a_cold"] <= TARGET_S and med["a_cold"] < med["b_cold"]
    verdict = (f"Target, `dflab predict` ≤ {TARGET_S:g} s per video and faster than (B): "
               f"**{'met' if met else 'not met'}**: (A) {med['a_cold']:.2f} s vs (B) {med['b_cold']:.2f} s with "
               f"loading ({med['a_cold'] / med['b_cold']:.2f}x), {med['a_warm']:.2f} s vs {med['b_warm']:.2f} s "
               f"warm ({med['a_warm'] / med['b_warm']:.2f}x).")
    mode = ("each pipeline in a fresh worker process per round, (A) and (B) alternating" if args.isolated else
            "both in this process after a warm-up round: per round (A) then (B) over all the videos with "
            "loading, then both warm, alternating video by video")

    def spread(key: str) -> str:
        return f"{min(samples[key]):.2f}-{max(samples[key]):.2f}"

    setup = (f"{len(videos)} videos of {args.seconds:g} s, {WIDTH}x{HEIGHT}, {FPS} fps, H.264 CRF 23, one face; "
             f"{FRAMES} frames scored by {BACKBONE} at {IMAGE_SIZE} px; {args.rounds} round{'s' if args.rounds != 1 else ''}, {mode}. "
             f"Range, s/video: with loading (A) {spread('a_cold')}, (B) {spread('b_cold')}; warm (A) "
             f"{spread('a_warm')}, (B) {spread('b_warm')}. Python imports are not timed.")
    machine = (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"{THREADS} threads per pipeline; Python {platform.python_version()}, torch {torch.__version__}, "
               f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), OpenCV {cv2.__version__}; "
               f"BlazeFace full_range+short_range with tiles and dlib landmarks (dflab's defaults).")
    text = "\n\n".join([
        "Prediction: seconds per video, face detection included\n\n"
        + table(("pipeline", "s / video", "frames decoded", "faces scored"), rows),
        verdict, setup, noise, machine,
    ])
    print(text, flush=True)
    if args.profile or not met:
        extra = profile_a(videos[0])
        print("\n" + extra)
        text += "\n\n" + extra
    Path("outputs").mkdir(exist_ok=True)
    (Path("outputs") / "bench_predict.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
