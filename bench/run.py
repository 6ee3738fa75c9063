"""Throughput benchmarks for docs/benchmarks.md (``make bench``).

Measures, on this machine: demo-dataset generation, face detection, face-clip streaming
(decode + crop + augment), training and inference throughput of the demo models, and exported
ONNX inference. Prints a Markdown table and writes it to ``outputs/bench.md``.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.datasets.demo.build import DemoSpec, ensure_demo_dataset
    from dflab.datasets.sources import read_manifest
    from dflab.experiment import load_experiment
    from dflab.export.export import export_model
    from dflab.faces.index import FaceIndex
    from dflab.models import create_model

    rows: list[tuple[str, str, str]] = []
    out = Path("outputs/bench")
    out.mkdir(parents=True, exist_ok=True)

    spec = DemoSpec()
    import shutil

    shutil.rmtree(out / "demo", ignore_errors=True)  # measure a first run
    seconds = timed(lambda: ensure_demo_dataset(out / "demo", spec, progress=False))
    items = read_manifest(out / "demo" / "manifest.csv")
    frames = len(items) * spec.num_frames
    rows.append(("demo dataset generation (first run)", f"{seconds:.1f} s",
                 f"{len(items)} videos, {frames / seconds:.0f} frames/s"))

    for workers in (1, 2):
        index = FaceIndex(out / f"faces{workers}", "blazeface", num_frames=16)
        t = timed(lambda index=index, w=workers: index.build([it.path for it in items], workers=w, progress=False))
        rows.append((f"face index, blazeface, {workers} worker(s)", f"{len(items) * 16 / t:.1f} frames/s",
                     f"{len(items)} videos x 16 sampled frames, {t:.1f} s incl. decode"))

    cfg = load_experiment("experiments/mesonet4_demo.yaml", [f"data.root={out / 'demo'}",
                                                          f"faces.cache_dir={out / 'faces2'}"])
    for workers in (0, 2):
        cfg.data.num_workers = workers
        dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        n = 0
        start = time.perf_counter()
        for batch in loader:
            n += len(batch["label"])
        rows.append((f"face clips streamed (train, {workers} loader workers)",
                     f"{n / (time.perf_counter() - start):.0f} clips/s",
                     f"1 frame/clip, {cfg.data.image_size}px crops, decode+crop+augment"))

    rows += training_thread_rows(cfg)
    shutil.rmtree(out / "faces2" / "crops", ignore_errors=True)
    cfg.faces.crop_cache = True
    cfg.data.num_workers = 0
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    for state in ("cold: decode, crop, write", "warm: read crops"):
        n = 0
        start = time.perf_counter()
        for batch in dm.val_dataloader():
            n += len(batch["label"])
        rows.append((f"validation clips with faces.crop_cache ({state})",
                     f"{n / (time.perf_counter() - start):.0f} clips/s",
                     f"0 loader workers, {cfg.data.image_size}px crops"))

    torch.set_num_threads(os.cpu_count() or 1)
    size = cfg.data.image_size
    x = torch.rand(32, 3, size, size)
    y = torch.randint(0, 2, (32,)).float()
    for name in ("meso4", "resnet10t"):
        net = create_model(name, img_size=size)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)

        def step(net=net, opt=opt):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward()
            opt.step()

        step()
        t = timed(step, repeat=5)
        rows.append((f"train step {name} ({size}px, batch 32)", f"{32 / t:.0f} frames/s", "forward+backward+AdamW"))
        net.eval()
        with torch.no_grad():
            net(x)
            t = timed(lambda net=net: net(x), repeat=5)
        rows.append((f"inference {name} eager", f"{32 / t:.0f} frames/s", "batch 32"))
        res = export_model(net, x, out / f"export_{name}")
        import onnxruntime as ort

        sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
        feed = {"frames": x.numpy()}
        sess.run(None, feed)
        t = timed(lambda sess=sess, feed=feed: sess.run(None, feed), repeat=10)
        rows.append((f"inference {name} ONNX Runtime", f"{32 / t:.0f} frames/s",
                     f"batch 32, max abs logit diff {res.onnx_max_abs_diff:.1e}"))

    header = f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}\n\n"
    table = "| what | throughput | notes |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    text = header + table + "\n"
    (Path("outputs") / "bench.md").write_text(text)
    print(text)


def training_thread_rows(cfg) -> list[tuple[str, str, str]]:
    """Training throughput with 2 loader workers: PyTorch's default thread count (one per
    core) against dflab's (the cores left after one per worker)."""
    from dflab.clips.datamodule import DeepfakeDataModule
    from dflab.models import create_model
    from dflab.utils.threads import available_cores, training_threads

    cfg.data.num_workers = 2
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    dm.prepare_data()
    dm.setup("fit")
    rows = []
    cores = available_cores()
    for name in ("meso4", "resnet10t"):
        for label, threads in (("PyTorch default", cores), ("dflab default", training_threads(0, 2))):
            torch.set_num_threads(threads)
            net = create_model(name, img_size=cfg.data.image_size)
            opt = torch.optim.AdamW(net.parameters(), 1e-3)
            loader = dm.train_dataloader()  # persistent workers: the first epoch warms them up
            frames, start = 0, time.perf_counter()
            for epoch in range(3):
                if epoch == 1:
                    frames, start = 0, time.perf_counter()
                for batch in loader:
                    opt.zero_grad()
                    logits = net(batch["clip"].flatten(0, 1))
                    torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"].float()).backward()
                    opt.step()
                    frames += len(batch["label"])
            rows.append((f"training {name} with 2 loader workers, {threads} torch thread(s) ({label})",
                         f"{frames / (time.perf_counter() - start):.0f} frames/s",
                         f"2 epochs of the demo dataset, {cfg.data.image_size}px, decode+augment+step"))
    torch.set_num_threads(cores)
    return rows


if __name__ == "__main__":
    main()
