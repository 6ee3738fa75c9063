"""Optuna sweeps logged to MLflow: one parent run per study, one child run per trial.

Every trial logs the same flattened experiment config as MLflow params, so the MLflow UI's
parallel-coordinates view shows every axis. The study lives in persistent Optuna storage
(SQLite by default, with heartbeats so a killed trial is marked failed on the next run), and a
second ``dflab sweep`` adds trials to the same study and the same parent run.
"""

from __future__ import annotations

import logging
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

import optuna
from pytorch_lightning.callbacks import Callback

from dflab.config import flatten, load_config, save_config, to_dict
from dflab.sweeps.space import SweepConfig, suggest
from dflab.tracking.mlflow_utils import client as mlflow_client
from dflab.tracking.mlflow_utils import ensure_experiment
from dflab.training.module import NonFiniteLossError
from dflab.training.train import run_experiment

log = logging.getLogger(__name__)


class OptunaPruning(Callback):
    """Report the monitored validation metric to Optuna each epoch and stop hopeless trials."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor

    def on_fit_start(self, trainer, pl_module) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        if run_id:
            self.trial.set_user_attr("mlflow_run_id", run_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or math.isnan(float(value)):
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch} "
                                     f"({self.monitor}={float(value):.4f})")


def _storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)


def _sampler(cfg: SweepConfig) -> optuna.samplers.BaseSampler:
    if cfg.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=cfg.sampler.seed)
    return optuna.samplers.TPESampler(seed=cfg.sampler.seed, n_startup_trials=cfg.sampler.n_startup_trials)


def _pruner(cfg: SweepConfig) -> optuna.pruners.BasePruner:
    if cfg.pruner.name == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner.n_startup_trials,
                                       n_warmup_steps=cfg.pruner.n_warmup_steps)


def _parent_run(client: Any, experiment_id: str, cfg: SweepConfig) -> str:
    """The study's MLflow parent run: reopened if it exists, created otherwise."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dflab.kind` = 'sweep' AND tags.`dflab.study` = '{cfg.study}' "
                      f"AND tags.`dflab.storage` = '{cfg.storage}'",
        max_results=1, order_by=["attributes.start_time ASC"],
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=f"sweep-{cfg.study}",
                            tags={"dflab.kind": "sweep", "dflab.study": cfg.study, "dflab.storage": cfg.storage})
    for key, value in flatten(to_dict(cfg)).items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def run_sweep(cfg: SweepConfig, n_trials: int | None = None, progress: bool = True) -> optuna.Study:
    """Add ``n_trials`` trials (default ``cfg.n_trials``) to the study and log them to MLflow.

    Returns:
        The Optuna study (all its trials, from every run of the sweep).
    """
    base = load_config(cfg.experiment, cfg.overrides)  # refuses bad keys before any trial
    base.logging.experiment = cfg.mlflow_experiment
    client = mlflow_client(base.logging)
    experiment_id = ensure_experiment(base.logging)
    parent = _parent_run(client, experiment_id, cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=cfg.study, storage=_storage(cfg.storage),
                                direction=typing.cast(typing.Literal["minimize", "maximize"], cfg.direction), sampler=_sampler(cfg), pruner=_pruner(cfg),
                                load_if_exists=True)
    study.set_user_attr("mlflow_parent_run_id", parent)
    total = n_trials if n_trials is not None else cfg.n_trials
    print(f"Sweep {cfg.study!r}: {len(study.trials)} trials so far in {cfg.storage}; adding {total}. "
          f"MLflow parent run {parent}")

    def objective(trial: optuna.Trial) -> float:
        overrides = [*cfg.overrides, *suggest(trial, cfg.params)]
        exp = load_config(cfg.experiment, overrides)
        exp.logging.experiment = cfg.mlflow_experiment
        exp.logging.run_name = f"{cfg.study}-trial-{trial.number:03d}"
        tags = {"mlflow.parentRunId": parent, "dflab.study": cfg.study, "optuna.trial": str(trial.number)}
        print(f"\n── trial {trial.number}: {' '.join(overrides[len(cfg.overrides):])}")
        try:
            result = run_experiment(exp, tags=tags, callbacks=[OptunaPruning(trial, exp.monitor)],
                                    progress=progress, model_summary=False)
        except (optuna.TrialPruned, NonFiniteLossError) as err:
            run_id = trial.user_attrs.get("mlflow_run_id")
            if run_id:
                state = "PRUNED" if isinstance(err, optuna.TrialPruned) else "FAILED"
                client.set_tag(run_id, "optuna.state", state)
                client.set_tag(run_id, "dflab.error", str(err)[:5000])
                client.set_terminated(run_id, "KILLED" if state == "PRUNED" else "FAILED")
            print(f"   trial {trial.number}: {err}")
            raise
        trial.set_user_attr("mlflow_run_id", result.run_id)
        client.set_tag(result.run_id, "optuna.state", "COMPLETE")
        if math.isnan(result.best_score):
            raise NonFiniteLossError(f"trial {trial.number}: {exp.monitor} was never finite")
        return result.best_score

    try:
        study.optimize(objective, n_trials=total,
                       timeout=cfg.timeout_min * 60 if cfg.timeout_min else None,
                       catch=(NonFiniteLossError,), gc_after_trial=True)
    finally:
        _summarise(study, cfg, client, parent)
    return study


def _summarise(study: optuna.Study, cfg: SweepConfig, client: Any, parent: str) -> None:
    """Log the study's best trial, a trials table and a parallel-coordinates plot to the parent run."""
    from rich.console import Console
    from rich.table import Table

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    table = Table(title=f"study {cfg.study}: {len(study.trials)} trials ({len(complete)} complete)")
    for col in ("#", "state", "value", *cfg.params, "mlflow run"):
        table.add_column(col)
    for t in study.trials:
        value = "-" if t.value is None else f"{t.value:.4f}"
        table.add_row(str(t.number), t.state.name, value,
                      *(_fmt(t.params.get(k, "-")) for k in cfg.params), t.user_attrs.get("mlflow_run_id", "-"))
    Console(width=160).print(table)
    if not complete:
        client.set_terminated(parent, "FAILED")
        print("No trial completed.")
        return
    best = study.best_trial
    best_run = best.user_attrs.get("mlflow_run_id", "")
    client.log_metric(parent, "best_value", float(best.value or math.nan))
    client.log_metric(parent, "n_complete_trials", float(len(complete)))
    client.set_tag(parent, "best_run_id", best_run)
    client.set_tag(parent, "best_trial", str(best.number))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        study.trials_dataframe().to_csv(tmpdir / "trials.csv", index=False)
        client.log_artifact(parent, str(tmpdir / "trials.csv"))
        best_cfg = load_config(cfg.experiment, [*cfg.overrides, *(f"{k}={v}" for k, v in best.params.items())])
        client.log_artifact(parent, str(save_config(best_cfg, tmpdir / "best_config.yaml")))
        plot = _parallel_coordinates(study, tmpdir / "parallel_coordinates.png", best_cfg.monitor)
        if plot is not None:
            client.log_artifact(parent, str(plot), "plots")
    client.set_terminated(parent, "FINISHED")
    params = "  ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    print(f"\nBest trial {best.number}: value {best.value:.4f}  {params}")
    print(f"Best MLflow run {best_run} (parent {parent}); compare trials with `make ui`.")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def parallel_coordinates_figure(study: optuna.Study, objective: str):
    """Optuna's parallel-coordinates plot of the study, its objective axis named after the
    metric (``None`` when Optuna cannot draw it, e.g. no complete trial)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ax = plot_parallel_coordinate(study, target_name=objective)
        except (ValueError, ImportError) as err:
            log.warning("parallel-coordinates plot skipped: %s", err)
            return None
    ax.set_title(f"study {study.study_name}: {objective} ({study.direction.name.lower()}) per trial")
    fig = typing.cast(plt.Figure, ax.figure)
    fig.set_size_inches(10, 5)
    fig.tight_layout()
    return fig


def _parallel_coordinates(study: optuna.Study, path: Path, objective: str) -> Path | None:
    import matplotlib.pyplot as plt

    fig = parallel_coordinates_figure(study, objective)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
