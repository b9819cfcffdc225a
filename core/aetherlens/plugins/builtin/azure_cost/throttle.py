"""Cost Management's throttling, honoured: wait what the service says, then retry.

azure-core's ``AsyncRetryPolicy`` already honours ``Retry-After`` (and ``retry-after-ms`` /
``x-ms-retry-after-ms``) and, because of it, retries even a POST. Cost Management, though, often
answers 429 with only its own headers, ``x-ms-ratelimit-microsoft.costmanagement-{qpu,entity,tenant}-
retry-after`` (seconds). azure-core reads none of them, and a Query is a POST, which its method
allow-list never retries: such a 429 would end the poll at once. This policy adds exactly that: those
headers count as a retry-after (the longest of all given wins), and a wait longer than
``max_retry_wait`` is not slept through (the poll reports the throttling; the next poll tries again).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.core.utils import case_insensitive_dict

# What azure-core's own get_retry_after reads (azure.core.pipeline.policies._utils.get_retry_after).
STANDARD_RETRY_HEADERS: Final = ("retry-after", "retry-after-ms", "x-ms-retry-after-ms")
COST_MANAGEMENT_RETRY_HEADERS: Final = (
    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
)


def parse_retry_after(value: str) -> float:
    """Seconds (the Cost Management headers, Retry-After's usual form) or an HTTP date (RFC 9110)."""
    try:
        return max(0.0, float(value))
    except ValueError:
        when = parsedate_to_datetime(value)  # raises ValueError/TypeError when it is neither
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def requested_wait(headers: Mapping[str, str]) -> float | None:
    """The longest wait any of the retry-after headers asks for, in seconds (None: none given)."""
    found = case_insensitive_dict(headers)
    waits: list[float] = []
    for name in (*STANDARD_RETRY_HEADERS, *COST_MANAGEMENT_RETRY_HEADERS):
        value = found.get(name)
        if not value:
            continue
        try:
            wait = parse_retry_after(value)
        except (ValueError, TypeError):
            continue  # an unreadable header is no instruction; the others still count
        waits.append(wait / 1000.0 if name.endswith("-ms") else wait)
    return max(waits) if waits else None


class CostManagementRetryPolicy(AsyncRetryPolicy[Any, Any]):
    def __init__(self, *, max_retry_wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_wait = max_retry_wait

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        return requested_wait(response.http_response.headers)

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        status = response.http_response.status_code
        wait = self.get_retry_after(response) if status == 429 else None
        if wait is not None and wait > self.max_retry_wait:
            return False
        if status == 429 and wait is not None and settings["total"]:
            return True
        return bool(super().is_retry(settings, response))
