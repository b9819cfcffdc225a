"""Per-subscription health: last success, last error, requests sent today (UTC day).

Requests are counted per attempt (a throttled retry and every page count), from the request URL, so
the figure is what Cost Management's rate limits see. Errors are the service's or the library's
sentences, which name no credential; a few common ones get a hint on what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from .query import AnswerError
from .throttle import requested_wait

SUBSCRIPTION_IN_URL: Final = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:/|$)")
HINTS: Final = {
    "AADSTS7000222": "the client secret has expired: create a new one under the app registration's "
    "'Certificates & secrets' and set client_secret",
    "AADSTS7000215": "the client secret is wrong (use the secret's Value, not its ID)",
    "AADSTS700016": "no application with this client_id in the tenant",
    "AADSTS90002": "no tenant with this tenant_id",
    "SubscriptionNotFound": "check the subscription id, and that the identity can read it",
    "AuthorizationFailed": "grant the identity the Cost Management Reader role on this subscription",
}


@dataclass
class SubscriptionHealth:
    name: str
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    requests_today: int = 0
    requests_day: date = field(default_factory=lambda: datetime.now(UTC).date())
    stored_through: date | None = None

    def count_request(self, today: date) -> None:
        if today != self.requests_day:
            self.requests_day, self.requests_today = today, 0
        self.requests_today += 1

    def succeeded(self, when: datetime) -> None:
        self.last_success, self.last_error, self.last_error_at = when, None, None

    def failed(self, error: str, when: datetime) -> None:
        self.last_error, self.last_error_at = error, when

    def to_dict(self, today: date) -> dict[str, Any]:
        return {
            "name": self.name,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
            "requests_today": self.requests_today if self.requests_day == today else 0,
            "closed_days_stored_through": self.stored_through.isoformat() if self.stored_through else None,
        }


def subscription_of(url: str) -> str | None:
    match = SUBSCRIPTION_IN_URL.search(url)
    return match.group(1).lower() if match else None


def _with_hint(text: str) -> str:
    for code, hint in HINTS.items():
        if code in text:
            return f"{text} — {hint}"
    return text


def describe_error(exc: BaseException) -> str:
    """One line for health and the log."""
    if isinstance(exc, TimeoutError):
        return "timed out (subscription_timeout): the service did not answer in time"
    if isinstance(exc, ClientAuthenticationError) and (
        exc.response is None or subscription_of(str(getattr(exc.response.request, "url", ""))) is None
    ):
        # Raised by azure-identity: the token request itself failed (not a 401 from Cost Management).
        return _with_hint(f"authentication failed: {_first_line(exc.message)}")
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        error = exc.error
        code = error.code if error is not None and error.code else exc.reason
        message = error.message if error is not None and error.message else _first_line(exc.message)
        kind = "not found" if isinstance(exc, ResourceNotFoundError) else f"HTTP {exc.status_code}"
        if exc.status_code == 429:
            wait = requested_wait(getattr(exc.response, "headers", None) or {})
            asked = f"Azure asked to wait {wait:g} s" if wait is not None else "no wait given"
            kind = f"throttled (HTTP 429; {asked}; longer than max_retry_wait, or retries ran out)"
        return _with_hint(f"{kind}: {code}: {message}")
    if isinstance(exc, AnswerError):
        return f"unexpected answer: {exc}"
    if isinstance(exc, AzureError):
        return _with_hint(f"{type(exc).__name__}: {_first_line(exc.message)}")
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:500] if lines else ""
