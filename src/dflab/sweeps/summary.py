"""The end of a sweep: the trials table, the best trial, plots and the parent run's status.

The parent MLflow run gets ``trials.csv``, ``best_config.yaml``, a parallel-coordinates PNG and
an interactive HTML report (Optuna's parallel coordinates with the objective named, parameter
importances and the optimisation history, drawn with plotly and readable offline).
"""

from __future__ import annotations

import logging
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

import optuna

from dflab.experiment import load_experiment
from dflab.sweeps.space import SweepConfig, objectives
from dflab.tracking.mlflow_utils import save_redacted
from dflab.utils.report import report
from dflab.utils.tables import render_table

log = logging.getLogger(__name__)


def summarise(study: optuna.Study, cfg: SweepConfig, client: Any, parent: str, status: str = "FINISHED",
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
        value = "-" if t.values is None else " / ".join(f"{v:.4g}" for v in t.values)
        error = t.user_attrs.get("error", "-" if t.state != State.FAIL else "(no error recorded)")
        table.add_row(str(t.number), t.state.name, value,
                      *(_fmt(t.params.get(k, "-")) for k in cfg.params), t.user_attrs.get("mlflow_run_id", "-"),
                      error if len(error) <= 100 else error[:99] + "…")
    report(render_table(table, 160))
    all_failed = bool(finished) and all(t.state == State.FAIL for t in finished)
    if status == "FINISHED" and (all_failed or not complete):
        status = "FAILED"
    if not complete:
        _end_parent(study, client, parent, status)
        report("No trial completed.")
        return
    base = load_experiment(cfg.experiment, cfg.overrides)
    goals = objectives(cfg, base.monitor)
    if len(goals) > 1:
        pareto = sorted(study.best_trials, key=lambda t: t.values[0], reverse=goals[0][1] == "maximize")
        report(render_table(_pareto_table(pareto, goals, cfg), 160))
        client.set_tag(parent, "pareto_trials", ",".join(str(t.number) for t in pareto))
        best = pareto[0]  # of the Pareto front, the best on the first objective
    else:
        best = study.best_trial
    best_run = best.user_attrs.get("mlflow_run_id", "")
    client.log_metric(parent, "best_value", float(best.values[0]) if best.values else math.nan)
    client.log_metric(parent, "n_complete_trials", float(len(complete)))
    client.set_tag(parent, "best_run_id", best_run)
    client.set_tag(parent, "best_trial", str(best.number))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        study.trials_dataframe().to_csv(tmpdir / "trials.csv", index=False)
        client.log_artifact(parent, str(tmpdir / "trials.csv"))
        best_cfg = load_experiment(cfg.experiment, [*cfg.overrides, *(f"{k}={v}" for k, v in best.params.items())])
        client.log_artifact(parent, str(save_redacted(best_cfg, tmpdir / "best_config.yaml")))
        plot = _parallel_coordinates(study, tmpdir / "parallel_coordinates.png", goals[0][0])
        if plot is not None:
            client.log_artifact(parent, str(plot), "plots")
        page = html_report(study, goals[0][0], tmpdir / "sweep_report.html", [n for n, _ in goals])
        if page is not None:
            client.log_artifact(parent, str(page), "plots")
    if cfg.register and best_run:
        register_best(cfg, client, parent, best_run, base.logging.output_dir)
    status = _end_parent(study, client, parent, status)
    params = "  ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    values = " / ".join(f"{n} {v:.4g}" for (n, _), v in zip(goals, best.values, strict=True))
    report(f"\nBest trial {best.number}: {values}  {params}")
    report(f"Best MLflow run {best_run} (parent {parent}, {status}); compare trials with `make ui`.")


def registered_name(cfg: SweepConfig) -> str:
    """The registered model a sweep's best trials go to: ``model_name``, else ``dflab-<study>``."""
    return cfg.model_name or f"dflab-{cfg.study}"


def register_best(cfg: SweepConfig, client: Any, parent: str, best_run: str, output_dir: str) -> None:
    """Export the best trial and register it (see :mod:`dflab.export.registry`); the parent run
    gets the tags ``dflab.registered_model`` and ``dflab.registered_version``. A failure is
    reported and tagged (``dflab.register_error``), never lost in the sweep's result."""
    from dflab.export.export import export_run

    name = registered_name(cfg)
    report(f"Exporting the best trial's model (run {best_run}) and registering it as {name!r}")
    try:
        result = export_run(best_run, client.tracking_uri, Path(output_dir) / "export", model_name=name)
    except Exception as err:  # the sweep's trials are done and kept whatever happens here
        log.warning("the best trial could not be exported and registered: %s: %s", type(err).__name__, err)
        client.set_tag(parent, "dflab.register_error", f"{type(err).__name__}: {err}"[:5000])
        return
    client.set_tag(parent, "dflab.registered_model", name)
    if result.registered is not None:
        client.set_tag(parent, "dflab.registered_version", result.registered.version)


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
            ax = plot_parallel_coordinate(study, target=_first_value(study), target_name=objective)
        except (ValueError, ImportError) as err:
            log.warning("parallel-coordinates plot skipped: %s", err)
            return None
    ax.set_title(f"study {study.study_name}: {objective} ({study.directions[0].name.lower()}) per trial")
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


def _end_parent(study: optuna.Study, client: Any, parent: str, status: str) -> str:
    """End the parent run with ``status``, unless it is ``FINISHED`` while trials of other workers
    still run (the last worker to finish ends it). Returns the status the parent run has now."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if status == "FINISHED" and running:
        report(f"{len(running)} trial(s) still run in other workers; the parent run stays RUNNING until they end.")
        return "RUNNING"
    client.set_terminated(parent, status)
    return status


def _first_value(study: optuna.Study) -> Any:
    """Optuna's ``target`` for plots of a multi-objective study (its first objective); ``None``
    (the trial's value) for one objective."""
    return (lambda t: t.values[0]) if len(study.directions) > 1 else None


def _pareto_table(pareto: typing.Sequence[optuna.trial.FrozenTrial], goals: list[tuple[str, str]],
                  cfg: SweepConfig) -> Any:
    """The trade-off table: every trial of the Pareto front, best first objective first."""
    from rich.table import Table

    table = Table(title=f"Pareto front of study {cfg.study}: {len(pareto)} trials no other trial beats on "
                        f"every objective")
    for col in ("#", *(f"{n} ({'max' if d == 'maximize' else 'min'})" for n, d in goals), *cfg.params, "mlflow run"):
        table.add_column(col)
    for t in pareto:
        table.add_row(str(t.number), *(f"{v:.4g}" for v in t.values), *(_fmt(t.params.get(k, "-")) for k in cfg.params),
                      t.user_attrs.get("mlflow_run_id", "-"))
    return table


def html_report(study: optuna.Study, objective: str, path: Path, names: typing.Sequence[str] = ()) -> Path | None:
    """One self-contained HTML page (plotly, readable offline; the MLflow UI shows it in the run's
    artifacts): the parallel-coordinates plot with the objective named, parameter importances
    (fANOVA, Hutter et al., ICML 2014) and the optimisation history. Plots Optuna cannot draw
    yet (e.g. importances before two complete trials) are left out; ``None`` when none can be.
    """
    import warnings

    from optuna import visualization as vis

    sections: list[str] = []
    target = _first_value(study)
    makers: list[tuple[str, Any]] = [("Parallel coordinates", vis.plot_parallel_coordinate),
                                     ("Parameter importances", vis.plot_param_importances),
                                     ("Optimisation history", vis.plot_optimization_history)]
    if len(study.directions) > 1:
        makers.insert(0, ("Pareto front", lambda s, **_: vis.plot_pareto_front(s, target_names=list(names))))
    for title, make in makers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fig = make(study, target=target, target_name=objective)
            except (ValueError, RuntimeError, ImportError, ZeroDivisionError) as err:
                log.info("%s left out of the sweep report: %s", title, err)
                continue
        what = " vs ".join(names) if title == "Pareto front" else f"{objective} ({study.directions[0].name.lower()})"
        fig.update_layout(title=f"{title}: {what}")
        sections.append(fig.to_html(full_html=False, include_plotlyjs="inline" if not sections else False))
    if not sections:
        return None
    head = f"<title>study {study.study_name}</title><meta charset='utf-8'>"
    path.write_text(f"<html><head>{head}</head><body>{''.join(sections)}</body></html>")
    return path
