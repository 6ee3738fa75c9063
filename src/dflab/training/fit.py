"""One training run: data → model → Lightning Trainer → one MLflow run with its artifacts."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from mlflow.exceptions import MlflowException
from pytorch_lightning.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
)
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import ConfigError, ExperimentConfig, to_dict
from dflab.config.schema import tracking_uri_or_default
from dflab.metrics.reports import metrics_table, model_description
from dflab.models.checkpoint import build_net
from dflab.tracking.mlflow_utils import (
    TrackingError,
    check_writable,
    ensure_experiment,
    mlflow_params,
    prepare_tracking,
    store_lock,
)
from dflab.training.artifacts import end_failed_run, log_run_artifacts
from dflab.training.calibration import calibrate_validation, store_in_checkpoint
from dflab.training.callbacks import LogDatasetInputs, extra_callbacks, monitor_mode
from dflab.training.costs import model_costs
from dflab.training.epoch_log import EpochLines, interactive
from dflab.training.module import DetectorModule
from dflab.training.result import RunResult
from dflab.training.resume import check_resumable, check_weights_fit, resume_state
from dflab.utils.report import report
from dflab.utils.threads import set_training_threads

log = logging.getLogger(__name__)


def build_module(cfg: ExperimentConfig) -> DetectorModule:
    """The LightningModule for a config, with its network from :func:`build_net`."""
    module = DetectorModule(build_net(cfg), cfg.optim, config=to_dict(cfg), track_score=cfg.faces.track_score)
    size = cfg.data.image_size or 224
    module.example_input_array = torch.zeros(1, cfg.data.frames_per_clip, 3, size, size)  # sizes and FLOPs in the summary
    return module


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: 16-bit mixed precision on a CUDA GPU, else 32-bit; anything else unchanged."""
    if precision != "auto":
        return precision
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "16-mixed" if gpu else "32-true"


def fit_experiment(
    cfg: ExperimentConfig,
    *,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    model_summary: bool = True,
    resume: str | Path | None = None,
    module: DetectorModule | None = None,
) -> RunResult:
    """Train (and test, when the data has a test split) one model, logged to one MLflow run.

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
        module: the LightningModule to train (default: :func:`build_module`).
    """
    # A checkpoint to resume from is checked first: a crafted or wrong file, or a config that
    # differs from the checkpoint's where it must not, stops here.
    ckpt_path, resumed_run = None, None
    if resume:
        ckpt_path, state = resume_state(resume, cfg.logging.output_dir)
        resumed_run = state.get("dflab_mlflow_run_id")
        check_resumable(cfg, state["dflab_config"], resume)
    check_strategy(cfg.trainer.strategy)
    # A read-only mlruns/ or cache is said now, not after training.
    check_writable(cfg.logging, cfg.logging.output_dir, faces__cache_dir=cfg.faces.cache_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    on_cpu = cfg.trainer.accelerator == "cpu" or not torch.cuda.is_available()
    cpu_processes = processes_per_node(cfg.trainer.devices) if on_cpu else 1
    set_training_threads(cfg.trainer.num_threads, cfg.data.num_workers, cpu_processes)
    datamodule = DeepfakeDataModule(cfg.data, cfg.faces, seed=cfg.seed, progress=progress)
    module = module if module is not None else build_module(cfg)
    if getattr(rank_zero_only, "rank", 0) == 0:
        # The dataset is read and checked before the MLflow run exists: a layout refused here
        # leaves no FAILED run behind. (Other DDP ranks set up inside fit, as Lightning does.)
        datamodule.prepare_data()
        datamodule.setup("fit")
    if resume:  # weights that do not fit the model are refused before the run is reopened
        check_weights_fit(module, state, ckpt_path, cfg)

    if getattr(rank_zero_only, "rank", 0) == 0:  # one process opens the store; other ranks never log
        uri = prepare_tracking(cfg.logging)
        ensure_experiment(cfg.logging)
    else:
        uri = tracking_uri_or_default(cfg.logging.tracking_uri)
    with store_lock(uri):  # Lightning's logger connects in every process; never before the store exists
        logger = MLFlowLogger(
            experiment_name=cfg.logging.experiment, run_name=cfg.logging.run_name or cfg.name,
            tracking_uri=uri, tags={"dflab.kind": "train", "dflab.experiment": cfg.name, **(tags or {})},
            log_model=False, run_id=resumed_run,
        )
    monitor = cfg.monitor
    checkpoint = ModelCheckpoint(monitor=monitor, mode=monitor_mode(monitor), save_top_k=1, save_last=True,
                                 filename="best-epoch{epoch:02d}", auto_insert_metric_name=False)
    t = cfg.trainer
    bars = progress and t.enable_progress_bar and interactive()
    lines = [EpochLines(monitor)] if progress and not bars else []  # logs that are files, or no bar wanted
    trainer = pl.Trainer(
        max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
        strategy=t.strategy, sync_batchnorm=t.sync_batchnorm,
        precision=resolve_precision(t.precision, t.accelerator),  # type: ignore[arg-type]
        accumulate_grad_batches=t.accumulate_grad_batches,
        gradient_clip_val=t.gradient_clip_val, limit_train_batches=t.limit_train_batches,
        limit_val_batches=t.limit_val_batches, log_every_n_steps=t.log_every_n_steps,
        deterministic=t.deterministic, enable_progress_bar=bars,
        num_sanity_val_steps=0, default_root_dir=cfg.logging.output_dir, logger=logger,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="epoch"), LogDatasetInputs(logger),
                   *extra_callbacks(cfg), *lines, *callbacks],
        enable_model_summary=progress and model_summary,
    )
    # The MLflow run opens here; from now on a failure ends it FAILED (KILLED on Ctrl-C).
    try:
        return _fit_and_report(cfg, module, datamodule, logger, trainer, checkpoint, ckpt_path, resumed_run)
    except BaseException as err:
        end_failed_run(logger, err)
        raise


def _fit_and_report(cfg: ExperimentConfig, module: DetectorModule, datamodule: DeepfakeDataModule,
                    logger: MLFlowLogger, trainer: pl.Trainer, checkpoint: ModelCheckpoint,
                    ckpt_path: Path | None, resumed_run: str | None) -> RunResult:
    monitor = cfg.monitor
    if resumed_run is None:
        logger.log_hyperparams(mlflow_params(cfg))
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
    if trainer.is_global_zero and "val" in curves:  # temperature and threshold for scoring new files
        result.calibration = calibrate_validation(cfg, datamodule.split_items["val"], curves["val"])
        if result.calibration is not None and best_path:
            store_in_checkpoint(best_path, result.calibration)
    if trainer.is_global_zero:  # what the model costs to run: a sweep may trade accuracy against it
        size = cfg.data.image_size or 224
        example = getattr(module, "example_input_array", None)
        if not isinstance(example, torch.Tensor):
            example = torch.zeros(1, cfg.data.frames_per_clip, 3, size, size)
        result.metrics.update(model_costs(module, example))
    if trainer.is_global_zero:
        what = f"{cfg.logging.run_name or cfg.name} ({model_description(cfg.model, cfg.data, cfg.triplet)})"
        report(metrics_table(result.metrics, title=f"{what}: best checkpoint by {monitor}"))
        try:
            log_run_artifacts(cfg, logger, datamodule, checkpoint, curves, result, trainer.global_step)
        except (OSError, MlflowException) as err:
            logger.experiment.set_tag(logger.run_id, "dflab.error", f"{type(err).__name__}: {err}"[:5000])
            logger.experiment.set_terminated(logger.run_id, "FAILED")
            raise TrackingError(f"MLflow run {logger.run_id}: its artifacts could not be stored "
                                f"({type(err).__name__}: {err}); the run is marked FAILED. The trained "
                                f"checkpoint is kept at {best_path}") from None
        report(f"MLflow run {result.run_id}  best {monitor}={best_score:.4f}  checkpoint {best_path}")
    return result


def processes_per_node(devices: int | str | list[int]) -> int:
    """Training processes on this machine for ``trainer.devices`` on CPU (``auto``/-1: one)."""
    if isinstance(devices, list):
        return len(devices)
    return devices if isinstance(devices, int) and devices > 0 else 1


def check_strategy(name: str) -> None:
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


