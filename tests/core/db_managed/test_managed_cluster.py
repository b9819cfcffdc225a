"""The managed (embedded) PostgreSQL: start/stop/restart, adoption instead of duplicates, stale pid
files, and clear errors for a missing unprivileged user or an unreachable directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import asyncpg
import pytest
from managed_helpers import settings_for

from aetherlens.config import Settings
from aetherlens.db.managed import ManagedPostgres
from aetherlens.errors import ManagedDatabaseError


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _postmasters_of(data_dir: Path) -> list[int]:
    """Every live postgres process whose parent is not postgres and whose cwd is this PGDATA."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.joinpath("comm").read_text().strip() != "postgres":
                continue
            if entry.joinpath("cwd").readlink().resolve() != data_dir.resolve():
                continue
            ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            if Path(f"/proc/{ppid}/comm").read_text().strip() == "postgres":
                continue  # a backend or auxiliary process, child of the postmaster
        except (OSError, ValueError, IndexError):
            continue
        found.append(int(entry.name))
    return found


async def test_start_stop_restart_keeps_data(stopped_after: Settings) -> None:
    managed = ManagedPostgres(stopped_after)
    assert managed.status().state == "stopped"

    dsn = managed.start()
    first = managed.status()
    assert first.state == "running" and first.pid is not None
    assert first.version and first.version.split(".")[0] == "15"
    assert managed.owned
    # Private socket directory: only the cluster's user may enter it.
    assert (first.socket_dir.stat().st_mode & 0o777) == 0o700
    assert (first.socket_dir / ".s.PGSQL.5432").exists()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SHOW listen_addresses") == ""
        await conn.execute("DROP TABLE IF EXISTS restart_probe; CREATE TABLE restart_probe(v int)")
        await conn.execute("INSERT INTO restart_probe VALUES (42)")
    finally:
        await conn.close()

    assert managed.stop() is True
    assert managed.status().state == "stopped"
    assert not _alive(first.pid)
    assert not (managed.data_dir / "postmaster.pid").exists()
    assert not (first.socket_dir / ".s.PGSQL.5432").exists()
    assert managed.stop() is False  # stopping a stopped cluster is harmless

    dsn = managed.start()
    second = managed.status()
    assert second.pid != first.pid
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT v FROM restart_probe") == 42
    finally:
        await conn.close()
    # The server log goes to managed_dir/log, with application names in the line prefix.
    assert any((managed.managed_dir / "log").glob("postgresql-*.log"))


def test_second_instance_reuses_running_postmaster(stopped_after: Settings) -> None:
    first = ManagedPostgres(stopped_after)
    first.start()
    pid = first.status().pid

    second = ManagedPostgres(stopped_after)
    assert second.start() == first.dsn()
    assert second.adopted_pid == pid
    assert second.status().pid == pid
    # Its owner (this process) is alive, so the second instance must not stop it when it is done.
    assert not second.owned
    assert _postmasters_of(first.data_dir) == [pid]


def test_orphan_of_crashed_owner_is_adopted_not_duplicated(stopped_after: Settings) -> None:
    child_code = textwrap.dedent(
        """
        import sys, time
        from aetherlens.config import load_settings
        from aetherlens.db.managed import ManagedPostgres
        managed = ManagedPostgres(load_settings())
        managed.start()
        print(managed.status().pid, flush=True)
        time.sleep(600)
        """
    )
    env = dict(os.environ)
    env["AETHERLENS_DATA_DIR"] = str(stopped_after.data_dir)
    env["AETHERLENS_DATABASE__MANAGED_DIR"] = str(stopped_after.managed_dir)
    env.pop("AETHERLENS_DATABASE_URL", None)
    child = subprocess.Popen([sys.executable, "-c", child_code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        pid = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)  # the owner crashes; its postmaster lives on
        child.wait()
    assert _alive(pid)

    adopter = ManagedPostgres(stopped_after)
    adopter.start()
    assert adopter.adopted_pid == pid
    assert adopter.owned  # the owner is dead: the adopter now stops it when done
    assert _postmasters_of(adopter.data_dir) == [pid]
    assert adopter.stop() is True
    assert not _alive(pid)


def test_stale_pid_file_is_replaced(stopped_after: Settings) -> None:
    managed = ManagedPostgres(stopped_after)
    pidfile = managed.data_dir / "postmaster.pid"
    # A live process that is not a postmaster of this cluster (pid reuse after a reboot).
    pidfile.write_text(f"{os.getpid()}\n{managed.data_dir}\n0\n5432\n{managed.socket_dir}\n\n0\nready\n")
    assert managed.status().state == "stopped"
    managed.start()
    running = managed.status()
    assert running.state == "running" and running.pid != os.getpid()
    managed.stop()

    # A dead pid.
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile.write_text(f"{gone.pid}\n{managed.data_dir}\n0\n5432\n{managed.socket_dir}\n\n0\nready\n")
    assert managed.status().state == "stopped"
    managed.start()
    assert managed.status().state == "running"


@pytest.mark.skipif(os.geteuid() != 0, reason="the unprivileged-user path is only taken when running as root")
def test_missing_unprivileged_user_is_a_clear_error(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(ManagedDatabaseError) as info:
        ManagedPostgres(settings, run_as="aetherlens-no-such-user").start()
    message = info.value.message
    assert "refuses to run as root" in message
    assert "'aetherlens-no-such-user'" in message
    assert "useradd" in message and "database.url" in message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory the postgres user cannot enter")
def test_unreachable_managed_dir_names_the_key() -> None:
    private = Path(tempfile.mkdtemp(prefix="aetherlens-private-", dir="/tmp"))  # 0700, owned by root
    try:
        private.chmod(0o700)
        settings = settings_for(private)
        with pytest.raises(ManagedDatabaseError) as info:
            ManagedPostgres(settings).start()
        message = info.value.message
        assert "database.managed_dir" in message
        assert str(private / "pg") in message
        assert "not reachable" in message and str(private) in message
        assert not (private / "pg" / "data").exists()
    finally:
        subprocess.run(["rm", "-rf", str(private)], check=False)


def test_status_of_uninitialized_cluster(tmp_path: Path) -> None:
    status = ManagedPostgres(settings_for(tmp_path)).status()
    assert status.state == "uninitialized"
    assert status.pid is None
    assert status.as_dict()["state"] == "uninitialized"


def test_two_processes_starting_at_once_share_one_postmaster(stopped_after: Settings) -> None:
    code = textwrap.dedent(
        """
        from aetherlens.config import load_settings
        from aetherlens.db.managed import ManagedPostgres
        managed = ManagedPostgres(load_settings())
        managed.start(detach=True)
        print(managed.status().pid, flush=True)
        """
    )
    env = dict(os.environ)
    env["AETHERLENS_DATA_DIR"] = str(stopped_after.data_dir)
    env["AETHERLENS_DATABASE__MANAGED_DIR"] = str(stopped_after.managed_dir)
    children = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    pids = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        pids.append(int(out))
    assert pids[0] == pids[1]
    assert _postmasters_of(ManagedPostgres(stopped_after).data_dir) == [pids[0]]


def test_listen_port_in_use_names_the_key(stopped_after: Settings) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = settings_for(stopped_after.data_dir.parent, listen_port=port)
        with pytest.raises(ManagedDatabaseError) as info:
            ManagedPostgres(settings).start()
    assert "database.listen_port" in info.value.message
    assert f"127.0.0.1:{port} is already in use" in info.value.message
    assert ManagedPostgres(settings).status().state == "stopped"
