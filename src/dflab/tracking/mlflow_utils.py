"""MLflow helpers: the tracking URI (a local SQLite store or a tracking server), experiments, run lookup.

With a local store, experiments get a local artifact root (``logging.artifact_location``); with a
tracking server (``http(s)://``) the server chooses (``mlflow-artifacts:``, proxied by the server),
so every host writes its artifacts to the one server. The first process to open a fresh SQLite
store creates it under a file lock, so processes started together never race in its migration.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from dflab.config.schema import LoggingConfig, tracking_uri_or_default
from dflab.utils.locks import file_lock, lock_path
from dflab.utils.urls import redact


class TrackingError(RuntimeError):
    """Runs cannot be recorded where the config says (the message names the key or run)."""


def _local_path(location: str) -> Path | None:
    """The local folder or file behind a tracking URI or artifact location, if it is local."""
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///"))
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    if "://" in location or location.startswith(("mlflow-artifacts:", "postgresql", "mysql")):
        return None
    return Path(location)


def check_writable(cfg: LoggingConfig, output_dir: str | None = None, **folders: str) -> None:
    """Make sure runs, artifacts and checkpoints can be written, before any work starts.

    Folders are created if missing; each is then probed with a real write (permission bits
    alone do not tell: a read-only mount, or a file where a folder should be).

    Raises:
        ConfigError: a location cannot be written (names the key and the path).
    """
    uri = tracking_uri_or_default(cfg.tracking_uri)
    places = [("logging.tracking_uri", uri, uri.startswith("sqlite:///"))]
    if is_local_store(uri):
        places.append(("logging.artifact_location", cfg.artifact_location, False))
    if output_dir is not None:
        places.append(("logging.output_dir", output_dir, False))
    places += [(key.replace("__", "."), folder, False) for key, folder in folders.items()]
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    for key, location, is_file in places:
        path = _local_path(location)
        if path is not None:
            ensure_writable(key, path, is_file)


def ensure_writable(key: str, path: str | Path, is_file: bool = False) -> None:
    """Create folder ``path`` (or the folder of file ``path``) if missing and probe it with a real
    write: permission bits alone do not tell (a read-only mount, a file where a folder should be).

    Raises:
        ConfigError: it cannot be written (names ``key`` and the path).
    """
    import tempfile

    from dflab.config import ConfigError

    path = Path(path)
    folder = path.parent if is_file else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        if is_file and path.exists():
            with open(path, "ab"):
                pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{key}: cannot write to {path if is_file else folder} ({reason}); "
                          "nothing was done. Point it at a writable place") from None


def _check_server(uri: str, timeout_s: float = 10.0) -> None:
    """Say at once when an MLflow tracking server does not answer (MLflow itself retries for minutes).

    Raises:
        ConfigError: the server at ``uri`` cannot be reached (names the key and the URI).
    """
    import urllib.error
    import urllib.request

    from dflab.config import ConfigError

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server without /health (or behind a proxy) is still there
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(f"logging.tracking_uri: the MLflow tracking server at {uri} does not answer "
                          f"({reason}); start the server or fix the URI") from None


_OPENED: set[str] = set()  # SQLite stores this process has opened (and so found migrated)


def is_local_store(uri: str) -> bool:
    """A tracking URI whose artifacts this process writes itself (SQLite, ``file:``, a folder),
    as opposed to a tracking server or a remote database."""
    return uri.startswith(("sqlite:///", "file:")) or "://" not in uri


def prepare_tracking(cfg: LoggingConfig) -> str:
    """The tracking URI (``cfg.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else the local
    SQLite default), with the folders behind a local store created; a fresh SQLite store is
    created and migrated under a file lock, once, however many processes start together."""
    uri = tracking_uri_or_default(cfg.tracking_uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
        if uri not in _OPENED:  # once per process: the store is created and migrated under the lock
            with store_lock(uri):
                from mlflow.tracking import MlflowClient

                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            _OPENED.add(uri)
    if is_local_store(uri):
        Path(cfg.artifact_location).mkdir(parents=True, exist_ok=True)
    return uri  # passed to each client explicitly: no process-wide MLflow setting is changed


def store_lock(uri: str) -> AbstractContextManager[None]:
    """The lock under which a SQLite tracking store is created (a no-op for other stores): hold it
    around anything that may open the store first, e.g. Lightning's ``MLFlowLogger``, which
    connects in every DDP process."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return file_lock(lock_path(db))
    return nullcontext()


def client(cfg: LoggingConfig):
    """An ``MlflowClient`` on the configured tracking URI (see :func:`prepare_tracking`), whose
    model registry is the same store (never MLflow's process-wide registry URI)."""
    from mlflow.tracking import MlflowClient

    uri = prepare_tracking(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def existing_store_client(tracking_uri: str | None = None):
    """An ``MlflowClient`` on a store that must already exist, for commands that only read runs
    and models (export, evaluate, predict): a mistyped local URI is refused instead of creating
    an empty store there.

    Raises:
        TrackingError: the URI names a local database or folder that does not exist.
    """
    uri = tracking_uri_or_default(tracking_uri)
    local = _local_path(uri)
    if local is not None and not local.exists():
        raise TrackingError(f"no MLflow store at {redact(uri)} ({local} does not exist); pass --tracking-uri, "
                            "or run `make sweep` first")
    return client(LoggingConfig(tracking_uri=uri))


def ensure_experiment(cfg: LoggingConfig, name: str | None = None) -> str:
    """Id of the MLflow experiment ``name`` (default ``cfg.experiment``), created if missing.

    With a local store its artifacts go under ``cfg.artifact_location``; a tracking server picks
    the location itself (proxied ``mlflow-artifacts:``). Two processes creating it at once both
    get the one experiment.
    """
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    name = name or cfg.experiment
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    uri = tracking_uri_or_default(cfg.tracking_uri)
    location = None
    if is_local_store(uri):
        location = f"{Path(cfg.artifact_location).resolve().as_uri()}/{name}"
    try:
        return c.create_experiment(name, artifact_location=location)
    except MlflowException:  # created by another process meanwhile
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def mlflow_params(cfg: Any) -> dict[str, Any]:
    """A config (any config dataclass) as flat MLflow params: dotted keys, lists and mappings as
    JSON, every password inside a URL (a tracking URI, a database) shown as ``***``, and text cut
    to MLflow's 6000-character limit."""
    from dflab.config import flatten, to_dict
    out: dict[str, Any] = {}
    for key, value in flatten(to_dict(cfg)).items():
        if not (isinstance(value, (int, float, str, bool)) or value is None):
            value = json.dumps(value)
        out[key] = redact(value)[:6000] if isinstance(value, str) else value
    return out


def save_redacted(cfg: Any, path: Path) -> Path:
    """:func:`dflab.config.save_config` with every password inside a URL shown as ``***`` (for a
    copy that is logged, e.g. a run's ``config.yaml`` artifact)."""
    from dflab.config import save_config
    save_config(cfg, path)
    path.write_text(redact(path.read_text()))
    return path


CONTEXTS = {"train": "training", "val": "validation", "test": "test"}


def log_dataset_inputs(mlflow_client, run_id: str, datasets: list[dict]) -> None:
    """Log each split as an MLflow dataset input of the run (shown under "Datasets used").

    Args:
        mlflow_client: an ``MlflowClient``.
        run_id: the run.
        datasets: entries of ``DeepfakeDataModule.dataset_digests()`` (``split``, ``name``,
            ``digest``, ``source``, ``profile``).
    """
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = [DatasetInput(Dataset(name=d["name"], digest=d["digest"][:36], source_type="local",
                                   source=json.dumps({"uri": d["source"]}), profile=json.dumps(d["profile"])),
                           [InputTag("mlflow.data.context", CONTEXTS.get(d["split"], d["split"]))])
              for d in datasets]
    mlflow_client.log_inputs(run_id, datasets=inputs)


class RunLookupError(LookupError):
    """An MLflow run, or the artifact asked of it, does not exist (the message names the run)."""


def run_checkpoint(mlflow_client, run_id: str, folder: str | Path, which: str = "best") -> Path:
    """Download the ``which`` checkpoint (``best`` or ``last``) of an MLflow run into ``folder``.

    Raises:
        RunLookupError: the run does not exist, or has no such checkpoint artifact (a trial
            killed, failed or pruned before its first validation).
    """
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_run(run_id)
    except MlflowException:
        raise RunLookupError(f"MLflow run {run_id!r} does not exist in {mlflow_client.tracking_uri}") from None
    try:
        local = Path(mlflow_client.download_artifacts(run_id, "checkpoints", str(folder)))
    except (MlflowException, OSError):
        local = Path(folder) / "-"  # the run has no checkpoints folder at all
    found = sorted(p for p in local.glob("*.ckpt") if p.name.startswith(which)) if local.is_dir() else []
    if not found:
        raise RunLookupError(f"MLflow run {run_id} has no {which} checkpoint (no checkpoints/{which}*.ckpt "
                             "artifact: the run was killed, failed or pruned before its first validation)")
    return found[0]


def latest_sweep_best_run(client) -> str:
    """Run id of the best trial of the most recently finished sweep.

    Raises:
        RunLookupError: no finished sweep is recorded.
    """
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string="tags.`dflab.kind` = 'sweep'",
                              order_by=["attributes.end_time DESC"], max_results=20)
    for run in runs:
        best = run.data.tags.get("best_run_id")
        if best:
            return best
    raise RunLookupError("no finished sweep with a best run in the tracking store; run `make sweep` "
                         "first or pass RUN=<mlflow run id>")
