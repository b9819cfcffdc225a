"""The one way to write a private key file: mode 0600 from the first byte, complete or absent, never
overwritten.

The file is written and fsynced under a temporary name (created with ``O_EXCL``) and then hard-linked to
its real name; ``link`` fails when the name exists, so of two processes starting for the first time at
once exactly one creates the key and the other reads that same key back (a rename would let the
second replace the key the first already uses). A reader never sees a half-written file, because the
name appears only once the content is on disk.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from aetherlens.errors import ConfigError


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (0600) holding ``data``; ``FileExistsError`` if it exists (it is left alone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # the exclusive step: fails if another process created the key first
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_directory(path.parent)


def read_or_create_private_file(
    path: Path, make: Callable[[], bytes], *, valid: Callable[[bytes], bool] = bool
) -> bytes:
    """The stripped content of ``path``; created from ``make()`` when absent. Every process racing to
    create it gets the content of the one that won. A file that exists but fails ``valid`` is an error
    naming the file (replacing it would change a key other processes may already use)."""
    try:
        data = path.read_bytes().strip()
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):  # another process won the race: read its key
            write_private_file(path, make())
        data = path.read_bytes().strip()
    if not valid(data):
        raise ConfigError(
            f"{path} holds no usable key; delete it to have a new one generated",
            details={"file": str(path)},
        )
    return data


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries (a file just created or renamed in it) survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
