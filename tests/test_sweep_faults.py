"""A sweep survives its trials: a trial that raises is one FAIL trial (and one FAILED MLflow run
holding the error), not the end of the sweep; only Ctrl-C stops it. Real Optuna storage, a real
MLflow database and real training on the small demo dataset; every failure is a real one."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dflab.cli.main import main
from dflab.sweeps.space import load_sweep
from dflab.sweeps.sweep import run_sweep

REPO = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState


def _sweep_file(tmp_path: Path, overrides: list[str], params: dict, n_trials: int) -> Path:
    spec = {
        "experiment": "experiments/mesonet4_demo.yaml",
        "study": "faults",
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "n_trials": n_trials,
        "mlflow_experiment": "unit-faults",
        "register": False,
        "overrides": overrides,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "params": params,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _enqueue(storage: str, *values: dict) -> None:
    """Fix the values of the next trials with Optuna's own queue (the study is created here)."""
    study = optuna.create_study(study_name="faults", storage=storage, direction="maximize")
    for params in values:
        study.enqueue_trial(params)


def _mlflow_runs(tmp_path: Path):
    """The MLflow client, the sweep's parent run and its child runs by Optuna trial number."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("unit-faults")
    parents = client.search_runs([exp.experiment_id], "tags.`dflab.kind` = 'sweep'")
    assert len(parents) == 1
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return client, parents[0], {int(c.data.tags["optuna.trial"]): c for c in children}


def _error_file(client: MlflowClient, run_id: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, "error.txt", str(tmp_path))).read_text()


@pytest.mark.slow
def test_a_trial_that_raises_fails_alone_and_the_sweep_goes_on(tmp_path, fast_overrides, caplog, capsys):
    # A batch of one clip makes ResNet's last BatchNorm (1x1 maps at 16 px) raise in the first
    # training step: a real error inside trial 1's training, as a sweep over batch sizes meets it.
    overrides = [*fast_overrides, "model.backbone=resnet10t", "data.image_size=16"]
    params = {"data.batch_size": {"choices": [8, 1]}, "optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    cfg = load_sweep(_sweep_file(tmp_path, overrides, params, n_trials=3))
    _enqueue(cfg.storage, {"data.batch_size": 8}, {"data.batch_size": 1}, {"data.batch_size": 8})

    with caplog.at_level(logging.WARNING, logger="dflab.sweeps.sweep"):
        study = run_sweep(cfg, progress=False)
    out, err = capsys.readouterr()

    # Optuna: trial 1 FAIL with its error, the others complete, the best one of them.
    trials = optuna.load_study(study_name="faults", storage=cfg.storage).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.FAIL, State.COMPLETE]
    error = trials[1].user_attrs["error"]
    assert error.startswith("ValueError: Expected more than 1 value per channel when training")
    assert "\n" not in error
    assert "error" not in trials[0].user_attrs and "error" not in trials[2].user_attrs
    assert study.best_trial.number in (0, 2)

    # MLflow: the failed trial's run FAILED with the error tag and its traceback; the parent FINISHED.
    client, parent, children = _mlflow_runs(tmp_path)
    assert sorted(children) == [0, 1, 2]
    failed = children[1]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["dflab.error"] == error
    assert failed.data.tags["optuna.state"] == "FAIL"
    assert failed.info.run_id == trials[1].user_attrs["mlflow_run_id"]
    traceback_text = _error_file(client, failed.info.run_id, tmp_path)
    assert "Traceback" in traceback_text and "batch_norm" in traceback_text
    for n in (0, 2):
        assert children[n].info.status == "FINISHED"
        assert children[n].data.tags["optuna.state"] == "COMPLETE"
        assert "dflab.error" not in children[n].data.tags
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    assert parent.data.tags["best_run_id"] == study.best_trial.user_attrs["mlflow_run_id"]
    assert parent.data.metrics["n_complete_trials"] == 2

    # One warning line naming the trial and the error; the summary says which trial failed and why.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and r.name == "dflab.sweeps.sweep"]
    assert len(warnings) == 1
    assert warnings[0].startswith("trial 1 failed: ValueError: Expected more than 1 value per channel")
    assert f"MLflow run {failed.info.run_id} FAILED" in warnings[0] and "\n" not in warnings[0]
    assert "3 trials (2 complete, 1 failed)" in out
    row = next(line for line in out.splitlines() if line.startswith("│ 1 "))
    assert "FAIL" in row and "ValueError: Expected" in row
    assert "Traceback" not in out + err  # Optuna's own traceback of the failed trial is not printed


def test_every_trial_failing_ends_the_command_with_one_line(tmp_path, fast_overrides, capsys):
    # Both sampled dataset roots are missing: each trial raises before training, before its
    # MLflow run exists (the run is then created to hold the error).
    params = {"data.root": {"choices": [str(tmp_path / "moved"), str(tmp_path / "gone")]}}
    path = _sweep_file(tmp_path, fast_overrides, params, n_trials=2)

    code = main(["sweep", str(path)])
    err = capsys.readouterr().err

    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("dflab sweep: error:")]
    assert len(lines) == 1, err
    assert "all 2 trials of sweep 'faults' failed; trial 0: DatasetLayoutError: " in lines[0]
    assert "does not exist" in lines[0]
    assert "Traceback" not in err

    trials = optuna.load_study(study_name="faults", storage=f"sqlite:///{tmp_path}/optuna.db").trials
    assert [t.state for t in trials] == [State.FAIL, State.FAIL]
    assert all(t.user_attrs["error"].startswith("DatasetLayoutError: ") for t in trials)
    client, parent, children = _mlflow_runs(tmp_path)
    assert parent.info.status == "FAILED"
    assert sorted(children) == [0, 1]
    for n, child in children.items():
        assert child.info.status == "FAILED"
        assert child.data.tags["dflab.error"] == trials[n].user_attrs["error"]
        assert child.data.params["data.root"] == trials[n].params["data.root"]
        assert "DatasetLayoutError" in _error_file(client, child.info.run_id, tmp_path / str(n))


def _reported(db: Path, number: int) -> bool:
    """Whether trial ``number`` has reported a validation value (it is training)."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            row = con.execute("SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t "
                              "ON v.trial_id = t.trial_id WHERE t.number = ?", (number,)).fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return False
    return bool(row and row[0])


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_keeps_the_finished_trials(tmp_path, fast_overrides):
    # Trial 0 trains one epoch, trial 1 twenty: Ctrl-C arrives while trial 1 trains.
    params = {"trainer.max_epochs": {"choices": [1, 20]}}
    path = _sweep_file(tmp_path, fast_overrides, params, n_trials=3)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    _enqueue(storage, {"trainer.max_epochs": 1}, {"trainer.max_epochs": 20})

    log_file = tmp_path / "sweep.log"  # a file, not a pipe: a full pipe would block the sweep
    with log_file.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "dflab", "sweep", str(path)], cwd=REPO,
                                stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not _reported(tmp_path / "optuna.db", 1):
                assert proc.poll() is None, f"the sweep ended before trial 1 trained:\n{log_file.read_text()}"
                assert time.monotonic() < deadline, "trial 1 never reported a validation value"
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = log_file.read_text()

    assert proc.returncode != 0, out
    assert "Sweep interrupted during trial 1 (KeyboardInterrupt); finished trials are kept." in out
    trials = optuna.load_study(study_name="faults", storage=storage).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.FAIL]  # trial 2 never started
    assert trials[1].user_attrs["error"] == "KeyboardInterrupt"
    _, parent, children = _mlflow_runs(tmp_path)
    assert parent.info.status == "KILLED"
    assert parent.data.tags["best_run_id"] == children[0].info.run_id
    assert children[0].info.status == "FINISHED"
    assert children[1].info.status == "KILLED"
    assert children[1].data.tags["dflab.error"] == "KeyboardInterrupt"
