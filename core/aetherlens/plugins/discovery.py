"""Finding plugins: built-ins, Python packages (entry points) and configured directories.

Discovery only reads manifests and checks signatures; no plugin code is imported into the core (a
package plugin's directory is located with ``find_spec``, which imports at most its parent package).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Final, Literal

from aetherlens.config import Settings
from aetherlens.errors import PluginError
from aetherlens.plugins.manifest import MANIFEST_NAME, Manifest, check_core_version, load_manifest
from aetherlens.plugins.signing import Verification, verify_directory

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "aetherlens.plugins"
BUILTIN_DIR: Final = Path(__file__).parent / "builtin"

Source = Literal["builtin", "package", "directory"]


@dataclass(slots=True)
class DiscoveredPlugin:
    """A plugin found on disk; ``problem`` says why it cannot run (manifest, version or signature)."""

    id: str
    source: Source
    directory: Path
    manifest: Manifest | None
    entry: str | None
    verification: Verification
    problem: str | None = None
    extra_paths: list[Path] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.problem is None and self.manifest is not None and self.verification.ok


def _plugin_dirs(root: Path) -> list[Path]:
    if (root / MANIFEST_NAME).is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file())


def _inspect(
    directory: Path, source: Source, settings: Settings, entry: str | None = None, name: str | None = None
) -> DiscoveredPlugin:
    plugin_id = name or directory.name
    try:
        manifest = load_manifest(directory)
    except PluginError as exc:
        return DiscoveredPlugin(
            plugin_id,
            source,
            directory,
            None,
            entry,
            Verification(False, "refused", exc.message),
            problem=exc.message,
        )
    plugin_id = manifest.id
    options = settings.plugin_options
    if source == "builtin":
        verification = Verification(True, "builtin", "ships with the core")
    else:
        verification = verify_directory(directory, plugin_id, options.trusted_keys, options.allow_unsigned)
    problem = None if verification.ok else verification.reason
    if problem is None:
        try:
            check_core_version(manifest)
        except PluginError as exc:
            problem = exc.message
    extra = [directory] if source == "directory" else []
    return DiscoveredPlugin(
        plugin_id, source, directory, manifest, entry or manifest.entry, verification, problem, extra
    )


def _package_plugins(settings: Settings) -> list[DiscoveredPlugin]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":", 1)[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as exc:
            log.warning("plugin entry point %s: cannot locate %s: %s", ep.name, module, exc)
            continue
        if spec is None or spec.origin is None:
            log.warning("plugin entry point %s: module %s not found", ep.name, module)
            continue
        found.append(_inspect(Path(spec.origin).parent, "package", settings, entry=ep.value, name=ep.name))
    return found


def discover(settings: Settings, *, include_packages: bool = True) -> dict[str, DiscoveredPlugin]:
    """Every plugin visible to this core, by id; the first of two with the same id wins (built-ins first)."""
    candidates = [_inspect(d, "builtin", settings) for d in _plugin_dirs(BUILTIN_DIR)]
    if include_packages:
        candidates += _package_plugins(settings)
    for root in settings.plugin_options.directories:
        candidates += [_inspect(d, "directory", settings) for d in _plugin_dirs(Path(root))]
    result: dict[str, DiscoveredPlugin] = {}
    for plugin in candidates:
        if plugin.id in result:
            log.warning(
                "plugin %s at %s ignored: the id is already taken by %s",
                plugin.id,
                plugin.directory,
                result[plugin.id].directory,
            )
            continue
        result[plugin.id] = plugin
    return result


def inspect_directory(directory: Path, settings: Settings) -> DiscoveredPlugin:
    """What ``plugins validate PATH`` checks: manifest, core version and signature of one directory."""
    builtin = directory.resolve().is_relative_to(BUILTIN_DIR.resolve())
    return _inspect(directory, "builtin" if builtin else "directory", settings)
