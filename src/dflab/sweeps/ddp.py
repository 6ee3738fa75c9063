"""Trials that train with DDP (``trainer.devices=2 trainer.strategy=ddp``): one Optuna trial per
DDP job.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by running the same command line again
(``dflab sweep ...``). Rank 0 owns the trial and its MLflow run; before it trains it writes the
trial's resolved config to a file named in ``$DFLAB_TRIAL_CONFIG``, which the other ranks inherit:
a ``dflab sweep`` started with that variable and ``LOCAL_RANK > 0`` creates no trial of its own
but trains that config as a follower (:func:`follow_trial`). Each epoch rank 0 asks Optuna
whether to prune and broadcasts the answer, so every rank stops at the same step
(:class:`OptunaPruning`). After the trial, rank 0 ends the process group and restores the
environment Lightning set, so the next trial starts its own ranks.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from pytorch_lightning.callbacks import Callback

TRIAL_CONFIG_ENV = "DFLAB_TRIAL_CONFIG"
_LIGHTNING_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


class TrialStopped(Exception):
    """Raised on a follower rank when rank 0 prunes the trial."""


class OptunaPruning(Callback):
    """Report the monitored validation metric to Optuna each epoch and stop hopeless trials.

    On rank 0 (``trial`` given) the value goes to Optuna, which decides (``prune=False``, as for
    several objectives: never); under DDP the decision is
    broadcast, and the other ranks (``trial=None``) stop with :class:`TrialStopped` when rank 0
    stops with ``optuna.TrialPruned``.
    """

    def __init__(self, trial: optuna.Trial | None, monitor: str, ranks: TrialRanks | None = None,
                 prune: bool = True) -> None:
        self.trial, self.monitor, self.ranks, self.prune = trial, monitor, ranks, prune

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.ranks is not None:  # the processes Lightning started for ranks 1..N-1
            self.ranks.children = list(getattr(trainer.strategy.launcher, "procs", None) or [])
        run_id = getattr(trainer.logger, "run_id", None) if self.trial is not None else None
        if run_id and self.trial is not None:
            self.trial.set_user_attr("mlflow_run_id", run_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        epoch = trainer.current_epoch
        value = trainer.callback_metrics.get(self.monitor)
        prune = False
        if self.prune and self.trial is not None and value is not None and not math.isnan(float(value)):
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if not prune:
            return
        if self.trial is None:
            raise TrialStopped(f"pruned by rank 0 at epoch {epoch}")
        raise optuna.TrialPruned(f"trial {self.trial.number} pruned at epoch {epoch} "
                                 f"({self.monitor}={float(value):.4f})")


def is_trial_follower() -> bool:
    """This process is rank > 0 of a DDP trial that a sweep's rank 0 started."""
    return bool(os.environ.get(TRIAL_CONFIG_ENV)) and int(os.environ.get("LOCAL_RANK", "0") or 0) > 0


@dataclass
class TrialRanks:
    """The other ranks of one trial, as rank 0 sees them (filled by :class:`OptunaPruning`)."""

    children: list[subprocess.Popen] = field(default_factory=list)


@contextmanager
def trial_ranks(config_file: Path) -> Iterator[TrialRanks]:
    """Around one trial on rank 0: its other ranks find the trial's config through the
    environment; afterwards rank 0 waits for them to exit (up to 2 minutes, then ends them),
    ends the process group and restores the variables Lightning set."""
    saved = {k: os.environ.get(k) for k in (*_LIGHTNING_ENV, TRIAL_CONFIG_ENV)}
    os.environ[TRIAL_CONFIG_ENV] = str(config_file)
    ranks = TrialRanks()
    try:
        yield ranks
    finally:
        import torch.distributed as dist

        for child in ranks.children:
            try:
                child.wait(timeout=120)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if dist.is_available() and dist.is_initialized() and saved["WORLD_SIZE"] is None:
            dist.destroy_process_group()  # the next trial starts new ranks and a new group
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def follow_trial() -> int:
    """Train, as a DDP rank > 0, the trial config rank 0 wrote; 0 when done or pruned.

    Raises:
        ConfigError: the config file does not load (it was written by rank 0 a moment ago).
    """
    from dflab.config import read_yaml
    from dflab.experiment import build_experiment
    from dflab.training.train import run_experiment

    cfg = build_experiment(read_yaml(os.environ[TRIAL_CONFIG_ENV], "trial config"))
    with suppress(TrialStopped):  # rank 0 pruned the trial: this rank is done too
        run_experiment(cfg, callbacks=[OptunaPruning(None, cfg.monitor)], progress=False, model_summary=False)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0
