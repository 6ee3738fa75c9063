"""The ``dflab`` command line: ``train``, ``sweep``, ``server``, ``export``, ``evaluate``, ``faces``, ``data``, ``demo``.

Configuration errors (unknown key, wrong type, bad dataset layout) end the command with exit
status 2 and a one-line message naming the key or file, before any work starts.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _server(args: argparse.Namespace) -> int:
    from dflab.tracking.server import serve

    serve(Path(args.root), args.host, args.pg_port, args.mlflow_port)
    return 0


def _train(args: argparse.Namespace) -> int:
    from dflab.experiment import load_experiment

    cfg = load_experiment(args.experiment, args.overrides)  # refused before the training stack loads
    from dflab.training.resume import resumed_config
    from dflab.training.train import run_experiment

    if args.resume is not None:  # the checkpoint's own config, plus the overrides given now
        cfg = resumed_config(args.resume, args.overrides, cfg.logging.output_dir)
        logging.getLogger("dflab").info("resuming %s with the config stored in its checkpoint", args.resume)
    run_experiment(cfg, resume=args.resume)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from dflab.sweeps.ddp import follow_trial, is_trial_follower

    if is_trial_follower():  # a DDP rank > 0 of a trial: train the trial rank 0 started
        code = follow_trial()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # skip interpreter teardown: a torch.distributed thread may abort it
    from dflab.sweeps.space import load_sweep

    sweep = load_sweep(args.sweep, args.overrides)  # refused before Optuna and MLflow load
    workers = args.workers if args.workers is not None else sweep.workers
    index = args.worker_index if args.worker_index is not None else int(os.environ.get("DFLAB_WORKER_INDEX", 0))
    if workers > 1 and args.stop_at is None:  # a launcher (its workers get --stop-at)
        from dflab.sweeps.workers import run_workers

        run_workers(sweep, args.sweep, args.overrides, workers, n_trials=args.n_trials, first_index=index * workers)
        return 0
    from dflab.sweeps.sweep import run_sweep

    run_sweep(sweep, n_trials=args.n_trials, worker_index=index, stop_at=args.stop_at,
              summarise=not args.no_summary)
    return 0


def _writable_folder(option: str, folder: str) -> None:
    """Refuse, in one line, an output folder that cannot be created or written."""
    from dflab.tracking.mlflow_utils import ensure_writable

    ensure_writable(option, folder)


def _export(args: argparse.Namespace) -> int:
    _writable_folder("--out-dir", args.out_dir)
    from dflab.export.export import export_run

    export_run(run_id=args.run_id, tracking_uri=args.tracking_uri, out_dir=args.out_dir,
               atol=args.atol, register=not args.no_register, model_name=args.name)
    return 0


def _predict(args: argparse.Namespace) -> int:
    _writable_folder("--out", args.out)
    if args.no_progress:  # MLflow's download bars too
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    from dflab.predict.run import predict

    try:
        result = predict(args.paths, args.model or (), out=args.out, frames=args.frames, annotate=args.annotate,
                         cam=args.cam, threshold=args.threshold, target_fpr=args.target_fpr,
                         tracking_uri=args.tracking_uri, progress=not args.no_progress, threads=args.threads)
    except KeyboardInterrupt:  # what was scored is written; predict said where
        return 130
    return 0 if any(r.scored for r in result.results) else 1


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, got {text}")
    return value


def _open_probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"a false-positive rate is strictly between 0 and 1, got {text}")
    return value


def _faces(args: argparse.Namespace) -> int:
    from dflab.clips.face_stage import FaceStage
    from dflab.datasets.resolve import resolve_items
    from dflab.experiment import load_experiment

    cfg = load_experiment(args.experiment, args.overrides, model=False)  # no network: timm stays unloaded
    items = resolve_items(cfg.data)
    report, pack = FaceStage.of(cfg.data, cfg.faces).build(items, cfg.faces.workers)
    print(report.summary_table())
    print(f"Face index of {len(set(it.path for it in items))} videos packed in {pack}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from dflab.experiment import load_experiment

    for path in args.datasets:  # refused before the evaluation stack loads
        load_experiment(path, args.set or ())
    from dflab.evaluate.cross_dataset import cross_dataset_evaluation

    cross_dataset_evaluation(args.datasets, run_id=args.run_id, checkpoint=args.checkpoint,
                             tracking_uri=args.tracking_uri, overrides=args.set or (),
                             combine=args.combine)
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from dflab.datasets.check import check_dataset
    from dflab.datasets.resolve import resolve_items
    from dflab.experiment import load_experiment

    cfg = load_experiment(args.config, args.overrides, model=False)  # no network: timm stays unloaded
    items = resolve_items(cfg.data, check=False)
    report = check_dataset(items, f"{cfg.data.source} at {cfg.data.root}", probe=not args.no_probe,
                           workers=args.workers, deep=args.deep, progress=True)
    if not args.deep:
        _seeking_from_index(report, cfg, items)
    print(report.table())
    print(report.seeking())
    if report.ok:
        print(report.message())
        return 0
    print(report.message(), file=sys.stderr)
    return 1


def _seeking_from_index(report, cfg, items) -> None:
    """Fill the report's seek counts from the face index, where it holds the videos."""
    from dflab.clips.face_stage import FaceStage

    stage = FaceStage.of(cfg.data, cfg.faces)
    known = [f for f in stage.indexed(items).values() if f.error is None]
    report.seek_checked = len(known)
    report.not_seek_exact = sorted(f.path for f in known if not f.seek_exact)
    report.seek_source = (f"face index {stage.index.folder}, {len(known)} of "
                          f"{len({it.path for it in items})} videos indexed")


def _data_list(args: argparse.Namespace) -> int:
    import dataclasses

    from dflab.datasets import dataset_names, get_adapter

    for name in dataset_names():
        adapter = get_adapter(name)
        opts = ", ".join(f.name for f in dataclasses.fields(adapter.options)) or "-"
        print(f"{name:16s} {adapter.summary}\n{'':16s} options: {opts}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    _writable_folder("--root", args.root)
    from dflab.datasets.demo.build import DemoSpec, ensure_demo_dataset

    print(ensure_demo_dataset(args.root, DemoSpec(seed=args.seed)))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dflab")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"a seed is 0 to 4294967295, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dflab", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an input error (or set DFLAB_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one experiment (YAML + key=value overrides)")
    t.add_argument("experiment", help="experiment YAML file (e.g. experiments/mesonet4_demo.yaml)")
    t.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides (trainer.max_epochs=3 data.root=/data/ffpp); unknown keys are refused")
    t.add_argument("--resume", default=None, metavar="CKPT_OR_RUN_ID",
                   help="continue a run from its checkpoint (optimizer, scheduler, MLflow run) with the "
                        "config stored in it; overrides may change only trainer.max_epochs, devices, "
                        "threads, workers and the like")
    t.set_defaults(fn=_train)

    s = sub.add_parser("sweep", help="Optuna sweep logged to MLflow (adds trials to the study)")
    s.add_argument("sweep", help="sweep YAML file: base experiment, Optuna study and search space (sweeps/demo.yaml)")
    s.add_argument("overrides", nargs="*", metavar="key=value",
                   help="sweep keys (n_trials=4) or experiment keys (trainer.max_epochs=2)")
    s.add_argument("--n-trials", type=int, default=None, help="trials to add (default: the sweep's n_trials)")
    s.add_argument("--workers", type=int, default=None,
                   help="worker processes on this host sharing the trials (default: the sweep's workers, 1)")
    s.add_argument("--worker-index", type=int, default=None,
                   help="this host's index among the hosts sharing a study, 0, 1, 2, ... (its workers' own "
                        "sampler streams; default $DFLAB_WORKER_INDEX, else 0)")
    s.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)  # the launcher's shared budget
    s.add_argument("--no-summary", action="store_true", help=argparse.SUPPRESS)  # the launcher summarises
    s.set_defaults(fn=_sweep)

    srv = sub.add_parser("server", help="PostgreSQL + MLflow tracking server for sweeps on several hosts")
    srv.add_argument("--root", default="server", help="folder for the database, artifacts, logs and password file")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    srv.add_argument("--pg-port", type=int, default=5432, help="PostgreSQL port (0: a free one)")
    srv.add_argument("--mlflow-port", type=int, default=5000, help="MLflow tracking server port (0: a free one)")
    srv.set_defaults(fn=_server)

    e = sub.add_parser("export", help="export a checkpoint to ONNX and torch.export with a parity check")
    e.add_argument("--run-id", default=None, help="MLflow run (default: best trial of the latest sweep)")
    e.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI of the run (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    e.add_argument("--out-dir", default="outputs/export", help="folder for model.onnx, model.pt2, export.json")
    e.add_argument("--atol", type=_non_negative, default=1e-4, help="largest allowed |difference| of scores")
    e.add_argument("--name", default=None,
                   help="registered model name (default: the run's MLflow experiment, e.g. dflab-demo)")
    e.add_argument("--no-register", action="store_true",
                   help="log the MLflow model to the run but register no version")
    e.set_defaults(fn=_export)

    pr = sub.add_parser("predict", help="score videos and images with a trained detector (CSV, JSON, annotated files)")
    pr.add_argument("paths", nargs="+", metavar="PATH", help="video or image files, folders (recursive), globs")
    pr.add_argument("--model", action="append", default=None, metavar="MODEL",
                    help="export folder, .ckpt file, MLflow run id or models:/<name>@<alias>; repeat for an "
                         "ensemble (default: the latest sweep's champion)")
    pr.add_argument("--out", default="outputs/predict", help="folder for predictions.csv/json and annotated files")
    pr.add_argument("--frames", type=_positive_int, default=None,
                    help="frames scored per face (default: as at evaluation, data.eval_clips_per_video clips)")
    pr.add_argument("--annotate", action="store_true",
                    help="write annotated videos (H.264 MP4) and images (PNG): boxes, scores, verdict, timeline")
    pr.add_argument("--cam", action="store_true", help="overlay Grad-CAM heat maps on the faces (implies --annotate)")
    verdict = pr.add_mutually_exclusive_group()
    verdict.add_argument("--threshold", type=_probability, default=None,
                         help="verdict threshold on the calibrated score (default: the model's, chosen on validation)")
    verdict.add_argument("--target-fpr", type=_open_probability, default=None,
                         help="choose the threshold for this false-positive rate on the model's validation videos")
    pr.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI for run ids and models:/ (default: $MLFLOW_TRACKING_URI, else "
                         "sqlite:///mlruns/mlflow.db)")
    pr.add_argument("--threads", type=_positive_int, default=2, help="decoder and face-detector threads")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(fn=_predict)

    f = sub.add_parser("faces", help="detect faces once for an experiment's dataset (cached)")
    f.add_argument("experiment", help="experiment YAML file whose dataset and face settings are used")
    f.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for train")
    f.set_defaults(fn=_faces)

    v = sub.add_parser("evaluate", help="score a checkpoint (or an ensemble) on the test split of several datasets")
    v.add_argument("datasets", nargs="+", help="experiment (or dataset) YAMLs naming the test sets")
    v.add_argument("--run-id", action="append", default=None,
                   help="MLflow run (default: best trial of the latest sweep); repeat for an ensemble")
    v.add_argument("--checkpoint", action="append", default=None,
                   help="a local .ckpt instead of an MLflow run; repeat for an ensemble")
    v.add_argument("--combine", choices=("mean_logit", "mean_prob"), default="mean_logit",
                   help="how an ensemble combines its members' scores")
    v.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI of the runs (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    v.add_argument("--set", action="append", metavar="key=value",
                   help="override applied to every dataset config (repeatable)")
    v.set_defaults(fn=_evaluate)

    data = sub.add_parser("data", help="dataset tools: check a layout, list the known datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="counts, missing/empty/unreadable videos, duplicates, leakage")
    c.add_argument("config", help="experiment YAML (or a YAML holding just a data: section)")
    c.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for train")
    c.add_argument("--no-probe", action="store_true", help="do not open the videos (faster)")
    c.add_argument("--deep", action="store_true",
                   help="decode every frame: list damaged videos with their frame ranges and check "
                        "every video's seeking (slow: a full decode of the dataset)")
    c.add_argument("--workers", type=_positive_int, default=4, help="threads that open or decode the videos")
    c.set_defaults(fn=_data_check)
    ls = dsub.add_parser("list", help="the dataset adapters and their options")
    ls.set_defaults(fn=_data_list)

    d = sub.add_parser("demo", help="generate the built-in demo dataset")
    d.add_argument("--root", default="data/demo", help="folder to write the demo dataset to")
    d.add_argument("--seed", type=_seed, default=0, help="seed of the generated dataset (0 to 2**32-1)")
    d.set_defaults(fn=_demo)
    return p


def _drop_advertisements(record: logging.LogRecord) -> bool:
    """Keep Lightning's log, minus its tips that advertise other products."""
    return "Tip:" not in str(record.msg)


_USER_ERRORS: dict[str, str | tuple[str, ...]] = {
    "dflab.config.errors": "ConfigError",
    "dflab.datasets.errors": "DatasetLayoutError",
    "dflab.models.checkpoint": "CheckpointError",
    "dflab.predict.inputs": "InputError",
    "dflab.predict.models": "ModelLoadError",
    "dflab.predict.cam": "CamError",
    "dflab.tracking.mlflow_utils": ("RunLookupError", "TrackingError"),
    "dflab.training.module": "NonFiniteLossError",  # the message names optim.lr
    "dflab.sweeps.sweep": "SweepFailedError",  # every trial failed; each error is on its MLflow run
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's input, not a bug: one line, exit status 2. An error
    class whose module was never imported cannot have been raised, so none is imported here
    (a config error must not wait for torch to load)."""
    found = [getattr(sys.modules[module], name) for module, names in _USER_ERRORS.items()
             if module in sys.modules for name in ((names,) if isinstance(names, str) else names)]
    return (FileNotFoundError, *found)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_drop_advertisements)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow an option (train exp.yaml --resume X trainer.max_epochs=9)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = args.debug or os.environ.get("DFLAB_DEBUG", "") not in ("", "0")
    try:
        return int(args.fn(args))
    except _user_errors() as err:
        if debug:
            raise
        command = " ".join(filter(None, (args.command, getattr(args, "data_command", None))))
        print(f"dflab {command}: error: {err}", file=sys.stderr)
        return 2
