"""The test kit runs a plugin through the real supervisor; the shipped template passes through it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from aetherlens.config import load_settings
from aetherlens.errors import PluginError
from aetherlens.plugins.discovery import discover
from aetherlens.plugins.testkit import run_plugin

from .conftest import FIXTURES

TEMPLATE = Path(__file__).parents[3] / "core" / "aetherlens" / "plugins" / "template"


async def test_template_collects_and_discovers_through_the_testkit() -> None:
    run = await run_plugin(
        TEMPLATE, {"device_id": "desk-lamp", "watts": 60}, collections=3, poll_interval=0.1, discover=True
    )
    assert not run.rejected
    assert run.status["collections"] >= 3 and run.status["pid"] is not None
    energy = [m["value"] for m in run.metrics if m["metric_type"] == "energy"]
    assert len(energy) >= 3 and energy == sorted(energy)
    assert run.devices == [{"id": "desk-lamp", "name": "My device", "type": "plug"}]


async def test_template_plugin_level_validation_is_reported() -> None:
    with pytest.raises(PluginError, match=r"plugins\.my_plugin\.config\.device_id': 'mains' is reserved"):
        await run_plugin(TEMPLATE, {"device_id": "mains"}, within=20)


async def test_testkit_rejects_metrics_the_collector_would_reject(tmp_path: Path) -> None:
    plugin = tmp_path / "sloppy"
    shutil.copytree(FIXTURES / "counter", plugin, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        (plugin / "plugin.py")
        .read_text()
        .replace(
            'self.metric(device, "ticks", self.n, "count"),',
            'self.metric(device, "ticks", self.n, "count"), self.metric("bad id!", "power", float("nan")),',
        )
    )
    (plugin / "plugin.py").write_text(code)
    run = await run_plugin(plugin, collections=2, poll_interval=0.1)
    assert run.metrics and run.rejected
    assert all("bad device_id" in reason for _, reason in run.rejected)
    assert run.status["metrics_rejected"] >= 2 and "rejected" in (run.status["last_error"] or "")


async def test_testkit_reports_a_crashing_plugin() -> None:
    with pytest.raises(PluginError, match=r"did not get there in time: state .*crashed"):
        await run_plugin(FIXTURES / "crasher", collections=50, poll_interval=0.1, within=3)


def test_entry_point_plugins_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed distribution as pip leaves it: a package plus dist-info with the entry point.
    package = tmp_path / "acme_meter"
    shutil.copytree(FIXTURES / "counter", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")
    info = tmp_path / "acme_meter-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-meter\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text("[aetherlens.plugins]\ncounter = acme_meter.plugin:Counter\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = discover(load_settings(env={}, plugin_options={"allow_unsigned": ["counter"]}))
    plugin = found["counter"]
    assert plugin.source == "package" and plugin.entry == "acme_meter.plugin:Counter"
    assert plugin.directory == package and plugin.runnable
    assert "acme_meter.plugin" not in sys.modules  # discovery did not run the plugin's code in the core
