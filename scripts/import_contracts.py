"""A custom import-linter contract: forbid one submodule of an external package outside some packages.

import-linter's own ``forbidden`` contract accepts only top-level external packages (``aiohttp``, not
``aiohttp.web``), because grimp keeps an external package as one node. The contract wanted here is
narrower: the aiohttp *client* may be used anywhere (plugins talk HTTP), the *server* (``aiohttp.web``)
only inside ``aetherlens.api``. So this contract reads the source line of every import of the external
package and refuses the ones that name the submodule.

Used from pyproject.toml (``contract_types``); ``lint-imports`` puts the working directory on sys.path,
so it runs from the repository root (scripts/test does).
"""

from __future__ import annotations

import re
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


class ForbiddenSubmoduleContract(Contract):
    """Options: ``forbidden`` (e.g. ``aiohttp.web``), ``allowed`` (packages that may import it)."""

    forbidden = fields.StringField()
    allowed = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package, _, name = str(self.forbidden).partition(".")
        allowed = [str(a) for a in self.allowed]  # type: ignore[attr-defined]
        # "import aiohttp.web", "from aiohttp.web import X", "from aiohttp import web" / "(... web ...)"
        pattern = re.compile(
            rf"^\s*(import\s+{package}\.{name}\b|from\s+{package}\.{name}\b"
            rf"|from\s+{package}\s+import\s+.*\b{name}\b)"
        )
        violations: list[dict[str, Any]] = []
        if package in graph.modules:
            for importer in sorted(graph.find_modules_that_directly_import(package)):
                if any(importer == a or importer.startswith(a + ".") for a in allowed):
                    continue
                for detail in graph.get_import_details(importer=importer, imported=package):
                    if pattern.match(detail["line_contents"]):
                        violations.append(
                            {
                                "importer": importer,
                                "line_number": detail["line_number"],
                                "line": detail["line_contents"],
                            }
                        )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(
                f"{violation['importer']}:{violation['line_number']} imports {self.forbidden}: "
                f"{violation['line'].strip()}",
                bold=False,
            )
        output.new_line()
