"""addon/config.yaml (and its neighbours) against the Supervisor's rules for an add-on manifest.

The rules are those of the Supervisor's own validators (supervisor/addons/validate.py: the manifest
schema; supervisor/addons/options.py: the option type grammar and how options are checked against the
schema), restated here because the Supervisor is not a dependency of the core.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from aetherlens.commands._addon_options import API_PORT, DB_PORT

from .test_options import ROOT

ADDON = ROOT / "addon"
CONFIG: dict[str, Any] = yaml.safe_load((ADDON / "config.yaml").read_text())

REQUIRED = ("name", "version", "slug", "description", "arch")
SUPPORTED_ARCH = {"aarch64", "amd64"}  # the only ones Supervisor 2026.x still runs
STARTUP = {"initialize", "system", "services", "application", "once"}
BOOT = {"auto", "manual", "manual_only"}
MAP_TYPES = {
    "data", "config", "ssl", "addons", "backup", "share", "media",
    "homeassistant_config", "all_addon_configs", "addon_config",
}  # fmt: skip
SLUG = re.compile(r"[-_.A-Za-z0-9]+")
PORT_KEY = re.compile(r"\d+(?:/tcp|/udp)?")
WATCHDOG = re.compile(r"(?:https?|\[PROTO:\w+\]|tcp)://\[HOST\]:(\[PORT:(\d+)\]|\d+)(.*)")
# The option type grammar (options.py RE_SCHEMA_ELEMENT), "?" = optional.
ELEMENT = re.compile(
    r"(?:bool|email|url|port|device(?:\(subsystem=[a-z]+\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d.]+)?,(?P<f_max>[\d.]+)?\))?"
    r"|match\((?P<match>.*)\)|list\((?P<list>.+)\))\??"
)


def test_required_keys_and_their_types() -> None:
    for key in REQUIRED:
        assert key in CONFIG, f"config.yaml lacks required key {key!r}"
    assert isinstance(CONFIG["name"], str) and CONFIG["name"]
    assert isinstance(CONFIG["description"], str) and CONFIG["description"]
    assert SLUG.fullmatch(CONFIG["slug"]) and CONFIG["slug"] == "aetherlens"


def test_version_is_the_cores() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert isinstance(CONFIG["version"], str), "quote the version: YAML would read 1.10 as a float"
    assert CONFIG["version"] == project["version"]


def test_arch_values() -> None:
    assert CONFIG["arch"] and set(CONFIG["arch"]) <= SUPPORTED_ARCH
    assert sorted(CONFIG["arch"]) == ["aarch64", "amd64"]


def test_url_startup_boot_init() -> None:
    url = urlsplit(CONFIG["url"])
    assert url.scheme in {"http", "https"} and url.netloc
    assert CONFIG["startup"] in STARTUP and CONFIG["startup"] == "application"
    assert CONFIG.get("boot", "auto") in BOOT
    assert CONFIG["init"] is False  # s6-overlay v3 of the base image is PID 1


def test_supervisor_integration_keys() -> None:
    assert CONFIG["homeassistant_api"] is True
    assert CONFIG["discovery"] == ["aetherlens"]  # the integration's domain (CONTRACT.md)
    for entry in CONFIG["map"]:
        assert entry["type"] in MAP_TYPES and isinstance(entry.get("read_only", True), bool)
    assert any(entry["type"] == "addon_config" for entry in CONFIG["map"])


def test_ports_are_disabled_by_default_and_described() -> None:
    ports = CONFIG["ports"]
    assert set(ports) == {f"{API_PORT}/tcp", f"{DB_PORT}/tcp"}
    for key, host_port in ports.items():
        assert PORT_KEY.fullmatch(key), key
        assert host_port is None, f"{key} must be disabled (null) by default"
    assert set(CONFIG["ports_description"]) == set(ports)
    assert all(isinstance(v, str) and v for v in CONFIG["ports_description"].values())


def test_watchdog_format() -> None:
    match = WATCHDOG.fullmatch(CONFIG["watchdog"])
    assert match, CONFIG["watchdog"]
    assert match.group(2) == str(API_PORT) and f"{API_PORT}/tcp" in CONFIG["ports"]
    assert match.group(3) == "/health/live"


def test_stop_timeout_lets_postgresql_shut_down() -> None:
    timeout = CONFIG["timeout"]
    assert isinstance(timeout, int) and 10 <= timeout <= 300  # the Supervisor's range
    assert timeout >= 60


def test_backup_hooks_exist_and_exclude_the_live_cluster() -> None:
    assert CONFIG.get("backup", "hot") == "hot"  # pre/post commands run only for hot backups
    for hook in ("backup_pre", "backup_post"):
        script = ADDON / "rootfs" / CONFIG[hook].lstrip("/")
        assert script.is_file() and script.stat().st_mode & 0o111, f"{hook} {CONFIG[hook]} is not executable"
    excludes = CONFIG["backup_exclude"]
    assert all(isinstance(e, str) for e in excludes)

    # The Supervisor's tar filter: PurePath(<path in /data>).match(pattern) skips the entry.
    def excluded(path: str) -> bool:
        return any(PurePath(path).match(pattern) for pattern in excludes)

    assert excluded("/data/postgres")  # the whole cluster directory, so none of its files
    assert not excluded("/data/backup")
    assert not excluded("/data/backup/aetherlens-2026-01-01T00-00-00.000Z.dump")
    assert not excluded("/data/auth_secret.key") and not excluded("/data/options.json")


def _element(kind: str) -> re.Match[str]:
    match = ELEMENT.fullmatch(kind)
    assert match, f"schema type {kind!r} is not one the Supervisor knows"
    return match


def _walk_schema(schema: Any, where: str) -> None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            assert isinstance(key, str)
            _walk_schema(value, f"{where}.{key}")
    elif isinstance(schema, list):
        assert len(schema) == 1, f"{where}: a list schema has exactly one element type"
        assert not isinstance(schema[0], list), f"{where}: a list may not directly hold a list"
        _walk_schema(schema[0], where)
    else:
        assert isinstance(schema, str), where
        _element(schema)


def test_schema_types_are_valid() -> None:
    _walk_schema(CONFIG["schema"], "schema")


def _check_value(kind: str, value: Any, where: str) -> None:
    """options.py _single_validate, for the types this add-on uses."""
    match = _element(kind)
    base = kind.rstrip("?")
    assert value is not None, f"{where}: null is refused"
    if base.startswith(("str", "password")):
        assert isinstance(value, str), where
    elif base.startswith("int"):
        assert isinstance(value, int) and not isinstance(value, bool), where
        low, high = match.group("i_min"), match.group("i_max")
        assert low is None or value >= int(low), where
        assert high is None or value <= int(high), where
    elif base == "bool":
        assert isinstance(value, bool), where
    elif base.startswith("match"):
        assert re.match(match.group("match"), str(value)), f"{where}: {value!r} fails {base}"
    elif base.startswith("list"):
        assert str(value) in match.group("list").split("|"), where
    elif base == "url":
        parts = urlsplit(str(value))
        assert parts.scheme and parts.netloc, where
    else:
        pytest.fail(f"{where}: type {kind} not covered by this test")


def _check_options(schema: dict[str, Any], options: dict[str, Any], where: str) -> None:
    for key, value in options.items():
        assert key in schema, f"option {where}{key} is not in the schema (the Supervisor drops it)"
        kind = schema[key]
        if isinstance(kind, list):
            assert isinstance(value, list), f"{where}{key}: must be a list"
            for item in value:
                if isinstance(kind[0], dict):
                    _check_options(kind[0], item, f"{where}{key}[].")
                else:
                    _check_value(kind[0], item, f"{where}{key}[]")
        elif isinstance(kind, dict):
            assert isinstance(value, dict), f"{where}{key}: must be a group"
            _check_options(kind, value, f"{where}{key}.")
        else:
            _check_value(kind, value, f"{where}{key}")
    # A missing option is an error unless its type (or its list's element type) ends in "?".
    for key, kind in schema.items():
        if key in options:
            continue
        element = kind[0] if isinstance(kind, list) and kind else kind
        assert isinstance(element, str) and element.endswith("?"), (
            f"required option {where}{key} has no default"
        )


def test_default_options_satisfy_the_schema() -> None:
    _check_options(CONFIG["schema"], CONFIG["options"], "")


def test_the_checker_catches_what_the_supervisor_refuses() -> None:
    schema = CONFIG["schema"]
    for broken in (
        {**CONFIG["options"], "currency": "usd"},
        {**CONFIG["options"], "log_level": "trace"},
        {**CONFIG["options"], "retention_raw_days": 0},
        {k: v for k, v in CONFIG["options"].items() if k != "currency"},
    ):
        with pytest.raises(AssertionError):
            _check_options(schema, broken, "")


def test_translations_name_real_options_and_ports() -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    assert set(translations["configuration"]) <= set(CONFIG["schema"])
    assert set(translations["configuration"]) == set(CONFIG["schema"])  # every option explained
    for entry in translations["configuration"].values():
        assert entry["name"] and entry["description"]
    assert set(translations["network"]) <= set(CONFIG["ports"])


def test_images_docs_and_no_build_yaml() -> None:
    for image in ("icon.png", "logo.png"):
        assert (ADDON / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image
    for doc in ("DOCS.md", "CHANGELOG.md"):
        assert (ADDON / doc).read_text().strip(), doc
    assert f"## {CONFIG['version']}" in (ADDON / "CHANGELOG.md").read_text()
    assert not (ADDON / "build.yaml").exists() and not (ADDON / "build.json").exists()
    repository = yaml.safe_load((ROOT / "repository.yaml").read_text())
    assert repository["name"] and urlsplit(repository["url"]).scheme == "https"


def test_dockerfile_pins_a_home_assistant_base_image() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", (ADDON / "Dockerfile").read_text(), flags=re.MULTILINE)
    base = [f for f in froms if f.startswith("ghcr.io/home-assistant/")]
    assert len(base) == 1, froms
    image, _, tag = base[0].partition(":")
    assert tag and tag != "latest" and re.search(r"\d{4}\.\d{2}\.\d+", tag), base[0]
    assert image == "ghcr.io/home-assistant/base-debian"  # multi-arch (amd64 + arm64)


def _shell_scripts() -> list[Path]:
    found = []
    for path in sorted((ADDON / "rootfs").rglob("*")):
        if path.is_file():
            head = path.read_text(errors="replace").splitlines()[:2]
            if any(line.startswith("#!") and ("bash" in line or "with-contenv" in line) for line in head) or (
                "# shellcheck shell=bash" in head
            ):
                found.append(path)
    return found


def test_dockerfile_and_scripts_pass_hadolint_and_shellcheck() -> None:
    bindir = Path(sys.executable).parent
    scripts = _shell_scripts()
    assert len(scripts) >= 7, scripts  # run, finish, db-proxy, announce, pg-upgrade, common, 2 hooks
    for script in scripts:
        if script.name != "common.sh":  # sourced, not run
            assert script.stat().st_mode & 0o111, f"{script} is not executable"
    hadolint = subprocess.run([bindir / "hadolint", ADDON / "Dockerfile"], capture_output=True, text=True)
    assert hadolint.returncode == 0, hadolint.stdout + hadolint.stderr
    shellcheck = subprocess.run([bindir / "shellcheck", "-x", *scripts], capture_output=True, text=True)
    assert shellcheck.returncode == 0, shellcheck.stdout + shellcheck.stderr


def test_s6_services_are_wired() -> None:
    s6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
    assert (s6 / "aetherlens" / "type").read_text().strip() == "longrun"
    assert (s6 / "announce" / "type").read_text().strip() == "oneshot"
    assert (s6 / "db-proxy" / "type").read_text().strip() == "longrun"
    assert {p.name for p in (s6 / "user" / "contents.d").iterdir()} == {"aetherlens", "announce", "db-proxy"}
    assert (s6 / "announce" / "dependencies.d" / "aetherlens").exists()
    up = (s6 / "announce" / "up").read_text().split()
    assert (ADDON / "rootfs" / up[0].lstrip("/")).is_file()
    for script in (s6 / "aetherlens" / "run", s6 / "aetherlens" / "finish", s6 / "db-proxy" / "run"):
        # with-contenv: the Supervisor's environment (SUPERVISOR_TOKEN, TZ) is visible to the service.
        assert script.read_text().startswith("#!/command/with-contenv bash"), script


def test_dockerfile_builds_the_core_of_the_add_on_version() -> None:
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert f"ARG BUILD_VERSION={CONFIG['version']}" in dockerfile
    assert "#v${BUILD_VERSION}" in dockerfile  # the release tag of the same version
