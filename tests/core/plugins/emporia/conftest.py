"""Fixtures: the loopback Cognito and Emporia API, and the emporia plugin run against them."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from aetherlens.config import Settings
from aetherlens.plugins.discovery import BUILTIN_DIR
from plugins.conftest import make_settings

from .servers import PASSWORD, USERNAME, Cognito, EmporiaApi

PLUGIN = "emporia_loopback"


@pytest.fixture
def cognito() -> Iterator[Cognito]:
    server = Cognito()
    yield server
    server.close()


@pytest.fixture
async def api(cognito: Cognito) -> AsyncIterator[EmporiaApi]:
    server = await EmporiaApi(cognito).start()
    yield server
    await server.close()


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """The built-in emporia plugin's manifest under another id, whose entry is the loopback harness
    (``loopback/loopback.py``) and whose schema also takes the harness's ``loopback`` settings."""
    manifest = yaml.safe_load((BUILTIN_DIR / "emporia" / "plugin.yaml").read_text())
    manifest["id"] = PLUGIN
    manifest["entry"] = "loopback:LoopbackEmporia"
    manifest["config_schema"]["properties"]["loopback"] = {"type": "object"}
    manifest["config_schema"]["required"] = [*manifest["config_schema"]["required"], "loopback"]
    target = tmp_path / "plugins" / PLUGIN
    target.mkdir(parents=True)
    (target / "plugin.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    shutil.copy(Path(__file__).parent / "loopback" / "loopback.py", target / "loopback.py")
    return target


def plugin_config(cognito: Cognito, api_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": USERNAME,
        "password": PASSWORD,
        "request_interval": 0,
        "loopback": {
            "cognito": cognito.url,
            "jwks": json.dumps(cognito.jwks),
            "user_pool_id": cognito.pool_id,
            "client_id": cognito.client_id,
            "api": api_url,
            "min_request_interval": 0,
        },
        **extra,
    }


def settings_for(
    plugin_dir: Path, config: dict[str, Any], *, poll_interval: float = 0.2, data_dir: Path | None = None
) -> Settings:
    return make_settings(
        {PLUGIN: {"config": config, "poll_interval": poll_interval}},
        data_dir=data_dir,
        directories=[str(plugin_dir.parent)],
        allow_unsigned=[PLUGIN],
    )
