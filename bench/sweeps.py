"""Sweep benchmarks for docs/benchmarks.md (``make bench-sweeps``), measured side by side in one run.

1. Trials per hour of the demo sweep with 1, 2 and 4 worker processes (same study size, fresh
   stores each time; the demo videos and their face index are prepared once beforehand).
2. Epochs saved by pruning: the demo sweep with the median pruner against no pruner, same seed.
3. Overhead of PostgreSQL + an MLflow tracking server against the local journal file + SQLite,
   per trial (servers from ``dflab.tracking``; needs ``dflab[server]``).

Prints a Markdown table and writes it to ``outputs/bench_sweeps.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

SWEEP = "sweeps/demo.yaml"


def run_sweep(folder: Path, *args: str) -> float:
    """Wall seconds of one ``dflab sweep`` on fresh stores under ``folder``."""
    cmd = [sys.executable, "-m", "dflab", "sweep", SWEEP, f"storage={folder}/optuna.journal",
           f"logging.tracking_uri=sqlite:///{folder}/mlflow.db", f"logging.artifact_location={folder}/artifacts",
           f"logging.output_dir={folder}/outputs", *args]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def study(storage: str) -> optuna.Study:
    from dflab.sweeps.study import open_storage

    return optuna.load_study(study_name="demo", storage=open_storage(storage))


def main() -> None:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows: list[tuple[str, str, str]] = []
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_sweep(root / "warm", "n_trials=1", "trainer.max_epochs=1")  # demo data and face index, once
        n = 6
        base = None
        for workers in (1, 2, 4):
            seconds = run_sweep(root / f"w{workers}", f"n_trials={n}", "--workers", str(workers))
            per_hour = n / seconds * 3600
            base = base or per_hour
            rows.append((f"demo sweep, {n} trials, {workers} worker(s), {cores} cores",
                         f"{per_hour:.0f} trials/h ({seconds:.0f} s)", f"{per_hour / base:.2f}x one worker"))
        epochs, best = {}, {}
        for pruner in ("none", "successive_halving"):
            run_sweep(root / f"p-{pruner}", f"n_trials={n}", f"pruner.name={pruner}")
        folders = {"median": root / "w1", "none": root / "p-none",  # w1: the demo's own median pruner
                   "successive_halving": root / "p-successive_halving"}
        for pruner, folder in folders.items():
            s = study(f"{folder}/optuna.journal")
            epochs[pruner] = sum(len(t.intermediate_values) for t in s.trials)
            best[pruner] = s.best_value
        for pruner in ("median", "successive_halving"):
            saved = 1 - epochs[pruner] / epochs["none"]
            rows.append((f"epochs run, {pruner} pruner vs none ({n} trials)", f"{epochs[pruner]} vs {epochs['none']}",
                         f"{saved:.0%} saved; best val AUROC {best[pruner]:.3f} vs {best['none']:.3f}"))
        try:
            from dflab.tracking.postgres import PostgresServer
            from dflab.tracking.server import MLflowServer
        except ImportError:
            PostgresServer = None
        if PostgresServer is not None:
            local = run_sweep(root / "local", "n_trials=2", "trainer.max_epochs=2") / 2
            with PostgresServer(root / "pg" / "postgres", port=0) as pg, \
                    MLflowServer(pg.mlflow_url, root / "pg" / "artifacts", port=0) as ml:
                cmd = [sys.executable, "-m", "dflab", "sweep", SWEEP, f"storage={pg.url}", "n_trials=2",
                       "trainer.max_epochs=2", f"logging.tracking_uri={ml.uri}",
                       f"logging.output_dir={root}/pg/outputs"]
                start = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                remote = (time.perf_counter() - start) / 2
            rows.append(("seconds per trial (2 epochs): PostgreSQL + MLflow server vs journal + SQLite",
                         f"{remote:.1f} vs {local:.1f}", f"{remote - local:+.1f} s per trial"))
    table = ["| measurement | result | note |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in rows)]
    text = "\n".join(table)
    print(text)
    Path("outputs").mkdir(exist_ok=True)
    Path("outputs/bench_sweeps.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
