"""Optuna sweeps logged to MLflow: one parent run per study, one child run per trial.

Every trial logs the same flattened experiment config as MLflow params, so the MLflow UI's
parallel-coordinates view shows every axis. The study lives in persistent Optuna storage
(SQLite by default, with heartbeats so a killed trial is marked failed on the next run), and a
second ``dflab sweep`` adds trials to the same study and the same parent run.

A trial that raises (out of memory, an undecodable video, a bad sampled value, a bug) is one
failed trial, not the end of the sweep: Optuna marks it ``FAIL`` and goes on with the next one,
its MLflow run ends ``FAILED`` with the error as the tag ``dflab.error`` (its traceback in the
artifact ``error.txt``), and the trial keeps the error as its user attribute ``error``. Only
Ctrl-C (or the study's ``timeout_min``) stops a sweep; the trial then running is marked failed,
its MLflow run and the parent run ``KILLED``, and the finished trials stay in the study.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import tempfile
import threading
import traceback
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from pytorch_lightning.callbacks import Callback

from dflab.config import flatten, save_config, to_dict
from dflab.datasets.resolve import resolve_items
from dflab.experiment import load_experiment
from dflab.sweeps.space import SweepConfig, suggest
from dflab.tracking.mlflow_utils import check_writable, ensure_experiment
from dflab.tracking.mlflow_utils import client as mlflow_client
from dflab.training.module import NonFiniteLossError
from dflab.training.train import run_experiment
from dflab.utils.quiet import quiet_known_warnings
from dflab.utils.report import report
from dflab.utils.tables import render_table

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


@quiet_known_warnings()
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


class SweepFailedError(RuntimeError):
    """Every trial a sweep run started failed (the message names the first trial's error; each
    trial's error is on its MLflow run and in the study). ``study`` holds all the trials."""

    def __init__(self, message: str, study: optuna.Study) -> None:
        super().__init__(message)
        self.study = study


def error_line(err: BaseException) -> str:
    """What a failed trial records: ``Type: first line of the message``, at most 500 characters."""
    if isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt):
        err = err.__context__  # Lightning answers Ctrl-C with sys.exit(1)
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 500 else text[:497] + "..."


def _trial_run(client: Any, experiment_id: str, parent: str, trial: optuna.Trial, run_name: str,
               tags: dict[str, str], exp: Any) -> str:
    """The trial's MLflow run: the one its training opened, else a new one (the trial failed
    before training started) holding its config, or its sampled values when that did not load."""
    from mlflow.entities import Param

    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        return run_id
    found = client.search_runs(
        [experiment_id], max_results=1,
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}' AND tags.`optuna.trial` = '{trial.number}'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=run_name, tags={"dflab.kind": "train", **tags})
    values = flatten(to_dict(exp)) if exp is not None else dict(trial.params)
    params = [Param(k, str(v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))[:6000])
              for k, v in values.items()]
    client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


def run_sweep(cfg: SweepConfig, n_trials: int | None = None, progress: bool = True) -> optuna.Study:
    """Add ``n_trials`` trials (default ``cfg.n_trials``) to the study and log them to MLflow.

    A trial that raises is marked failed (Optuna ``FAIL``, MLflow ``FAILED``, the error in the
    trial's user attribute ``error`` and its run's tag ``dflab.error``) and the sweep goes on;
    the parent run ends ``FINISHED`` when at least one trial of this call completed.

    Returns:
        The Optuna study (all its trials, from every run of the sweep).

    Raises:
        SweepFailedError: every trial of this call failed (the parent run ends ``FAILED``).
        KeyboardInterrupt: Ctrl-C outside training; inside training Lightning turns it into
            ``SystemExit(1)``, which is raised as it is. Either way the trial then running is
            marked failed, its MLflow run and the parent run ``KILLED``, and the finished trials
            are kept.
    """
    base = load_experiment(cfg.experiment, cfg.overrides)  # refuses bad keys before any trial
    base.logging.experiment = cfg.mlflow_experiment
    check_writable(base.logging, base.logging.output_dir)
    if cfg.storage.startswith("sqlite:///"):  # the Optuna database, checked like MLflow's
        check_writable(replace(base.logging, tracking_uri=cfg.storage))
    if not any(k.startswith(("data.source", "data.root", "data.options", "data.extra_sources")) for k in cfg.params):
        # Every trial reads the same dataset: a layout refused now fails no trial and no run.
        resolve_items(base.data, progress=progress)
    client = mlflow_client(base.logging)
    experiment_id = ensure_experiment(base.logging)
    parent = _parent_run(client, experiment_id, cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=cfg.study, storage=_storage(cfg.storage),
                                direction=typing.cast(typing.Literal["minimize", "maximize"], cfg.direction), sampler=_sampler(cfg), pruner=_pruner(cfg),
                                load_if_exists=True)
    study.set_user_attr("mlflow_parent_run_id", parent)
    total = n_trials if n_trials is not None else cfg.n_trials
    report(f"Sweep {cfg.study!r}: {len(study.trials)} trials so far in {cfg.storage}; adding {total}. "
          f"MLflow parent run {parent}")

    def record_failure(trial: optuna.Trial, run_name: str, tags: dict[str, str], exp: Any,
                       err: BaseException, status: str) -> str | None:
        """Keep the error on the trial and on its MLflow run, and end that run with ``status``."""
        error = error_line(err)
        trial.set_user_attr("error", error)
        try:
            run_id = _trial_run(client, experiment_id, parent, trial, run_name, tags, exp)
            trial.set_user_attr("mlflow_run_id", run_id)
            client.set_tag(run_id, "optuna.state", "FAIL")
            client.set_tag(run_id, "dflab.error", error)
            client.log_text(run_id, "".join(traceback.format_exception(err)), "error.txt")
            client.set_terminated(run_id, status)
            return run_id
        except Exception as mlflow_err:  # the trial's own error matters more than this one
            log.warning("trial %d: its failure could not be recorded in MLflow: %s", trial.number,
                        error_line(mlflow_err))
            return None

    def objective(trial: optuna.Trial) -> float:
        run_name = f"{cfg.study}-trial-{trial.number:03d}"
        tags = {"mlflow.parentRunId": parent, "dflab.study": cfg.study, "optuna.trial": str(trial.number)}
        exp = None
        try:
            sampled = suggest(trial, cfg.params)
            report(f"\n── trial {trial.number}: {' '.join(sampled)}")
            exp = load_experiment(cfg.experiment, [*cfg.overrides, *sampled])
            exp.logging.experiment = cfg.mlflow_experiment
            exp.logging.run_name = run_name
            result = run_experiment(exp, tags=tags, callbacks=[OptunaPruning(trial, exp.monitor)],
                                    progress=progress, model_summary=False)
            trial.set_user_attr("mlflow_run_id", result.run_id)
            if math.isnan(result.best_score):
                raise NonFiniteLossError(f"{exp.monitor} was never finite")
        except optuna.TrialPruned as err:
            run_id = trial.user_attrs.get("mlflow_run_id")
            if run_id:
                client.set_tag(run_id, "optuna.state", "PRUNED")
                client.set_tag(run_id, "dflab.error", str(err)[:5000])
                client.set_terminated(run_id, "KILLED")
            report(f"   trial {trial.number}: {err}")
            raise
        except (KeyboardInterrupt, SystemExit) as err:
            # Ctrl-C (or a stop signal): the sweep stops, this trial is marked failed, not left running.
            record_failure(trial, run_name, tags, exp, err, "KILLED")
            report(f"\nSweep interrupted during trial {trial.number} ({error_line(err)}); "
                  "finished trials are kept.")
            if isinstance(err, KeyboardInterrupt):
                raise
            raise KeyboardInterrupt(error_line(err)) from err  # Optuna marks FAIL and re-raises
        except Exception as err:
            run_id = record_failure(trial, run_name, tags, exp, err, "FAILED")
            where = f"MLflow run {run_id} FAILED, traceback in its error.txt" if run_id else "not in MLflow"
            log.warning("trial %d failed: %s (%s)", trial.number, error_line(err), where)
            raise  # Optuna marks the trial FAIL and, as it is caught, goes on with the next one
        client.set_tag(result.run_id, "optuna.state", "COMPLETE")
        return result.best_score

    finished: list[optuna.trial.FrozenTrial] = []
    status = "FINISHED"
    # Optuna logs each failed trial with its whole traceback; here it gets one warning line instead
    # (the traceback is the failed run's error.txt).
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_level = optuna_log.level
    optuna_log.setLevel(logging.ERROR)
    # Lightning ignores Ctrl-C once it has stopped a trial for one; the caller gets its handler back.
    sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    try:
        study.optimize(objective, n_trials=total,
                       timeout=cfg.timeout_min * 60 if cfg.timeout_min else None,
                       catch=(Exception,), callbacks=[lambda _, trial: finished.append(trial)],
                       gc_after_trial=True)
    except KeyboardInterrupt as err:
        status = "KILLED"
        if isinstance(err.__cause__, SystemExit):
            raise err.__cause__ from None  # what Lightning raised (exit status 1, no traceback)
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        optuna_log.setLevel(optuna_level)
        try:
            _summarise(study, cfg, client, parent, status, finished)
        finally:
            if sigint is not None:
                signal.signal(signal.SIGINT, sigint)
    if finished and all(t.state == optuna.trial.TrialState.FAIL for t in finished):
        first = finished[0]
        raise SweepFailedError(
            f"all {len(finished)} trials of sweep {cfg.study!r} failed; trial {first.number}: "
            f"{first.user_attrs.get('error', 'unknown error')} (each failed MLflow run has its traceback "
            f"in error.txt; parent run {parent})", study)
    return study


def _summarise(study: optuna.Study, cfg: SweepConfig, client: Any, parent: str, status: str = "FINISHED",
               finished: typing.Sequence[optuna.trial.FrozenTrial] = ()) -> None:
    """Log the study's best trial, a trials table and a parallel-coordinates plot to the parent run,
    and end the parent run: ``status`` (``FINISHED``, or ``KILLED``/``FAILED`` when the sweep was
    stopped), ``FAILED`` when every trial of this call (``finished``) failed or none ever completed."""
    from rich.table import Table

    State = optuna.trial.TrialState
    complete = [t for t in study.trials if t.state == State.COMPLETE]
    failed = [t for t in study.trials if t.state == State.FAIL]
    table = Table(title=f"study {cfg.study}: {len(study.trials)} trials ({len(complete)} complete, "
                        f"{len(failed)} failed)")
    for col in ("#", "state", "value", *cfg.params, "mlflow run", "error"):
        table.add_column(col)
    for t in study.trials:
        value = "-" if t.value is None else f"{t.value:.4f}"
        error = t.user_attrs.get("error", "-" if t.state != State.FAIL else "(no error recorded)")
        table.add_row(str(t.number), t.state.name, value,
                      *(_fmt(t.params.get(k, "-")) for k in cfg.params), t.user_attrs.get("mlflow_run_id", "-"),
                      error if len(error) <= 100 else error[:99] + "…")
    report(render_table(table, 160))
    all_failed = bool(finished) and all(t.state == State.FAIL for t in finished)
    if status == "FINISHED" and (all_failed or not complete):
        status = "FAILED"
    if not complete:
        client.set_terminated(parent, status)
        report("No trial completed.")
        return
    best = study.best_trial
    best_run = best.user_attrs.get("mlflow_run_id", "")
    client.log_metric(parent, "best_value", float(best.value) if best.value is not None else math.nan)
    client.log_metric(parent, "n_complete_trials", float(len(complete)))
    client.set_tag(parent, "best_run_id", best_run)
    client.set_tag(parent, "best_trial", str(best.number))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        study.trials_dataframe().to_csv(tmpdir / "trials.csv", index=False)
        client.log_artifact(parent, str(tmpdir / "trials.csv"))
        best_cfg = load_experiment(cfg.experiment, [*cfg.overrides, *(f"{k}={v}" for k, v in best.params.items())])
        client.log_artifact(parent, str(save_config(best_cfg, tmpdir / "best_config.yaml")))
        plot = _parallel_coordinates(study, tmpdir / "parallel_coordinates.png", best_cfg.monitor)
        if plot is not None:
            client.log_artifact(parent, str(plot), "plots")
    client.set_terminated(parent, status)
    params = "  ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    report(f"\nBest trial {best.number}: value {best.value:.4f}  {params}")
    report(f"Best MLflow run {best_run} (parent {parent}, {status}); compare trials with `make ui`.")


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
