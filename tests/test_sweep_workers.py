"""Sweeps with several worker processes: stores created safely by processes started together, one
study and one parent run shared by the workers, each worker its own sampler stream, and a worker
killed with ``kill -9`` taking only its own trial. Real processes, a real journal file and real
SQLite databases, real training on the small dataset."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from dflab.sweeps.search import (
    PRUNERS,
    SAMPLERS,
    PrunerConfig,
    SamplerConfig,
    grid_space,
    make_pruner,
    make_sampler,
    worker_seed,
)
from dflab.sweeps.study import WORKER_ATTR, fail_orphaned_trials, open_storage, worker_start_id

REPO = Path(__file__).resolve().parents[1]
State = optuna.trial.TrialState


def _open_store(folder: str) -> str:
    from dflab.config.schema import LoggingConfig
    from dflab.tracking.mlflow_utils import client, ensure_experiment

    cfg = LoggingConfig(tracking_uri=f"sqlite:///{folder}/mlflow.db", artifact_location=f"{folder}/artifacts",
                        experiment="together")
    experiment = ensure_experiment(cfg)
    run = client(cfg).create_run(experiment)
    client(cfg).set_terminated(run.info.run_id)
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{folder}/optuna.db"),
                                load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    journal = optuna.create_study(study_name="s", storage=open_storage(f"{folder}/optuna.journal"),
                                  load_if_exists=True)
    journal.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    return experiment


def test_processes_started_together_create_each_store_once(tmp_path):
    """Four processes opening a fresh MLflow database, Optuna database and journal at once (MLflow's
    and Optuna's schema creation races without the lock) all succeed on one store."""
    with mp.get_context("spawn").Pool(4) as pool:
        experiments = pool.map(_open_store, [str(tmp_path)] * 4)
    assert len(set(experiments)) == 1
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(client.search_runs(experiments[:1])) == 4
    for storage in (f"sqlite:///{tmp_path}/optuna.db", f"{tmp_path}/optuna.journal"):
        assert len(optuna.load_study(study_name="s", storage=open_storage(storage)).trials) == 4
    # Optuna's journal keeps its own lock at <journal>.lock and waits while anything is there:
    # dflab's lock must never take that name.
    assert not (tmp_path / "optuna.journal.lock").exists()


def test_each_worker_and_each_rerun_draws_its_own_stream():
    assert worker_seed(7, 0, 0) == 7  # a lone sweep on a fresh study is reproducible
    seeds = {worker_seed(7, w, n) for w in range(4) for n in (0, 6, 12)}
    assert len(seeds) == 12
    params = {"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    draws = []
    for w in range(3):  # three workers of one fresh study: three different first samples
        study = optuna.create_study(sampler=make_sampler(SamplerConfig("random"), worker_seed(0, w, 0), params,
                                                         lambda _: False))
        draws.append(study.ask().suggest_float("optim.lr", 1e-4, 1e-2, log=True))
    assert len(set(draws)) == 3


def test_every_sampler_and_pruner_builds_and_searches():
    params = {"model.backbone": {"choices": ["meso4", "resnet10t"]},
              "optim.lr": {"low": 1e-3, "high": 3e-3, "step": 1e-3},
              "data.batch_size": {"low": 8, "high": 16, "step": 8}}
    is_int = {"data.batch_size": True}.get
    assert grid_space(params, lambda k: bool(is_int(k))) == {
        "model.backbone": ["meso4", "resnet10t"], "optim.lr": [0.001, 0.002, 0.003], "data.batch_size": [8, 16]}
    for name in SAMPLERS:
        sampler = make_sampler(SamplerConfig(name, n_startup_trials=1, population_size=4), 0, params,
                               lambda k: bool(is_int(k)))
        study = optuna.create_study(sampler=sampler, direction="maximize")

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_float("optim.lr", 1e-3, 3e-3, step=1e-3)
            size = trial.suggest_int("data.batch_size", 8, 16, step=8)
            backbone = trial.suggest_categorical("model.backbone", ["meso4", "resnet10t"])
            return lr * size + (backbone == "meso4")

        study.optimize(objective, n_trials=6)
        assert len(study.trials) == 6 and all(t.state == State.COMPLETE for t in study.trials), name
    for name in PRUNERS:
        pruner = make_pruner(PrunerConfig(name, n_startup_trials=0, n_warmup_steps=0), max_epochs=9)
        study = optuna.create_study(pruner=pruner, direction="maximize")
        for k in range(4):
            trial = study.ask()
            for epoch in range(9):
                trial.report(k + epoch / 10, epoch)
                if trial.should_prune():
                    study.tell(trial, state=State.PRUNED)
                    break
            else:
                study.tell(trial, k)
        assert len(study.trials) == 4, name


def test_a_sweep_file_refuses_bad_search_settings(tmp_path):
    from dflab.config import ConfigError
    from dflab.sweeps.space import load_sweep

    base = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    for change, message in [({"sampler": {"name": "grid"}}, "the grid sampler needs choices, or a range with a step"),
                            ({"sampler": {"name": "bayes"}}, "sampler.name: 'bayes' is not one of"),
                            ({"pruner": {"name": "hyperband", "reduction_factor": 1}}, "pruner.reduction_factor"),
                            ({"workers": 0}, "workers: must be >= 1"),
                            ({"storage": "redis://x"}, "is not an Optuna storage")]:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
            load_sweep(path)


def _sleeper(storage: str, ready: Path) -> None:
    """A worker that starts a trial, names itself on it and then hangs (to be killed)."""
    from dflab.sweeps.study import worker_id

    study = optuna.load_study(study_name="orphans", storage=open_storage(storage))
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker_id())
    ready.write_text(str(trial.number))
    time.sleep(600)


def test_a_trial_whose_worker_died_is_failed_at_once(tmp_path):
    storage = f"{tmp_path}/optuna.journal"
    study = optuna.create_study(study_name="orphans", storage=open_storage(storage))
    ready = tmp_path / "ready"
    proc = mp.get_context("spawn").Process(target=_sleeper, args=(storage, ready))
    proc.start()
    while not ready.exists():
        time.sleep(0.1)
    alive = study.ask()  # a trial of this (living) process is never touched
    alive.set_user_attr(WORKER_ATTR, worker_start_id(os.getpid()))
    assert fail_orphaned_trials(study) == []  # the sleeper still runs
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    seen = []
    failed = fail_orphaned_trials(study, lambda s, t, why: seen.append((t.number, why)))
    assert [t.number for t in failed] == [int(ready.read_text())] == [n for n, _ in seen]
    trials = {t.number: t for t in study.trials}
    assert trials[failed[0].number].state == State.FAIL
    assert "died while running trial" in trials[failed[0].number].user_attrs["error"]
    assert trials[alive.number].state == State.RUNNING


def _sweep_file(tmp_path: Path, overrides: list[str], n_trials: int, workers: int) -> Path:
    spec = {
        "experiment": "experiments/mesonet4_demo.yaml", "study": "workers",
        "storage": f"{tmp_path}/optuna.journal", "n_trials": n_trials, "workers": workers,
        "mlflow_experiment": "unit-workers", "overrides": overrides, "register": False,
        "sampler": {"name": "random", "seed": 0}, "pruner": {"name": "none"},
        "params": {"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                   "model.drop_rate": {"low": 0.0, "high": 0.5}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _runs(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("unit-workers")
    parents = client.search_runs([exp.experiment_id], "tags.`dflab.kind` = 'sweep'")
    assert len(parents) == 1, "the workers share one parent run"
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return client, client.get_run(parents[0].info.run_id), {int(c.data.tags["optuna.trial"]): c for c in children}


@pytest.mark.slow
def test_two_workers_add_trials_to_one_study_and_a_killed_one_takes_only_its_trial(tmp_path, fast_overrides):
    sweep = _sweep_file(tmp_path, [*fast_overrides, "trainer.max_epochs=3"], n_trials=4, workers=2)
    proc = subprocess.Popen([sys.executable, "-m", "dflab", "sweep", str(sweep)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    storage = f"{tmp_path}/optuna.journal"
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline:  # a trial of one worker, training (its run open)
        time.sleep(0.5)
        if not Path(storage).exists():
            continue
        try:
            study = optuna.load_study(study_name="workers", storage=open_storage(storage))
        except KeyError:
            continue
        running = [t for t in study.trials if t.state == State.RUNNING and "mlflow_run_id" in t.user_attrs]
        if running:
            victim = running[0]
    assert victim is not None, "no trial started"
    pid = int(victim.user_attrs[WORKER_ATTR].split(":")[1])
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f"ended with signal {signal.SIGKILL}" in out

    study = optuna.load_study(study_name="workers", storage=open_storage(storage))
    states = {t.number: t.state for t in study.trials}
    assert states[victim.number] == State.FAIL
    assert "died while running trial" in study.trials[victim.number].user_attrs["error"]
    complete = [t for t in study.trials if t.state == State.COMPLETE]
    assert len(complete) >= 2, states  # the other worker went on
    assert len(study.trials) <= 4 + 1  # the shared budget, plus the trial the killed worker left
    workers = {t.user_attrs[WORKER_ATTR] for t in study.trials}
    assert len(workers) >= 2, "trials came from two processes"
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == len(params), "no two trials repeat a configuration"

    _, parent, children = _runs(tmp_path)
    assert parent.info.status == "FINISHED"
    killed = children[victim.number]
    assert killed.info.status == "KILLED"
    assert "died while running trial" in killed.data.tags["dflab.error"]
    for t in complete:
        assert children[t.number].info.status == "FINISHED"
        assert children[t.number].data.tags["optuna.state"] == "COMPLETE"


@pytest.mark.slow
def test_a_sweep_whose_trials_train_with_ddp(tmp_path, fast_overrides):
    """``trainer.devices=2 trainer.strategy=ddp`` inside a sweep: each trial is one DDP job of two
    real processes (gloo), rank 0 owns the trial and its MLflow run, and pruning stops both ranks."""
    overrides = [*fast_overrides, "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=3"]
    sweep = _sweep_file(tmp_path, overrides, n_trials=3, workers=1)
    spec = yaml.safe_load(sweep.read_text())
    # A strict pruner: a trial is stopped at the first epoch where it is behind the best trial so
    # far (minimising the metric, so a trial that learns is "behind"): the later trials prune.
    spec["direction"] = "minimize"
    spec["pruner"] = {"name": "percentile", "percentile": 1.0, "n_startup_trials": 1, "n_warmup_steps": 0}
    sweep.write_text(yaml.safe_dump(spec))
    out = subprocess.run([sys.executable, "-m", "dflab", "sweep", str(sweep)], cwd=REPO, text=True,
                         capture_output=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="workers", storage=open_storage(f"{tmp_path}/optuna.journal"))
    assert len(study.trials) == 3, "rank 1 must not create trials of its own"
    states = [t.state for t in study.trials]
    assert states[0] == State.COMPLETE and set(states) <= {State.COMPLETE, State.PRUNED}, states
    assert State.PRUNED in states, "the pruning decision of rank 0 stopped both ranks of a trial"
    _, parent, children = _runs(tmp_path)
    assert sorted(children) == [0, 1, 2], "one MLflow run per trial, opened by rank 0"
    assert parent.info.status == "FINISHED"
    for t in study.trials:
        run = children[t.number]
        assert run.data.tags["optuna.state"] == t.state.name
        assert run.info.status == ("FINISHED" if t.state == State.COMPLETE else "KILLED")
    assert "GLOBAL_RANK: 1" in out.stdout + out.stderr or "gloo" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_two_objective_sweep_finds_the_pareto_front(tmp_path, fast_overrides):
    """NSGA-II over validation AUROC (maximise) and inference time (minimise): every trial gives
    both values, the parent run names the Pareto front, and the trade-off table and a Pareto
    plot come out."""
    sweep = _sweep_file(tmp_path, fast_overrides, n_trials=4, workers=1)
    spec = yaml.safe_load(sweep.read_text())
    spec["sampler"] = {"name": "nsga2", "seed": 0, "population_size": 4}
    spec["params"] = {"model.backbone": {"choices": ["meso4", "resnet10t"]},
                      "optim.lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    spec["objectives"] = [{"metric": "val/video_auroc", "direction": "maximize"},
                          {"metric": "model/latency_ms", "direction": "minimize"}]
    sweep.write_text(yaml.safe_dump(spec))
    out = subprocess.run([sys.executable, "-m", "dflab", "sweep", str(sweep)], cwd=REPO, text=True,
                         capture_output=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Pareto front of study workers" in out.stdout
    study = optuna.load_study(study_name="workers", storage=open_storage(f"{tmp_path}/optuna.journal"))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert all(t.state == State.COMPLETE and len(t.values) == 2 and t.values[1] > 0 for t in study.trials)
    front = {t.number for t in study.best_trials}
    _, parent, children = _runs(tmp_path)
    assert {int(n) for n in parent.data.tags["pareto_trials"].split(",")} == front
    assert parent.data.tags["best_run_id"] in {children[n].info.run_id for n in front}
    for t in study.trials:  # the values Optuna holds are the run's own metrics
        metrics = children[t.number].data.metrics
        assert metrics["model/latency_ms"] == pytest.approx(t.values[1])
        assert metrics["best/val/video_auroc"] == pytest.approx(t.values[0])
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    page = Path(client.download_artifacts(parent.info.run_id, "plots/sweep_report.html", str(tmp_path))).read_text()
    assert "Pareto front" in page


def test_several_objectives_are_checked_in_the_sweep_file(tmp_path):
    from dflab.config import ConfigError
    from dflab.sweeps.space import load_sweep

    base = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    two = [{"metric": "val/video_auroc"}, {"metric": "model/params_m", "direction": "minimize"}]
    for change, message in [({"objectives": two}, "Optuna prunes single-objective studies only"),
                            ({"objectives": [{"metric": "test/video_auroc"}]}, "is not one of"),
                            ({"objectives": [{"metric": "val/loss", "direction": "down"}]}, "is not maximize"),
                            ({"objectives": [*two, {"metric": "val/video_auroc"}], "pruner": {"name": "none"}},
                             "names a metric twice")]:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(ConfigError, match=message):
            load_sweep(path)
    path.write_text(yaml.safe_dump({**base, "objectives": two, "pruner": {"name": "none"},
                                    "sampler": {"name": "nsga2"}}))
    assert len(load_sweep(path).objectives) == 2


_FAR_WORKER = """
import sys, time, optuna
from dflab.sweeps.study import WORKER_ATTR, open_storage
storage, run_id, ready = sys.argv[1:4]
study = optuna.load_study(study_name="workers", storage=open_storage(storage, heartbeat_s=1, grace_s=3))
def objective(trial):
    trial.set_user_attr(WORKER_ATTR, "a-host-far-away:4242:1")  # no pid of this machine to check
    trial.set_user_attr("mlflow_run_id", run_id)
    open(ready, "w").write(str(trial.number))
    time.sleep(600)
study.optimize(objective, n_trials=1)
"""


@pytest.mark.slow
def test_a_trial_of_a_lost_host_is_failed_by_the_heartbeat(tmp_path, fast_overrides):
    """A worker on another host (a database storage with heartbeats) dies with ``kill -9``: the
    next worker of the study fails its trial once the heartbeat is ``grace_s`` late, and ends its
    MLflow run KILLED, before running trials of its own."""
    sweep = _sweep_file(tmp_path, fast_overrides, n_trials=1, workers=1)
    spec = yaml.safe_load(sweep.read_text())
    spec.update(storage=f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1, grace_s=3)
    sweep.write_text(yaml.safe_dump(spec))
    optuna.create_study(study_name="workers", storage=open_storage(spec["storage"], 1, 3), direction="maximize")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    lost_run = client.create_run(client.create_experiment("unit-workers")).info.run_id
    ready = tmp_path / "ready"
    far = subprocess.Popen([sys.executable, "-c", _FAR_WORKER, spec["storage"], lost_run, str(ready)])
    deadline = time.time() + 120
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert ready.exists()
    os.kill(far.pid, signal.SIGKILL)
    far.wait()
    time.sleep(4)  # longer than grace_s
    out = subprocess.run([sys.executable, "-m", "dflab", "sweep", str(sweep)], cwd=REPO, text=True,
                         capture_output=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    study = optuna.load_study(study_name="workers", storage=open_storage(spec["storage"]))
    assert [t.state for t in study.trials] == [State.FAIL, State.COMPLETE]
    lost = client.get_run(lost_run)
    assert lost.info.status == "KILLED"
    assert "no heartbeat from its worker" in lost.data.tags["dflab.error"]


def test_the_dashboard_serves_a_journal_study(tmp_path):
    """``make dashboard``'s command: optuna-dashboard on the sweep's journal file lists the study."""
    import json
    import socket
    import urllib.request

    storage = f"{tmp_path}/optuna.journal"
    study = optuna.create_study(study_name="dash", storage=open_storage(storage))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    proc = subprocess.Popen([str(dashboard), "--host", "127.0.0.1", "--port", str(port), storage],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())["study_summaries"]
            except OSError:
                time.sleep(0.3)
        assert studies is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in studies] == ["dash"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
