"""Run one experiment: data → model → Lightning Trainer → MLflow run with artifacts."""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from mlflow.exceptions import MlflowException
from pytorch_lightning.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
)
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from dflab.config import ConfigError, ExperimentConfig, build_config, flatten, save_config, to_dict
from dflab.data.datamodule import DeepfakeDataModule
from dflab.data.items import dataset_roots
from dflab.models.checkpoint import CheckpointError, build_net, read_checkpoint
from dflab.tracking.mlflow_utils import (
    TrackingError,
    check_writable,
    ensure_experiment,
    log_dataset_inputs,
    prepare_tracking,
)
from dflab.training.breakdown import breakdown, breakdown_metrics, breakdown_table, write_breakdown
from dflab.training.epoch_log import EpochLines, interactive
from dflab.training.freeze import BackboneFreeze
from dflab.training.module import DetectorModule
from dflab.training.reports import metrics_table, model_description, plot_roc, write_predictions
from dflab.utils.quiet import quiet_known_warnings
from dflab.utils.report import report
from dflab.utils.threads import set_training_threads

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a finished run leaves behind.

    Attributes:
        run_id: MLflow run id (``None`` on non-zero DDP ranks).
        best_score: best value of the monitored validation metric.
        best_checkpoint: local path of the best checkpoint.
        metrics: final logged metrics (validation of the best checkpoint and test, if any).
    """

    run_id: str | None
    best_score: float
    best_checkpoint: str
    metrics: dict[str, float] = field(default_factory=dict)


def build_module(cfg: ExperimentConfig) -> DetectorModule:
    """The LightningModule for a config, with its network from :func:`build_net`."""
    module = DetectorModule(build_net(cfg), cfg.optim, config=to_dict(cfg), track_score=cfg.faces.track_score)
    size = cfg.data.image_size or 224
    module.example_input_array = torch.zeros(1, cfg.data.frames_per_clip, 3, size, size)  # sizes and FLOPs in the summary
    return module


RESUMABLE_KEYS = frozenset({
    "trainer.max_epochs", "trainer.devices", "trainer.accelerator", "trainer.strategy", "trainer.num_threads",
    "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.early_stopping_patience",
    "data.num_workers", "faces.workers",
})
"""Config keys a resumed run may change; every other key stays what the checkpoint says."""


def _resume_state(resume: str | Path, output_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    if not str(resume).strip():
        raise FileNotFoundError("--resume: give a checkpoint file or the MLflow run id of a run trained here")
    path = Path(resume)
    if not path.is_file():
        found = sorted(Path(output_dir).glob(f"*/{resume}/checkpoints/last.ckpt"))
        if not found:
            raise FileNotFoundError(
                f"--resume {resume}: not a checkpoint file, and no {output_dir}/*/{resume}/"
                "checkpoints/last.ckpt (give the .ckpt path, or the run id of a run trained here)")
        path = found[0]
    return path, read_checkpoint(path)  # refuses a crafted file before Lightning opens it


def resume_point(resume: str | Path, output_dir: str | Path) -> tuple[Path, str | None]:
    """The checkpoint to resume from and the MLflow run it belongs to.

    Args:
        resume: a ``.ckpt`` file, or an MLflow run id whose ``last.ckpt`` lies under
            ``output_dir/<experiment id>/<run id>/checkpoints/``.

    Raises:
        FileNotFoundError: neither a checkpoint file nor a run with a ``last.ckpt`` (named).
        CheckpointError: the file is not a dflab checkpoint, or would run code when loaded.
    """
    path, state = _resume_state(resume, output_dir)
    return path, state.get("dflab_mlflow_run_id")


def resumed_config(resume: str | Path, overrides: Sequence[str] = (), output_dir: str | Path = "outputs"
                   ) -> ExperimentConfig:
    """The experiment config stored in a checkpoint, with ``key=value`` overrides applied, so a
    resumed run needs none of its original overrides repeated.

    Raises:
        ConfigError: an override changes a key a resumed run must keep (see :data:`RESUMABLE_KEYS`).
    """
    path, state = _resume_state(resume, output_dir)
    try:
        build_config(state["dflab_config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its stored config is not valid here ({err})") from None
    cfg = build_config(state["dflab_config"], overrides)
    check_resumable(cfg, state["dflab_config"], resume)
    return cfg


def check_resumable(cfg: ExperimentConfig, stored: Mapping[str, Any], resume: str | Path) -> None:
    """Refuse, by key, a config that differs from the checkpoint's where a resumed run cannot.

    Raises:
        ConfigError: names the first differing key, both values and what may change.
    """
    old, new = flatten(to_dict(build_config(stored))), flatten(to_dict(cfg))
    for key in sorted(new):
        if key in RESUMABLE_KEYS or key not in old or _same(old[key], new[key]):
            continue
        raise ConfigError(f"--resume {resume}: {key} is {new[key]!r} here but {old[key]!r} in the checkpoint; "
                          f"a resumed run keeps its config (only {', '.join(sorted(RESUMABLE_KEYS))} may "
                          "change). Leave the key out to use the checkpoint's value, or start a new run")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: 16-bit mixed precision on a CUDA GPU, else 32-bit; anything else unchanged."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "16-mixed" if gpu else "32-true"


def _extra_callbacks(cfg: ExperimentConfig) -> list[Callback]:
    """Early stopping and the frozen-backbone warm-up, when configured."""
    extra: list[Callback] = []
    if cfg.trainer.early_stopping_patience > 0:
        extra.append(EarlyStopping(monitor=cfg.monitor, mode=_mode(cfg.monitor),
                                   patience=cfg.trainer.early_stopping_patience))
    if cfg.optim.freeze_backbone_epochs > 0:
        extra.append(BackboneFreeze(cfg.optim.freeze_backbone_epochs))
    return extra


class LogDatasetInputs(Callback):
    """At the start of training, log every split as an MLflow dataset input of the run (with a
    digest of its videos, labels and face settings) and the tag ``dflab.data_digest``, so two
    runs on different data are never compared unknowingly."""

    def __init__(self, logger: MLFlowLogger) -> None:
        self.logger = logger

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        run_id = self.logger.run_id
        if not trainer.is_global_zero or not isinstance(datamodule, DeepfakeDataModule) or run_id is None:
            return
        digests = datamodule.dataset_digests()
        client = self.logger.experiment
        log_dataset_inputs(client, run_id, digests)
        combined = hashlib.sha256("".join(d["digest"] for d in digests).encode()).hexdigest()[:16]
        client.set_tag(run_id, "dflab.data_digest", combined)


def _mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


@quiet_known_warnings()
def run_experiment(
    cfg: ExperimentConfig,
    *,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    model_summary: bool = True,
    resume: str | Path | None = None,
    module: DetectorModule | None = None,
) -> RunResult:
    """Train (and test, when the data has a test split) one experiment, logged to MLflow.

    Args:
        cfg: resolved experiment config.
        tags: extra MLflow run tags (a sweep passes ``mlflow.parentRunId`` here).
        callbacks: extra Lightning callbacks (e.g. Optuna pruning).
        progress: progress bars.
        model_summary: print the layer summary before training.
        resume: a checkpoint (or the MLflow run id of a run whose ``last.ckpt`` is under
            ``logging.output_dir``) to continue from: weights, optimizer and scheduler state,
            epoch and the best-checkpoint record are restored, and metrics go on in the same
            MLflow run. Raise ``trainer.max_epochs`` to train further than the run planned.
        module: the LightningModule to train (default: :func:`build_module`); with
            ``triplet.enabled`` and no module, both triplet stages run
            (:func:`~dflab.training.triplet.run_triplet`).
    """
    if cfg.triplet.enabled and module is None:
        from dflab.training.triplet import run_triplet

        return run_triplet(cfg, tags=tags, callbacks=callbacks, progress=progress,
                           model_summary=model_summary)
    # A checkpoint to resume from is checked first: a crafted or wrong file, or a config that
    # differs from the checkpoint's where it must not, stops here.
    ckpt_path, resumed_run = None, None
    if resume:
        ckpt_path, state = _resume_state(resume, cfg.logging.output_dir)
        resumed_run = state.get("dflab_mlflow_run_id")
        check_resumable(cfg, state["dflab_config"], resume)
    _check_strategy(cfg.trainer.strategy)
    # A read-only mlruns/ or cache is said now, not after training.
    check_writable(cfg.logging, cfg.logging.output_dir, faces__cache_dir=cfg.faces.cache_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    on_cpu = cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available()
    cpu_processes = cfg.trainer.devices if on_cpu else 1
    set_training_threads(cfg.trainer.num_threads, cfg.data.num_workers, cpu_processes)
    datamodule = DeepfakeDataModule(cfg.data, cfg.faces, seed=cfg.seed, progress=progress)
    module = module if module is not None else build_module(cfg)
    if getattr(rank_zero_only, "rank", 0) == 0:
        # The dataset is read and checked before the MLflow run exists: a layout refused here
        # leaves no FAILED run behind. (Other DDP ranks set up inside fit, as Lightning does.)
        datamodule.prepare_data()
        datamodule.setup("fit")
    if resume:  # weights that do not fit the model are refused before the run is reopened
        _check_weights_fit(module, state, ckpt_path, cfg)

    uri = prepare_tracking(cfg.logging)
    ensure_experiment(cfg.logging)
    logger = MLFlowLogger(
        experiment_name=cfg.logging.experiment, run_name=cfg.logging.run_name or cfg.name,
        tracking_uri=uri, tags={"dflab.kind": "train", "dflab.experiment": cfg.name, **(tags or {})},
        log_model=False, run_id=resumed_run,
    )
    monitor = cfg.monitor
    checkpoint = ModelCheckpoint(monitor=monitor, mode=_mode(monitor), save_top_k=1, save_last=True,
                                 filename="best-epoch{epoch:02d}", auto_insert_metric_name=False)
    t = cfg.trainer
    bars = progress and t.enable_progress_bar and interactive()
    lines = [EpochLines(monitor)] if progress and not bars else []  # logs that are files, or no bar wanted
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, strategy=t.strategy,
        precision=resolve_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic, enable_progress_bar=bars,
        num_sanity_val_steps=0, default_root_dir=cfg.logging.output_dir, logger=logger,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch"), LogDatasetInputs(logger),
                   *_extra_callbacks(cfg), *lines, *callbacks],
        enable_model_summary=progress and model_summary,
    )
    # The MLflow run opens here; from now on a failure ends it FAILED (KILLED on Ctrl-C).
    try:
        return _fit_and_report(cfg, module, datamodule, logger, trainer, checkpoint, ckpt_path, resumed_run)
    except BaseException as err:
        _end_failed_run(logger, err)
        raise


def _fit_and_report(cfg: ExperimentConfig, module: DetectorModule, datamodule: DeepfakeDataModule,
                    logger: MLFlowLogger, trainer: pl.Trainer, checkpoint: ModelCheckpoint,
                    ckpt_path: Path | None, resumed_run: str | None) -> RunResult:
    monitor = cfg.monitor
    if resumed_run is None:
        logger.log_hyperparams({k: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
                                for k, v in flatten(to_dict(cfg)).items()})
    else:  # params stay those of the first start (MLflow refuses to change them)
        logger.experiment.set_tag(resumed_run, "dflab.resumed_from", str(ckpt_path))
    module.mlflow_run_id = logger.run_id

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    best_path = checkpoint.best_model_path or checkpoint.last_model_path
    score = checkpoint.best_model_score
    best_score = float(score) if score is not None else math.nan

    # Validation and test metrics of the selected checkpoint (chosen on validation only).
    final: dict[str, Any] = {}
    curves: dict[str, tuple[Any, Any, Any]] = {}
    stages = ["val"] + (["test"] if datamodule.has_split("test") else [])
    loggers, trainer.loggers = trainer.loggers, []  # keep the per-epoch val/* history clean
    for stage in stages:
        run = trainer.validate if stage == "val" else trainer.test
        out = run(module, datamodule=datamodule, ckpt_path=best_path or None, verbose=False, weights_only=True)
        final.update({k: float(v) for k, v in (out[0] if out else {}).items()})
        if stage in module.predictions:
            curves[stage] = module.predictions[stage]
    trainer.loggers = loggers
    datamodule.gather_skipped(trainer)

    result = RunResult(logger.run_id, best_score, best_path, {k: v for k, v in final.items() if "/" in k})
    if trainer.is_global_zero:
        what = f"{cfg.logging.run_name or cfg.name} ({model_description(cfg.model, cfg.data, cfg.triplet)})"
        report(metrics_table(result.metrics, title=f"{what}: best checkpoint by {monitor}"))
        try:
            _log_artifacts(cfg, logger, datamodule, checkpoint, curves, result, trainer.global_step)
        except (OSError, MlflowException) as err:
            logger.experiment.set_tag(logger.run_id, "dflab.error", f"{type(err).__name__}: {err}"[:5000])
            logger.experiment.set_terminated(logger.run_id, "FAILED")
            raise TrackingError(f"MLflow run {logger.run_id}: its artifacts could not be stored "
                                f"({type(err).__name__}: {err}); the run is marked FAILED. The trained "
                                f"checkpoint is kept at {best_path}") from None
        report(f"MLflow run {result.run_id}  best {monitor}={best_score:.4f}  checkpoint {best_path}")
    return result


def _check_strategy(name: str) -> None:
    """Refuse a ``trainer.strategy`` Lightning does not know, before any work.

    Raises:
        ConfigError: names the key and the strategies Lightning offers.
    """
    from pytorch_lightning.strategies import StrategyRegistry

    known = ["auto", *sorted(StrategyRegistry.available_strategies())]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"trainer.strategy: {name!r} is not a Lightning strategy{hint}; "
                          f"choose from {', '.join(known)}")


def _check_weights_fit(module: DetectorModule, state: Mapping[str, Any], path: Path | None,
                       cfg: ExperimentConfig) -> None:
    """Refuse a checkpoint whose weights do not fit the model the config builds.

    Raises:
        CheckpointError: names the file, the model and the first mismatching weights.
    """
    try:
        module.load_state_dict(state["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError, AttributeError) as err:
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise CheckpointError(f"{path}: its weights do not fit {model_description(cfg.model, cfg.data, cfg.triplet)} "
                              f"({detail[:200]})") from None


def _end_failed_run(logger: MLFlowLogger, err: BaseException) -> None:
    """End the run ``FAILED`` (``KILLED`` on Ctrl-C) with the error as tag ``dflab.error``,
    unless it already ended; never hide ``err`` behind a tracking error."""
    run_id = getattr(logger, "_run_id", None)
    if run_id is None:  # the run was never opened
        return
    try:
        client = logger.experiment
        if client.get_run(run_id).info.status != "RUNNING":
            return
        interrupted = isinstance(err, KeyboardInterrupt) or (
            isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt))
        client.set_tag(run_id, "dflab.error", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")
    except Exception as tracking:  # the original error matters more
        log.warning("MLflow run %s could not be marked failed: %s", run_id, tracking)


def store_checkpoint(client: Any, run_id: str, path: Path) -> None:
    """Log a checkpoint as an artifact of the run under ``checkpoints/``.

    With a local artifact store on the same file system the artifact is a hard link to the file
    training wrote, so the weights are on disk once; otherwise the file is uploaded (copied).
    """
    uri = client.get_run(run_id).info.artifact_uri
    if uri.startswith("file://") or "://" not in uri:
        target = Path(uri.removeprefix("file://")) / "checkpoints" / path.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            os.link(path, target)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    client.log_artifact(run_id, str(path), "checkpoints")


def _log_artifacts(cfg: ExperimentConfig, logger: MLFlowLogger, datamodule: DeepfakeDataModule,
                   checkpoint: ModelCheckpoint, curves: Mapping[str, tuple[Any, Any, Any]],
                   result: RunResult, step: int = 0) -> None:
    client, run_id = logger.experiment, logger.run_id
    # Metrics of the selected checkpoint: validation under best/, test under test/, at the
    # run's last step (a resumed run adds its new values rather than repeating step 0).
    client.log_metric(run_id, f"best/{cfg.monitor}", result.best_score, step=step)
    for key, value in result.metrics.items():
        if key != cfg.monitor:
            client.log_metric(run_id, f"best/{key}" if key.startswith("val/") else key, value, step=step)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        client.log_artifact(run_id, str(save_config(cfg, tmpdir / "config.yaml")))
        client.log_artifact(run_id, str(datamodule.write_report(tmpdir / "data_report.json")))
        probs_by_stage = {}
        for stage, (vids, probs, labels) in curves.items():
            items = datamodule.split_items[stage]
            client.log_artifact(run_id, str(write_predictions(tmpdir / f"predictions_{stage}.csv", items, vids,
                                                              probs, labels, dataset_roots(cfg.data))),
                                "predictions")
            probs_by_stage[f"{stage} (video)"] = (probs.numpy(), labels.numpy())
            rows = breakdown(items, vids, probs, labels)
            if rows:
                for key, value in breakdown_metrics(stage, rows).items():
                    client.log_metric(run_id, key, value, step=step)
                client.log_artifact(run_id, str(write_breakdown(tmpdir / f"breakdown_{stage}.csv", stage, rows)),
                                    "reports")
                report(breakdown_table(stage, rows))
        if probs_by_stage:
            title = f"{cfg.logging.run_name or cfg.name}: {model_description(cfg.model, cfg.data, cfg.triplet)}"
            client.log_artifact(run_id, str(plot_roc(probs_by_stage, tmpdir / "roc.png", title)), "plots")
    if cfg.logging.log_checkpoint and result.best_checkpoint:
        store_checkpoint(client, str(run_id), Path(result.best_checkpoint))
    if datamodule.excluded:
        log.warning("%d videos left out (see data_report.json): %s", len(datamodule.excluded),
                    "; ".join(e["reason"] for e in datamodule.excluded[:5]))
