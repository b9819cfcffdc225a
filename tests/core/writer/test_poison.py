"""Poison batches against the real PostgreSQL: rows the database refuses for their content are
quarantined to the dead-letter file with the reason (counted, shown in /health), on the live path and
on spool replay, and never block the batches behind them; outages still spool and retry."""

from __future__ import annotations

import asyncio
import types
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from dbtest import wait_until
from prometheus_client import REGISTRY
from writer_data import BASE, make_rows

from aetherlens.api.routes.health import check_quarantine
from aetherlens.config import WriterSettings
from aetherlens.db.deadletter import FILE_NAME
from aetherlens.db.outage import is_content_error, is_outage
from aetherlens.db.spool import Row, Spool, encode_batch
from aetherlens.db.writer import BatchQuarantinedError, Writer

FAST = WriterSettings(batch_size=1000, retry_initial=0.05, retry_max=0.2)


def quarantined(origin: str) -> float:
    return REGISTRY.get_sample_value("aetherlens_metrics_quarantined_total", {"origin": origin}) or 0.0


def dead_letters(spool_dir: Path) -> list[dict[str, object]]:
    path = spool_dir / FILE_NAME
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


async def stored_by_device(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return dict(await conn.fetch("SELECT device_id, count(*) FROM metrics GROUP BY 1"))
    finally:
        await conn.close()


def nul_row(offset: int = 0) -> Row:
    # PostgreSQL refuses a NUL character in text (SQLSTATE 22021), whatever the connection does.
    return (BASE + timedelta(seconds=offset), "bad\x00device", "power", 1.0, "W", None)


async def test_live_poison_rows_fail_alone_and_are_quarantined(ingest_dsn: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    before = quarantined("live")
    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        # Queued together, so they share one COPY that the poison rows make fail.
        results = await asyncio.gather(
            writer.submit(make_rows(5, "good-a")),
            writer.submit([*make_rows(3, "mixed"), nul_row()]),
            writer.submit(make_rows(4, "good-b")),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], BatchQuarantinedError)
        assert "0x00" in results[1].reason
        status = writer.status()
        assert status["db_reachable"] is True and status["spool_batches"] == 0
        assert status["quarantined_batches"] == 1 and status["quarantined_metrics"] == 4
        # Later batches go straight in.
        await writer.submit(make_rows(2, "after"))
        health = check_quarantine(types.SimpleNamespace(writer=writer))  # type: ignore[arg-type]
        assert health is not None and health["status"] == "degraded" and health["batches"] == 1
    assert await stored_by_device(ingest_dsn) == {"good-a": 5, "good-b": 4, "after": 2}
    assert quarantined("live") == before + 4
    [entry] = dead_letters(spool_dir)
    assert entry["origin"] == "live" and entry["row_count"] == 4
    assert "0x00" in str(entry["reason"])
    assert [row[1] for row in entry["rows"]] == ["mixed"] * 3 + ["bad\x00device"]  # type: ignore[union-attr]


async def test_a_value_the_client_cannot_encode_is_quarantined_not_treated_as_an_outage(
    ingest_dsn: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    bad: Row = (BASE, "typo", "power", "12 W", "W", None)  # type: ignore[assignment]
    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        with pytest.raises(BatchQuarantinedError, match="real number"):
            await writer.submit([bad])
        status = writer.status()
        # Not an outage: nothing spooled (where it would jam the replay), the database not marked down.
        assert status["db_reachable"] is not False and status["spool_batches"] == 0
        await writer.submit(make_rows(3, "fine"))
    assert await stored_by_device(ingest_dsn) == {"fine": 3}
    assert len(dead_letters(spool_dir)) == 1


async def test_poison_batch_at_the_front_of_the_spool_does_not_block_the_batches_behind_it(
    ingest_dsn: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 30)
    spool.open()
    poison = uuid.uuid4()
    spool.append(encode_batch(poison, [*make_rows(2, "with-poison"), nul_row(5)]))
    spool.append(encode_batch(uuid.uuid4(), make_rows(5, "good1")))
    spool.append(encode_batch(uuid.uuid4(), make_rows(6, "good2")))
    spool.close()
    before = quarantined("replay")

    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        await wait_until(lambda: writer.status()["spool_batches"] == 0, what="the spool drains")
        status = writer.status()
        assert status["quarantined_batches"] == 1 and status["quarantined_metrics"] == 3
        assert status["db_reachable"] is True
    assert await stored_by_device(ingest_dsn) == {"good1": 5, "good2": 6}
    assert quarantined("replay") == before + 3
    [entry] = dead_letters(spool_dir)
    assert entry["batch_id"] == str(poison) and entry["origin"] == "replay"
    assert "0x00" in str(entry["reason"])
    assert not list(spool_dir.glob("spool-*.log")), "the quarantined batch is no longer in the spool"

    # A restart still reports it until the operator deals with the file.
    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        assert writer.status()["quarantined_batches"] == 1
        health = check_quarantine(types.SimpleNamespace(writer=writer))  # type: ignore[arg-type]
        assert health is not None and health["status"] == "degraded"
        assert "1 write batch(es) (3 metrics)" in str(health["message"])


async def test_a_spooled_batch_that_cannot_be_decoded_is_quarantined_too(
    ingest_dsn: str, tmp_path: Path
) -> None:
    # An in-process caller handed the writer a value that is not a number during an outage: the batch
    # was spooled as it came and cannot even be read back as rows.
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 30)
    spool.open()
    bad: Row = (BASE, "typo", "power", "12 W", "W", None)  # type: ignore[assignment]
    spool.append(encode_batch(uuid.uuid4(), [bad]))
    spool.append(encode_batch(uuid.uuid4(), make_rows(4, "behind")))
    spool.close()
    async with Writer(ingest_dsn, FAST, spool_dir) as writer:
        await wait_until(lambda: writer.status()["spool_batches"] == 0, what="the spool drains")
        assert writer.status()["quarantined_batches"] == 1
    assert await stored_by_device(ingest_dsn) == {"behind": 4}
    [entry] = dead_letters(spool_dir)
    assert entry["origin"] == "replay" and "12 W" in str(entry["rows"])


@pytest.mark.parametrize(
    ("exc", "outage", "content"),
    [
        (ConnectionResetError("reset by peer"), True, False),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), True, False),
        # A broken client protocol state (seen after a kill -9 of the server mid-COPY) is not the rows'
        # fault: it must spool and retry, never dead-letter the batch.
        (asyncpg.InternalClientError("protocol is in an unexpected state"), True, False),
        (asyncpg.NumericValueOutOfRangeError("out of range"), False, True),
        (asyncpg.DiskFullError("disk full"), False, False),
    ],
)
def test_outage_and_content_errors_are_told_apart(exc: BaseException, outage: bool, content: bool) -> None:
    assert (is_outage(exc), is_content_error(exc)) == (outage, content)
