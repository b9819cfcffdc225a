"""Property-based fuzz run of the whole API from its own OpenAPI document (schemathesis): whatever the
generated input, no operation answers 5xx. Bounded (few examples per operation) so it stays fast."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, given

from .conftest import MakeApi, running_collector

EXAMPLES_PER_OPERATION = 12


def _fuzz(doc: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(doc)
    problems: list[str] = []
    for result in schema.get_all_operations():
        problems.extend(_fuzz_operation(result.ok(), base_url, headers))
    return problems


def _fuzz_operation(operation: Any, base_url: str, headers: dict[str, str]) -> list[str]:
    problems: list[str] = []
    label = f"{operation.method.upper()} {operation.path}"

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        if response.status_code >= 500:
            problems.append(
                f"{label} -> {response.status_code}: {case.as_curl_command()} :: {response.text[:300]}"
            )
        elif response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), (label, body)

    run()
    return problems


async def test_fuzz_whole_api_no_server_errors(make_api: MakeApi, api_dsn: str, tmp_path: Path) -> None:
    # The real ingest path, so POST /metrics is fuzzed through the collector and writer too.
    async with running_collector(api_dsn, tmp_path) as (collector, writer):
        api = await make_api(
            ctx={"collector": collector, "writer": writer},
            api={
                "rate_limit": {
                    "login_per_minute": 100_000,
                    "login_per_hour": 1_000_000,
                    "principal_per_minute": 100_000,
                }
            },
        )
        # An admin API key: every route is reachable, and a fuzzed logout cannot end its session.
        key = await api.key(["admin"], name="fuzz")
        doc = await (await api.client.get("/api/v1/openapi.json")).json()
        base_url = str(api.client.make_url("")).rstrip("/")
        problems = await asyncio.to_thread(_fuzz, doc, base_url, {"Authorization": f"Bearer {key}"})
        assert not problems, "\n".join(problems)
        # The API is still healthy and the key still works after the run.
        info = await api.client.get("/api/v1/info", headers={"Authorization": f"Bearer {key}"})
        assert info.status == 200
