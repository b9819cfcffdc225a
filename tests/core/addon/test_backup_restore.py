"""Backups that restore, through the add-on's own hooks and the Supervisor's way of copying /data:
data written → backup_pre (a pg_dump into /data/backup) → the Supervisor's tar of /data without the
backup_exclude entries → /data wiped and the tar extracted (a restore) → the run script finds no cluster
but a dump, loads it, and the core serves the data (and the old API key) again."""

from __future__ import annotations

import copy
import shutil
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath

import pytest
import yaml

from .addonrun import BACKUP_PRE, AddonHome, api
from .test_config_yaml import CONFIG
from .test_options import defaults

pytestmark = pytest.mark.slow


@pytest.fixture
def home(cluster_dir: Path) -> Iterator[AddonHome]:
    options = copy.deepcopy(defaults())
    options["homeassistant"]["enabled"] = False
    addon = AddonHome(cluster_dir, options)
    yield addon
    addon.kill()


def supervisor_backup(data: Path, archive: Path) -> None:
    """The add-on's data as the Supervisor archives it (securetar: an entry whose path matches a
    backup_exclude pattern — PurePath.match — is skipped with everything below it)."""
    excludes = CONFIG["backup_exclude"]

    def add(path: Path, tar: tarfile.TarFile) -> None:
        if any(PurePath(path).match(pattern) for pattern in excludes):
            return
        tar.add(path, arcname=str(path.relative_to(data.parent)), recursive=False)
        if path.is_dir() and not path.is_symlink():
            for child in sorted(path.iterdir()):
                add(child, tar)

    with tarfile.open(archive, "w:gz") as tar:
        add(data, tar)


def supervisor_restore(data: Path, archive: Path) -> None:
    """The Supervisor removes the add-on's data folder and puts the archived one in its place."""
    shutil.rmtree(data)
    with tarfile.open(archive) as tar:
        tar.extractall(data.parent, filter="tar")


async def test_backup_pre_then_restore_brings_the_data_back(home: AddonHome) -> None:
    await home.start()
    created = home.cli("api-keys", "create", "--name", "backup-test", "--scopes", "read,ingest")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    metrics = [
        {
            "time": (start + timedelta(minutes=i)).isoformat(),
            "device_id": "rack-ups",
            "metric_type": "power",
            "value": 100.0 + i,
        }
        for i in range(60)
    ]
    status, body = await api("POST", f"{home.url}/api/v1/metrics", key, {"metrics": metrics})
    assert status == 200 and body["accepted"] == 60, body

    # backup_pre while the core runs: a consistent dump, owner-only.
    result = home.run_script(BACKUP_PRE)
    assert result.returncode == 0, result.stderr
    dumps = sorted((home.data / "backup").glob("*.dump"))
    assert len(dumps) == 1 and oct(dumps[0].stat().st_mode)[-3:] == "600"
    assert "backup: wrote" in result.stderr

    archive = home.root / "supervisor-backup.tar.gz"
    supervisor_backup(home.data, archive)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not any(n.startswith("data/postgres") for n in names)  # the live cluster stays out
    assert f"data/backup/{dumps[0].name}" in names and "data/auth_secret.key" in names

    assert home.stop() == 0
    supervisor_restore(home.data, archive)
    assert not (home.data / "postgres").exists()

    await home.start()
    log = home.logs[-1].read_text()
    assert "restoring it (a Home Assistant restore)" in log and f"restore of {dumps[0].name} done" in log

    # The data is back, and so is the key (its digest is in the dump, its secret in /data).
    status, body = await api(
        "GET",
        f"{home.url}/api/v1/metrics?device_id=rack-ups&metric_type=power"
        f"&from={(start - timedelta(minutes=1)).isoformat().replace('+', '%2B')}"
        f"&to={(start + timedelta(hours=1)).isoformat().replace('+', '%2B')}",
        key,
    )
    assert status == 200, body
    assert [p["value"] for p in body["points"]] == [100.0 + i for i in range(60)]

    # The next start does not restore again: the cluster exists now.
    assert home.stop() == 0
    await home.start()
    assert "restoring it" not in home.logs[-1].read_text()
    assert yaml.safe_load((home.data / "aetherlens.yaml").read_text())["data_dir"] == str(home.data)
