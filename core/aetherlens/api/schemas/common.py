"""Types shared by the data routes' query models: time ranges and their parsing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator


def _plus_from_space(value: Any) -> Any:
    # An unencoded "+" in a query string arrives as a space ("...T00:00:00 02:00"); restoring it saves
    # every curl user from a confusing "invalid datetime".
    if isinstance(value, str) and len(value) > 19 and value[-6] == " " and value[-3] == ":":
        return value[:-6] + "+" + value[-5:]
    return value


# ISO 8601 with an offset ("Z" or "+02:00"); a time without offset is a 400 naming the parameter.
QueryTime = Annotated[AwareDatetime, BeforeValidator(_plus_from_space)]


def utc_iso(value: datetime) -> str:
    return value.isoformat()
