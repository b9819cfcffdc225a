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

from typing import Any, Final

from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import AsyncRetryPolicy
from azure.core.utils import case_insensitive_dict

COST_MANAGEMENT_RETRY_HEADERS: Final = (
    "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
)


class CostManagementRetryPolicy(AsyncRetryPolicy[Any, Any]):
    def __init__(self, *, max_retry_wait: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_retry_wait = max_retry_wait

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        waits: list[float] = []
        standard = super().get_retry_after(response)
        if standard is not None:
            waits.append(standard)
        headers = case_insensitive_dict(response.http_response.headers)
        for name in COST_MANAGEMENT_RETRY_HEADERS:
            value = headers.get(name)
            if value:
                try:
                    waits.append(self.parse_retry_after(value))
                except (ValueError, TypeError):
                    continue  # an unreadable header is no instruction; the others still count
        return max(waits) if waits else None

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        status = response.http_response.status_code
        wait = self.get_retry_after(response) if status == 429 else None
        if wait is not None and wait > self.max_retry_wait:
            return False
        if status == 429 and wait is not None and settings["total"]:
            return True
        return bool(super().is_retry(settings, response))
