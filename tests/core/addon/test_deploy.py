"""The ways to run AetherLens outside Home Assistant: docker-compose.yml, the core-only image and the
systemd unit. No Docker daemon here, so the compose file is checked for what it promises (services,
pinned images, health checks, volumes, the API on 8080, Grafana wired to grafana/), and the unit with
systemd's own verifier."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .test_options import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
UNIT = ROOT / "deploy" / "systemd" / "aetherlens.service"


def test_compose_services_images_and_health_checks() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"db", "core", "grafana"}
    assert re.fullmatch(r"timescale/timescaledb:\d+\.\d+\.\d+-pg\d+", services["db"]["image"])
    assert re.fullmatch(r"grafana/grafana-oss:\d+\.\d+\.\d+", services["grafana"]["image"])
    assert services["grafana"]["profiles"] == ["grafana"]  # optional
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert services["core"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "8080:8080" in services["core"]["ports"]


def test_compose_volumes_keep_state() -> None:
    services = COMPOSE["services"]
    assert "db-data:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert "core-data:/var/lib/aetherlens" in services["core"]["volumes"]
    assert set(COMPOSE["volumes"]) == {"db-data", "core-data", "grafana-data"}
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_dir(), f"{volume}: {source} does not exist"


def test_compose_core_reaches_the_database_grafana_reads() -> None:
    env = COMPOSE["services"]["core"]["environment"]
    db = COMPOSE["services"]["db"]["environment"]
    url = env["AETHERLENS_DATABASE_URL"]
    assert url.startswith(f"postgresql://{db['POSTGRES_USER']}:") and url.endswith(
        f"@db:5432/{db['POSTGRES_DB']}"
    )
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/aetherlens.yaml").read_text())
    assert datasource["datasources"][0]["jsonData"]["database"] == db["POSTGRES_DB"]
    grafana = COMPOSE["services"]["grafana"]
    assert grafana["environment"]["AETHERLENS_DB_HOST"] == "db:5432"
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/aetherlens:ro" in grafana["volumes"]
    # Secrets come from .env, never from the file.
    assert "${AETHERLENS_DB_PASSWORD" in db["POSTGRES_PASSWORD"]
    assert "${AETHERLENS_ADMIN_PASSWORD" in env["AETHERLENS_ADMIN_PASSWORD"]


def test_core_image_copies_what_exists() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--)(\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert COMPOSE["services"]["core"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # The unit's ExecStart is the install location; point it at this checkout's CLI for the check.
    unit = tmp_path / "aetherlens.service"
    cli = Path(sys.executable).with_name("aetherlens")
    unit.write_text(UNIT.read_text().replace("/opt/aetherlens/venv/bin/aetherlens", str(cli)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "aetherlens.service" in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr
    text = UNIT.read_text()
    assert "ExecStart=/opt/aetherlens/venv/bin/aetherlens serve" in text
    assert "TimeoutStopSec=120" in text and "User=aetherlens" in text
