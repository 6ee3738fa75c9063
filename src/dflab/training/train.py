"""Run one experiment: the entry point of ``dflab train`` and of every sweep trial.

An ordinary experiment is one training run (:func:`~dflab.training.fit.fit_experiment`); with
``triplet.enabled`` it is the two runs of the triplet stage (:func:`~dflab.training.triplet.run_triplet`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pytorch_lightning.callbacks import Callback

from dflab.config import ConfigError, ExperimentConfig
from dflab.training.fit import RunResult, build_module, fit_experiment
from dflab.training.triplet import run_triplet
from dflab.utils.quiet import quiet_known_warnings

__all__ = ["RunResult", "build_module", "run_experiment"]


@quiet_known_warnings()
def run_experiment(
    cfg: ExperimentConfig,
    *,
    tags: Mapping[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    model_summary: bool = True,
    resume: str | Path | None = None,
) -> RunResult:
    """Train (and test, when the data has a test split) one experiment, logged to MLflow.

    The arguments are those of :func:`~dflab.training.fit.fit_experiment` (``tags`` carries a
    sweep's ``mlflow.parentRunId``; ``resume`` a checkpoint or run id to continue).

    Returns:
        The run's result (for the triplet stage, the classification run's).

    Raises:
        ConfigError: ``resume`` given for a two-stage triplet experiment.
    """
    if cfg.triplet.enabled:
        if resume:
            raise ConfigError("--resume: a two-stage triplet experiment (triplet.enabled) cannot be resumed; start it again")
        return run_triplet(cfg, tags=tags, callbacks=callbacks, progress=progress, model_summary=model_summary)
    return fit_experiment(cfg, tags=tags, callbacks=callbacks, progress=progress, model_summary=model_summary,
                          resume=resume)
