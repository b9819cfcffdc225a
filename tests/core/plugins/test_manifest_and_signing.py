"""Manifest and config validation, core-version ranges, and publisher signatures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from aetherlens.config import load_settings
from aetherlens.errors import PluginError
from aetherlens.plugins.discovery import discover, inspect_directory
from aetherlens.plugins.manifest import check_core_version, load_manifest, validate_config
from aetherlens.plugins.signing import generate_keypair, load_private_key, sign_directory, verify_directory

from .conftest import FIXTURES


def _copy_counter(tmp_path: Path, name: str = "counter") -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / "counter", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _edit_manifest(directory: Path, **changes: object) -> None:
    data = yaml.safe_load((directory / "plugin.yaml").read_text())
    data.update(changes)
    (directory / "plugin.yaml").write_text(yaml.safe_dump(data))


def test_config_errors_name_plugin_key_path_and_reason() -> None:
    manifest = load_manifest(FIXTURES / "counter")
    with pytest.raises(PluginError) as caught:
        validate_config(manifest, {"step": -1, "device": 7, "colour": "blue"})
    message = caught.value.message
    assert "plugin 'counter': config key 'plugins.counter.config.step'" in message
    assert "less than the minimum of 0" in message
    assert "'plugins.counter.config.device': 7 is not of type 'string'" in message
    assert "'colour' was unexpected" in message
    assert len(caught.value.details["errors"]) == 3


def test_config_defaults_are_filled() -> None:
    manifest = load_manifest(FIXTURES / "counter")
    assert validate_config(manifest, {"step": 2}) == {"step": 2, "device": "counter-1"}


def test_manifest_errors_name_plugin_and_key(tmp_path: Path) -> None:
    plugin = _copy_counter(tmp_path)
    _edit_manifest(plugin, capabilities=["metrics.teleport"], poll_interval=-1, version="one")
    with pytest.raises(PluginError) as caught:
        load_manifest(plugin)
    message = caught.value.message
    assert message.startswith("plugin 'counter'")
    assert "key 'capabilities.0'" in message
    assert "key 'poll_interval'" in message
    assert "key 'version': 'one' is not a version" in message


def test_manifest_with_invalid_json_schema_is_refused(tmp_path: Path) -> None:
    plugin = _copy_counter(tmp_path)
    _edit_manifest(plugin, config_schema={"type": "not-a-type"})
    with pytest.raises(PluginError, match="key 'config_schema': not a valid JSON Schema"):
        load_manifest(plugin)


def test_core_version_range(tmp_path: Path) -> None:
    plugin = _copy_counter(tmp_path)
    _edit_manifest(plugin, requirements={"core_version": ">=99.0"})
    manifest = load_manifest(plugin)
    with pytest.raises(PluginError, match=r"requires core version >=99.0, this core is 0.1.0"):
        check_core_version(manifest, "0.1.0")
    check_core_version(manifest, "99.1")  # inside the range: no error
    settings = load_settings(
        env={}, plugin_options={"directories": [str(tmp_path)], "allow_unsigned": ["counter"]}
    )
    found = discover(settings, include_packages=False)["counter"]
    assert not found.runnable
    assert "requires core version >=99.0" in (found.problem or "")


def test_signed_plugin_verifies_and_tampering_is_refused(tmp_path: Path) -> None:
    plugin = _copy_counter(tmp_path)
    pem, public = generate_keypair()
    key_file = tmp_path / "publisher.pem"
    key_file.write_bytes(pem)
    sign_directory(plugin, load_private_key(key_file), "acme")
    trusted = {"acme": public}

    ok = verify_directory(plugin, "counter", trusted, [])
    assert ok.ok and ok.status == "verified" and ok.publisher == "acme"

    # Unknown publisher, wrong key.
    assert "not in plugins.trusted_keys" in verify_directory(plugin, "counter", {}, []).reason
    _, other = generate_keypair()
    wrong = verify_directory(plugin, "counter", {"acme": other}, [])
    assert not wrong.ok and "signature does not match" in wrong.reason

    # A changed code file, then an added file.
    code = plugin / "plugin.py"
    original = code.read_text()
    code.write_text(original + "\nEVIL = True\n")
    tampered = verify_directory(plugin, "counter", trusted, [])
    assert not tampered.ok and "changed or missing since signing: plugin.py" in tampered.reason
    code.write_text(original)
    (plugin / "extra.py").write_text("import os\n")
    added = verify_directory(plugin, "counter", trusted, [])
    assert not added.ok and "not covered by the signature: extra.py" in added.reason
    (plugin / "extra.py").unlink()

    # A changed manifest.
    _edit_manifest(plugin, poll_interval=5)
    manifest_changed = verify_directory(plugin, "counter", trusted, [])
    assert not manifest_changed.ok and "plugin.yaml changed after signing" in manifest_changed.reason


def test_unsigned_plugin_runs_only_when_allowed_by_name(tmp_path: Path) -> None:
    plugin = _copy_counter(tmp_path)
    refused = verify_directory(plugin, "counter", {}, ["someone_else"])
    assert not refused.ok and refused.status == "unsigned"
    assert "not signed" in refused.reason and "allow_unsigned" in refused.reason
    allowed = verify_directory(plugin, "counter", {}, ["counter"])
    assert allowed.ok and allowed.status == "unsigned_allowed"


async def test_refused_plugin_is_not_started_and_says_why(tmp_path: Path, supervisor_factory) -> None:
    _copy_counter(tmp_path)
    settings = load_settings(
        env={}, plugin_options={"directories": [str(tmp_path)]}, plugins={"counter": {"enabled": True}}
    )
    sup = await supervisor_factory(settings)
    assert "counter" not in sup.runners
    status = sup.status_of("counter")
    assert status["state"] == "refused"
    assert status["verification"] == "unsigned"
    assert "is not signed" in status["last_error"]


async def test_bad_config_refuses_start_and_names_key(supervisor_factory) -> None:
    from .conftest import make_settings

    sup = await supervisor_factory(make_settings({"counter": {"config": {"step": "big"}}}))
    assert "counter" not in sup.runners
    status = sup.status_of("counter")
    assert status["state"] == "refused"
    assert "config key 'plugins.counter.config.step': 'big' is not of type 'number'" in status["last_error"]


def test_validate_directory_of_builtin_and_fixture() -> None:
    settings = load_settings(env={})
    fixture = inspect_directory(FIXTURES / "counter", settings)
    assert fixture.source == "directory" and fixture.verification.status == "unsigned"
    assert not fixture.runnable
