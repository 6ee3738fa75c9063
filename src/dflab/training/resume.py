"""Resume a run from its checkpoint: find it, read the config it stores, refuse what cannot change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dflab.config import ConfigError, ExperimentConfig, flatten, to_dict
from dflab.experiment import build_experiment
from dflab.metrics.reports import model_description
from dflab.models.checkpoint import CheckpointError, read_checkpoint
from dflab.training.module import DetectorModule

RESUMABLE_KEYS = frozenset({
    "trainer.max_epochs", "trainer.devices", "trainer.num_nodes", "trainer.sync_batchnorm", "trainer.accelerator", "trainer.strategy", "trainer.num_threads",
    "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.early_stopping_patience",
    "data.num_workers", "faces.workers",
})
"""Config keys a resumed run may change; every other key stays what the checkpoint says."""


def resume_state(resume: str | Path, output_dir: str | Path) -> tuple[Path, dict[str, Any]]:
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
    path, state = resume_state(resume, output_dir)
    return path, state.get("dflab_mlflow_run_id")


def resumed_config(resume: str | Path, overrides: Sequence[str] = (), output_dir: str | Path = "outputs"
                   ) -> ExperimentConfig:
    """The experiment config stored in a checkpoint, with ``key=value`` overrides applied, so a
    resumed run needs none of its original overrides repeated.

    Raises:
        ConfigError: an override changes a key a resumed run must keep (see :data:`RESUMABLE_KEYS`).
    """
    path, state = resume_state(resume, output_dir)
    try:
        build_experiment(state["dflab_config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its stored config is not valid here ({err})") from None
    cfg = build_experiment(state["dflab_config"], overrides)
    check_resumable(cfg, state["dflab_config"], resume)
    return cfg


def check_resumable(cfg: ExperimentConfig, stored: Mapping[str, Any], resume: str | Path) -> None:
    """Refuse, by key, a config that differs from the checkpoint's where a resumed run cannot.

    Raises:
        ConfigError: names the first differing key, both values and what may change.
    """
    old, new = flatten(to_dict(build_experiment(stored))), flatten(to_dict(cfg))
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


def check_weights_fit(module: DetectorModule, state: Mapping[str, Any], path: Path | None,
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


