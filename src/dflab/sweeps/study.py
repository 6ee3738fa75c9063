"""The Optuna side of a sweep: its storage, its study, and trials whose worker died.

Storages (https://optuna.readthedocs.io/en/stable/reference/storages.html):

* a journal file (a path ending ``.journal``): Optuna's ``JournalFileBackend``, safe for several
  worker processes on one host (and on a shared file system);
* PostgreSQL or MySQL: ``RDBStorage`` for workers on several hosts, with Optuna's heartbeat: a
  trial whose worker stops beating for ``grace_s`` seconds is failed by whichever worker of the
  study notices first;
* SQLite: ``RDBStorage`` too, for one worker (Optuna advises against it for parallel workers).

A fresh local database or journal is created under a file lock, so processes started together
never race in its creation. Each running trial names its worker (:data:`WORKER_ATTR`: host,
process id and start time); a trial whose worker process on this host is gone is failed at once
by the next worker or rerun that looks (:func:`fail_orphaned_trials`), without waiting for a
heartbeat.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from dflab.utils.locks import file_lock, lock_path
from dflab.utils.quiet import quiet_known_warnings
from dflab.utils.urls import redact

log = logging.getLogger(__name__)

WORKER_ATTR = "dflab.worker"
"""Trial user attribute naming the worker process that runs it: ``host:pid:start``."""

TrialFailed = Callable[[optuna.Study, optuna.trial.FrozenTrial, str], None]


def local_storage_file(url: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; ``None`` for a database server."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    if url.endswith(".journal") and "://" not in url:
        return Path(url)
    return None


@quiet_known_warnings()
def open_storage(url: str, heartbeat_s: int = 10, grace_s: int = 30,
                 stale_trial_callback: Callable[..., None] | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring), created if missing.

    Raises:
        RuntimeError: a database storage could not be opened after 5 tries (names the URL,
            without its password).
    """
    local = local_storage_file(url)
    if local is not None:
        local.parent.mkdir(parents=True, exist_ok=True)
    if url.endswith(".journal") and local is not None:
        from optuna.storages.journal import JournalFileBackend

        with file_lock(lock_path(local)):
            return optuna.storages.JournalStorage(JournalFileBackend(str(local)))
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat_s, "grace_period": grace_s,
                              "heartbeat_stale_trial_callback": stale_trial_callback}
    if local is not None:
        with file_lock(lock_path(local)):
            return optuna.storages.RDBStorage(url, **kwargs)
    last: Exception | None = None
    for attempt in range(5):  # several hosts creating the schema at once: one wins, the others retry
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as err:  # SQLAlchemy raises several kinds for a lost creation race
            last = err
            time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"storage: {redact(url)} could not be opened: {redact(str(last))}") from None


def worker_id() -> str:
    """``host:pid:start`` of this process (start: the process start time, so a reused pid is
    never taken for this one)."""
    return worker_start_id(os.getpid())


def worker_start_id(pid: int) -> str:
    """``host:pid:start`` of the process ``pid`` of this host (see :func:`worker_id`)."""
    return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"


def _start_time(pid: int) -> str:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # starttime, in clock ticks since boot
    except (OSError, IndexError):
        return "?"


def worker_alive(worker: str) -> bool | None:
    """Whether the worker named ``host:pid:start`` runs; ``None`` when it is on another host
    (the heartbeat of a database storage decides there)."""
    try:
        host, pid_text, start = worker.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return start == "?" or _start_time(pid) in (start, "?")


def fail_orphaned_trials(study: optuna.Study, on_failed: TrialFailed | None = None,
                         worker: str | None = None) -> list[optuna.trial.FrozenTrial]:
    """Fail every running trial of ``study`` whose worker process on this host is gone.

    Args:
        study: the study.
        on_failed: called with ``(study, trial, reason)`` for each trial failed here.
        worker: fail only this worker's trials (e.g. a child a launcher saw die); default: any
            worker of this host that no longer runs.

    Returns:
        The trials failed (as they were, still ``RUNNING``).
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR)
        if owner is None or owner == worker_id():
            continue
        if worker is not None and owner != worker:
            continue
        if worker is None and worker_alive(owner) is not False:
            continue
        reason = f"worker process {owner} died while running trial {trial.number}"
        try:
            optuna.Trial(study, trial._trial_id).set_user_attr("error", reason)
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (RuntimeError, ValueError):  # it finished meanwhile
            continue
        failed.append(trial)
        log.warning("trial %d failed: %s", trial.number, reason)
        if on_failed is not None:
            on_failed(study, trial, reason)
    return failed
