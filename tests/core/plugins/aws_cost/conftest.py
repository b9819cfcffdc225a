"""AWS for the aws_cost tests, all on 127.0.0.1 (ephemeral ports):

* moto in server mode (``ThreadedMotoServer``): STS (GetCallerIdentity, AssumeRole) and Cost Explorer's
  GetCostAndUsage, whose answers are injected the documented moto way
  (``POST /moto-api/static/ce/cost-and-usage-results``; moto hands them out one per distinct request,
  so page 2 — a request with ``NextPageToken`` — gets the second). Server mode because the supervisor
  runs the plugin in its own process, which in-process ``mock_aws`` cannot reach.
* ``CostExplorerFront``, the endpoint the plugin is given (``endpoint_url``): it speaks Cost Explorer's
  JSON 1.1 protocol itself where moto cannot — ``GetCostForecast`` (moto lacks it), throttling and
  expired-token answers — forwards everything else to moto, and counts every request it receives by
  operation, so tests count what AWS would charge at the server side.

Fixture answers are templates (fixtures/README.md): ``@D-2`` is the day before yesterday (UTC) and so on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT = "123456789012"  # moto's default account: the caller identity of any credentials
_TOKEN = re.compile(r"^@D([+-]\d+)$")


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def month_end(day: dt.date) -> dt.date:
    """The first day of the next month (Cost Explorer's exclusive end)."""
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def render(value: Any, base: dt.date | None = None) -> Any:
    """A fixture template with its day tokens replaced (``@D±n``, ``@MONTH_END``)."""
    base = base or today()
    if isinstance(value, dict):
        return {k: render(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, base) for v in value]
    if isinstance(value, str):
        match = _TOKEN.fullmatch(value)
        if match:
            return (base + dt.timedelta(days=int(match.group(1)))).isoformat()
        if value == "@MONTH_END":
            return month_end(base).isoformat()
    return value


def window_start(closed_after_days: int = 2) -> dt.date:
    """The first day the plugin asks for on its first poll: this month, and the days not closed yet."""
    d = today()
    return min(d.replace(day=1), d - dt.timedelta(days=closed_after_days))


def fixture(name: str, *, fill_from: dt.date | None = None) -> Any:
    """A rendered fixture; ``fill_from`` adds the days before its first one as days without spend, as
    Cost Explorer answers for every day of the asked range (the fixtures spell out the last three)."""
    answer = render(json.loads((FIXTURES / name).read_text()))
    results = answer.get("ResultsByTime")
    if fill_from is not None and results:
        first = dt.date.fromisoformat(results[0]["TimePeriod"]["Start"])
        empty = [
            {
                "TimePeriod": {"Start": day.isoformat(), "End": (day + dt.timedelta(days=1)).isoformat()},
                "Total": {},
                "Groups": [],
                "Estimated": False,
            }
            for day in (fill_from + dt.timedelta(days=i) for i in range((first - fill_from).days))
        ]
        answer["ResultsByTime"] = empty + results
    return answer


def daily_forecast(start: dt.date, end: dt.date) -> dict[str, Any]:
    """forecast_daily.json's one result repeated for every day of ``[start, end)``."""
    template = json.loads((FIXTURES / "forecast_daily.json").read_text())
    item = template["ForecastResultsByTime"][0]
    days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
    results = [
        {**item, "TimePeriod": {"Start": d.isoformat(), "End": (d + dt.timedelta(days=1)).isoformat()}}
        for d in days
    ]
    total = sum((float(item["MeanValue"]) for _ in days), 0.0)
    return {"Total": {**template["Total"], "Amount": f"{total:.10f}"}, "ForecastResultsByTime": results}


@dataclass
class Seen:
    operation: str
    body: dict[str, Any]
    access_key: str | None


@dataclass
class CostExplorerFront:
    moto_url: str
    url: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    seen: list[Seen] = field(default_factory=list)
    scripted: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    forecast: dict[str, Any] | None = None

    def script(self, operation: str, *answers: tuple[int, Any]) -> None:
        """Answer the next requests of ``operation`` with these (status, JSON body) before the usual."""
        self.scripted.setdefault(operation, []).extend(answers)

    def requests(self, operation: str) -> list[dict[str, Any]]:
        return [s.body for s in self.seen if s.operation == operation]

    @property
    def ce_requests(self) -> int:
        return self.counts["GetCostAndUsage"] + self.counts["GetCostForecast"]

    async def inject(self, *results: dict[str, Any]) -> None:
        url = f"{self.moto_url}/moto-api/static/ce/cost-and-usage-results"
        async with aiohttp.ClientSession() as http, http.post(url, json={"results": list(results)}) as resp:
            assert resp.status == 201

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        target = request.headers.get("X-Amz-Target", "")
        if target:
            operation = target.rsplit(".", 1)[-1]
            body = json.loads(raw or b"{}")
        else:  # STS: the query protocol, form-encoded
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            operation, body = f"sts:{form.get('Action', '?')}", form
        credential = re.search(r"Credential=([^/]+)/", request.headers.get("Authorization", ""))
        self.counts[operation] += 1
        self.seen.append(Seen(operation, body, credential.group(1) if credential else None))
        queued = self.scripted.get(operation)
        if queued:
            status, answer = queued.pop(0)
            return _json11(status, answer)
        if operation == "GetCostForecast" and self.forecast is not None:
            return _json11(200, self.forecast)
        async with aiohttp.ClientSession() as http:
            headers = {
                k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
            }
            async with http.request(
                request.method, f"{self.moto_url}{request.path_qs}", data=raw, headers=headers
            ) as r:
                payload = await r.read()
                kept = {
                    k: v for k, v in r.headers.items() if k.lower() in ("content-type", "x-amzn-requestid")
                }
                return web.Response(status=r.status, body=payload, headers=kept)


def _json11(status: int, body: Any) -> web.Response:
    headers = {"x-amzn-RequestId": "aetherlens-test"}
    if status >= 400 and isinstance(body, dict) and "__type" in body:
        headers["x-amzn-ErrorType"] = str(body["__type"])
    return web.Response(
        status=status, body=json.dumps(body), content_type="application/x-amz-json-1.1", headers=headers
    )


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def front(moto_url: str) -> AsyncIterator[CostExplorerFront]:
    async with aiohttp.ClientSession() as http, http.post(f"{moto_url}/moto-api/reset") as resp:
        assert resp.status == 200
    ce = CostExplorerFront(moto_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ce.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ce.url = f"http://127.0.0.1:{port}"
    ce.forecast = daily_forecast(today() + dt.timedelta(days=1), month_end(today()))
    yield ce
    await runner.cleanup()


def base_config(front: CostExplorerFront, **extra: Any) -> dict[str, Any]:
    """Static test keys (moto accepts any), the front as endpoint, fast own backoff."""
    return {
        "access_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "endpoint_url": front.url,
        "throttle_backoff": 0.01,
        "pace": False,  # these tests poll back to back at any hour; the pacing test turns it on
        **extra,
    }
