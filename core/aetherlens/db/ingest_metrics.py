"""Prometheus instruments of the ingest path (collector and writer), registered once per process."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

INGESTED: Final = Counter(
    "aetherlens_metrics_ingested", "Metrics committed to PostgreSQL by the writer (replays included)"
)
REJECTED: Final = Counter(
    "aetherlens_metrics_rejected", "Metrics refused by validation, by reason", ["reason"]
)
SPOOLED: Final = Counter(
    "aetherlens_metrics_spooled", "Metrics written (fsynced) to the disk spool while the database was away"
)
REFUSED: Final = Counter(
    "aetherlens_metrics_refused", "Metrics refused by backpressure (queue or spool full)", ["cause"]
)
QUARANTINED: Final = Counter(
    "aetherlens_metrics_quarantined",
    "Metrics the database refused for their content, moved to the dead-letter file (origin: live|replay)",
    ["origin"],
)
DEAD_LETTER_BATCHES: Final = Gauge(
    "aetherlens_writer_dead_letter_batches", "Batches in the dead-letter file (earlier runs included)"
)
REPLAYED: Final = Counter("aetherlens_metrics_replayed", "Metrics replayed from the spool into PostgreSQL")
QUEUE_DEPTH: Final = Gauge("aetherlens_writer_queue_depth", "Metrics waiting in the write queue")
SPOOL_BYTES: Final = Gauge("aetherlens_writer_spool_bytes", "Bytes held in the disk spool")
FLUSH_SECONDS: Final = Histogram(
    "aetherlens_writer_flush_seconds",
    "Time of one COPY transaction (metrics, latest values, rollup buckets, batch id)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
