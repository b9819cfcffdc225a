"""aws_cost in its own process under the real supervisor: credentials from a named profile and from the
environment (which only a plugin with the ``aws_credentials`` permission gets), and the whole path in a
running core — plugin -> PostgreSQL -> ``GET /api/v1/cloud-costs`` and ``/cloud-costs/summary`` with the
budget — with the secret key never shown, and a database outage making the plugin fetch the day again."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from api.conftest import ADMIN_PASSWORD
from dbtest import set_connectable

from aetherlens.config import Settings
from aetherlens.plugins.discovery import BUILTIN_DIR
from aetherlens.plugins.runner import child_environment
from aetherlens.plugins.testkit import run_plugin
from aetherlens.runtime import Core
from plugins.conftest import wait_for

from .conftest import ACCOUNT, CostExplorerFront, base_config, fixture, month_end, today, window_start

PLUGIN = BUILTIN_DIR / "aws_cost"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


async def test_a_named_profile_and_the_environment_reach_only_this_plugin(
    front: CostExplorerFront, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[homelab]\naws_access_key_id = AKIAPROFILEEXAMPLE01\naws_secret_access_key = profile-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert "AWS_SHARED_CREDENTIALS_FILE" in child_environment(["network", "aws_credentials"])
    assert "AWS_SHARED_CREDENTIALS_FILE" not in child_environment(["network"])  # other plugins: nothing

    run = await run_plugin(PLUGIN, {"profile": "homelab", "endpoint_url": front.url, "forecast": False})
    assert run.status["health"]["credentials"] == "profile homelab"
    assert {s.access_key for s in front.seen} == {"AKIAPROFILEEXAMPLE01"}

    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment-secret")
    await front.inject(fixture("cost_and_usage_linked_account.json") | {"ResultsByTime": []})
    run = await run_plugin(PLUGIN, {"endpoint_url": front.url, "forecast": False, "budget": 10})
    assert run.status["health"]["credentials"] == "environment"
    assert front.seen[-1].access_key == "AKIAENVIRONMENT00001"
    assert run.budgets == [
        {"provider": "aws", "account": ACCOUNT, "amount": "10", "currency": None, "source": "aws_cost"}
    ]


async def test_end_to_end_into_the_database_out_through_the_api_and_an_outage(
    front: CostExplorerFront,
    migrated_database: Callable[[], Awaitable[str]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the loudest the core can be: still no secret in any line
    await front.inject(
        fixture("cost_and_usage_service_region_page1.json", fill_from=window_start()),
        fixture("cost_and_usage_service_region_page2.json"),
    )
    dsn = await migrated_database()
    config = base_config(front, group_by=["SERVICE", "REGION"], budget=250, daily_request_budget=500)
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": dsn},
        auth={"admin_password": ADMIN_PASSWORD},
        site={"timezone": "Europe/Berlin"},  # the cloud month is of UTC days whatever the site's zone
        plugins={"aws_cost": {"poll_interval": 0.5}},
        log={"format": "text", "level": "debug"},
    )
    core = Core(settings)
    started = await core.start(host="127.0.0.1", port=0)
    supervisor = core.supervisor
    assert supervisor is not None
    d = today()
    first = d.replace(day=1)
    try:
        async with aiohttp.ClientSession(base_url=started.url) as http:
            login = {"username": "admin", "password": ADMIN_PASSWORD}
            async with http.post("/api/v1/auth/login", json=login) as resp:
                h = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
            # The way a user enables it: the secret key goes in through the API, encrypted at rest.
            async with http.put(
                "/api/v1/plugins/aws_cost/config", json={"config": config}, headers=h
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert SECRET not in await resp.text()
            runner = supervisor.runners["aws_cost"]
            await wait_for(lambda: runner.health.get("closed_days", 0) >= 1, within=30, what="a stored poll")
            params = {"provider": "aws", "account": ACCOUNT}
            async with http.get("/api/v1/cloud-costs", params=params, headers=h) as resp:
                items = (await resp.json())["items"]
            async with http.get("/api/v1/cloud-costs/summary", headers=h) as resp:
                summary = (await resp.json())["items"]
            async with http.get("/api/v1/plugins/aws_cost", headers=h) as resp:
                plugin_text = await resp.text()
            async with http.get("/api/v1/plugins", headers=h) as resp:
                plugin_text += await resp.text()
        actual = [i for i in items if i["kind"] == "actual"]
        assert {(i["day"], i["service"], i["region"]) for i in actual} == {
            ((d - dt.timedelta(days=2)).isoformat(), "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
            ((d - dt.timedelta(days=2)).isoformat(), "Amazon Simple Storage Service", "us-east-1"),
            ((d - dt.timedelta(days=1)).isoformat(), "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
            ((d - dt.timedelta(days=1)).isoformat(), "AWS Lambda", "eu-west-1"),
            (d.isoformat(), "Amazon Elastic Compute Cloud - Compute", "us-east-1"),
        }
        today_row = next(i for i in actual if i["day"] == d.isoformat())
        assert (
            today_row["estimated"] is True and today_row["amount"] == 0.42 and today_row["currency"] == "USD"
        )
        month_to_date = float(sum(Decimal(str(i["amount"])) for i in actual if i["day"] >= first.isoformat()))
        forecast_days = (month_end(d) - d).days - 1
        [item] = summary
        assert (item["provider"], item["account"], item["currency"]) == ("aws", ACCOUNT, "USD")
        assert item["budget"] == 250.0 and item["estimated_today"] == 0.42
        assert item["month_to_date"] == pytest.approx(month_to_date)
        assert item["forecast_month"] == pytest.approx(month_to_date + forecast_days * 1.9876543210)
        assert SECRET not in plugin_text and "AKIAIOSFODNN7EXAMPLE" not in plugin_text
        shown = json.loads(plugin_text[: plugin_text.index('}{"items"') + 1])
        assert shown["config"]["secret_access_key"] == "********"
        assert shown["health"]["requests_used_today"] >= 3 and shown["health"]["request_budget"] == 500

        # A fresh instance (its state folder emptied) while the database is unreachable: its reports are
        # refused (ok=False), so every poll buys the closed days again from the window's start; once the
        # database is back they are stored, and the next poll asks for the open days only.
        await supervisor.unload("aws_cost")
        (supervisor.state_dir("aws_cost") / "aws_cost.json").unlink()
        window = min(first, d - dt.timedelta(days=2)).isoformat()
        name = dsn.rsplit("/", 1)[-1].split("?")[0]
        asked = len(front.requests("GetCostAndUsage"))
        await set_connectable(name, False)
        try:
            await supervisor.reconfigure("aws_cost", config)
            runner = supervisor.runners["aws_cost"]
            await wait_for(
                lambda: runner.health.get("last_store_error") is not None, within=30, what="ok=False"
            )
            # Two pages per poll; the two polls after the refusal both start at the window again.
            await wait_for(
                lambda: len(front.requests("GetCostAndUsage")) >= asked + 4, within=30, what="polls"
            )
            assert [r["TimePeriod"]["Start"] for r in front.requests("GetCostAndUsage")[asked:]][:4] == [
                window
            ] * 4
            assert runner.health["closed_days"] == 0
        finally:
            await set_connectable(name, True)
        await wait_for(lambda: runner.health.get("closed_days", 0) >= 1, within=30, what="stored again")
        asked = len(front.requests("GetCostAndUsage"))
        await wait_for(lambda: len(front.requests("GetCostAndUsage")) > asked, within=30, what="a later poll")
        latest = front.requests("GetCostAndUsage")[-1]["TimePeriod"]["Start"]
        assert latest == (d - dt.timedelta(days=1)).isoformat()
    finally:
        await core.stop()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "plugin aws_cost running" in logged  # the plugin's lines are in there ...
    assert SECRET not in logged and "AKIAIOSFODNN7EXAMPLE" not in logged  # ... its credentials are not
    assert SECRET not in json.dumps(supervisor.status(), default=str)
