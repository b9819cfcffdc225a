"""THE outage test (issue 3): on a throwaway managed cluster, stop PostgreSQL in the middle of a steady
ingest, start it again, ``kill -9`` a core-like process while it holds a spool, restart it, and check
that every acknowledged metric is in the table exactly once. Recovery times are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from aetherlens.config import load_settings
from aetherlens.db.managed import ManagedPostgres

CHILD = Path(__file__).with_name("outage_child.py")


class Child:
    """The child process and what it has said: acknowledged value ranges and its latest status."""

    def __init__(self, dsn: str, spool_dir: Path, first_value: int) -> None:
        self.acked: list[tuple[int, int]] = []
        self.spool_batches = -1
        self.db_reachable = "None"
        self.done = False
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), dsn, str(spool_dir), str(first_value)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            if parts[:1] == ["ACK"]:
                self.acked.append((int(parts[1]), int(parts[2])))
            elif parts[:1] == ["STATUS"]:
                self.spool_batches, self.db_reachable = int(parts[1]), parts[2]
            elif parts[:1] == ["DONE"]:
                self.done = True
            else:
                self.lines.append(line)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self._reader.join(timeout=10)
        assert self.done, f"child did not shut down cleanly: {self.lines[-20:]}"

    def acked_values(self) -> set[int]:
        return {v for first, last in self.acked for v in range(first, last + 1)}


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for a condition (bounded); returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.slow
async def test_outage_and_kill9_lose_nothing_acknowledged(
    cluster_dir: Path,
    ingest_schema,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    settings = load_settings(
        env={},
        data_dir=str(cluster_dir / "data"),
        database={"managed_dir": str(cluster_dir / "pg")},
        log={"level": "info", "format": "text"},
    )
    managed = ManagedPostgres(settings)
    spool_dir = cluster_dir / "spool"
    children: list[Child] = []
    try:
        admin_dsn = await asyncio.to_thread(managed.start)
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute("CREATE DATABASE ingest")
        await admin.close()
        dsn = managed.dsn("ingest")
        await ingest_schema(dsn)

        # 1. Steady ingest, then PostgreSQL stops under it and comes back.
        child = Child(dsn, spool_dir, first_value=0)
        children.append(child)
        await until(lambda: len(child.acked) >= 20 and child.db_reachable == "True", 60, "steady ingest")
        await asyncio.to_thread(managed.stop)
        acked_at_stop = len(child.acked)
        # Ingest keeps being acknowledged while the database is down: from the fsynced spool.
        await until(
            lambda: child.spool_batches >= 3 and len(child.acked) >= acked_at_stop + 10,
            60,
            "acknowledgements from the spool while down",
        )
        await asyncio.to_thread(managed.start)
        back = time.monotonic()
        recovery_live = await until(
            lambda: child.spool_batches == 0 and child.db_reachable == "True", 120, "spool drained"
        )

        # 2. Down again, and the core is killed -9 while it holds a spool.
        await asyncio.to_thread(managed.stop)
        await until(lambda: child.spool_batches >= 5, 60, "a spool to kill the core with")
        child.kill9()
        spool_files = sorted(p.name for p in spool_dir.glob("spool-*.log"))
        assert spool_files, "the killed core left its spool behind"
        acked_before_kill = child.acked_values()

        # 3. Database back, core restarted: the spool left by the killed core is replayed.
        await asyncio.to_thread(managed.start)
        restarted = time.monotonic()
        second = Child(dsn, spool_dir, first_value=10_000_000)
        children.append(second)
        recovery_restart = await until(
            lambda: second.spool_batches == 0 and second.db_reachable == "True" and len(second.acked) >= 5,
            120,
            "spool of the killed core replayed",
        )
        second.stop()

        acked = acked_before_kill | second.acked_values()
        conn = await asyncpg.connect(dsn)
        try:
            stored = await conn.fetch("SELECT value::bigint AS v, count(*) AS n FROM metrics GROUP BY 1")
            latest = await conn.fetchval("SELECT count(*) FROM metrics_latest")
            devices = await conn.fetchval("SELECT count(*) FROM devices WHERE source = 'outage-test'")
            batches = await conn.fetchval("SELECT sum(row_count) FROM ingest_batches")
        finally:
            await conn.close()
        counts = {r["v"]: r["n"] for r in stored}
        duplicates = {v: n for v, n in counts.items() if n > 1}
        missing = acked - counts.keys()
        assert not duplicates, f"{len(duplicates)} metrics stored more than once"
        assert not missing, f"{len(missing)} acknowledged metrics are missing, e.g. {sorted(missing)[:5]}"
        assert batches == sum(counts.values()), "every stored row came through a recorded batch"
        assert latest == 5 and devices == 5
        with capsys.disabled():
            print(
                f"\n[outage test] acknowledged {len(acked)} metrics, stored {sum(counts.values())}, "
                f"0 duplicates, 0 missing; recovery after the database returned (spool drained): "
                f"{recovery_live:.2f} s live, {recovery_restart:.2f} s after kill -9 and restart "
                f"(spool segments left by the killed core: {len(spool_files)})"
            )
        del back, restarted
    finally:
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait(timeout=30)
        await asyncio.to_thread(managed.stop)
