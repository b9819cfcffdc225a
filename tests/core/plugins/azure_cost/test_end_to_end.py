"""azure_cost in its own process under the supervisor: loopback Azure -> cloud_costs -> the HTTP API."""

from __future__ import annotations

import calendar
import datetime as dt
import json
from pathlib import Path

import pytest
from api.conftest import MakeApi

from aetherlens.collect.cloud_costs import CostWriter
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.runner import child_environment
from aetherlens.plugins.supervisor import Supervisor
from aetherlens.plugins.testkit import MemorySink
from plugins.conftest import FAST, make_settings, wait_for

from .azure_server import AppServiceIdentity, AzureServer
from .conftest import SECRET, SUB_A, SUB_B, plugin_config


async def test_costs_reach_the_api_and_closed_days_are_not_asked_again(
    azure: AzureServer, make_api: MakeApi, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    open_from = today - dt.timedelta(days=3)
    settings = make_settings(
        {"azure_cost": {"config": plugin_config(azure), "poll_interval": 0.5}}, data_dir=tmp_path / "data"
    )
    api = await make_api()  # the HTTP API on the database the core's cost writer stores into
    supervisor = Supervisor(
        settings,
        MemorySink(),
        plugins=discover(settings, include_packages=False),
        options=FAST,
        cost_sink=CostWriter(api.pool, timeout=5),
    )
    await supervisor.start()
    runner = supervisor.runners["azure_cost"]
    try:
        # Two polls: the first stores the month so far, the second asks only for the open days.
        await wait_for(lambda: runner.cost_polls >= 2, within=30, what="two stored cost polls")
        status = runner.status()
    finally:
        await supervisor.stop()

    queries = [s for s in azure.seen if s.kind == "query" and s.subscription == SUB_A]
    first_day = min(today.replace(day=1), open_from)
    assert queries[0].body["timePeriod"]["from"] == f"{first_day.isoformat()}T00:00:00Z"
    assert {q.body["timePeriod"]["from"] for q in queries[1:]} == {f"{open_from.isoformat()}T00:00:00Z"}
    assert status["health"]["subscriptions"][SUB_A]["last_error"] is None
    assert SECRET not in json.dumps(status, default=str)

    headers = {"Authorization": f"Bearer {await api.key(['read'])}"}
    resp = await api.client.get(
        "/api/v1/cloud-costs", params={"provider": "azure", "account": SUB_A}, headers=headers
    )
    assert resp.status == 200, await resp.text()
    items = (await resp.json())["items"]
    actual = [i for i in items if i["kind"] == "actual"]
    days = {dt.date.fromisoformat(i["day"]) for i in actual}
    assert days == {first_day + dt.timedelta(days=n) for n in range((today - first_day).days + 1)}
    assert {i["day"] for i in actual if i["estimated"]} == {
        (open_from + dt.timedelta(days=n)).isoformat() for n in range(4)
    }
    vm = next(
        i
        for i in actual
        if i["day"] == today.isoformat() and i["resource_group"] == "ict_stratandplan_goldsprova_prod"
    )
    assert vm["service"] == "Virtual Machines" and vm["currency"] == "USD"
    assert abs(vm["amount"] - (218.68795741935486 + 0.009865586851323632)) < 1e-9
    last = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    forecast = sorted(i["day"] for i in items if i["kind"] == "forecast")
    assert forecast == [(today + dt.timedelta(days=n)).isoformat() for n in range(1, (last - today).days + 1)]

    resp = await api.client.get("/api/v1/cloud-costs/summary", headers=headers)
    summary = {s["account"]: s for s in (await resp.json())["items"] if s["provider"] == "azure"}
    assert summary[SUB_A]["budget"] == 50 and summary[SUB_A]["currency"] == "USD"
    assert summary[SUB_B]["budget"] == 200 and summary[SUB_B]["currency"] == "EUR"
    assert summary[SUB_A]["month_to_date"] > 0


async def test_a_managed_identity_in_the_cores_environment_reaches_the_plugin_process(
    azure: AzureServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The manifest's permission azure_credentials hands the core's AZURE_* / IDENTITY_* / MSI_*
    variables (App Service, Container Apps, Arc) to this plugin's process only."""
    identity = AppServiceIdentity()
    await identity.start()
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    config = plugin_config(
        azure,
        tenant_id=None,
        client_id=None,
        client_secret=None,
        credential="managed_identity",
        subscriptions=[{"id": SUB_A}],
    )
    sink = MemorySink()
    settings = make_settings({"azure_cost": {"config": config}}, data_dir=tmp_path / "data")
    supervisor = Supervisor(
        settings, sink, plugins=discover(settings, include_packages=False), options=FAST, cost_sink=sink
    )
    await supervisor.start()
    try:
        runner = supervisor.runners["azure_cost"]
        await wait_for(lambda: runner.cost_polls >= 1, within=30, what="a cost poll")
        assert sink.costs, runner.last_error
    finally:
        await supervisor.stop()
        await identity.stop()
    assert identity.seen, "the plugin process never asked the identity endpoint"
    assert {s.authorization for s in azure.seen} == {f"Bearer {identity.token}"}
    assert azure.token_requests == []
    # Another plugin's process does not get them.
    assert "IDENTITY_ENDPOINT" not in child_environment(["network"])
    assert child_environment(["network", "azure_credentials"])["IDENTITY_ENDPOINT"] == identity.endpoint
