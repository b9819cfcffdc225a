"""Durable, append-only spool of metric batches for database outages.

A spool is a directory of segment files ``spool-<seq>.log``. Each record is one batch:

    b"ALSP" | payload length (u32, big endian) | crc32 of payload (u32) | payload

and the payload is the orjson encoding of ``{"id": batch uuid, "rows": [[time, device_id, metric_type,
value, unit, tags_json], ...]}``. Every append is fsynced before it returns, so a record that was
appended survives ``kill -9`` and power loss. A record torn by a crash mid-write fails its length or
checksum check and is truncated away when the spool is opened; it was never acknowledged, because the
acknowledgement only happens after the fsync.

Records are consumed in order. The spool only keeps an in-memory cursor: a segment file is deleted once
every record in it has been committed. After a crash the remaining records of a partly replayed segment
are read again; the writer makes that harmless by recording each batch id in ``ingest_batches`` in the
same transaction as its COPY and skipping ids that are already there.

One process owns a spool directory at a time (an ``flock`` on ``spool.lock``), so two cores on one data
directory cannot interleave records.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import orjson

from aetherlens.errors import AetherLensError, UnavailableError
from aetherlens.keyfile import fsync_directory

log = logging.getLogger(__name__)

# One row as the writer hands it to COPY: tags are already JSON text (or None).
Row = tuple[datetime, str, str, float, str, str | None]

MAGIC: Final = b"ALSP"
_HEADER: Final = struct.Struct(">4sII")
_SEGMENT_PREFIX: Final = "spool-"
_SEGMENT_SUFFIX: Final = ".log"


class SpoolError(AetherLensError):
    """The spool directory cannot be used (locked by another process, unreadable, ...)."""

    code = "spool_error"


class SpoolFullError(UnavailableError):
    """Appending would exceed ``writer.spool_max_bytes``."""

    code = "spool_full"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    batch_id: uuid.UUID
    rows: list[Row]
    segment: int  # sequence number of the segment file holding it
    end_offset: int  # offset just past this record in its segment
    size: int  # bytes on disk, header included
    # Set when the payload is intact (checksum) but its rows cannot be read back as rows (a caller
    # handed the writer something that is not a metric row): why, and the rows as stored.
    undecodable: str | None = None
    raw_rows: list[object] | None = None


def encode_batch(batch_id: uuid.UUID, rows: list[Row]) -> bytes:
    payload = orjson.dumps({"id": str(batch_id), "rows": rows})
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> tuple[uuid.UUID, list[Row]]:
    data = orjson.loads(payload)
    fromiso = datetime.fromisoformat
    rows: list[Row] = [
        (fromiso(t), device_id, metric_type, float(value), unit, tags)
        for t, device_id, metric_type, value, unit, tags in data["rows"]
    ]
    return uuid.UUID(data["id"]), rows


class Spool:
    """Append-only segment files with an in-memory read cursor. Not thread-safe: one writer task uses it
    (blocking calls are run in a worker thread by the writer, one at a time)."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = max(1 << 20, min(segment_bytes, max_bytes // 4 or 1))
        self._lock_fd: int | None = None
        self._sizes: dict[int, int] = {}  # segment seq -> bytes of valid records on disk
        self._counts: dict[int, int] = {}  # segment seq -> records not yet consumed
        self._active_fd: int | None = None
        self._active_seq: int | None = None
        self._read_seq: int | None = None  # segment the cursor is in
        self._read_offset = 0
        self.truncated_bytes = 0  # torn bytes cut off at open (for the log and tests)

    # -- lifecycle -------------------------------------------------------------------------------------
    def open(self) -> None:
        """Lock the directory, verify every segment and cut a torn tail. Blocking."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolError(
                f"spool directory {self.directory} is in use by another AetherLens process"
            ) from None
        for seq in self._segment_seqs():
            count, valid = self._scan(seq)
            if count == 0:
                self._path(seq).unlink()
                continue
            self._sizes[seq] = valid
            self._counts[seq] = count
        if self._sizes:
            self._read_seq = min(self._sizes)
            log.info(
                "spool holds %d batches (%d bytes) to replay",
                self.pending_batches,
                self.total_bytes,
                extra={"spool_dir": str(self.directory)},
            )

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
            self._active_seq = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state -----------------------------------------------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def pending_batches(self) -> int:
        return sum(self._counts.values())

    @property
    def empty(self) -> bool:
        return not self._counts

    def would_fit(self, nbytes: int) -> bool:
        return self.total_bytes + nbytes <= self.max_bytes

    # -- writing ---------------------------------------------------------------------------------------
    def append(self, record: bytes) -> None:
        """Append one encoded record and fsync it. Raises SpoolFullError when over the bound. Blocking."""
        if not self.would_fit(len(record)):
            raise SpoolFullError(
                f"spool is full ({self.total_bytes} of {self.max_bytes} bytes, writer.spool_max_bytes)"
            )
        if self._active_seq is not None and self._sizes[self._active_seq] >= self.segment_bytes:
            self._close_active()
        if self._active_fd is None:
            self._open_new_segment()
        assert self._active_fd is not None and self._active_seq is not None
        seq = self._active_seq
        start = self._sizes[seq]
        try:
            written = os.write(self._active_fd, record)
            if written != len(record):
                raise OSError(f"short write to spool ({written} of {len(record)} bytes)")
            os.fsync(self._active_fd)
        except OSError:
            # Leave no half record behind for the next append to follow.
            os.ftruncate(self._active_fd, start)
            raise
        self._sizes[seq] = start + len(record)
        self._counts[seq] = self._counts.get(seq, 0) + 1
        if self._read_seq is None:
            self._read_seq = seq
            self._read_offset = 0

    def _open_new_segment(self) -> None:
        seq = max(self._sizes, default=0) + 1
        path = self._path(seq)
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._active_seq = seq
        self._sizes[seq] = 0
        self._counts[seq] = 0
        fsync_directory(self.directory)  # the new file name itself must survive a crash

    def _close_active(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active_fd = None
        self._active_seq = None

    # -- reading ---------------------------------------------------------------------------------------
    def peek(self) -> SpoolRecord | None:
        """The oldest record not yet consumed, or None. Blocking (reads one record)."""
        while self._read_seq is not None:
            seq = self._read_seq
            if self._read_offset >= self._sizes.get(seq, 0):
                if not self._advance_segment():
                    return None
                continue
            with self._path(seq).open("rb") as fh:
                fh.seek(self._read_offset)
                header = fh.read(_HEADER.size)
                _, length, crc = _HEADER.unpack(header)
                payload = fh.read(length)
            if zlib.crc32(payload) != crc:  # verified at open; a change since then is disk corruption
                raise SpoolError(f"spool segment {self._path(seq)} changed on disk at {self._read_offset}")
            size = _HEADER.size + length
            try:
                batch_id, rows = decode_payload(payload)
            except (ValueError, TypeError, KeyError) as exc:
                # Retrying cannot help; the writer quarantines it rather than let it block the spool.
                data = orjson.loads(payload)
                return SpoolRecord(
                    uuid.UUID(str(data.get("id"))),
                    [],
                    seq,
                    self._read_offset + size,
                    size,
                    undecodable=f"{type(exc).__name__}: {exc}",
                    raw_rows=list(data.get("rows") or []),
                )
            return SpoolRecord(batch_id, rows, seq, self._read_offset + size, size)
        return None

    def consume(self, record: SpoolRecord) -> None:
        """Mark ``record`` (the one ``peek`` returned) as committed; delete its segment when drained."""
        seq = record.segment
        self._read_offset = record.end_offset
        self._counts[seq] -= 1
        if self._counts[seq] == 0 and self._read_offset >= self._sizes[seq]:
            self._drop_segment(seq)

    def _advance_segment(self) -> bool:
        assert self._read_seq is not None
        later = [s for s in self._sizes if s > self._read_seq]
        if not later:
            return False
        self._read_seq = min(later)
        self._read_offset = 0
        return True

    def _drop_segment(self, seq: int) -> None:
        if seq == self._active_seq:
            self._close_active()
        self._path(seq).unlink()
        fsync_directory(self.directory)
        del self._sizes[seq]
        del self._counts[seq]
        later = sorted(s for s in self._sizes if s > seq)
        self._read_seq = later[0] if later else None
        self._read_offset = 0

    # -- helpers ---------------------------------------------------------------------------------------
    def _path(self, seq: int) -> Path:
        return self.directory / f"{_SEGMENT_PREFIX}{seq:012d}{_SEGMENT_SUFFIX}"

    def _segment_seqs(self) -> list[int]:
        seqs = []
        for path in self.directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
            middle = path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)]
            if middle.isdigit():
                seqs.append(int(middle))
        return sorted(seqs)

    def _scan(self, seq: int) -> tuple[int, int]:
        """Count the valid records of a segment; truncate it after the last valid one."""
        path = self._path(seq)
        data = path.read_bytes()
        offset = count = 0
        while offset < len(data):
            header = data[offset : offset + _HEADER.size]
            if len(header) < _HEADER.size:
                break
            magic, length, crc = _HEADER.unpack(header)
            end = offset + _HEADER.size + length
            if magic != MAGIC or end > len(data) or zlib.crc32(data[offset + _HEADER.size : end]) != crc:
                break
            offset = end
            count += 1
        if offset < len(data):
            torn = len(data) - offset
            self.truncated_bytes += torn
            log.warning(
                "spool segment %s: cutting %d bytes of a torn or corrupt record at offset %d "
                "(a crash during a write; that batch was never acknowledged)",
                path,
                torn,
                offset,
            )
            with path.open("r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        return count, offset
