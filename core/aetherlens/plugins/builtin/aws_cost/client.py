"""boto3 for the aws_cost plugin: credentials, clients, request counting, throttling.

Everything here is synchronous (boto3 is) and runs on a worker thread of the plugin (``asyncio.to_thread``).

Credentials, in this order: ``access_key_id`` + ``secret_access_key`` (+ ``session_token``) from the
config; else the named ``profile`` (``~/.aws/credentials`` / ``~/.aws/config`` of the user running the
core); else boto3's default chain (``AWS_*`` environment variables, which reach this process through the
manifest's ``aws_credentials`` permission, the default profile, container or instance roles). With
``role_arn`` those are only the base credentials: STS ``AssumeRole`` (with a session name) gives the
ones Cost Explorer sees, renewed ``REFRESH_MARGIN`` seconds before they expire.

Every HTTP attempt to Cost Explorer — pages and botocore's own retries included — passes the
``before-send`` hook, which spends one request of the day's budget first (or refuses to send). botocore's
retry mode (standard/adaptive, ``max_attempts``) absorbs short throttling; when a call still ends in
``ThrottlingException``/``LimitExceededException`` this module backs off itself (doubling) for
``throttle_retries`` more tries before giving up for this poll.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import botocore.exceptions
from botocore.config import Config

from aetherlens.plugins.builtin.aws_cost.state import BudgetExhausted, CostState

if TYPE_CHECKING:
    from mypy_boto3_ce import CostExplorerClient
    from mypy_boto3_sts import STSClient

log = logging.getLogger(__name__)

REFRESH_MARGIN: Final = 300.0  # renew assumed-role credentials this long before they expire
THROTTLE_CODES: Final = frozenset(
    {"ThrottlingException", "LimitExceededException", "TooManyRequestsException", "RequestLimitExceeded"}
)
AUTH_CODES: Final = frozenset(
    {
        "ExpiredTokenException",
        "ExpiredToken",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
        "AccessDenied",
        "IncompleteSignature",
    }
)
LOUD_LOGGERS: Final = ("boto3", "botocore", "urllib3", "s3transfer")


class AwsError(Exception):
    """A failure a person can act on; its message never holds a credential."""


class AuthError(AwsError):
    """AWS refused the credentials (expired, unknown, not allowed)."""


class ThrottledError(AwsError):
    """Cost Explorer still throttled after botocore's retries and this plugin's own backoff."""


class DataUnavailable(AwsError):
    """Cost Explorer has no data for the question yet (a new account, too little history to forecast)."""


@dataclass(frozen=True)
class AwsSettings:
    region: str = "us-east-1"
    profile: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    role_arn: str | None = None
    role_session_name: str = "aetherlens"
    external_id: str | None = field(default=None, repr=False)
    role_duration_seconds: int = 3600
    endpoint_url: str | None = None
    retry_mode: str = "standard"
    max_attempts: int = 3
    throttle_retries: int = 2
    throttle_backoff: float = 5.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], instance_id: str) -> AwsSettings:
        return cls(
            region=str(config.get("region") or "us-east-1"),
            profile=config.get("profile"),
            access_key_id=config.get("access_key_id"),
            secret_access_key=config.get("secret_access_key"),
            session_token=config.get("session_token"),
            role_arn=config.get("role_arn"),
            role_session_name=str(config.get("role_session_name") or f"aetherlens-{instance_id}")[:64],
            external_id=config.get("external_id"),
            role_duration_seconds=int(config.get("role_duration_seconds", 3600)),
            endpoint_url=config.get("endpoint_url"),
            retry_mode=str(config.get("retry_mode", "standard")),
            max_attempts=int(config.get("max_attempts", 3)),
            throttle_retries=int(config.get("throttle_retries", 2)),
            throttle_backoff=float(config.get("throttle_backoff", 5.0)),
        )

    @property
    def credential_source(self) -> str:
        """How the plugin authenticates, for health (never the credentials themselves)."""
        base = (
            "config keys"
            if self.access_key_id
            else f"profile {self.profile}"
            if self.profile
            else "environment"
        )
        return f"{base} -> role {self.role_arn}" if self.role_arn else base


def quiet_boto_logs() -> None:
    """botocore logs request headers (the access key id, the session token) at DEBUG: never let it."""
    for name in LOUD_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def describe(exc: BaseException) -> str:
    """A message for health and exceptions: the AWS error code and text, nothing of the request."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return f"the AWS profile is not configured for the user running AetherLens ({exc})"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return (
            "no AWS credentials found: set access_key_id/secret_access_key or profile in the plugin's "
            "config, or AWS_* variables in the core's environment"
        )
    if isinstance(exc, botocore.exceptions.PartialCredentialsError):
        return f"incomplete AWS credentials ({exc})"
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
        return f"cannot reach AWS: {exc}"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"AWS did not answer in time: {exc}"
    return f"{type(exc).__name__}: {exc}"


class CostExplorer:
    """The plugin's two AWS clients (STS, Cost Explorer), built from ``AwsSettings``."""

    def __init__(
        self,
        settings: AwsSettings,
        state: CostState,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clock = clock
        self.sleep = sleep
        self.throttled = 0  # throttling answers that reached this module (after botocore's retries)
        self.last_throttled: float | None = None
        self.role_expires: float | None = None
        self._session: boto3.Session | None = None
        self._ce: CostExplorerClient | None = None
        self._lock = threading.Lock()
        self._config = Config(
            region_name=settings.region,
            # total_max_attempts counts the first attempt too (botocore's max_attempts would not): every
            # attempt is a paid request, so the setting says how many one call may cost at most.
            retries={"mode": _retry_mode(settings.retry_mode), "total_max_attempts": settings.max_attempts},
            connect_timeout=10,
            read_timeout=60,
            user_agent_extra="aetherlens-aws_cost",
        )

    # -- sessions and clients --------------------------------------------------------------------------
    def _base_session(self) -> boto3.Session:
        s = self.settings
        if s.access_key_id:
            return boto3.Session(
                aws_access_key_id=s.access_key_id,
                aws_secret_access_key=s.secret_access_key,
                aws_session_token=s.session_token,
                region_name=s.region,
            )
        return boto3.Session(profile_name=s.profile, region_name=s.region)

    def _sts(self, session: boto3.Session) -> STSClient:
        return session.client("sts", endpoint_url=self.settings.endpoint_url, config=self._config)

    def _assumed_session(self) -> boto3.Session:
        s = self.settings
        assert s.role_arn is not None
        params: dict[str, Any] = {
            "RoleArn": s.role_arn,
            "RoleSessionName": s.role_session_name,
            "DurationSeconds": s.role_duration_seconds,
        }
        if s.external_id:
            params["ExternalId"] = s.external_id
        creds = self._sts(self._base_session()).assume_role(**params)["Credentials"]
        expiration = creds["Expiration"]
        if isinstance(expiration, dt.datetime):
            self.role_expires = expiration.timestamp()
        else:  # pragma: no cover - botocore parses it; a string would be ISO 8601
            self.role_expires = dt.datetime.fromisoformat(str(expiration)).timestamp()
        return boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=s.region,
        )

    def _needs_refresh(self) -> bool:
        return (
            self.settings.role_arn is not None
            and self.role_expires is not None
            and self.clock() >= self.role_expires - REFRESH_MARGIN
        )

    def session(self) -> boto3.Session:
        """The session Cost Explorer is called with: the base one, or the assumed role's, renewed
        ``REFRESH_MARGIN`` seconds before its credentials expire."""
        with self._lock:
            if self._session is None or self._needs_refresh():
                self._session = self._assumed_session() if self.settings.role_arn else self._base_session()
                self._ce = None
            return self._session

    def ce(self) -> CostExplorerClient:
        session = self.session()
        with self._lock:
            if self._ce is None:
                client: CostExplorerClient = session.client(
                    "ce", endpoint_url=self.settings.endpoint_url, config=self._config
                )
                # Every HTTP attempt (pages and retries too) is paid for: count it before it is sent.
                client.meta.events.register("before-send.ce", self._spend)
                self._ce = client
            return self._ce

    def forget_credentials(self) -> None:
        """After AWS refused them: build new clients (and assume the role again) on the next call."""
        with self._lock:
            self._session = None
            self._ce = None
            self.role_expires = None

    def _spend(self, **_: Any) -> None:
        self.state.spend()  # raises BudgetExhausted: botocore passes it up, nothing is sent

    # -- calls -----------------------------------------------------------------------------------------
    def caller_account(self) -> str:
        """The account id of the credentials Cost Explorer sees (STS GetCallerIdentity is free)."""
        try:
            return str(self._sts(self.session()).get_caller_identity()["Account"])
        except botocore.exceptions.ClientError as exc:
            raise self._classify(exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            if _is_credentials_problem(exc):
                raise AuthError(describe(exc)) from None
            raise AwsError(describe(exc)) from None

    def cost_and_usage(
        self, start: dt.date, end: dt.date, metric: str, group_by: list[str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """DAILY costs of ``[start, end)``, every page; ``(pages, complete)``: ``complete`` is False when
        the budget ran out between pages (what was fetched is still returned)."""
        params: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Granularity": "DAILY",
            "Metrics": [metric],
        }
        if group_by:
            params["GroupBy"] = [{"Type": "DIMENSION", "Key": key} for key in group_by]
        pages: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            if token:
                params["NextPageToken"] = token
            try:
                page = self._call(lambda: dict(self.ce().get_cost_and_usage(**params)))
            except BudgetExhausted:
                if not pages:
                    raise
                return pages, False
            pages.append(page)
            token = page.get("NextPageToken")
            if not token:
                return pages, True

    def forecast(self, start: dt.date, end: dt.date, metric: str, granularity: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
            "Metric": "AMORTIZED_COST" if metric == "AmortizedCost" else "UNBLENDED_COST",
            "Granularity": granularity,
        }
        return self._call(lambda: dict(self.ce().get_cost_forecast(**params)))

    def _call(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        delay = self.settings.throttle_backoff
        tries = self.settings.throttle_retries
        renewed = False
        while True:
            try:
                return call()
            except botocore.exceptions.ClientError as exc:
                problem = self._classify(exc)
                if isinstance(problem, ThrottledError) and tries > 0:
                    tries -= 1
                    log.info("Cost Explorer throttled (%s); trying again in %.3g s", problem, delay)
                    self.sleep(delay)
                    delay *= 2
                    continue
                if isinstance(problem, AuthError) and self.settings.role_arn and not renewed:
                    renewed = True  # the assumed credentials may have lapsed early: assume the role again
                    self.forget_credentials()
                    continue
                if isinstance(problem, AuthError):
                    self.forget_credentials()
                raise problem from None
            except botocore.exceptions.BotoCoreError as exc:
                if _is_credentials_problem(exc):
                    raise AuthError(describe(exc)) from None
                raise AwsError(describe(exc)) from None

    def _classify(self, exc: botocore.exceptions.ClientError) -> AwsError:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        text = describe(exc)
        if code in THROTTLE_CODES:
            self.throttled += 1
            self.last_throttled = self.clock()
            return ThrottledError(f"Cost Explorer throttled the requests ({text})")
        if code in AUTH_CODES:
            hint = (
                "renew the credentials (or the profile's session)"
                if "Expired" in code
                else "check the credentials and the IAM permissions in docs/plugins/aws_cost.md"
            )
            return AuthError(f"AWS refused the credentials ({text}); {hint}")
        if code == "DataUnavailableException":
            return DataUnavailable(f"Cost Explorer has no data for this yet ({text})")
        return AwsError(f"Cost Explorer answered {text}")


def _retry_mode(mode: str) -> Literal["standard", "adaptive"]:
    return "adaptive" if mode == "adaptive" else "standard"


def _is_credentials_problem(exc: BaseException) -> bool:
    return isinstance(
        exc,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.PartialCredentialsError
        | botocore.exceptions.ProfileNotFound,
    )
