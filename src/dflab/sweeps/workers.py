"""``dflab sweep --workers N``: N worker processes on this host adding trials to one study.

The launcher opens the sweep once (stores, dataset, face index, the study and its MLflow parent
run), so the workers start on created databases. Each worker is an ordinary ``dflab sweep``
process with its own index (its own sampler stream, :func:`~dflab.sweeps.search.worker_seed`);
they share the trial budget (the study stops growing at ``trials before + n_trials``, running
trials included) and Optuna's storage. Their output is shown line by line, prefixed with the
worker's index.

A worker that dies (``kill -9``, out of memory) takes only its running trial with it: the
launcher fails that trial at once (Optuna ``FAIL``, MLflow ``KILLED``) and the other workers go
on. When all have ended, the launcher prints the trials table, logs the plots to the parent run
and ends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

import optuna

from dflab.clips.face_stage import FaceStage
from dflab.datasets.resolve import resolve_items
from dflab.sweeps.space import SweepConfig
from dflab.sweeps.study import fail_orphaned_trials, worker_start_id
from dflab.sweeps.summary import summarise
from dflab.sweeps.sweep import DATA_KEYS, SweepSession, raise_if_all_failed
from dflab.utils.report import report

__all__ = ["run_workers"]


def _pump(stream: IO[str], prefix: str) -> None:
    for line in stream:
        report(f"{prefix}{line.rstrip()}")


def _prepare_faces(session: SweepSession, progress: bool) -> None:
    """Build the face index once, before the workers would each start building it."""
    cfg, base = session.cfg, session.base
    if any(k.startswith((*DATA_KEYS, "faces.")) for k in cfg.params):
        return  # trials read different videos or faces; each builds its own
    items = resolve_items(base.data, progress=False)
    FaceStage.of(base.data, base.faces).build(items, base.faces.workers, progress)


def run_workers(cfg: SweepConfig, sweep_file: str, overrides: Sequence[str], workers: int,
                n_trials: int | None = None, progress: bool = True, first_index: int = 0) -> optuna.Study:
    """Run ``workers`` ``dflab sweep`` processes on one study until ``n_trials`` more trials ran.

    Args:
        cfg: the sweep, loaded from ``sweep_file`` with ``overrides``.
        sweep_file: its file, given to each worker.
        overrides: the ``key=value`` overrides, given to each worker.
        workers: worker processes (at most one per trial).
        n_trials: trials to add (default ``cfg.n_trials``).
        progress: progress bars in this process.
        first_index: index of the first worker (host ``h`` of a study shared by several hosts,
            each with ``workers`` workers, starts at ``h * workers``): every worker of the study
            draws its own sampler stream.

    Returns:
        The study.

    Raises:
        SweepFailedError: every trial of this call failed.
        KeyboardInterrupt: Ctrl-C; the workers stop their trials (marked failed and ``KILLED``).
    """
    session = SweepSession.open(cfg, progress)
    _prepare_faces(session, progress)
    study, before, _ = session.study(0)
    total = n_trials if n_trials is not None else cfg.n_trials
    count = max(1, min(workers, total))
    report(f"Sweep {cfg.study!r}: {count} workers add {total} trials to the {before} there "
           f"(MLflow parent run {session.parent})")
    command = [sys.executable, "-m", "dflab", "sweep", sweep_file, *overrides, "--n-trials", str(total),
               "--stop-at", str(before + total), "--no-summary"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[str]] = []
    owners: dict[int, str] = {}
    pumps = []
    for k in range(count):
        # Own process group: Ctrl-C reaches the launcher, which passes one SIGINT on to each worker.
        proc = subprocess.Popen([*command, "--worker-index", str(first_index + k)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, process_group=0)
        owners[k] = worker_start_id(proc.pid)
        procs.append(proc)
        assert proc.stdout is not None
        pump = threading.Thread(target=_pump, args=(proc.stdout, f"[worker {k}] "), daemon=True)
        pump.start()
        pumps.append(pump)
    status = "FINISHED"
    try:
        pending = set(range(count))
        while pending:
            for k in sorted(pending):
                code = procs[k].poll()
                if code is None:
                    continue
                pending.discard(k)
                if code != 0:
                    how = f"signal {-code}" if code < 0 else f"exit status {code}"
                    report(f"[worker {k}] ended with {how}")
                    fail_orphaned_trials(study, session.trial_killed, worker=owners[k])
            time.sleep(0.2)
    except KeyboardInterrupt:
        status = "KILLED"
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for k, proc in enumerate(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            fail_orphaned_trials(study, session.trial_killed, worker=owners[k])
        raise
    finally:
        for pump in pumps:
            pump.join(timeout=5)
        mine = [t for t in study.get_trials(deepcopy=False) if t.number >= before]
        summarise(study, cfg, session.client, session.parent, status, mine)
    raise_if_all_failed(study, mine, cfg, session.parent)
    return study
