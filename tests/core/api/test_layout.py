"""Import structure of the API and the auth domain, read from the source (no import needed)."""

from __future__ import annotations

import ast
from pathlib import Path

import aetherlens

CORE = Path(aetherlens.__file__).parent


def _imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node, node.module))
    return found


def _function_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hits: list[str] = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node, module in _imports(fn):
                if module.startswith("aetherlens"):
                    hits.append(f"{path.relative_to(CORE)}:{getattr(node, 'lineno', '?')} {module}")
    return hits


def test_api_has_no_function_level_imports_of_the_core() -> None:
    # Such imports only existed to dodge import cycles (websocket -> app, meta -> app, context ->
    # websocket); the cycles are gone, so every import is at the top where a cycle would show at once.
    hits = [hit for path in sorted((CORE / "api").rglob("*.py")) for hit in _function_level_imports(path)]
    assert hits == []


def test_auth_domain_imports_nothing_of_aiohttp() -> None:
    offenders = [
        f"{path.relative_to(CORE)} imports {module}"
        for path in sorted((CORE / "auth").rglob("*.py"))
        for _, module in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if module == "aiohttp" or module.startswith(("aiohttp.", "aetherlens.api"))
    ]
    assert (CORE / "auth" / "service.py").exists()
    assert offenders == []


def test_plugin_secrets_live_outside_the_http_layer() -> None:
    # The supervisor decrypts stored plugin secrets and the API's plugin routes encrypt them: the module
    # sits below both (import-linter layers), and neither it nor the plugins reach into the API package.
    assert not (CORE / "api" / "plugin_secrets.py").exists()
    secrets_module = CORE / "plugin_secrets.py"
    offenders = [
        f"{path.relative_to(CORE)} imports {module}"
        for path in [secrets_module, *sorted((CORE / "plugins").rglob("*.py"))]
        for _, module in _imports(ast.parse(path.read_text(encoding="utf-8")))
        if module.startswith("aetherlens.api")
        or (path == secrets_module and module.split(".")[0] == "aiohttp")
    ]
    assert secrets_module.exists()
    assert offenders == []


def test_one_pydantic_error_formatter() -> None:
    # aetherlens.errors.describe_validation_error is the only reader of pydantic's error list; the API,
    # the configuration, tariffs and plugin manifests all word their messages through it.
    readers = [
        f"{path.relative_to(CORE)}:{node.lineno}"
        for path in sorted(CORE.rglob("*.py"))
        if path.name != "errors.py" or path.parent != CORE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "errors"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "exc"
    ]
    assert readers == []


def test_unknown_fields_are_worded_alike_everywhere() -> None:
    import pytest

    from aetherlens.config import load_settings
    from aetherlens.costs.tariff import parse_tariff
    from aetherlens.errors import AetherLensError
    from aetherlens.plugins.manifest import parse_manifest

    cases = [
        (lambda: load_settings(env={}, bogus=1), "unknown config key 'bogus'"),
        (lambda: parse_tariff({"name": "t", "currency": "USD", "bogus": 1}), "unknown field 'bogus'"),
        (lambda: parse_manifest({"id": "p", "bogus": 1}, "here"), "unknown key 'bogus'"),
    ]
    for call, wording in cases:
        with pytest.raises(AetherLensError) as raised:
            call()
        assert wording in raised.value.message
