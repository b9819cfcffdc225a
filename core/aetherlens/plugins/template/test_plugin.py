"""Tests of the template plugin with the AetherLens test kit (runs it in a real plugin process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aetherlens.errors import PluginError
from aetherlens.plugins.testkit import run_plugin

HERE = Path(__file__).parent


async def test_collects_power_and_energy() -> None:
    run = await run_plugin(HERE, {"device_id": "desk-lamp", "watts": 60}, collections=2, poll_interval=0.2)
    assert not run.rejected
    power = [m for m in run.metrics if m["metric_type"] == "power"]
    assert power and all(m["device_id"] == "desk-lamp" and m["value"] == 60 for m in power)


async def test_bad_config_names_the_key() -> None:
    with pytest.raises(PluginError, match=r"plugins\.my_plugin\.config\.watts"):
        await run_plugin(HERE, {"device_id": "desk-lamp", "watts": -5})


async def test_pushes_through_run_and_keeps_its_counter(tmp_path: Path) -> None:
    config = {"device_id": "desk-lamp", "watts": 60, "push_interval": 0.05}
    run = await run_plugin(HERE, config, pushes=3, poll_interval=3600, data_dir=tmp_path)
    assert run.status["pushes"] >= 3 and not run.rejected
    energy = [m["value"] for m in run.metrics if m["metric_type"] == "energy"]
    assert energy == sorted(energy) and energy[-1] > 0
    # the counter lives in the instance's state folder, so the next run continues from it
    assert run.state_dir is not None and (run.state_dir / "energy.json").exists()
    again = await run_plugin(HERE, config, pushes=1, poll_interval=3600, data_dir=tmp_path)
    assert min(m["value"] for m in again.metrics if m["metric_type"] == "energy") >= energy[-1]
