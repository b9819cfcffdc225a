"""The one entry point: ``aetherlens <command>``.

Each command lives in ``aetherlens.commands.<module>`` and exposes ``register(subparsers)`` (adds its
parser and sets ``handler``) so commands are added without editing this file twice. stdout carries only
results; logs and progress go to stderr. Exit codes: 0 ok, 1 failure, 2 bad usage (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Callable, Sequence

from aetherlens import __version__, commands
from aetherlens.config import Settings, load_settings
from aetherlens.errors import AetherLensError
from aetherlens.obs import configure_logging

Handler = Callable[[argparse.Namespace, Settings], int]
log = logging.getLogger("aetherlens.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aetherlens", description="AetherLens: what your devices, rack and clouds cost you."
    )
    parser.add_argument("--version", action="version", version=f"aetherlens {__version__}")
    parser.add_argument("--config", help="YAML config file (default: $AETHERLENS_CONFIG)")
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override log.level"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except AetherLensError as exc:
        configure_logging("info", "text")
        print(f"aetherlens: {exc.message}", file=sys.stderr)
        return 1
    configure_logging(args.log_level or settings.log.level, settings.log.format)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except AetherLensError as exc:
        print(f"aetherlens {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
