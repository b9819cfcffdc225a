"""Private key files: created 0600 and complete or not at all, never overwritten, and processes that
start for the first time at once all end up with the one key that was written."""

from __future__ import annotations

import multiprocessing
import stat
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from aetherlens.auth.keys import SECRET_FILE
from aetherlens.config import Settings
from aetherlens.errors import ConfigError
from aetherlens.keyfile import read_or_create_private_file, write_private_file
from aetherlens.secrets import KEY_FILE, SecretBox

ROUNDS = 25
PROCESSES = 4


def _race(kind: str, base: str, barrier: Barrier, results: Any) -> None:
    """One process of the race: in each round, wait for all the others, then get the key of that round's
    fresh data_dir the way the core does at start."""
    from aetherlens.auth.keys import signing_secret
    from aetherlens.secrets import SecretBox

    for round_no in range(ROUNDS):
        data_dir = Path(base) / str(round_no)
        barrier.wait()
        try:
            if kind == "secrets":
                # What this process encrypts must be readable with the key the file keeps.
                results.put((round_no, SecretBox.for_data_dir(data_dir).encrypt("x").encode()))
            else:
                results.put((round_no, signing_secret(Settings(data_dir=data_dir))))
        except Exception as exc:  # a creation that crashes under the race is a failure to report
            results.put((round_no, f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("kind", ["secrets", "auth"])
def test_processes_starting_at_once_share_one_key(tmp_path: Path, kind: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES, timeout=60)  # a dead worker breaks the barrier instead of hanging
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_race, args=(kind, str(tmp_path), barrier, results), daemon=True)
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    got: dict[int, list[bytes]] = {}
    try:
        for _ in range(ROUNDS * PROCESSES):
            round_no, key = results.get(timeout=120)
            assert isinstance(key, bytes), f"round {round_no}: {key}"
            got.setdefault(round_no, []).append(key)
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    name = KEY_FILE if kind == "secrets" else SECRET_FILE
    for round_no in range(ROUNDS):
        path = tmp_path / str(round_no) / name
        kept = path.read_bytes().strip()
        if kind == "secrets":
            box = SecretBox(kept)
            # A token made with a key that lost the race is unreadable: ConfigError.
            assert [box.decrypt(token.decode()) for token in got[round_no]] == ["x"] * PROCESSES
        else:
            assert got[round_no] == [kept] * PROCESSES, f"round {round_no}: processes disagree"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary file left behind


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "k.key"
    write_private_file(path, b"first")
    with pytest.raises(FileExistsError):
        write_private_file(path, b"second")
    assert path.read_bytes() == b"first"
    assert read_or_create_private_file(path, lambda: b"other") == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["k.key"]


def test_an_unusable_key_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"k\.key holds no usable key"):
        read_or_create_private_file(path, lambda: b"x" * 40, valid=lambda data: len(data) >= 32)
    assert path.read_bytes() == b"short"
