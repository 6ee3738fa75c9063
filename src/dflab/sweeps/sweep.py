"""Optuna sweeps logged to MLflow: one parent run per study, one child run per trial.

Every trial logs the same flattened experiment config as MLflow params, so the MLflow UI's
parallel-coordinates view shows every axis. The study lives in persistent Optuna storage
(:mod:`dflab.sweeps.study`: a journal file, PostgreSQL or SQLite), and every ``dflab sweep``
process on one or several hosts adds trials to the same study and the same parent run; ``dflab
sweep --workers N`` starts N of them (:mod:`dflab.sweeps.workers`). A trial whose worker process
dies (``kill -9``, a lost host) ends ``FAIL`` in Optuna and ``KILLED`` in MLflow as soon as another
worker or a rerun notices.

A trial that raises (out of memory, an undecodable video, a bad sampled value, a bug) is one
failed trial, not the end of the sweep: Optuna marks it ``FAIL`` and goes on with the next one,
its MLflow run ends ``FAILED`` with the error as the tag ``dflab.error`` (its traceback in the
artifact ``error.txt``), and the trial keeps the error as its user attribute ``error``. Only
Ctrl-C (or the study's ``timeout_min``) stops a sweep; the trial then running is marked failed,
its MLflow run and the parent run ``KILLED``, and the finished trials stay in the study.
"""

from __future__ import annotations

import logging
import math
import signal
import tempfile
import threading
import traceback
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from dflab.config import save_config
from dflab.datasets.resolve import resolve_items
from dflab.experiment import load_experiment
from dflab.sweeps.ddp import OptunaPruning, trial_ranks
from dflab.sweeps.search import make_pruner, make_sampler, worker_seed
from dflab.sweeps.space import SweepConfig, is_int_key, objectives, suggest
from dflab.sweeps.study import (
    WORKER_ATTR,
    fail_orphaned_trials,
    local_storage_file,
    open_storage,
    worker_id,
)
from dflab.sweeps.summary import summarise as summarise_study
from dflab.tracking.mlflow_utils import (
    check_writable,
    ensure_experiment,
    ensure_writable,
    mlflow_params,
)
from dflab.tracking.mlflow_utils import client as mlflow_client
from dflab.training.module import NonFiniteLossError
from dflab.training.train import run_experiment
from dflab.utils.report import report
from dflab.utils.urls import redact

log = logging.getLogger(__name__)


def _parent_runs(client: Any, experiment_id: str, cfg: SweepConfig) -> list[Any]:
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dflab.kind` = 'sweep' AND tags.`dflab.study` = '{cfg.study}' "
                      f"AND tags.`dflab.storage` = '{redact(cfg.storage)}'",
        order_by=["attributes.start_time ASC"], max_results=50,
    )


def parent_run(client: Any, experiment_id: str, cfg: SweepConfig) -> str:
    """The study's MLflow parent run: reopened if it exists, created otherwise.

    Workers that start together on several hosts may each create one; all of them then keep the
    oldest and the others delete their own, so the study has one parent run. Its params are the
    sweep file's settings, passwords redacted.
    """
    found = _parent_runs(client, experiment_id, cfg)
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    run = client.create_run(experiment_id, run_name=f"sweep-{cfg.study}",
                            tags={"dflab.kind": "sweep", "dflab.study": cfg.study,
                                  "dflab.storage": redact(cfg.storage)})
    ours = run.info.run_id
    oldest = _parent_runs(client, experiment_id, cfg)[0].info.run_id
    if oldest != ours:  # another worker created one first
        client.delete_run(ours)
        return oldest
    from mlflow.entities import Param

    params = [Param(k, str(v)) for k, v in mlflow_params(cfg).items()]
    client.log_batch(ours, params=params)
    return ours


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
    values = mlflow_params(exp) if exp is not None else dict(trial.params)
    params = [Param(k, redact(str(v))[:6000]) for k, v in values.items()]
    client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


@dataclass
class SweepSession:
    """What every process of a sweep opens first: the checked base experiment, the MLflow
    experiment and parent run, and (:meth:`study`) the Optuna study with this worker's sampler."""

    cfg: SweepConfig
    base: Any
    client: Any
    experiment_id: str
    parent: str

    @classmethod
    def open(cls, cfg: SweepConfig, progress: bool = True) -> SweepSession:
        """Check the base experiment, the stores and the dataset, then open the MLflow side.

        Raises:
            ConfigError: a bad key or an unwritable store (before any trial or run).
            DatasetLayoutError: the dataset is refused (when no trial samples the data keys).
        """
        base = load_experiment(cfg.experiment, cfg.overrides)  # refuses bad keys before any trial
        base.logging.experiment = cfg.mlflow_experiment
        check_writable(base.logging, base.logging.output_dir)
        storage_file = local_storage_file(cfg.storage)
        if storage_file is not None:  # the Optuna database or journal, probed like MLflow's
            ensure_writable("storage", storage_file, is_file=True)
        if not any(k.startswith(DATA_KEYS) for k in cfg.params):
            # Every trial reads the same dataset: a layout refused now fails no trial and no run.
            resolve_items(base.data, progress=progress)
        client = mlflow_client(base.logging)
        experiment_id = ensure_experiment(base.logging)
        return cls(cfg, base, client, experiment_id, parent_run(client, experiment_id, cfg))

    def study(self, worker_index: int = 0) -> tuple[optuna.Study, int, int]:
        """The study (created if missing), with the trials of dead workers failed and this
        worker's sampler and pruner; also the trial count found and the sampler seed."""
        cfg = self.cfg

        def heartbeat_failed(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            self.trial_killed(study, trial, f"no heartbeat from its worker for {cfg.grace_s} s "
                                            "(process killed or host lost)")

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(cfg.storage, cfg.heartbeat_s, cfg.grace_s, stale_trial_callback=heartbeat_failed)
        study = optuna.create_study(study_name=cfg.study, storage=storage, load_if_exists=True,
                                    directions=[typing.cast(typing.Literal["minimize", "maximize"], d)
                                                for _, d in objectives(cfg, self.base.monitor)])
        fail_orphaned_trials(study, self.trial_killed)
        before = len(study.trials)
        seed = worker_seed(cfg.sampler.seed, worker_index, before)
        study.sampler = make_sampler(cfg.sampler, seed, cfg.params, is_int_key)
        study.pruner = make_pruner(cfg.pruner, self.base.trainer.max_epochs)
        study.set_user_attr("mlflow_parent_run_id", self.parent)
        return study, before, seed

    def trial_killed(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str) -> None:
        """A trial failed for its worker's death: its MLflow run ends ``KILLED`` with the reason."""
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id:
            return
        try:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_tag(run_id, "optuna.state", "FAIL")
                self.client.set_tag(run_id, "dflab.error", reason)
                self.client.set_terminated(run_id, "KILLED")
        except Exception as err:  # the trial is failed in Optuna either way
            log.warning("trial %d: its MLflow run %s could not be marked KILLED: %s", trial.number, run_id,
                        error_line(err))


DATA_KEYS = ("data.source", "data.root", "data.options", "data.extra_sources")
"""Experiment keys that change which videos a trial reads."""


def run_sweep(cfg: SweepConfig, n_trials: int | None = None, progress: bool = True, *,
              worker_index: int = 0, stop_at: int | None = None, summarise: bool = True) -> optuna.Study:
    """Add ``n_trials`` trials (default ``cfg.n_trials``) to the study and log them to MLflow.

    A trial that raises is marked failed (Optuna ``FAIL``, MLflow ``FAILED``, the error in the
    trial's user attribute ``error`` and its run's tag ``dflab.error``) and the sweep goes on;
    the parent run ends ``FINISHED`` when at least one trial of this call completed and no other
    worker still runs one.

    Args:
        cfg: the sweep.
        n_trials: trials this process adds at most (default ``cfg.n_trials``).
        progress: progress bars and per-epoch lines.
        worker_index: this process's index among the sweep's workers; seeds its sampler
            (:func:`~dflab.sweeps.search.worker_seed`).
        stop_at: stop starting trials once the study holds this many (any state, running
            included): the budget that several workers share.
        summarise: print the trials table, log plots to the parent run and end it (a launcher of
            several workers does this once, after all of them).

    Returns:
        The Optuna study (all its trials, from every run of the sweep).

    Raises:
        SweepFailedError: every trial of this call failed (the parent run ends ``FAILED``).
        KeyboardInterrupt: Ctrl-C outside training; inside training Lightning turns it into
            ``SystemExit(1)``, which is raised as it is. Either way the trial then running is
            marked failed, its MLflow run and the parent run ``KILLED``, and the finished trials
            are kept.
    """
    session = SweepSession.open(cfg, progress)
    client, experiment_id, parent = session.client, session.experiment_id, session.parent
    study, before, seed = session.study(worker_index)
    trial_killed = session.trial_killed
    total = n_trials if n_trials is not None else cfg.n_trials
    me = worker_id()
    report(f"Sweep {cfg.study!r}: {before} trials so far in {redact(cfg.storage)}; adding {total} "
           f"(worker {worker_index}, sampler {cfg.sampler.name} seed {seed}). MLflow parent run {parent}")

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

    goals = objectives(cfg, session.base.monitor)

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr(WORKER_ATTR, me)
        fail_orphaned_trials(study, trial_killed)
        run_name = f"{cfg.study}-trial-{trial.number:03d}"
        tags = {"mlflow.parentRunId": parent, "dflab.study": cfg.study, "optuna.trial": str(trial.number)}
        exp = None
        try:
            sampled = suggest(trial, cfg.params)
            report(f"\n── trial {trial.number}: {' '.join(sampled)}")
            exp = load_experiment(cfg.experiment, [*cfg.overrides, *sampled])
            exp.logging.experiment = cfg.mlflow_experiment
            exp.logging.run_name = run_name
            with tempfile.TemporaryDirectory() as tmp, \
                    trial_ranks(save_config(exp, Path(tmp) / "trial.yaml")) as ranks:
                # a DDP trial's other ranks read this config (see dflab.sweeps.ddp)
                pruning = OptunaPruning(trial, exp.monitor, ranks, prune=len(goals) == 1)
                result = run_experiment(exp, tags=tags, callbacks=[pruning], progress=progress, model_summary=False)
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
        values = [result.best_score if name == exp.monitor else result.metrics.get(name, math.nan)
                  for name, _ in goals]
        missing = [name for (name, _), v in zip(goals, values, strict=True) if math.isnan(v)]
        if missing:
            raise ValueError(f"objective {missing[0]} was not logged by the run (or is NaN)")
        client.set_tag(result.run_id, "optuna.state", "COMPLETE")
        return values[0] if len(values) == 1 else tuple(values)

    finished: list[optuna.trial.FrozenTrial] = []
    status = "FINISHED"
    # Optuna logs each failed trial with its whole traceback; here it gets one warning line instead
    # (the traceback is the failed run's error.txt).
    optuna_log = logging.getLogger("optuna.study._optimize")
    optuna_level = optuna_log.level
    optuna_log.setLevel(logging.ERROR)
    # Lightning ignores Ctrl-C once it has stopped a trial for one; the caller gets its handler back.
    sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.append(trial)
        if stop_at is not None and len(study.get_trials(deepcopy=False)) >= stop_at:
            study.stop()  # the workers' shared budget is spent (running trials included)

    try:
        study.optimize(objective, n_trials=total,
                       timeout=cfg.timeout_min * 60 if cfg.timeout_min else None,
                       catch=(Exception,), callbacks=[after_trial], gc_after_trial=True)
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
            if summarise:
                summarise_study(study, cfg, client, parent, status, finished)
        finally:
            if sigint is not None:
                signal.signal(signal.SIGINT, sigint)
    raise_if_all_failed(study, finished, cfg, parent)
    return study


def raise_if_all_failed(study: optuna.Study, trials: typing.Sequence[optuna.trial.FrozenTrial],
                        cfg: SweepConfig, parent: str) -> None:
    """Raise :class:`SweepFailedError` when ``trials`` (those of one call) all failed."""
    if trials and all(t.state == optuna.trial.TrialState.FAIL for t in trials):
        first = trials[0]
        raise SweepFailedError(
            f"all {len(trials)} trials of sweep {cfg.study!r} failed; trial {first.number}: "
            f"{first.user_attrs.get('error', 'unknown error')} (each failed MLflow run has its traceback "
            f"in error.txt; parent run {parent})", study)


