"""Bad input gets one line naming the key or file, exit status 2, before any work starts."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dflab.cli.main import main

EXPERIMENT = "experiments/mesonet4_demo.yaml"


def _run(capsys, *argv: str) -> tuple[int, list[str]]:
    """Exit status and dflab's own error lines (other libraries' log lines left out)."""
    code = main(list(argv))
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("dflab ")]


@pytest.mark.parametrize("override, message", [
    ("optim.weight_decay=-0.01", "optim.weight_decay: must be >= 0, got -0.01"),
    ("model.drop_rate=1.0", "model.drop_rate: must be in [0, 1), got 1.0"),
    ("model.drop_rate=-0.2", "model.drop_rate: must be in [0, 1), got -0.2"),
    ("optim.momentum=1.5", "optim.momentum: must be in [0, 1), got 1.5"),
    ("trainer.limit_train_batches=2.5", "trainer.limit_train_batches: a fraction"),
    ("faces.margin=0", "faces.margin: must be > 0"),
    ("model.backbone=resnet10", "model.backbone: unknown model 'resnet10' (did you mean resnet10t"),
    ("model.backbone=mesonet4", "did you mean meso4"),
    ("seed=-1", "seed: must be in [0, 4294967295], got -1"),
    ("optim.lr=.inf", "optim.lr: must be a finite number, got inf"),
    ("optim.weight_decay=1e400", "optim.weight_decay: must be a finite number"),
    ("trainer.precision=bogus", "trainer.precision: 'bogus' is not one of"),
    ("trainer.accelerator=tpuz", "trainer.accelerator: 'tpuz' is not one of"),
    ("data.options={a:", "override data.options={a:: the value is not valid YAML"),
    ("logging.tracking_uri=bogus://x", "logging.tracking_uri: 'bogus://x' is not a tracking URI"),
    ("logging.tracking_uri=http://127.0.0.1:9", "logging.tracking_uri: the MLflow tracking server at"),
    ("data.image_size=1000000000", "data.image_size: must be in (0, 4096]"),
    ("trainer.strategy=dpp", "trainer.strategy: 'dpp' is not a Lightning strategy (did you mean ddp"),
])
def test_invalid_values_are_refused_by_key(capsys, override: str, message: str) -> None:
    code, err = _run(capsys, "train", EXPERIMENT, override)
    assert code == 2 and len(err) == 1 and message in err[0]
    assert EXPERIMENT in err[0] or override.startswith(("logging.tracking_uri=http", "trainer.strategy"))


def test_config_errors_come_before_the_training_stack_loads() -> None:
    """A wrong key or value is reported without importing torch (well under a second)."""
    script = ("import sys; from dflab.cli.main import main; "
              f"codes = [main(['train', {EXPERIMENT!r}, a]) for a in ('optim.weight_decay=-1', 'no.such=1')]; "
              "print(codes, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[2, 2] False", out.stderr


def _sweep(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"experiment: {EXPERIMENT}\nstorage: sqlite:///{tmp_path}/optuna.db\n{body}")
    return path


@pytest.mark.parametrize("params, message", [
    ("params:\n  optim.lr: {low: 1.0e-2, high: 1.0e-4, log: true}\n", "params.optim.lr: low 0.01 is above high 0.0001"),
    ("params:\n  data.batch_size: {choices: [16, big]}\n", "params.data.batch_size: choice 'big': expected int"),
    ("params:\n  model.backbone: {choices: [meso4, resnet10]}\n", "params.model.backbone: choice 'resnet10': unknown model"),
    ("params:\n  optim.lr: {low: -1.0, high: 1.0}\n", "params.optim.lr: low: must be > 0, got -1.0"),
    ("params:\n  optim.weight_decay: {low: -0.1, high: 0.1}\n", "params.optim.weight_decay: low: must be >= 0"),
    ("params:\n  model.drop_rate: {low: 0.0, high: 1.0}\n", "params.model.drop_rate: high: must be in [0, 1)"),
    ("params:\n  data.augment: {choices: [none, heavy]}\n", "params.data.augment: choice 'heavy': 'heavy' is not one of"),
    ("params:\n  optim.lr: {low: 0.0, high: 1.0e-2, log: true}\n", "a log range needs low > 0"),
    ("params: {}\n", "params: the search space is empty"),
    ("params:\n  data.extra_sources: {choices: [[], [{source: folder}]]}\n", "is not a number, string, boolean or null"),
    ("params:\n  data.batch_size: {low: 8, high: 32, step: 0.5}\n", "params.data.batch_size.step: data.batch_size is a whole number"),
    ("params:\n  optim.lr: {low: 1.0e-4, high: .inf}\n", "params.optim.lr.high: must be a finite number"),
    ("params:\n  data.source: {choices: [demo, bogus]}\n", "params.data.source: choice 'bogus': 'bogus' is not one of"),
    ("params:\n  faces.detector: {choices: [blazeface, nope]}\n", "params.faces.detector: choice 'nope'"),
    ("params:\n  monitor: {choices: [val/loss, val/acc]}\n", "params.monitor: choice 'val/acc'"),
    ("params:\n  seed: {low: -5, high: 5}\n", "params.seed: low: must be in [0, 4294967295], got -5"),
    ("params:\n  1: {low: 1, high: 2}\n", "params: key 1 is not a config key name"),
    ("n_trials: -3\nparams:\n  optim.lr: {low: 1.0e-4, high: 1.0e-2}\n", "n_trials: must be >= 1"),
    ("timeout_min: -1\nparams:\n  optim.lr: {low: 1.0e-4, high: 1.0e-2}\n", "timeout_min: must be > 0"),
    ("params:\n  optim.lr: {low: 1.0e-4, high: 1.0e-2\n  x: 1\n", "sweep.yaml:5:4: not valid YAML"),
])
def test_sweep_files_are_checked_before_any_trial(tmp_path: Path, capsys, params: str, message: str) -> None:
    path = _sweep(tmp_path, params)
    code, err = _run(capsys, "sweep", str(path))
    assert code == 2 and len(err) == 1 and message in err[0] and str(path) in err[0]
    assert not (tmp_path / "optuna.db").exists()  # no study was created


def test_files_that_are_not_utf8_name_the_line(tmp_path: Path, capsys) -> None:
    experiment = tmp_path / "latin1.yaml"
    experiment.write_bytes("name: d\xe9mo\nseed: 1\n".encode("latin-1"))
    code, err = _run(capsys, "train", str(experiment))
    assert code == 2 and f"{experiment}:1: not UTF-8 text" in err[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: demo\nmodel:\n  backbone: [meso4\n")
    code, err = _run(capsys, "train", str(broken))
    assert code == 2 and f"{broken}:4:1: not valid YAML" in err[0]


def _read_only(folder: Path, command: list[str]) -> list[str]:
    """``command`` run with ``folder`` read-only: by its permission bits for a normal user; for
    root (whom permission bits do not stop) inside a mount namespace with ``folder`` bind-mounted
    read-only."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return command
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 77; shift; exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *command]


def test_a_read_only_mlruns_is_said_before_training(tmp_path: Path, fast_overrides: list[str]) -> None:
    mlruns = tmp_path / "mlruns"
    (mlruns / "artifacts").mkdir(parents=True)
    overrides = [o for o in fast_overrides if not o.startswith("logging.")] + [
        f"logging.tracking_uri=sqlite:///{mlruns}/mlflow.db", f"logging.artifact_location={mlruns}/artifacts",
        f"logging.output_dir={tmp_path}/outputs"]
    command = _read_only(mlruns, [sys.executable, "-m", "dflab", "train", EXPERIMENT, *overrides])
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if out.returncode == 77:
        pytest.skip("cannot make a folder read-only here (no mount namespace for root)")
    lines = [line for line in out.stderr.splitlines() if line.startswith("dflab ")]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert f"logging.tracking_uri: cannot write to {mlruns}" in lines[0]
    assert not (mlruns / "mlflow.db").exists()


def test_a_file_where_the_artifact_folder_should_be_is_said_before_training(tmp_path, fast_overrides, capsys):
    blocker = tmp_path / "artifacts"
    blocker.write_text("not a folder")
    code, err = _run(capsys, "train", EXPERIMENT, *fast_overrides, f"logging.artifact_location={blocker}/x")
    assert code == 2 and "logging.artifact_location: cannot write" in err[0]


def test_a_dataset_refused_at_start_leaves_no_mlflow_run(tmp_path, small_manifest, fast_overrides, capsys):
    from mlflow import MlflowClient

    with open(small_manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] == "real"]
    reals = small_manifest.parent / "reals_only.csv"
    with open(reals, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    overrides = [o for o in fast_overrides if not o.startswith("data.root=")] + [f"data.root={reals}"]
    code, err = _run(capsys, "train", EXPERIMENT, *overrides)
    assert code == 2 and len(err) == 1 and "only real videos" in err[0]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments) == [] if experiments else True


def test_artifacts_that_cannot_be_stored_fail_the_run_and_keep_the_checkpoint(tmp_path, fast_overrides, capsys):
    """When the artifact store breaks during training (here: a file appears where the run's
    artifact folder goes), the run ends FAILED, not FINISHED, and the checkpoint's place is said."""
    import pytorch_lightning as pl
    from mlflow import MlflowClient

    from dflab.experiment import load_experiment
    from dflab.tracking.mlflow_utils import TrackingError
    from dflab.training.train import run_experiment

    class BreakArtifactStore(pl.Callback):
        def on_fit_end(self, trainer, pl_module):
            client = trainer.logger.experiment
            root = client.get_run(trainer.logger.run_id).info.artifact_uri.removeprefix("file://")
            Path(root).parent.mkdir(parents=True, exist_ok=True)
            if Path(root).is_dir():
                Path(root).rmdir()
            Path(root).write_text("in the way")

    cfg = load_experiment(EXPERIMENT, fast_overrides)
    with pytest.raises(TrackingError, match="could not be stored") as caught:
        run_experiment(cfg, callbacks=[BreakArtifactStore()], progress=False, model_summary=False)
    message = str(caught.value)
    checkpoint = Path(message.rsplit("checkpoint is kept at ", 1)[1])
    assert checkpoint.is_file() and checkpoint.suffix == ".ckpt"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "dflab.error" in runs[0].data.tags


def test_a_sweep_over_a_refused_dataset_starts_no_trial(tmp_path, capsys):
    path = _sweep(tmp_path, f"overrides: [data.source=folder, data.root={tmp_path}/missing, "
                            f"'logging.tracking_uri=sqlite:///{tmp_path}/mlflow.db']\n"
                            "params:\n  optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n")
    code, err = _run(capsys, "sweep", str(path))
    assert code == 2 and len(err) == 1 and "missing" in err[0]
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("text, message", [
    ("1: 2\n", "config key 1 is not a name (YAML read it as int)"),
    ("yes: 1\n", "config key True is not a name (YAML read it as bool)"),
    ("data: {1: x}\n", "config key data.1 is not a name"),
])
def test_yaml_keys_that_are_not_names_are_refused(tmp_path: Path, capsys, text: str, message: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    code, err = _run(capsys, "train", str(path))
    assert code == 2 and len(err) == 1 and message in err[0]


def test_an_empty_section_keeps_its_defaults(tmp_path: Path, capsys) -> None:
    path = tmp_path / "empty_faces.yaml"
    path.write_text("faces:\n")
    code, err = _run(capsys, "train", str(path), "faces.workers=-1")  # the override lands in the section
    assert code == 2 and "faces.workers: must be >= 0, got -1" in err[0]


def test_a_cache_folder_that_cannot_be_written_is_said_before_training(tmp_path, fast_overrides, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, err = _run(capsys, "train", EXPERIMENT, *fast_overrides, f"faces.cache_dir={blocker}/faces")
    assert code == 2 and len(err) == 1 and "faces.cache_dir: cannot write" in err[0]


def test_command_line_values_are_checked(tmp_path: Path, capsys) -> None:
    for argv in (["demo", "--seed", "-1"], ["export", "--atol", "-1"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
    assert "a seed is 0 to 4294967295" in capsys.readouterr().err
    blocker = tmp_path / "afile"
    blocker.write_text("in the way")
    for argv in (["demo", "--root", str(blocker)], ["export", "--out-dir", f"{blocker}/sub"]):
        code, err = _run(capsys, *argv)
        assert code == 2 and len(err) == 1 and f"{blocker}" in err[0] and "cannot write to" in err[0]
    code, err = _run(capsys, "sweep", "sweeps/demo.yaml", f"storage={blocker}/optuna.journal")
    assert code == 2 and err[0].startswith(f"dflab sweep: error: storage: cannot write to {blocker}")
    code, err = _run(capsys, "train", EXPERIMENT, "--resume", "")
    assert code == 2 and "--resume: give a checkpoint file or the MLflow run id" in err[0]


def test_a_key_given_twice_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\nseed: 1\nname: b\n")
    code, err = _run(capsys, "train", str(path))
    assert code == 2 and f"{path}:3:1: not valid YAML: key 'name' is given twice" in err[0]


def test_overrides_may_follow_an_option(capsys) -> None:
    """``train exp.yaml --resume X key=value``: the override is read, not refused as unknown."""
    code, err = _run(capsys, "train", EXPERIMENT, "--resume", "no-such-run", "optim.weight_decay=-1")
    assert code == 2 and "optim.weight_decay: must be >= 0" in err[0]
    with pytest.raises(SystemExit):
        main(["train", EXPERIMENT, "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
