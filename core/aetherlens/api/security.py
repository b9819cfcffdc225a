"""The guard every declared route passes: rate limits, authentication (from memory) and the scope check."""

from __future__ import annotations

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

    def check_ip(self, request: web.Request) -> None:
        wait = self.ip_limiter.hit(request.remote or "unknown")
        if wait > 0:
            raise RateLimitedError(
                f"too many requests from this address; retry in {wait:.0f} s", retry_after=wait
            )

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
