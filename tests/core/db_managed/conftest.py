"""Fixtures for the managed-cluster, capability and backup tests.

Clusters live in a directory the unprivileged ``postgres`` user can reach; initdb runs once per module
(module-scoped ``cluster_settings``) and each test leaves the cluster stopped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from managed_helpers import make_cluster_dir, settings_for

from aetherlens.config import Settings
from aetherlens.db.managed import ManagedPostgres


@pytest.fixture(scope="module")
def cluster_root() -> Iterator[Path]:
    root = make_cluster_dir()
    yield root
    ManagedPostgres(settings_for(root)).stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_settings(cluster_root: Path) -> Settings:
    """Settings of a module-wide managed cluster, initdb'ed once and left stopped."""
    settings = settings_for(cluster_root)
    managed = ManagedPostgres(settings)
    managed.start()
    managed.stop()
    return settings


@pytest.fixture
def stopped_after(cluster_settings: Settings) -> Iterator[Settings]:
    """The module cluster for one test; whatever the test leaves running is stopped afterwards."""
    ManagedPostgres(cluster_settings).stop()
    yield cluster_settings
    ManagedPostgres(cluster_settings).stop()
