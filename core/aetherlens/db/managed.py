"""The managed (embedded) PostgreSQL cluster: the default store when no ``database.url`` is set.

Layout of ``database.managed_dir``::

    data/       PGDATA (initdb'ed on first start)
    run/        private unix socket directory (0700)
    log/        server logs (logging collector) and pg_ctl's start-up log
    .lock       serialises start/stop between processes (flock)
    owner.json  which process started the running postmaster, to tell an orphan from a live owner

PostgreSQL refuses to run as root, so when the core runs as root the cluster runs as the unprivileged
``postgres`` system user. A postmaster left behind by a crashed owner is adopted, never duplicated:
``postmaster.pid`` names it, and the process is checked to really serve this data directory (its
working directory is PGDATA) before it is trusted; anything else is a stale pid file and is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aetherlens.config import Settings
from aetherlens.errors import ManagedDatabaseError

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
DEFAULT_RUN_AS = "postgres"
# With no TCP listener the port only names the socket file (.s.PGSQL.<port>) in our private directory.
SOCKET_PORT = 5432
START_TIMEOUT = 120
STOP_TIMEOUT = 60
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107

State = Literal["running", "stopped", "uninitialized"]


@dataclass(frozen=True, slots=True)
class ManagedStatus:
    state: State
    managed_dir: Path
    data_dir: Path
    socket_dir: Path
    pid: int | None = None
    port: int | None = None
    listen_port: int | None = None
    version: str | None = None
    owner_pid: int | None = None
    detached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "managed_dir": str(self.managed_dir),
            "data_dir": str(self.data_dir),
            "socket_dir": str(self.socket_dir),
            "port": self.port,
            "listen_port": self.listen_port,
            "version": self.version,
            "owner_pid": self.owner_pid,
            "detached": self.detached,
        }


@dataclass(frozen=True, slots=True)
class _PidFile:
    pid: int
    data_dir: str
    port: int | None
    socket_dir: str | None
    listen_address: str | None
    status: str | None


@dataclass(frozen=True, slots=True)
class _RunAs:
    name: str
    uid: int
    gid: int


class ManagedPostgres:
    """Create, start, adopt and stop the cluster in ``settings.managed_dir``."""

    def __init__(self, settings: Settings, *, run_as: str = DEFAULT_RUN_AS) -> None:
        self.settings = settings
        self.managed_dir = settings.managed_dir.absolute()
        self.data_dir = self.managed_dir / "data"
        self.socket_dir = self.managed_dir / "run"
        self.log_dir = self.managed_dir / "log"
        self.listen_port = settings.database.listen_port
        self._run_as_name = run_as
        self._bindir: Path | None = None
        # True when this object started the postmaster (or adopted an orphan) and so must stop it.
        self.owned = False
        self.adopted_pid: int | None = None
        self._pidfile: _PidFile | None = None

    # -- public interface ----------------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    def dsn(self, database: str = "postgres") -> str:
        """libpq/asyncpg URL over the private unix socket of the running postmaster."""
        pidfile = self._pidfile or self._read_pidfile()
        socket_dir = (pidfile.socket_dir if pidfile and pidfile.socket_dir else None) or str(self.socket_dir)
        port = (pidfile.port if pidfile else None) or self._port()
        return f"postgresql://{SUPERUSER}@/{quote(database)}?host={quote(socket_dir, safe='/')}&port={port}"

    def start(self, *, detach: bool = False) -> str:
        """Start (or adopt) the postmaster and return the DSN of its ``postgres`` database.

        ``detach`` marks a cluster started for others (``aetherlens db start``): no later process
        will treat it as an orphan and stop it when it exits.
        """
        run_as = self._run_as()
        self._prepare_dirs(run_as)
        with self._lock():
            running = self._running_pidfile()
            if running is not None:
                self._adopt(running, detach=detach)
                return self.dsn()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(run_as)
            self._check_version()
            self._remove_stale_pidfile()
            self._write_config(run_as)
            self._pg_ctl_start(run_as)
            running = self._running_pidfile()
            if running is None:
                raise ManagedDatabaseError(
                    "the managed PostgreSQL reported ready but no postmaster serves "
                    f"{self.data_dir}; see {self.log_dir}"
                )
            self._pidfile = running
            self.owned = not detach
            self._write_owner(detached=detach)
            log.info(
                "managed PostgreSQL running (pid %d, socket %s)",
                running.pid,
                running.socket_dir,
                extra={"pid": running.pid, "managed_dir": str(self.managed_dir)},
            )
            return self.dsn()

    def stop(self) -> bool:
        """Fast shutdown of the postmaster serving this cluster; False when none was running."""
        with self._lock():
            running = self._running_pidfile()
            self.owned = False
            self._pidfile = None
            if running is None:
                self._remove_owner()
                return False
            log.info("stopping managed PostgreSQL (pid %d)", running.pid)
            # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
            self._signal(running.pid, signal.SIGINT)
            if not self._wait_gone(running.pid, STOP_TIMEOUT):
                log.warning("managed PostgreSQL did not stop in %ds; immediate shutdown", STOP_TIMEOUT)
                self._signal(running.pid, signal.SIGQUIT)
                if not self._wait_gone(running.pid, 15):
                    raise ManagedDatabaseError(
                        f"the managed PostgreSQL (pid {running.pid}) did not stop; see {self.log_dir}"
                    )
            self._remove_owner()
            log.info("managed PostgreSQL stopped")
            return True

    def status(self) -> ManagedStatus:
        version = self._version_or_none()
        if not (self.data_dir / "PG_VERSION").exists():
            return ManagedStatus(
                "uninitialized", self.managed_dir, self.data_dir, self.socket_dir, version=version
            )
        running = self._running_pidfile()
        owner = self._read_owner()
        if running is None:
            return ManagedStatus(
                "stopped",
                self.managed_dir,
                self.data_dir,
                self.socket_dir,
                listen_port=self.listen_port,
                version=version,
            )
        listen = running.port if running.listen_address else None
        return ManagedStatus(
            "running",
            self.managed_dir,
            self.data_dir,
            Path(running.socket_dir) if running.socket_dir else self.socket_dir,
            pid=running.pid,
            port=running.port,
            listen_port=listen,
            version=version,
            owner_pid=owner.get("pid") if owner else None,
            detached=bool(owner.get("detached")) if owner else False,
        )

    # -- the unprivileged user ---------------------------------------------------------------------

    def _run_as(self) -> _RunAs | None:
        """The user the cluster runs as when we are root (None: run as ourselves)."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam(self._run_as_name)
        except KeyError:
            raise ManagedDatabaseError(
                "PostgreSQL refuses to run as root, and there is no unprivileged "
                f"'{self._run_as_name}' system user to run the managed database as. Create one "
                f"(e.g. `useradd --system --user-group --home-dir /var/lib/postgresql "
                f"--shell /usr/sbin/nologin {self._run_as_name}`), run AetherLens as a non-root user, "
                "or set database.url to an existing PostgreSQL server.",
                details={"user": self._run_as_name},
            ) from None
        return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)

    def _prepare_dirs(self, run_as: _RunAs | None) -> None:
        try:
            self.managed_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ManagedDatabaseError(
                f"config key 'database.managed_dir' = {str(self.managed_dir)!r}: cannot create it "
                f"({exc.strerror}); choose a writable directory",
                details={"key": "database.managed_dir"},
            ) from exc
        socket_path = str(self.socket_dir / f".s.PGSQL.{self._port()}")
        if len(socket_path.encode()) > _MAX_SOCKET_PATH:
            raise ManagedDatabaseError(
                f"config key 'database.managed_dir' = {str(self.managed_dir)!r}: the path is too long for "
                f"a unix socket ({socket_path!r} exceeds {_MAX_SOCKET_PATH} bytes); choose a shorter one",
                details={"key": "database.managed_dir"},
            )
        if run_as is not None:
            self._chown(self.managed_dir, run_as)
            self._check_reachable(run_as)
        for directory in (self.socket_dir, self.log_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            directory.chmod(0o700)
            if run_as is not None:
                self._chown(directory, run_as)

    @staticmethod
    def _chown(path: Path, run_as: _RunAs) -> None:
        stat = path.stat()
        if (stat.st_uid, stat.st_gid) != (run_as.uid, run_as.gid):
            os.chown(path, run_as.uid, run_as.gid)

    def _check_reachable(self, run_as: _RunAs) -> None:
        if self._user_can(run_as, "-w", self.managed_dir) and self._user_can(run_as, "-x", self.managed_dir):
            return
        blocker = next(
            (p for p in reversed(self.managed_dir.parents) if not self._user_can(run_as, "-x", p)),
            self.managed_dir,
        )
        raise ManagedDatabaseError(
            f"config key 'database.managed_dir' = {str(self.managed_dir)!r}: the directory is not reachable "
            f"by the unprivileged '{run_as.name}' user the managed PostgreSQL runs as ({blocker} does not "
            f"let it through). Choose a managed_dir outside private (0700) directories such as /root, or "
            f"allow access, e.g. `chmod o+x {blocker}`.",
            details={"key": "database.managed_dir", "blocked_at": str(blocker)},
        )

    @staticmethod
    def _user_can(run_as: _RunAs, flag: str, path: Path) -> bool:
        test = shutil.which("test") or "/usr/bin/test"
        result = subprocess.run(
            [test, flag, str(path)],
            user=run_as.uid,
            group=run_as.gid,
            extra_groups=_groups_of(run_as),
            cwd="/",
            check=False,
            capture_output=True,
        )
        return result.returncode == 0

    # -- cluster creation and configuration ----------------------------------------------------------

    def _initdb(self, run_as: _RunAs | None) -> None:
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ManagedDatabaseError(
                f"config key 'database.managed_dir' = {str(self.managed_dir)!r}: {self.data_dir} exists but "
                "is not a PostgreSQL cluster (no PG_VERSION); move it away so a new cluster can be created",
                details={"key": "database.managed_dir"},
            )
        log.info("creating the managed PostgreSQL cluster in %s (initdb)", self.data_dir)
        self._run(
            run_as,
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--auth-local",
                "trust",
                "--auth-host",
                "scram-sha-256",
            ],
            what="initdb",
        )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as handle:
            handle.write(
                "\n# Settings managed by AetherLens (rewritten at every start).\ninclude 'aetherlens.conf'\n"
            )

    def _check_version(self) -> None:
        cluster_major = (self.data_dir / "PG_VERSION").read_text(encoding="ascii").strip()
        binary_version = self._version()
        if binary_version.split(".")[0] != cluster_major:
            raise ManagedDatabaseError(
                f"the managed cluster in {self.data_dir} was created by PostgreSQL {cluster_major}, but the "
                f"server binaries found ({self.bindir}) are PostgreSQL {binary_version}; install PostgreSQL "
                f"{cluster_major} or upgrade the cluster with pg_upgrade (back it up first)",
            )

    def _write_config(self, run_as: _RunAs | None) -> None:
        preload = timescaledb_installed(self.bindir)
        settings: list[tuple[str, str | int]] = [
            ("listen_addresses", "127.0.0.1" if self.listen_port else ""),
            ("port", self._port()),
            ("unix_socket_directories", str(self.socket_dir)),
            ("unix_socket_permissions", "0700"),
            ("max_connections", 40),
            # Sized for a Raspberry Pi class machine; the OS page cache does most of the work.
            ("shared_buffers", "64MB"),
            ("work_mem", "8MB"),
            ("maintenance_work_mem", "64MB"),
            ("effective_cache_size", "256MB"),
            ("max_wal_size", "512MB"),
            ("min_wal_size", "64MB"),
            ("wal_compression", "on"),
            ("password_encryption", "scram-sha-256"),
            ("timezone", "UTC"),
            ("log_timezone", "UTC"),
            ("logging_collector", "on"),
            ("log_directory", str(self.log_dir)),
            ("log_filename", "postgresql-%a.log"),
            ("log_truncate_on_rotation", "on"),
            ("log_rotation_age", "1d"),
            ("log_rotation_size", "0"),
            # Who did what: time, pid, application_name, user@database.
            ("log_line_prefix", "%m [%p] %q%a %u@%d "),
            ("log_min_duration_statement", "2s"),
        ]
        if preload:
            settings += [("shared_preload_libraries", "timescaledb"), ("timescaledb.telemetry_level", "off")]
        lines = [f"{key} = {_conf_value(value)}" for key, value in settings]
        self._write_owned(self.data_dir / "aetherlens.conf", "\n".join(lines) + "\n", run_as)
        hba = [
            "# Managed by AetherLens (rewritten at every start).",
            "# The socket directory is private (0700), so local connections are trusted.",
            "local all all trust",
        ]
        if self.listen_port:
            hba.append("host all all 127.0.0.1/32 scram-sha-256")
        self._write_owned(self.data_dir / "pg_hba.conf", "\n".join(hba) + "\n", run_as)
        if preload:
            log.info("TimescaleDB is installed: preloading it in the managed cluster")

    @staticmethod
    def _write_owned(path: Path, text: str, run_as: _RunAs | None) -> None:
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)

    def _port(self) -> int:
        return self.listen_port or SOCKET_PORT

    # -- starting, adopting, stopping ------------------------------------------------------------------

    def _pg_ctl_start(self, run_as: _RunAs | None) -> None:
        log.info(
            "starting managed PostgreSQL %s in %s%s",
            self._version(),
            self.data_dir,
            f" (also on 127.0.0.1:{self.listen_port})" if self.listen_port else "",
        )
        startup_log = self.log_dir / "startup.log"
        try:
            self._run(
                run_as,
                [
                    str(self.bindir / "pg_ctl"),
                    "start",
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(startup_log),
                    "--wait",
                    "--timeout",
                    str(START_TIMEOUT),
                ],
                what="pg_ctl start",
                # The postmaster must outlive a Ctrl-C in our terminal: its own session.
                new_session=True,
            )
        except ManagedDatabaseError as exc:
            # Another process may have won a race for the same directory: adopt its postmaster.
            if self._running_pidfile() is not None:
                return
            tail = self._log_tail()
            if self.listen_port and "could not bind" in tail:
                raise ManagedDatabaseError(
                    f"config key 'database.listen_port' = {self.listen_port}: 127.0.0.1:{self.listen_port} "
                    f"is already in use by another program; choose a free port or unset it\n{tail}",
                    details={"key": "database.listen_port"},
                ) from None
            raise ManagedDatabaseError(f"{exc.message}\n{tail}") from None

    def _adopt(self, running: _PidFile, *, detach: bool) -> None:
        owner = self._read_owner()
        self._pidfile = running
        self.adopted_pid = running.pid
        if owner is not None and (owner.get("detached") or _same_process_alive(owner)):
            log.info(
                "managed PostgreSQL already running (pid %d); using it",
                running.pid,
                extra={"pid": running.pid},
            )
            if detach and not owner.get("detached"):
                self._write_owner(detached=True)
            return
        # Nobody alive owns it: the process that started it crashed. Take it over rather than
        # starting a second postmaster (which PostgreSQL would refuse anyway).
        log.warning(
            "adopting orphaned managed PostgreSQL (pid %d) left by a previous run",
            running.pid,
            extra={"pid": running.pid},
        )
        self.owned = not detach
        self._write_owner(detached=detach)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _serves(pid, self.data_dir):
                return True
            time.sleep(0.1)
        return False

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    # -- postmaster.pid ---------------------------------------------------------------------------

    def _read_pidfile(self) -> _PidFile | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except PermissionError as exc:
            raise ManagedDatabaseError(
                f"cannot read {self.data_dir / 'postmaster.pid'}: {exc.strerror}"
            ) from exc
        # Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
        field = [*lines, *[""] * 8]
        try:
            pid = int(field[0])
        except ValueError:
            return None
        return _PidFile(
            pid=pid,
            data_dir=field[1],
            port=int(field[3]) if field[3].strip().isdigit() else None,
            socket_dir=field[4].strip() or None,
            listen_address=field[5].strip() or None,
            status=field[7].strip() or None,
        )

    def _running_pidfile(self) -> _PidFile | None:
        pidfile = self._read_pidfile()
        if pidfile is None or not _serves(pidfile.pid, self.data_dir):
            return None
        return pidfile

    def _remove_stale_pidfile(self) -> None:
        pidfile = self._read_pidfile()
        path = self.data_dir / "postmaster.pid"
        if path.exists() and (pidfile is None or not _serves(pidfile.pid, self.data_dir)):
            # The pid is dead or now belongs to an unrelated process (common after a reboot or in a
            # container); PostgreSQL would refuse to start while the file names a live process.
            log.warning(
                "removing stale %s (pid %s is not a postmaster of this cluster)",
                path,
                pidfile and pidfile.pid,
            )
            path.unlink(missing_ok=True)

    # -- ownership record ------------------------------------------------------------------------

    @property
    def _owner_path(self) -> Path:
        return self.managed_dir / "owner.json"

    def _write_owner(self, *, detached: bool) -> None:
        pid = os.getpid()
        record = {"pid": pid, "start_time": _process_start_time(pid), "detached": detached}
        tmp = self._owner_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(self._owner_path)

    def _read_owner(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._owner_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _remove_owner(self) -> None:
        self._owner_path.unlink(missing_ok=True)

    # -- helpers -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.managed_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(
        self, run_as: _RunAs | None, argv: Sequence[str], *, what: str, new_session: bool = False
    ) -> None:
        kwargs: dict[str, Any] = {}
        if run_as is not None:
            kwargs = {"user": run_as.uid, "group": run_as.gid, "extra_groups": _groups_of(run_as)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        if run_as is not None:
            env["HOME"] = str(self.managed_dir)
            env["USER"] = env["LOGNAME"] = run_as.name
        result = subprocess.run(
            list(argv),
            cwd=str(self.managed_dir),
            env=env,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=new_session,
            **kwargs,
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()
            raise ManagedDatabaseError(
                f"{what} failed for the managed PostgreSQL in {self.data_dir}: {output}"
            )

    def _log_tail(self, lines: int = 15) -> str:
        logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return f"(no server log in {self.log_dir})"
        tail = logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"last lines of {logs[-1]}:\n" + "\n".join(tail)

    def _version(self) -> str:
        return server_version(self.bindir)

    def _version_or_none(self) -> str | None:
        try:
            return self._version()
        except ManagedDatabaseError:
            return None


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _groups_of(run_as: _RunAs) -> list[int]:
    # Drop root's supplementary groups; keep the unprivileged user's own (e.g. ssl-cert).
    return os.getgrouplist(run_as.name, run_as.gid)


def _serves(pid: int, data_dir: Path) -> bool:
    """Is ``pid`` a live postmaster whose working directory is this PGDATA (postgres chdirs there)?"""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text(encoding="ascii")
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
    except (OSError, IndexError):
        return False
    try:
        return (proc / "cwd").readlink().resolve() == data_dir.resolve()
    except PermissionError:
        # Another user's process (we are not root): the best we can tell is whether it is postgres.
        with contextlib.suppress(OSError):
            return (proc / "comm").read_text(encoding="ascii").strip() in ("postgres", "postmaster")
        return False
    except OSError:
        return False


def _process_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _same_process_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = owner.get("start_time")
    # A recycled pid has a different start time.
    return started is None or _process_start_time(pid) in (None, started)


def find_bindir() -> Path:
    """Server binaries: ``pg_config --bindir``, else the newest Debian /usr/lib/postgresql/<ver>/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout
            candidates.append(Path(out.strip()))
    versions = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.replace(".", "").isdigit()),
        key=lambda p: tuple(int(x) for x in p.parent.name.split(".")),
        reverse=True,
    )
    candidates += versions
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("postgres", "initdb", "pg_ctl")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "pg_config not on PATH, no /usr/lib/postgresql/*/bin"
    raise ManagedDatabaseError(
        f"no PostgreSQL server binaries found (looked at: {looked}); install PostgreSQL "
        "(e.g. `apt install postgresql`) or set database.url to an existing server"
    )


def _pg_config(bindir: Path, flag: str) -> Path | None:
    tool = bindir / "pg_config"
    if not tool.is_file():
        found = shutil.which("pg_config")
        if not found:
            return None
        tool = Path(found)
    try:
        out = subprocess.run([str(tool), flag], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(out.strip())


def timescaledb_installed(bindir: Path) -> bool:
    """Are TimescaleDB's control file and loader library installed for these binaries?"""
    sharedir = _pg_config(bindir, "--sharedir")
    pkglibdir = _pg_config(bindir, "--pkglibdir")
    if sharedir is None or pkglibdir is None:
        return False
    return (sharedir / "extension" / "timescaledb.control").is_file() and (
        pkglibdir / "timescaledb.so"
    ).is_file()


def server_version(bindir: Path) -> str:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ManagedDatabaseError(f"cannot run {bindir / 'postgres'} --version: {exc}") from exc
    match = re.search(r"(\d+(?:\.\d+)*)", out.stdout)
    if match is None:
        raise ManagedDatabaseError(f"unexpected output of {bindir / 'postgres'} --version: {out.stdout!r}")
    return match.group(1)
