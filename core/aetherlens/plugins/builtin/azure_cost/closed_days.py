"""Which closed days each subscription already has stored in the core, kept in the state folder.

A day older than the settle window no longer changes at Azure; once a report that covered it was
stored (``costs_stored(ok=True)``), it is never asked for again, across restarts too. Queries cover a
contiguous range, so one date per subscription says it all: every closed day up to it is stored.
The file is replaced atomically (write, fsync, rename, fsync the folder).
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from typing import Final

from aetherlens.plugins.sdk import write_state_file

log = logging.getLogger(__name__)

FILE: Final = "closed_days.json"
VERSION: Final = 1


class ClosedDays:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self.stored_through: dict[str, date] = {}

    def load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.stored_through = {
                str(sub): date.fromisoformat(day) for sub, day in data.get("stored_through", {}).items()
            }
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # Forgetting costs one month-to-date query per subscription, never a wrong number.
            log.warning("ignoring unreadable %s (%s): closed days are fetched once more", self.path, exc)
            self.stored_through = {}

    def get(self, subscription_id: str) -> date | None:
        return self.stored_through.get(subscription_id)

    def advance(self, marks: dict[str, date]) -> None:
        changed = False
        for sub, day in marks.items():
            if self.stored_through.get(sub, date.min) < day:
                self.stored_through[sub] = day
                changed = True
        if changed:
            self.save()

    def save(self) -> None:
        body = {
            "version": VERSION,
            "stored_through": {s: d.isoformat() for s, d in sorted(self.stored_through.items())},
        }
        write_state_file(self.path, body)
