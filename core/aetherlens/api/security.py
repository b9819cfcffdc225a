"""The guard every declared route passes: rate limits, authentication (from memory) and the scope check."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from aetherlens.api.errors import RateLimitedError
from aetherlens.api.ratelimit import Limit, RateLimiter
from aetherlens.api.routing import RouteSpec
from aetherlens.auth.principal import Principal
from aetherlens.auth.service import AuthService
from aetherlens.auth.store import CredentialStore
from aetherlens.config import Settings
from aetherlens.errors import AuthenticationError, PermissionDeniedError

# Where the auth domain's objects hang on the aiohttp application and request (the domain itself knows
# nothing of aiohttp).
PRINCIPAL_KEY = web.RequestKey("aetherlens_principal", Principal)
STORE_KEY = web.AppKey("aetherlens_credentials", CredentialStore)
AUTH_SERVICE_KEY = web.AppKey("aetherlens_auth_service", AuthService)


class Security:
    def __init__(self, settings: Settings, store: CredentialStore) -> None:
        rl = settings.api.rate_limit
        self.store = store
        # Per IP: login/refresh and every request that fails authentication (password/key guessing).
        self.ip_limiter = RateLimiter([Limit(rl.login_per_minute, 60.0), Limit(rl.login_per_hour, 3600.0)])
        # Per principal: a budget far above normal use, against runaway scripts.
        self.principal_limiter = RateLimiter([Limit(rl.principal_per_minute, 60.0)])
        # WebSocket connections per IP that have not authenticated yet (each holds a socket for up to
        # the auth timeout), capped so one address cannot pile them up.
        self.stream_pending_cap = rl.stream_pending_per_ip
        self.stream_pending: Counter[str] = Counter()

    @staticmethod
    def _ip(request: web.Request) -> str:
        return request.remote or "unknown"

    def check_ip(self, request: web.Request) -> None:
        wait = self.ip_limiter.hit(self._ip(request))
        if wait > 0:
            raise RateLimitedError(
                f"too many requests from this address; retry in {wait:.0f} s", retry_after=wait
            )

    def ip_wait(self, request: web.Request) -> float:
        """Seconds until this address's per-IP budget allows another attempt (0 = now); spends nothing."""
        return self.ip_limiter.wait(self._ip(request))

    @contextmanager
    def stream_admission(self, request: web.Request) -> Iterator[None]:
        """Around a WebSocket's upgrade and authentication: refused (429) while the address is over its
        per-IP budget of failed attempts or has ``stream_pending_per_ip`` sockets still authenticating."""
        ip = self._ip(request)
        wait = self.ip_limiter.wait(ip)
        if wait > 0:
            raise RateLimitedError(
                f"too many failed attempts from this address; retry in {wait:.0f} s", retry_after=wait
            )
        if self.stream_pending[ip] >= self.stream_pending_cap:
            raise RateLimitedError(
                f"{self.stream_pending_cap} stream connections from this address are still "
                "authenticating (api.rate_limit.stream_pending_per_ip); authenticate those first",
                retry_after=1.0,
            )
        self.stream_pending[ip] += 1
        try:
            yield
        finally:
            self.stream_pending[ip] -= 1
            if self.stream_pending[ip] <= 0:
                del self.stream_pending[ip]

    def failed_stream_auth(self, request: web.Request) -> None:
        """A failed stream authentication spends the same per-IP budget as a failed HTTP one."""
        self.ip_limiter.hit(self._ip(request))

    def authenticate_header(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization")
        if not header:
            raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token or API key>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("the Authorization header must be 'Bearer <token or API key>'")
        return self.store.authenticate(token.strip())

    async def admit(self, request: web.Request, spec: RouteSpec) -> Principal | None:
        if spec.rate_limit == "ip":
            self.check_ip(request)
        if spec.scope is None:
            return None
        try:
            principal = self.authenticate_header(request)
        except AuthenticationError:
            # Failed attempts spend the per-IP budget, so guessing keys is throttled like passwords.
            if spec.rate_limit != "ip":
                self.check_ip(request)
            raise
        request[PRINCIPAL_KEY] = principal
        if spec.scope != "any" and not principal.allows(spec.scope):
            raise PermissionDeniedError(
                f"this needs the '{spec.scope}' scope", details={"required_scope": spec.scope}
            )
        if spec.rate_limit == "principal":
            wait = self.principal_limiter.hit(principal.rate_key)
            if wait > 0:
                raise RateLimitedError(f"rate limit reached; retry in {wait:.1f} s", retry_after=wait)
        return principal


SECURITY_KEY = web.AppKey("aetherlens_security", Security)
