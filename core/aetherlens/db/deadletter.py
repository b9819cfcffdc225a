"""The dead-letter file: write batches the database refused for their content, kept with the reason.

A batch that fails because of what it holds (a value or text the server will not store) would fail the
same way on every retry; kept at the front of the spool it would block every batch behind it until the
spool filled. Such a batch is quarantined here instead: appended (and fsynced) as one JSON line

    {"quarantined_at": ISO time, "batch_id": uuid, "origin": "live" | "replay", "reason": text,
     "row_count": n, "rows": [[time, device_id, metric_type, value, unit, tags_json], ...]}

to ``dead-letter.jsonl`` in the spool directory (one process owns that directory: the spool's lock).
Nothing reads it back automatically: an operator fixes or deletes the rows and re-imports them, then
removes the file. Until then ``/health`` shows the write path as degraded with the count.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import orjson

from aetherlens.db.spool import Row
from aetherlens.keyfile import fsync_directory

FILE_NAME: Final = "dead-letter.jsonl"

Origin = Literal["live", "replay"]


class DeadLetter:
    """Append-only JSON-lines file of quarantined batches. Blocking; the writer runs it in a thread."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / FILE_NAME
        self.batches = 0  # entries in the file (earlier runs included)
        self.rows = 0

    def open(self) -> None:
        """Count what earlier runs left in the file (the operator has not dealt with it yet)."""
        self.batches = self.rows = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        for line in data.splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line torn by a crash mid-append: that batch was never settled
            self.batches += 1
            self.rows += int(entry.get("row_count", 0))

    def append(self, batch_id: uuid.UUID, rows: list[Row], reason: str, origin: Origin) -> None:
        """Append one batch and fsync it (and the directory when the file is new)."""
        line = orjson.dumps(
            {
                "quarantined_at": datetime.now(UTC).isoformat(),
                "batch_id": str(batch_id),
                "origin": origin,
                "reason": reason,
                "row_count": len(rows),
                "rows": rows,
            }
        )
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # A torn line from a crash is left alone; start ours on a line of its own.
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with self.path.open("rb") as fh:
                    fh.seek(size - 1)
                    prefix = b"" if fh.read(1) == b"\n" else b"\n"
            os.write(fd, prefix + line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)
        self.batches += 1
        self.rows += len(rows)
