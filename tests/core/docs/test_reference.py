"""The product's docs are the interface reference, and they move with the code:

- every command and subcommand of the real ``aetherlens`` parser has a heading in docs/CLI.md, and
  every flag and positional argument is named in that command's section;
- every route (method + path) of the OpenAPI document the app serves is listed in docs/API.md;
- README.md and docs/*.md link only to files inside the repository that exist (and to headings that
  exist in them).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from aetherlens.api.app import create_app
from aetherlens.api.context import ApiContext, StaticCapabilities
from aetherlens.cli import build_parser
from aetherlens.config import Settings
from aetherlens.db.pool import create_pool

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "CLI.md"
API_DOC = DOCS / "API.md"


# ---------------------------------------------------------------------------------------------------
# CLI


@dataclass(frozen=True)
class Command:
    path: str  # "api-keys create"
    parser: argparse.ArgumentParser
    has_subcommands: bool


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk_commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[Command]:
    for name, sub in _subparsers(parser).items():
        path = f"{prefix}{name}"
        children = _subparsers(sub)
        yield Command(path, sub, bool(children))
        yield from walk_commands(sub, path + " ")


def argument_names(parser: argparse.ArgumentParser) -> list[str]:
    """How each argument is spelled in the docs: its long option, or its metavar for a positional."""
    names: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            names.append(max(action.option_strings, key=len))
        else:
            names.append(str(action.metavar or action.dest).upper())
    return names


@dataclass(frozen=True)
class Section:
    heading: str
    level: int
    body: str


def sections(text: str) -> list[Section]:
    """Markdown sections (outside code fences): heading, level and the text up to the next heading
    of the same or a higher level."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^(#{1,6})\s+(.*)$", line)):
            heads.append((i, len(m.group(1)), m.group(2).strip()))
    out = []
    for n, (start, level, heading) in enumerate(heads):
        end = next((s for s, lv, _ in heads[n + 1 :] if lv <= level), len(lines))
        out.append(Section(heading, level, "\n".join(lines[start:end])))
    return out


def test_every_cli_command_flag_and_argument_is_in_cli_md() -> None:
    parser = build_parser()
    commands = list(walk_commands(parser))
    assert len(commands) > 25, [c.path for c in commands]  # the walk really reaches the subcommands
    doc = sections(CLI_DOC.read_text(encoding="utf-8"))

    missing: list[str] = []
    for command in commands:
        # The command's own heading: `api-keys create ...` (parents with subcommands are covered by
        # their subcommands' headings, which all start with the parent's name).
        own = [s for s in doc if s.level >= 3 and f"`{command.path}" in s.heading]
        if not own:
            missing.append(f"no heading for `aetherlens {command.path}`")
            continue
        body = "\n".join(s.body for s in own)
        missing += [
            f"`aetherlens {command.path}`: {name} not described in its section"
            for name in argument_names(command.parser)
            if name not in body
        ]
    whole = CLI_DOC.read_text(encoding="utf-8")
    missing += [f"global option {name} not in CLI.md" for name in argument_names(parser) if name not in whole]
    assert not missing, "docs/CLI.md is missing:\n  " + "\n  ".join(missing)


def test_walk_sees_a_command_added_to_the_parser() -> None:
    """The check above cannot pass vacuously: a new subcommand shows up in the walk."""
    parser = build_parser()
    sub = _subparsers(parser)["users"]
    for action in sub._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.add_parser("frobnicate").add_argument("--wobble")
    paths = {c.path for c in walk_commands(parser)}
    assert "users frobnicate" in paths
    new = next(c for c in walk_commands(parser) if c.path == "users frobnicate")
    assert argument_names(new.parser) == ["--wobble"]


# ---------------------------------------------------------------------------------------------------
# HTTP


async def served_openapi(dsn: str, data_dir: Path) -> dict[str, Any]:
    """The document the app built by ``create_app`` serves (as in tests/core/api/test_openapi.py)."""
    settings = Settings(data_dir=data_dir)
    pool = await create_pool(dsn, settings, min_size=1, max_size=2)
    try:
        context = ApiContext(
            settings=settings,
            pool=pool,
            capabilities=StaticCapabilities({"timescaledb": False, "timescaledb_tsl": False}),
            instance_id="docs-test",
            version="0.0.0-docs",
        )
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(context)))
        await client.start_server()
        try:
            resp = await client.get("/api/v1/openapi.json")
            assert resp.status == 200, await resp.text()
            doc: dict[str, Any] = await resp.json()
            return doc
        finally:
            await client.close()
    finally:
        await pool.close()


def routes_missing_from(text: str, document: dict[str, Any]) -> list[str]:
    missing = []
    for path, item in document["paths"].items():
        for method in item:
            # `GET /api/v1/metrics` must not be satisfied by `GET /api/v1/metrics/current`.
            if not re.search(re.escape(f"`{method.upper()} {path}") + r"[`?]", text):
                missing.append(f"{method.upper()} {path}")
    return missing


async def test_every_openapi_route_is_in_api_md(
    migrated_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    document = await served_openapi(await migrated_database(), tmp_path / "data")
    routes = [(m, p) for p, item in document["paths"].items() for m in item]
    assert len(routes) > 40
    missing = routes_missing_from(API_DOC.read_text(encoding="utf-8"), document)
    assert not missing, "docs/API.md does not list these routes of the OpenAPI document:\n  " + "\n  ".join(
        missing
    )


def test_route_check_tells_a_route_from_its_prefix() -> None:
    document = {"paths": {"/api/v1/metrics": {"get": {}}, "/api/v1/metrics/current": {"get": {}}}}
    assert routes_missing_from("`GET /api/v1/metrics/current`", document) == ["GET /api/v1/metrics"]
    both = "`GET /api/v1/metrics?device_id` `GET /api/v1/metrics/current`"
    assert routes_missing_from(both, document) == []


# ---------------------------------------------------------------------------------------------------
# Links


def github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for section in sections(path.read_text(encoding="utf-8")):
        base = github_anchor(section.heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`(\.\./[^`\s]+)`")


def broken_links(doc: Path, text: str | None = None) -> list[str]:
    """Problems of the links in ``doc`` (or in ``text`` read as if it were ``doc``)."""
    text = doc.read_text(encoding="utf-8") if text is None else text
    where = doc.relative_to(ROOT)
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{where}: link to {target} leaves the repository")
        elif not resolved.exists():
            problems.append(f"{where}: link to {target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors_of(resolved):
            problems.append(f"{where}: link to {target}: no heading #{anchor} in {resolved.name}")
    for target in CODE_PATH.findall(text):
        resolved = (doc.parent / target).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            problems.append(f"{where}: points readers to {target}, not a file inside the repository")
    return problems


def test_readme_and_docs_link_only_to_files_inside_the_repository() -> None:
    docs = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    assert len(docs) >= 6
    problems = [p for doc in docs for p in broken_links(doc)]
    assert not problems, "broken or outside links:\n  " + "\n  ".join(problems)


def test_link_check_catches_outside_missing_and_anchor_problems() -> None:
    text = (
        "[a](../../shared/CONTRACT.md) [b](NOPE.md) [c](API.md#no-such-heading) [d](API.md#routes) "
        "[e](https://example.org/x) see `../shared/CONTRACT.md`"
    )
    problems = broken_links(DOCS / "CLI.md", text)
    assert len(problems) == 4, problems
    assert any("leaves the repository" in p for p in problems)
    assert any("no such file" in p for p in problems)
    assert any("#no-such-heading" in p for p in problems)
    assert any("points readers to ../shared/CONTRACT.md" in p for p in problems)
