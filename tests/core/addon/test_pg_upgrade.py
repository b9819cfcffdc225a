"""The add-on's PostgreSQL major-upgrade step (`pg-upgrade`, run by the core's run script before the
core): a real pg_upgrade of a cluster the core made, with the old cluster kept for a rollback, and the
decisions for every version combination.

This machine has one PostgreSQL major, so the "new" major is the same binaries under a higher version
directory (pg_upgrade accepts equal versions); what is tested is the step's mechanics: the copy, the
swap, the rollback copy, and that the core serves the upgraded cluster's data."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from .addonrun import PG_UPGRADE, AddonHome, api
from .test_options import defaults

PG_LIB = Path("/usr/lib/postgresql")


def installed_major() -> str:
    majors = sorted((p.parent.name for p in PG_LIB.glob("*/bin") if (p / "postgres").is_file()), key=int)
    if not majors:
        pytest.skip("no Debian PostgreSQL server under /usr/lib/postgresql")
    return majors[-1]


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[AddonHome]:
    options = copy.deepcopy(defaults())
    options["homeassistant"]["enabled"] = False
    addon = AddonHome(cluster_dir, options)
    yield addon
    addon.kill()


def fake_cluster(home: AddonHome, major: str, name: str = "data") -> Path:
    path = home.data / "postgres" / name
    path.mkdir(parents=True)
    (path / "PG_VERSION").write_text(f"{major}\n")
    return path


def test_nothing_to_do_without_a_cluster_or_on_the_same_major(home: AddonHome) -> None:
    assert home.run_script(PG_UPGRADE).returncode == 0
    data = fake_cluster(home, installed_major())
    result = home.run_script(PG_UPGRADE)
    assert result.returncode == 0 and result.stderr == ""
    assert sorted(p.name for p in data.parent.iterdir()) == ["data"]


def test_an_older_cluster_without_its_binaries_stops_the_start_untouched(home: AddonHome) -> None:
    old = str(int(installed_major()) - 1)
    data = fake_cluster(home, old)
    result = home.run_script(PG_UPGRADE)
    assert result.returncode == 1
    assert f"cluster is PostgreSQL {old}; this image has only PostgreSQL {installed_major()}" in result.stderr
    assert (data / "PG_VERSION").read_text().strip() == old
    assert sorted(p.name for p in data.parent.iterdir()) == ["data"]


def test_a_newer_cluster_is_rolled_back_to_the_copy_kept_before_the_upgrade(home: AddonHome) -> None:
    ours, newer = installed_major(), str(int(installed_major()) + 1)
    fake_cluster(home, newer)
    result = home.run_script(PG_UPGRADE)
    assert result.returncode == 1 and "no PostgreSQL" in result.stderr and "to roll back to" in result.stderr

    fake_cluster(home, ours, name=f"data.pg{ours}.rollback")
    result = home.run_script(PG_UPGRADE)
    assert result.returncode == 0, result.stderr
    managed = home.data / "postgres"
    assert (managed / "data" / "PG_VERSION").read_text().strip() == ours
    assert (managed / f"data.pg{newer}.failed" / "PG_VERSION").read_text().strip() == newer
    assert not (managed / f"data.pg{ours}.rollback").exists()


@pytest.mark.slow
async def test_pg_upgrade_of_a_real_cluster_keeps_the_data_and_a_rollback_copy(home: AddonHome) -> None:
    ours = installed_major()
    newer = str(int(ours) + 1)
    await home.start()
    created = home.cli("api-keys", "create", "--name", "upgrade-test", "--scopes", "read,ingest")
    key = created.stdout.strip()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    metrics = [
        {
            "time": (start + timedelta(minutes=i)).isoformat(),
            "device_id": "nas",
            "metric_type": "power",
            "value": 40.0 + i,
        }
        for i in range(10)
    ]
    status, body = await api("POST", f"{home.url}/api/v1/metrics", key, {"metrics": metrics})
    assert status == 200 and body["accepted"] == 10, body
    assert home.stop() == 0

    # Binaries "ours" (old) and "newer" (new) side by side, as the transition image ships them.
    pg_root = home.root / "pg"
    pg_root.mkdir()
    (pg_root / ours).symlink_to(PG_LIB / ours)
    (pg_root / newer).symlink_to(PG_LIB / ours)
    result = home.run_script(PG_UPGRADE, timeout=300, PG_ROOT=str(pg_root))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"upgrading the database cluster from PostgreSQL {ours} to {newer}" in result.stderr
    managed = home.data / "postgres"
    rollback = managed / f"data.pg{ours}.rollback"
    assert (rollback / "PG_VERSION").is_file() and (managed / "data" / "PG_VERSION").is_file()
    assert not (managed / f"data.pg{newer}.new").exists()
    assert (managed / "data" / "aetherlens.conf").is_file()

    await home.start()
    status, body = await api(
        "GET",
        f"{home.url}/api/v1/metrics?device_id=nas&metric_type=power"
        f"&from={(start - timedelta(minutes=1)).isoformat().replace('+', '%2B')}"
        f"&to={(start + timedelta(minutes=30)).isoformat().replace('+', '%2B')}",
        key,
    )
    assert status == 200, body
    assert [p["value"] for p in body["points"]] == [40.0 + i for i in range(10)]
