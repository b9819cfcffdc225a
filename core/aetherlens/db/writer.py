"""The metrics writer: group-committed binary COPY into ``metrics``, a durable spool for outages, and
exactly-once replay.

What an acknowledgement means: ``submit()`` returns only after its rows are committed to PostgreSQL or
appended *and fsynced* to the spool, so a ``kill -9`` right after loses nothing acknowledged.

Every COPY runs in one transaction together with
  * ``INSERT INTO ingest_batches (batch_id, row_count)`` — the batch id makes a replay exactly-once: a
    batch whose id is already there was committed before (e.g. the connection died during COMMIT and the
    batch went to the spool anyway) and is skipped;
  * an upsert of ``metrics_latest`` (only when the new time is later), so "latest per device" never scans;
  * the distinct hour buckets of the batch into ``rollup_pending`` for the rollup job (late data too).

Natural group commit: the writer commits whatever is queued as soon as its previous commit is done, up
to ``batch_size`` rows per COPY, and wakes every submitter of that COPY when it commits. An idle writer
therefore commits a single metric at once, and under load the rows that arrive while one commit runs
form the next batch by themselves: many small producers cost one transaction per commit time, not one
per submit. ``flush_interval`` (default 0) lets a partial batch linger that long for more rows.

Backpressure: at most ``queue_max`` metrics wait in memory. ``submit(wait=True)`` (in-process producers)
waits for room; ``submit(wait=False)`` / ``try_submit`` (HTTP ingest) raises ``BackpressureError`` with a
``retry_after`` instead. During an outage batches go to the spool; when the spool reaches
``spool_max_bytes`` new metrics are refused the same way and waiting producers keep their batch in memory
until the database returns — acknowledged data is never dropped.

Failures are told apart by ``db.outage``: an outage (or a server error not about the rows, such as a
full disk) spools the batch and retries later; a batch the database refuses for its content (SQLSTATE
classes 22/23, or a value the client cannot encode) would fail forever, so it is quarantined to the
dead-letter file (``db.deadletter``) with the reason instead of blocking what comes after it. Live: a
grouped COPY that fails for its content is retried one submitter at a time, so only the submitter
whose rows are refused hears ``BatchQuarantinedError`` (the collector reports its metrics as
rejected); replay: the spooled batch is quarantined and consumed, and replay goes on with the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

import asyncpg
import orjson

from aetherlens.config import WriterSettings
from aetherlens.db import ingest_metrics as m
from aetherlens.db.deadletter import DeadLetter
from aetherlens.db.outage import is_content_error
from aetherlens.db.spool import Row, Spool, SpoolFullError, encode_batch
from aetherlens.errors import AetherLensError, BackpressureError, DatabaseError
from aetherlens.timebuckets import distinct_hours

log = logging.getLogger(__name__)

__all__ = ["BatchQuarantinedError", "Listener", "Row", "Writer"]

Listener = Callable[[Sequence[Row]], object]

COLUMNS: Final = ("time", "device_id", "metric_type", "value", "unit", "tags")

_INSERT_BATCH: Final = """
INSERT INTO ingest_batches (batch_id, row_count) VALUES ($1, $2)
ON CONFLICT (batch_id) DO NOTHING RETURNING true
"""

# Latest values and touched hour buckets in one round trip, inside the COPY's transaction: the hours go
# to rollup_pending (metrics rollups) and cost_pending (the cost job prices late data from it). Each
# mark is DO UPDATE, not DO NOTHING: locking an existing mark keeps the job from consuming it while
# this transaction's rows are still uncommitted (see migrations/011_rollup_pending.sql).
_LATEST_AND_BUCKETS: Final = """
WITH latest AS (
    INSERT INTO metrics_latest AS l (device_id, metric_type, time, value, unit)
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[], $5::text[])
    ON CONFLICT (device_id, metric_type) DO UPDATE
        SET time = excluded.time, value = excluded.value, unit = excluded.unit
        WHERE excluded.time > l.time
), costs AS (
    INSERT INTO cost_pending (bucket) SELECT unnest($6::timestamptz[])
    ON CONFLICT (bucket) DO UPDATE SET marked_at = now()
)
INSERT INTO rollup_pending (bucket) SELECT unnest($6::timestamptz[])
ON CONFLICT (bucket) DO UPDATE SET marked_at = now()
"""


class Unreachable(Exception):
    """The database could not be reached (the wrapped error says why)."""


class BatchQuarantinedError(AetherLensError):
    """The database refused these rows for their content; they are kept in the dead-letter file."""

    code = "batch_quarantined"

    def __init__(self, reason: str, dead_letter: Path) -> None:
        super().__init__(
            f"the database refused these metrics ({reason}); kept in {dead_letter}",
            details={"reason": reason},
        )
        self.reason = reason


def _content_error(exc: BaseException) -> bool:
    """The rows themselves are refused: retrying them can never succeed (see ``db.outage``)."""
    return not isinstance(exc, Unreachable) and is_content_error(exc)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_by_time: Final = itemgetter(0)
_REPLAY_CHUNK: Final = 4  # spool batches replayed between two live flushes, so new data is not starved
_COPY_TIMEOUT: Final = 120.0


@dataclass(slots=True, eq=False)
class _Request:
    rows: Sequence[Row]
    future: asyncio.Future[None]
    wait: bool  # an in-process producer: keep it waiting in memory rather than refuse it
    deadline: float  # monotonic time after which it is flushed without waiting for more rows


def hour_buckets(rows: Sequence[Row]) -> list[datetime]:
    """Distinct UTC hours touched by ``rows``."""
    return distinct_hours([r[0] for r in rows])


def latest_per_series(rows: Sequence[Row]) -> list[Row]:
    """The newest row of each (device_id, metric_type) in ``rows``, sorted by key (stable lock order).

    A dict built over the rows in time order keeps the last, i.e. newest, row per key; sorting rows that
    mostly arrive in time order is close to linear and runs in C, unlike a per-row Python comparison.
    """
    newest = {(r[1], r[2]): r for r in sorted(rows, key=_by_time)}
    return [newest[k] for k in sorted(newest)]


class Writer:
    """Batched binary COPY with group commit, spool-on-outage and exactly-once replay."""

    def __init__(
        self,
        pool_or_dsn: asyncpg.Pool | str,
        settings: WriterSettings,
        spool_dir: Path | str,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self._pool = pool_or_dsn if isinstance(pool_or_dsn, asyncpg.Pool) else None
        self._dsn = pool_or_dsn if isinstance(pool_or_dsn, str) else None
        self.settings = settings
        self._connect_timeout = connect_timeout
        self._spool = Spool(Path(spool_dir), settings.spool_max_bytes)
        self._dead = DeadLetter(Path(spool_dir))
        self._conn: asyncpg.Connection | None = None
        self._tags_as_objects: bool | None = None  # jsonb codec of a foreign pool, probed once
        self._pending: deque[_Request] = deque()
        self._pending_rows = 0
        self._depth = 0  # rows accepted but not yet committed or spooled (pending + in flight)
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._listeners: list[Listener] = []
        # Outage state: None = not tried yet.
        self._db_up: bool | None = None
        self._retry_at = 0.0
        self._backoff = settings.retry_initial
        self._last_flush: datetime | None = None
        self._last_error: str | None = None
        self._spool_full = False
        self._replay_blocked_until = 0.0
        self._waiting = 0  # producers waiting for room (queue or spool full)

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the spool (verifying it, cutting a torn tail) and start the flush task; a non-empty spool
        is replayed as soon as the database answers."""
        await asyncio.to_thread(self._spool.open)
        await asyncio.to_thread(self._dead.open)
        m.SPOOL_BYTES.set(self._spool.total_bytes)
        m.DEAD_LETTER_BATCHES.set(self._dead.batches)
        if self._dead.batches:
            log.warning(
                "%d quarantined batch(es) (%d metrics) wait in %s: the database refused their content",
                self._dead.batches,
                self._dead.rows,
                self._dead.path,
            )
        self._task = asyncio.create_task(self._run(), name="aetherlens-writer")

    async def close(self) -> None:
        """Flush what is queued (to PostgreSQL, or the spool), then stop. Idempotent."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        self._space.set()
        try:
            await self._task
        finally:
            self._task = None
            self._spool.close()
            await self._drop_connection()

    async def __aenter__(self) -> Writer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- producers -------------------------------------------------------------------------------------
    async def submit(self, rows: Sequence[Row], *, wait: bool = True) -> None:
        """Queue ``rows`` and return once they are committed or fsynced to the spool.

        With ``wait=False`` a full queue (or a full spool during an outage) raises BackpressureError at
        once instead of waiting for room; the rows are then not taken. Rows the database refuses for
        their content raise BatchQuarantinedError: not committed, kept in the dead-letter file.
        """
        if not rows:
            return
        if self._task is None or self._closing:
            raise DatabaseError("the writer is not running")
        n = len(rows)
        while self._is_full(n):
            if not wait:
                cause = "spool_full" if self._refusing() else "queue_full"
                m.REFUSED.labels(cause).inc(n)
                raise BackpressureError(
                    "the write queue is full"
                    if cause == "queue_full"
                    else "the database is unreachable and the spool is full (writer.spool_max_bytes)",
                    retry_after=self._retry_after(),
                )
            self._space.clear()
            self._waiting += 1
            try:
                await self._space.wait()
            finally:
                self._waiting -= 1
            if self._closing:
                raise DatabaseError("the writer is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(rows, future, wait, time.monotonic() + self.settings.flush_interval))
        self._pending_rows += n
        self._depth += n
        m.QUEUE_DEPTH.set(self._depth)
        if self._pending_rows >= self.settings.batch_size or len(self._pending) == 1:
            self._wake.set()
        # Shielded: a cancelled submitter must not cancel a batch others share; its rows still land.
        await asyncio.shield(future)

    async def try_submit(self, rows: Sequence[Row]) -> None:
        """``submit(rows, wait=False)``: for HTTP ingest, which answers 503 + Retry-After instead."""
        await self.submit(rows, wait=False)

    def _is_full(self, n: int) -> bool:
        if self._refusing():
            return True
        # A batch larger than the whole queue is still taken when the queue is empty.
        return self._depth > 0 and self._depth + n > self.settings.queue_max

    def _refusing(self) -> bool:
        return self._spool_full and self._db_up is False

    def _retry_after(self) -> float:
        if self._db_up is False:
            return max(1.0, round(self._retry_at - time.monotonic(), 1))
        return max(1.0, self.settings.flush_interval)

    # -- listeners -------------------------------------------------------------------------------------
    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(rows)`` with every committed batch (live and replayed). It runs on the event loop
        after the commit, never inside the writer's flush; exceptions are logged, not propagated. A
        coroutine function is scheduled as a task. Listeners must not block: queue and return."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, rows: Sequence[Row]) -> None:
        loop = asyncio.get_running_loop()
        for callback in self._listeners:
            loop.call_soon(self._call_listener, callback, rows)

    def _call_listener(self, callback: Listener, rows: Sequence[Row]) -> None:
        try:
            result = callback(rows)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(self._listener_task_done)
        except Exception:
            log.exception("metrics listener %r failed", callback)

    @staticmethod
    def _listener_task_done(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("metrics listener task failed", exc_info=task.exception())

    # -- health ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "queue_depth": self._depth,
            "queue_max": self.settings.queue_max,
            "producers_waiting": self._waiting,
            "spool_bytes": self._spool.total_bytes,
            "spool_batches": self._spool.pending_batches,
            "spool_full": self._spool_full,
            "db_reachable": self._db_up,
            "last_flush": self._last_flush.isoformat() if self._last_flush else None,
            "last_error": self._last_error,
            "quarantined_batches": self._dead.batches,
            "quarantined_metrics": self._dead.rows,
            "dead_letter": str(self._dead.path),
            "running": self._task is not None and not self._task.done(),
        }

    # -- the flush task --------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self._closing and not self._pending:
                return
            # Decided from state, never from the event alone: a wake-up set while we were flushing is
            # cleared here, so everything it could signal must be visible in the state.
            timeout = self._next_timeout()
            if timeout is None or timeout > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            if self._closing and not self._pending:
                return
            try:
                if not self._spool.empty and self._may_replay():
                    await self._replay(_REPLAY_CHUNK)
                if self._pending and self._flush_due():
                    batch = self._take_batch()
                    try:
                        await self._flush(batch)
                    except Exception as exc:
                        # Not acknowledged, so the producers must hear it rather than wait forever.
                        self._settle(batch, DatabaseError(f"writing metrics failed: {exc}"))
                        raise
            except Exception:  # the writer must outlive any single failure; the error is reported
                log.exception("writer flush failed")
                await asyncio.sleep(self.settings.retry_initial)

    def _next_timeout(self) -> float | None:
        now = time.monotonic()
        waits: list[float] = []
        if self._pending:
            if self._closing:
                return 0.0
            if self._flush_due_ignoring_outage():
                # Due, but with the spool full in an outage there is nowhere to put it before the retry.
                waits.append(self._retry_at - now if self._refusing() else 0.0)
            else:
                waits.append(self._pending[0].deadline - now)
        if not self._spool.empty:
            waits.append(max(self._replay_blocked_until, 0.0 if self._db_up else self._retry_at) - now)
        return max(0.0, min(waits)) if waits else None

    def _flush_due_ignoring_outage(self) -> bool:
        return (
            self._closing
            or self._pending_rows >= self.settings.batch_size
            or self._pending[0].deadline <= time.monotonic()
        )

    def _flush_due(self) -> bool:
        if not self._flush_due_ignoring_outage():
            return False
        return not self._refusing() or self._may_try_db() or self._closing

    def _may_replay(self) -> bool:
        return self._may_try_db() and time.monotonic() >= self._replay_blocked_until

    def _may_try_db(self) -> bool:
        return self._db_up is not False or time.monotonic() >= self._retry_at

    def _take_batch(self) -> list[_Request]:
        batch = [self._pending.popleft()]
        total = len(batch[0].rows)
        while self._pending and total + len(self._pending[0].rows) <= self.settings.batch_size:
            request = self._pending.popleft()
            batch.append(request)
            total += len(request.rows)
        self._pending_rows -= total
        return batch

    def _settle(self, batch: list[_Request], error: BaseException | None = None) -> None:
        done = 0
        for request in batch:
            if not request.future.done():
                done += len(request.rows)
                if error is None:
                    request.future.set_result(None)
                else:
                    request.future.set_exception(error)
        self._depth -= done
        m.QUEUE_DEPTH.set(self._depth)
        self._space.set()

    async def _flush(self, batch: list[_Request]) -> None:
        rows: list[Row] = []
        for request in batch:
            rows.extend(request.rows)
        batch_id = uuid.uuid4()
        if not self._may_try_db():
            await self._spool_batch(batch, batch_id, rows)
            return
        try:
            await self._apply(batch_id, rows)
        except Exception as exc:
            if not _content_error(exc):
                # Outage, or the server cannot write anything now: keep it (spool) and retry later.
                self._mark_down(exc)
                await self._spool_batch(batch, batch_id, rows)
                return
            if len(batch) > 1:
                # One submitter's rows spoil the shared COPY: give each submitter its own, so only the
                # one whose rows are refused hears it (and an outage meanwhile spools the rest).
                for request in batch:
                    await self._flush([request])
                return
            await self._quarantine_live(batch[0], batch_id, rows, exc)
            return
        m.INGESTED.inc(len(rows))
        self._settle(batch)
        self._notify(rows)

    async def _quarantine_live(
        self, request: _Request, batch_id: uuid.UUID, rows: list[Row], exc: BaseException
    ) -> None:
        reason = _describe(exc)
        self._last_error = f"quarantined: {reason}"
        try:
            await asyncio.to_thread(self._dead.append, batch_id, rows, reason, "live")
        except OSError as write_error:
            log.error(
                "metrics batch of %d rows refused (%s); dead-letter write failed: %s",
                len(rows),
                reason,
                write_error,
            )
            self._settle([request], DatabaseError(f"writing metrics failed: {reason}"))
            return
        m.QUARANTINED.labels("live").inc(len(rows))
        m.DEAD_LETTER_BATCHES.set(self._dead.batches)
        log.error(
            "metrics batch %s of %d rows refused by the database for its content (%s); quarantined to %s",
            batch_id,
            len(rows),
            reason,
            self._dead.path,
        )
        self._settle([request], BatchQuarantinedError(reason, self._dead.path))

    async def _spool_batch(self, batch: list[_Request], batch_id: uuid.UUID, rows: list[Row]) -> None:
        record = encode_batch(batch_id, rows)
        try:
            await asyncio.to_thread(self._spool.append, record)
        except SpoolFullError as exc:
            self._spool_full = True
            self._last_error = exc.message
            waiting = [r for r in batch if r.wait]
            refused = [r for r in batch if not r.wait]
            if refused:
                m.REFUSED.labels("spool_full").inc(sum(len(r.rows) for r in refused))
                self._settle(refused, BackpressureError(exc.message, retry_after=self._retry_after()))
            # In-process producers keep waiting; their batch goes back to the front, in order.
            if self._closing:
                self._settle(waiting, BackpressureError(exc.message, retry_after=self._retry_after()))
            else:
                for request in reversed(waiting):
                    self._pending.appendleft(request)
                    self._pending_rows += len(request.rows)
            return
        except OSError as exc:
            log.error("cannot write the spool: %s", exc)
            self._last_error = f"spool write failed: {exc}"
            self._settle(batch, DatabaseError(f"database unreachable and the spool cannot be written: {exc}"))
            return
        m.SPOOLED.inc(len(rows))
        m.SPOOL_BYTES.set(self._spool.total_bytes)
        self._settle(batch)

    async def _replay(self, limit: int) -> None:
        for _ in range(limit):
            record = await asyncio.to_thread(self._spool.peek)
            if record is None:
                return
            if record.undecodable is not None:
                # Intact on disk but not rows (a caller bypassed the collector during an outage).
                reason = ValueError(f"spooled rows cannot be read back: {record.undecodable}")
                stored: list[Any] = record.raw_rows or []
                if not await self._quarantine_replayed(record.batch_id, stored, reason):
                    return
            else:
                try:
                    applied = await self._apply(record.batch_id, record.rows)
                except Exception as exc:
                    if not _content_error(exc):
                        self._mark_down(exc)
                        return
                    # It would fail the same way forever: move it aside (durably) and go on.
                    if not await self._quarantine_replayed(record.batch_id, record.rows, exc):
                        return
                else:
                    if applied:
                        m.REPLAYED.inc(len(record.rows))
                        m.INGESTED.inc(len(record.rows))
                        self._notify(record.rows)
                    else:
                        log.info("spooled batch %s was already committed; skipped", record.batch_id)
            await asyncio.to_thread(self._spool.consume, record)
            if self._spool_full:
                self._spool_full = False
                self._space.set()  # producers held back by the full spool may go on
            m.SPOOL_BYTES.set(self._spool.total_bytes)
            if self._spool.empty:
                log.info("spool drained")

    async def _quarantine_replayed(self, batch_id: uuid.UUID, rows: list[Row], exc: BaseException) -> bool:
        """Move a spooled batch the database refuses to the dead-letter file; False if that failed."""
        reason = _describe(exc)
        try:
            await asyncio.to_thread(self._dead.append, batch_id, rows, reason, "replay")
        except OSError as write_error:
            # Acknowledged data is never dropped: it stays first in line and is retried later; live
            # batches keep going straight to the database meanwhile.
            self._replay_blocked_until = time.monotonic() + self.settings.retry_max
            self._last_error = f"replay: {reason}; dead-letter write failed: {write_error}"
            log.error(
                "spooled batch %s refused (%s) and cannot be quarantined: %s", batch_id, reason, write_error
            )
            return False
        self._last_error = f"quarantined: {reason}"
        m.QUARANTINED.labels("replay").inc(len(rows))
        m.DEAD_LETTER_BATCHES.set(self._dead.batches)
        log.error(
            "spooled batch %s of %d rows refused by the database for its content (%s); quarantined to %s",
            batch_id,
            len(rows),
            reason,
            self._dead.path,
        )
        return True

    # -- database --------------------------------------------------------------------------------------
    async def _apply(self, batch_id: uuid.UUID, rows: Sequence[Row]) -> bool:
        """One transaction: batch id, COPY, latest values, rollup buckets. False if already applied."""
        started = time.perf_counter()
        if self._pool is not None:
            try:
                conn = await self._pool.acquire(timeout=self._connect_timeout)
            except Exception as exc:
                raise Unreachable(exc) from exc
            try:
                applied = await self._apply_on(conn, batch_id, await self._rows_for_pool(conn, rows))
            except Exception as exc:
                if not isinstance(exc, asyncpg.PostgresError):
                    conn.terminate()  # its protocol state is unknown: never hand it back for reuse
                raise
            finally:
                await self._pool.release(conn)
        else:
            conn = await self._connection()
            try:
                applied = await self._apply_on(conn, batch_id, rows)
            except Exception as exc:
                if not isinstance(exc, asyncpg.PostgresError):  # protocol state unknown: reconnect
                    await self._drop_connection()
                raise
        m.FLUSH_SECONDS.observe(time.perf_counter() - started)
        self._mark_up()
        return applied

    async def _apply_on(self, conn: asyncpg.Connection, batch_id: uuid.UUID, rows: Sequence[Row]) -> bool:
        latest = latest_per_series(rows)
        buckets = hour_buckets(rows)
        async with conn.transaction():
            if not await conn.fetchval(_INSERT_BATCH, batch_id, len(rows)):
                return False
            await conn.copy_records_to_table("metrics", records=rows, columns=COLUMNS, timeout=_COPY_TIMEOUT)
            await conn.execute(
                _LATEST_AND_BUCKETS,
                [r[1] for r in latest],
                [r[2] for r in latest],
                [r[0] for r in latest],
                [r[3] for r in latest],
                [r[4] for r in latest],
                buckets,
            )
        return True

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            assert self._dsn is not None
            try:
                self._conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except Exception as exc:
                # Whatever stops us connecting (server down or starting, database or role missing) is
                # an outage to ride out with the spool, not a reason to refuse acknowledged data.
                raise Unreachable(exc) from exc
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.terminate()

    async def _rows_for_pool(self, conn: asyncpg.Connection, rows: Sequence[Row]) -> Sequence[Row]:
        """Rows carry tags as JSON text (asyncpg's own jsonb codec). A pool whose connections encode
        jsonb from Python objects (an orjson codec) needs objects instead; probe that once."""
        if self._tags_as_objects is None:
            try:
                await conn.fetchval("SELECT $1::jsonb IS NOT NULL", {"probe": "x"})
                self._tags_as_objects = True
            except (TypeError, asyncpg.DataError):
                self._tags_as_objects = False
        if not self._tags_as_objects:
            return rows
        loads = orjson.loads
        return [r if r[5] is None else (*r[:5], loads(r[5])) for r in rows]

    def _mark_up(self) -> None:
        if self._db_up is False:
            log.info("database reachable again; spool holds %d batches", self._spool.pending_batches)
        self._db_up = True
        self._space.set()  # no longer refusing: wake producers that waited for the database
        self._backoff = self.settings.retry_initial
        self._last_flush = datetime.now(UTC)

    def _mark_down(self, exc: BaseException) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.settings.retry_max)
        self._retry_at = time.monotonic() + delay
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._db_up is not False:
            log.warning("database unreachable (%s); spooling to %s", self._last_error, self._spool.directory)
        self._db_up = False
