"""Plugin instances: ``plugins.<instance>.plugin: <manifest id>`` runs one plugin several times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from dbtest import wait_until

from aetherlens.errors import ConfigError
from aetherlens.plugins.testkit import MemorySink

from .conftest import FIXTURES, make_settings
from .test_database_and_cli import _cli_in_process


async def test_two_instances_of_one_plugin_run_with_their_own_config_and_state(
    supervisor_factory: Any, sink: MemorySink, tmp_path: Path
) -> None:
    settings = make_settings(
        {
            "push_garage": {"plugin": "pusher", "config": {"device": "garage", "pushes": 2, "batch": 3}},
            "push_attic": {"plugin": "pusher", "config": {"device": "attic", "pushes": 1, "batch": 4}},
        }
    )
    sup = await supervisor_factory(settings)
    garage, attic = sup.runners["push_garage"], sup.runners["push_attic"]
    await wait_until(lambda: garage.pushes >= 2 and attic.pushes >= 1, what="both instances pushed")
    assert len(sink.of("garage")) == 6 and len(sink.of("attic")) == 4
    assert "pusher" not in sup.runners  # the plain instance is not configured and not default-enabled
    # each process knows itself by its instance id and has its own state folder
    health = await garage.request("health")
    assert health["plugin_id"] == "push_garage"
    assert health["state_dir"] == str(settings.data_dir / "plugins" / "push_garage" / "state")
    assert (await attic.request("health"))["next"] == 1 and health["next"] == 2
    listing = {item["id"]: item for item in sup.status()}
    assert listing["push_garage"]["plugin"] == "pusher" and listing["push_garage"]["state"] == "running"
    assert listing["push_attic"]["plugin"] == "pusher"
    assert listing["pusher"]["state"] == "disabled" and listing["pusher"]["plugin"] == "pusher"


async def test_an_instance_of_an_unknown_plugin_is_refused_by_name(supervisor_factory: Any) -> None:
    sup = await supervisor_factory(make_settings({"ha_garage": {"plugin": "no_such_plugin"}}))
    status = sup.status_of("ha_garage")
    assert status["state"] == "refused" and status["plugin"] == "no_such_plugin"
    assert "plugins.ha_garage.plugin: no plugin 'no_such_plugin'" in status["last_error"]
    assert "ha_garage" not in sup.runners


async def test_an_instance_may_not_take_another_plugins_id(supervisor_factory: Any) -> None:
    sup = await supervisor_factory(make_settings({"counter": {"plugin": "pusher"}}))
    assert "is the id of a plugin itself" in sup.status_of("counter")["last_error"]


async def test_config_errors_name_the_instance(supervisor_factory: Any) -> None:
    sup = await supervisor_factory(make_settings({"push_x": {"plugin": "pusher", "config": {"batch": 0}}}))
    assert "plugins.push_x.config.batch" in sup.problems["push_x"]


def test_instance_ids_are_checked_by_the_config() -> None:
    with pytest.raises(ConfigError, match=r"plugins\.Garage-1"):
        make_settings({"Garage-1": {"plugin": "pusher"}})
    with pytest.raises(ConfigError, match=r"plugins\.garage\.plugin"):
        make_settings({"garage": {"plugin": "Not A Plugin"}})


def test_plugins_list_shows_instance_and_plugin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "log": {"format": "text"},
                "plugins": {
                    "directories": [str(FIXTURES)],
                    "allow_unsigned": ["pusher"],
                    "push_garage": {"plugin": "pusher", "config": {"device": "garage"}},
                    "broken": {"plugin": "nope"},
                },
            }
        )
    )
    code, out, err = _cli_in_process(capsys, "plugins", "list", "--json", config=config)
    assert code == 0, err
    items = {item["id"]: item for item in json.loads(out)["items"]}
    assert items["push_garage"]["plugin"] == "pusher" and items["push_garage"]["enabled"] is True
    assert items["pusher"]["plugin"] == "pusher" and items["pusher"]["enabled"] is False
    assert items["broken"]["problem"] == "plugins.broken.plugin: no plugin 'nope'"
    code, out, err = _cli_in_process(capsys, "plugins", "list", config=config)
    assert code == 0, err
    assert any(line.split()[:2] == ["push_garage", "pusher"] for line in out.splitlines())
