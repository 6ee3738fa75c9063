"""A real PostgreSQL server and a real MLflow tracking server on it, for a team or a test.

``serve(root)`` keeps everything under ``root``: ``postgres/`` (the data folder, with the
generated password in ``postgres/dflab-password``, mode 0600), ``artifacts/`` (run artifacts,
proxied by the MLflow server as ``mlflow-artifacts:``) and ``logs/`` (both servers' logs).
Runs log to the MLflow URI; sweeps give the PostgreSQL URL to Optuna as their ``storage:``.

PostgreSQL comes from :mod:`dflab.tracking.postgres`. Reference: the MLflow tracking server,
https://mlflow.org/docs/latest/self-hosting/architecture/tracking-server
(``mlflow server --backend-store-uri ... --artifacts-destination ... --serve-artifacts``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from dflab.tracking.postgres import (
    PASSWORD_FILE,
    WILDCARD_HOSTS,
    PostgresServer,
    client_host,
    free_port,
    netloc,
    tail,
)
from dflab.utils.report import report

__all__ = ["MLflowServer", "serve"]

log = logging.getLogger(__name__)


class MLflowServer:
    """``mlflow server`` (uvicorn) on ``host:port``, in its own process group; a context manager.

    Experiments created without an artifact location get ``mlflow-artifacts:/<id>``: clients
    upload and download through this server, which stores the files in ``artifacts_dir``.

    Args:
        backend_store_uri: where runs are stored (a PostgreSQL URL's password is handed to the
            server as ``PGPASSWORD``, so it shows neither in ``ps`` nor in the log).
        artifacts_dir: the folder behind ``mlflow-artifacts:`` (``--artifacts-destination``).
        host: the address to listen on. port: the TCP port; 0 picks a free one.
        log_file: the server's log; by default ``<artifacts_dir>/../logs/mlflow.log``.
        workers: uvicorn worker processes. extra_args: more ``mlflow server`` options, as they
            are (for instance ``--allowed-hosts``).
        timeout_s: the longest wait for ``/health`` to answer, in seconds.
    """

    def __init__(self, backend_store_uri: str, artifacts_dir: Path, host: str = "127.0.0.1",
                 port: int = 5000, log_file: Path | None = None, workers: int = 1,
                 extra_args: Sequence[str] = (), timeout_s: float = 120.0) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir).expanduser().resolve()
        self.host, self.port, self.workers, self.timeout_s = host, port, workers, timeout_s
        self.log_file = Path(log_file or self.artifacts_dir.parent / "logs" / "mlflow.log").resolve()
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """``http://host:port``: the tracking URI for clients on this machine."""
        return f"http://{netloc(client_host(self.host), self.port)}"

    def start(self) -> MLflowServer:
        """Start the server and wait until ``/health`` answers.

        Raises:
            OSError: the port is taken. RuntimeError: the server exited (with its log's tail).
            TimeoutError: no answer within ``timeout_s`` (the server is stopped; log tail).
        """
        self.port = free_port(client_host(self.host), self.port)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        parts, env = urlsplit(self.backend_store_uri), dict(os.environ)
        backend = self.backend_store_uri
        if parts.password is not None and parts.scheme.startswith("postgres"):  # not on argv
            env["PGPASSWORD"] = unquote(parts.password)
            backend = urlunsplit(parts._replace(netloc=parts.netloc.replace(
                f":{parts.password}@", "@", 1)))
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
               "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
               "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
               *self.extra_args]
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, env=env, cwd=self.log_file.parent,
                                          start_new_session=True)
        try:
            self._wait_healthy(self._proc)
        except BaseException:  # Ctrl-C included: leave no server behind
            self.stop()
            raise
        return self

    def _wait_healthy(self, proc: subprocess.Popen[bytes]) -> None:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + self.timeout_s
        while (rc := proc.poll()) is None:
            try:
                with no_proxy.open(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the MLflow server did not answer {self.uri}/health within "
                                   f"{self.timeout_s:.0f} s; last lines of {self.log_file}:\n"
                                   f"{tail(self.log_file)}")
            time.sleep(0.25)
        raise RuntimeError(f"the MLflow server exited (code {rc}) before answering; last "
                           f"lines of {self.log_file}:\n{tail(self.log_file)}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and its workers (SIGTERM to its process group, SIGKILL after
        ``timeout_s`` seconds)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout_s)
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:  # workers outliving the main process
                    os.killpg(proc.pid, 0)
                    time.sleep(0.1)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                pass
        proc.wait()

    def __enter__(self) -> MLflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(root: Path, host: str = "127.0.0.1", pg_port: int = 5432, mlflow_port: int = 5000) -> None:
    """Run PostgreSQL and an MLflow server on it, with everything under ``root``, until Ctrl-C
    (or SIGTERM); then stop both.

    Args:
        root: the folder of ``postgres/`` (data and password), ``artifacts/`` and ``logs/``.
        host: the address both listen on; with ``0.0.0.0`` the URLs shown use this machine's
            name, and MLflow also accepts that name in the ``Host`` header.
        pg_port: PostgreSQL's TCP port (0: a free one). mlflow_port: MLflow's (0: a free one).

    Raises:
        As :meth:`PostgresServer.start` and :meth:`MLflowServer.start`.
    """
    root = Path(root).expanduser().resolve()
    public = socket.getfqdn() if host in WILDCARD_HOSTS else host
    extra: list[str] = []
    if host in WILDCARD_HOSTS:  # MLflow accepts only localhost and private IPs as Host by default
        names = ["localhost", "127.0.0.1", "[::1]", public, socket.gethostname()]
        extra = ["--allowed-hosts", ",".join([*names, *(f"{n}:*" for n in names), "10.*",
                                              "192.168.*", *(f"172.{i}.*" for i in range(16, 32))])]
    try:  # stop cleanly on SIGTERM too (possible in the main thread only)
        old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:
        old = None
    try:
        with PostgresServer(root / "postgres", host, pg_port, root / "logs" / "postgres.log") as pg, \
                MLflowServer(pg.mlflow_url, root / "artifacts", host, mlflow_port, root / "logs" /
                             "mlflow.log", extra_args=extra) as ml:
            shown = pg.url.replace(f"@{netloc(client_host(pg.host), pg.port)}/",
                                   f"@{netloc(public, pg.port)}/")
            report(f"PostgreSQL on {netloc(public, pg.port)}, data in {pg.data_dir}\n"
                   f"MLflow tracking server on {netloc(public, ml.port)}, artifacts in "
                   f"{ml.artifacts_dir}; logs in {root / 'logs'}\n\n"
                   f"Tracking URI (logging.tracking_uri=, or MLFLOW_TRACKING_URI):\n"
                   f"  http://{netloc(public, ml.port)}\n"
                   f"Optuna storage (a sweep file's `storage:`):\n  {shown}\n"
                   f"  This URL holds the database password (from {pg.data_dir / PASSWORD_FILE}); "
                   "it is shown only this once: keep it out of shared files and commits.\n\n"
                   + ("" if pg._owned else "PostgreSQL was already running: it stays running.\n")
                   + "Press Ctrl-C to stop both servers.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        report("Stopped the MLflow and PostgreSQL servers.")
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
