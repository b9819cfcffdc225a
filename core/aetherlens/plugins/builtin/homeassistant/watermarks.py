"""Per-entity watermarks in the instance's ``state_dir``: the newest state time already handed to the
core, and for counters the last value emitted (the jitter guard's reference).

A reading is emitted only when its time is after the entity's watermark, so the live stream, the initial
state and the recorder backfill may overlap without a (time, device, type) twice, across reconnects
and restarts. The file is replaced atomically (write, fsync, rename, fsync the folder) right after the
core took a batch; a crash between the two can at worst repeat that one batch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aetherlens.plugins.sdk import write_state_file

log = logging.getLogger(__name__)

FILE: Final = "watermarks.json"
VERSION: Final = 1


@dataclass
class Mark:
    time: float  # epoch seconds of HA's last_updated
    value: float | None = None  # last emitted value (counters only)


class WatermarkStore:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self.marks: dict[str, Mark] = {}

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.marks = {
                str(entity): Mark(float(m["time"]), None if m.get("value") is None else float(m["value"]))
                for entity, m in data.get("entities", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Unreadable marks mean a new backfill (bounded by backfill_days), never a crash.
            log.warning("ignoring unreadable %s (%s): the next backfill starts from scratch", self.path, exc)
            self.marks = {}

    def save(self) -> None:
        body = {
            "version": VERSION,
            "entities": {e: {"time": m.time, "value": m.value} for e, m in sorted(self.marks.items())},
        }
        write_state_file(self.path, body)
