"""The mqtt plugin declares ``energy_today`` (Tasmota's Today); the in-memory sink must know it."""

from __future__ import annotations

import pytest

from aetherlens.plugins.testkit import MemorySink


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink(extra_types=["ticks", "energy_today"])
