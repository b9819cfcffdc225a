"""The `users` and `api-keys` commands work on the auth domain alone: they never load aiohttp.

Each command path runs in a fresh interpreter against a real (migrated) test database, and the child
reports whether any `aiohttp` module was imported by the time the command finished.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

# Runs the CLI's main() in-process in the child, then prints the aiohttp modules it loaded to stderr
# (stdout stays the command's own result).
_CHILD = """
import sys
from aetherlens.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "aiohttp" or m.startswith("aiohttp."))
print("AIOHTTP-MODULES " + ",".join(loaded), file=sys.stderr)
sys.exit(code)
"""


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> tuple[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, (args, result.stderr)
    marker = next(line for line in result.stderr.splitlines() if line.startswith("AIOHTTP-MODULES"))
    loaded = [m for m in marker.removeprefix("AIOHTTP-MODULES ").split(",") if m]
    return result.stdout, loaded


async def test_users_and_api_keys_commands_do_not_load_aiohttp(
    migrated_database: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    dsn = await migrated_database()
    env = {
        "PATH": "/usr/bin:/bin",
        "AETHERLENS_DATABASE_URL": dsn,
        "AETHERLENS_DATA_DIR": str(tmp_path / "data"),
        "AETHERLENS_LOG__LEVEL": "warning",
    }
    out, loaded = _cli(env, "users", "create", "carol", "--role", "viewer", "--password-stdin",
                       stdin="a-long-enough-password\n")  # fmt: skip
    assert out.strip() == "carol" and loaded == []
    out, loaded = _cli(env, "users", "list", "--json")
    assert {"name": "carol", "role": "viewer"} in json.loads(out) and loaded == []
    out, loaded = _cli(env, "users", "set-password", "carol", "--password-stdin",
                       stdin="another-long-password\n")  # fmt: skip
    assert loaded == []
    out, loaded = _cli(env, "api-keys", "create", "--name", "ha", "--scopes", "read,control", "--json")
    created = json.loads(out)
    assert created["key"].startswith("al_") and loaded == []
    out, loaded = _cli(env, "api-keys", "list", "--json")
    assert [k["id"] for k in json.loads(out)] == [created["id"]] and loaded == []
    out, loaded = _cli(env, "api-keys", "revoke", created["id"])
    assert out.strip() == created["id"] and loaded == []
