"""The Emporia cloud session: pyemvue on one worker thread, sign-in with kept tokens, errors sorted out.

pyemvue is synchronous (requests, boto3): every call runs on this session's single worker thread, so
the plugin's event loop (and its heartbeat) never waits for the cloud, and pyemvue's objects are never
used by two threads at once. Each call is awaited for at most ``timeout`` seconds; a call still running
after that is left to finish on its thread, and the next call is refused until it has (no pile-up).

Sign-in: the tokens Cognito hands out are kept in the instance's state folder (``tokens.json``, mode
0600, pyemvue's own token file format); a restart signs in with them (a token refresh, never the
password) and uses the password only when they are missing, belong to another username or are refused.
Neither the password nor a token is ever logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import requests
from botocore.exceptions import BotoCoreError, ClientError
from pyemvue import PyEmVue
from pyemvue.enums import Scale, Unit

log = logging.getLogger(__name__)

# Cognito's sign-in calls are unsigned, so boto3 never needs AWS credentials here; without this its
# credential chain would still probe the EC2 metadata address on every client pyemvue makes.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# botocore logs request and response bodies at DEBUG, and Cognito's responses carry the tokens.
for _name in ("botocore", "boto3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Cognito's answers that mean "these credentials will not do" (retrying them soon cannot help).
REFUSED: Final = frozenset(
    {
        "NotAuthorizedException",
        "UserNotFoundException",
        "UserNotConfirmedException",
        "PasswordResetRequiredException",
    }
)


class CloudError(Exception):
    """A failed cloud call; the message is safe to show (no secrets)."""


class LoginFailed(CloudError):
    """The account's credentials were refused."""


class RateLimited(CloudError):
    """The API answered 429; ``retry_after`` in seconds when it said how long to wait."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delay-seconds or an HTTP date (RFC 9110 10.2.3); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class EmporiaCloud:
    def __init__(self, username: str, password: str, token_file: Path, timeout: float) -> None:
        self.username = username
        self._password = password
        self.token_file = token_file
        self.timeout = timeout
        self.vue: PyEmVue | None = None
        self.logins = 0  # password sign-ins
        self.token_logins = 0  # sign-ins with kept tokens
        self._last_response: requests.Response | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emporia")
        self._running: Future[Any] | None = None

    @property
    def signed_in(self) -> bool:
        return self.vue is not None

    async def _call[T](self, what: str, fn: Callable[[], T]) -> T:
        if self._running is not None and not self._running.done():
            raise CloudError(f"{what}: the previous cloud call has not returned yet")
        future = self._executor.submit(fn)
        self._running = future
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise CloudError(f"{what}: no answer within {self.timeout:g} s") from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- sign-in ---------------------------------------------------------------------------------------
    async def login(self) -> None:
        await self._call("sign-in", self._login)

    def _login(self) -> None:
        vue = PyEmVue(connect_timeout=min(6.03, self.timeout), read_timeout=self.timeout)
        stored = self._stored_tokens()
        ok = False
        if stored is not None:
            try:
                with _sorted_errors("sign-in with the kept tokens"):
                    ok = vue.login(
                        username=self.username,
                        id_token=stored["id_token"],
                        access_token=stored["access_token"],
                        refresh_token=stored["refresh_token"],
                        token_storage_file=str(self.token_file),
                    )
            except LoginFailed:
                ok = False
            if ok:
                self.token_logins += 1
            else:
                log.info("the kept Emporia tokens were refused; signing in with the password")
        if not ok:
            self.logins += 1
            with _sorted_errors("login failed"):
                ok = vue.login(
                    username=self.username, password=self._password, token_storage_file=str(self.token_file)
                )
            if not ok:
                raise LoginFailed("login failed: Emporia refused the username or password")
        with contextlib.suppress(OSError):
            self.token_file.chmod(0o600)
        # pyemvue retries a 5xx answer itself, sleeping between tries; the plugin's own schedule retries.
        vue.auth.max_retry_attempts = 1
        self._observe(vue)
        self.vue = vue

    def _observe(self, vue: PyEmVue) -> None:
        # get_device_list_usage() returns an empty answer for any error status, 429 included (it only
        # raises when bool(response) is true, which an error response is not): keep the response its
        # Auth returned, so the status and Retry-After of the usage request can be read.
        request = vue.auth.request

        def observed(method: str, path: str, **kwargs: Any) -> requests.Response:
            response: requests.Response = request(method, path, **kwargs)
            self._last_response = response
            return response

        vue.auth.request = observed

    def _stored_tokens(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.token_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or str(data.get("username", "")).lower() != self.username.lower():
            return None  # none yet, unreadable, or another account's
        if not all(
            isinstance(data.get(k), str) and data[k] for k in ("id_token", "access_token", "refresh_token")
        ):
            return None
        return {k: data[k] for k in ("id_token", "access_token", "refresh_token")}

    def forget_session(self) -> None:
        self.vue = None

    # -- reads -----------------------------------------------------------------------------------------
    async def devices(self) -> list[Any]:
        vue = self._session()
        return await self._call("device list", lambda: self._devices(vue))

    def _devices(self, vue: PyEmVue) -> list[Any]:
        with _sorted_errors("device list"):
            devices: list[Any] = vue.get_devices()
        return devices

    async def usage(self, gids: list[int], instant: datetime) -> dict[int, Any]:
        vue = self._session()
        return await self._call("usage", lambda: self._usage(vue, gids, instant))

    def _usage(self, vue: PyEmVue, gids: list[int], instant: datetime) -> dict[int, Any]:
        self._last_response = None
        with _sorted_errors("usage"):
            answer: dict[int, Any] = vue.get_device_list_usage(
                deviceGids=gids,
                instant=instant,
                scale=Scale.MINUTE.value,
                unit=Unit.KWH.value,
                max_retry_attempts=1,  # no sleeping retries inside the worker: the next poll retries
            )
        response = self._last_response
        if response is not None and response.status_code != 200:
            _raise_for(response, "usage")
        if not answer:
            raise CloudError("usage: malformed answer from the Emporia API (no deviceListUsages.devices)")
        return answer

    def _session(self) -> PyEmVue:
        if self.vue is None:
            raise CloudError("not signed in")
        return self.vue


def _raise_for(response: requests.Response, what: str) -> None:
    status = response.status_code
    if status == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        said = f", Retry-After {wait:g} s" if wait is not None else ", no Retry-After"
        raise RateLimited(f"{what}: the Emporia API answered 429 Too Many Requests{said}", wait)
    if status in (401, 403):
        raise LoginFailed(f"{what}: the Emporia API refused the session ({status})")
    raise CloudError(f"{what}: the Emporia API answered {status} {response.reason or ''}".rstrip())


class _sorted_errors(contextlib.AbstractContextManager[None]):
    """Turns what pyemvue, requests and boto3 raise into CloudError / LoginFailed / RateLimited, with a
    message that names the failed step and never carries a secret (no request bodies, no headers)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, CloudError):
            return
        what, name = self.what, type(exc).__name__
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            _raise_for(exc.response, what)
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            if code in REFUSED:
                prefix = what if what.startswith("login failed") else f"login failed ({what})"
                raise LoginFailed(f"{prefix}: Emporia's sign-in service answered {code}") from None
            raise CloudError(f"{what}: Emporia's sign-in service answered {code}") from None
        if isinstance(exc, BotoCoreError):
            raise CloudError(
                f"{what}: cannot reach Emporia's sign-in service ({type(exc).__name__})"
            ) from None
        if isinstance(exc, ValueError | LookupError | TypeError):
            raise CloudError(
                f"{what}: malformed answer from the Emporia API ({type(exc).__name__})"
            ) from None
        if isinstance(exc, requests.RequestException):
            raise CloudError(f"{what}: cannot reach the Emporia API ({name})") from None
