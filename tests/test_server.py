"""dflab.tracking.server: real PostgreSQL and MLflow servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dflab.tracking.postgres import PASSWORD_FILE, PostgresServer, find_postgres_bin
from dflab.tracking.server import MLflowServer
from dflab.utils.urls import redact


def _have_postgres() -> bool:
    try:
        find_postgres_bin()
    except FileNotFoundError:
        return False
    return importlib.util.find_spec("psycopg2") is not None


needs_postgres = pytest.mark.skipif(not _have_postgres(), reason="no PostgreSQL binaries or "
                                    "psycopg2: pip install 'dflab[server]'")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests to the local servers never go through a proxy set in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def root() -> Iterator[Path]:
    """A folder for the servers' files, outside pytest's ``tmp_path``.

    Under root, PostgreSQL runs as ``pgserver``, which must traverse the folders above its
    data; a pytest starting meanwhile (another session) takes ``o+x`` off its own
    ``/tmp/pytest-of-root`` again, so the servers' files go under ``/tmp`` itself.
    """
    path = Path(tempfile.mkdtemp(prefix="dflab-server-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _port_free(port: int) -> bool:
    """Nothing listens on ``port`` (a server could bind it; connections in TIME_WAIT may stay)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql+psycopg2://dflab:s3cr%2Ft@127.0.0.1:5432/dflab",
     "postgresql+psycopg2://dflab:***@127.0.0.1:5432/dflab"),
    ("postgresql://u:pa/ss@word@db.lab:5432/optuna?sslmode=require",
     "postgresql://u:***@db.lab:5432/optuna?sslmode=require"),
    ("mysql+pymysql://root:pw@[::1]:3306/x", "mysql+pymysql://root:***@[::1]:3306/x"),
    ("https://alice:token@mlflow.lab:5000/api?x=1#top", "https://alice:***@mlflow.lab:5000/api?x=1#top"),
    ("postgresql://host:5432/db?user=u&password=pw&sslmode=require",
     "postgresql://host:5432/db?user=u&password=***&sslmode=require"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("http://alice@mlflow.lab/path@v1", "http://alice@mlflow.lab/path@v1"),
    ("postgresql://dflab@127.0.0.1/dflab", "postgresql://dflab@127.0.0.1/dflab"),
    ("sqlite:///mlruns/mlflow.db", "sqlite:///mlruns/mlflow.db"),
    ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
    ("file:///tmp/x:y@z", "file:///tmp/x:y@z"),
    ("mlruns/optuna.journal", "mlruns/optuna.journal"),
    ("", ""),
    ("could not open postgresql://a:b@h/db (or mysql://c:d@h/x): refused",
     "could not open postgresql://a:***@h/db (or mysql://c:***@h/x): refused"),
    ("storage='postgresql+psycopg2://dflab:pw@127.0.0.1:5432/dflab' trials=3",
     "storage='postgresql+psycopg2://dflab:***@127.0.0.1:5432/dflab' trials=3"),
    ("dbname=dflab user=dflab password=s3cret host=db", "dbname=dflab user=dflab password=*** host=db"),
])
def test_redact_hides_passwords_only(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert redact(expected) == expected


def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = MLflowServer("sqlite:///x.db", tmp_path / "artifacts", port=s.getsockname()[1])
        with pytest.raises(OSError, match="in use"):
            server.start()


@needs_postgres
def test_refuses_a_folder_that_is_not_postgres(root: Path) -> None:
    (root / "postgres").mkdir()
    (root / "postgres" / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="not a PostgreSQL data folder"):
        PostgresServer(root / "postgres", port=0).start()
    assert (root / "postgres" / "notes.txt").read_text() == "mine"


@needs_postgres
@pytest.mark.slow
def test_postgres_keeps_an_optuna_study_across_restarts(root: Path) -> None:
    import optuna
    import psycopg2

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = root / "postgres"
    with PostgresServer(data, port=0) as pg:
        assert pg.port != 0 and pg.url.startswith("postgresql+psycopg2://dflab:")
        assert pg.password not in pg.safe_url and ":***@" in pg.safe_url
        assert stat.S_IMODE((data / PASSWORD_FILE).stat().st_mode) == 0o600
        conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user="dflab",
                                password=pg.password, dbname="dflab")
        with conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == ("dflab",)
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=pg.port, user="dflab", password="wrong",
                             dbname="dflab")

        with PostgresServer(data, port=0) as again:  # a second start adopts the running server
            assert again.port == pg.port
        study = optuna.create_study(study_name="roundtrip", storage=pg.url)
        study.optimize(lambda t: t.suggest_float("x", -1.0, 1.0) ** 2, n_trials=3)
        best = study.best_trial.params
        port = pg.port  # the adopting handle left it running: Optuna kept using it
    assert _port_free(port)

    with PostgresServer(data, port=0) as pg:  # restart on the same folder: nothing was wiped
        study = optuna.load_study(study_name="roundtrip", storage=pg.url)
        assert len(study.trials) == 3 and study.best_trial.params == best
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


@needs_postgres
@pytest.mark.slow
def test_mlflow_server_on_postgres_proxies_artifacts(root: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    with PostgresServer(root / "postgres", port=0) as pg, \
            MLflowServer(pg.mlflow_url, root / "artifacts", port=0) as ml:
        assert ml.uri == f"http://127.0.0.1:{ml.port}"
        assert ml._proc is not None  # the password stays off the command line
        assert pg.password not in Path(f"/proc/{ml._proc.pid}/cmdline").read_text()
        client = MlflowClient(ml.uri)
        experiment_id = client.create_experiment("server-test")
        assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "lr", "0.001")
        client.log_metric(run_id, "auc", 0.93, step=1)
        note = tmp_path / "note.txt"
        note.write_text("a real artifact")
        client.log_artifact(run_id, str(note))
        client.set_terminated(run_id)
        run = client.get_run(run_id)
        assert run.data.params == {"lr": "0.001"} and run.data.metrics == {"auc": 0.93}
        assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]
        ports = (pg.port, ml.port)
    landed = list((root / "artifacts").rglob("note.txt"))
    assert len(landed) == 1 and run_id in landed[0].parts
    assert landed[0].read_text() == "a real artifact"
    assert all(_port_free(port) for port in ports)
    for name in ("postgres.log", "mlflow.log"):
        text = (root / "logs" / name).read_text()
        assert text and pg.password not in text


@needs_postgres
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_serve_prints_the_urls_and_stops_both_on_sigterm(root: Path) -> None:
    import psycopg2
    from sqlalchemy.engine import make_url

    code = f"from dflab.tracking.server import serve; serve({str(root)!r}, pg_port=0, mlflow_port=0)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or "Ctrl-C" not in lines[-1]:
        line = proc.stdout.readline()
        assert line, "serve() ended early:\n" + "".join(lines)
        lines.append(line)
    text = "".join(lines)
    tracking = re.search(r"^  (http://\S+)$", text, re.M)
    storage = re.search(r"^  (postgresql\+psycopg2://\S+)$", text, re.M)
    assert tracking and storage, text
    with urllib.request.urlopen(f"{tracking.group(1)}/health", timeout=10) as answer:
        assert answer.status == 200
    url = make_url(storage.group(1))
    assert url.password == (root / "postgres" / PASSWORD_FILE).read_text().strip()
    psycopg2.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                     dbname=url.database).close()

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert "Stopped" in proc.stdout.read()
    assert _port_free(url.port) and _port_free(int(tracking.group(1).rsplit(":", 1)[1]))


@needs_postgres
@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_one_mlflow_server(root: Path, tmp_path: Path, fast_overrides) -> None:
    """The scale-out set-up of the README on one machine: a real PostgreSQL holds the Optuna study,
    a real MLflow server holds the runs and (proxied) their artifacts, and two worker processes add
    trials to both. The database password reaches neither MLflow params, tags nor artifacts."""
    import subprocess
    import sys

    import optuna
    import yaml
    from mlflow.tracking import MlflowClient

    with PostgresServer(root / "postgres", port=0) as pg, \
            MLflowServer(pg.mlflow_url, root / "artifacts", port=0) as ml:
        spec = {"experiment": "experiments/mesonet4_demo.yaml", "study": "hosts", "storage": pg.url,
                "n_trials": 2, "workers": 2, "mlflow_experiment": "unit-hosts",
                "overrides": [*fast_overrides, f"logging.tracking_uri={ml.uri}"],
                "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 2}, "pruner": {"name": "none"},
                "params": {"optim.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec))
        repo = Path(__file__).resolve().parents[1]
        out = subprocess.run([sys.executable, "-m", "dflab", "sweep", str(sweep)], cwd=repo, text=True,
                             capture_output=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert pg.password not in out.stdout + out.stderr

        study = optuna.load_study(study_name="hosts", storage=pg.url)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert len({t.user_attrs["dflab.worker"] for t in study.trials}) == 2

        client = MlflowClient(ml.uri)
        exp = client.get_experiment_by_name("unit-hosts")
        assert exp.artifact_location.startswith("mlflow-artifacts:")
        runs = client.search_runs([exp.experiment_id])
        parent = [r for r in runs if r.data.tags.get("dflab.kind") == "sweep"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
        assert len(parent) == 1 and len(children) == 2
        assert parent[0].data.params["storage"] == pg.safe_url
        for run in runs:
            values = [*run.data.params.values(), *run.data.tags.values()]
            assert not any(pg.password in v for v in values), run.info.run_id
        for run in children:
            assert run.info.status == "FINISHED"
            config = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
            assert ml.uri in config.read_text()
            stored = list((root / "artifacts").rglob(f"{run.info.run_id}/artifacts/config.yaml"))
            assert stored, "the artifacts went to the server's store"
            checkpoints = list((root / "artifacts").rglob(f"{run.info.run_id}/artifacts/checkpoints/*.ckpt"))
            assert checkpoints, "the best checkpoint was uploaded to the server, not linked into a local folder"
        assert not list(repo.glob("mlflow-artifacts*")), "nothing is written to a folder named after the URI"
