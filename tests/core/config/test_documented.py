"""Every settings key is documented in docs/CONFIGURATION.md (the doc and the model move together)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from aetherlens.config import Settings

DOC = Path(__file__).parents[3] / "docs" / "CONFIGURATION.md"
# Keys documented under another spelling: plugin options sit beside plugin ids (`plugins.<option>`),
# and `plugins` itself is documented per id.
RENAMED = {"plugin_options": "plugins", "plugins": "plugins.<id>"}


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{RENAMED.get(name, name) if not prefix else name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(leaf_keys(annotation, dotted + "."))
        elif name == "plugins" and not prefix:
            keys.extend(f"plugins.<id>.{sub}" for sub in ("enabled", "config", "poll_interval"))
        else:
            keys.append(dotted)
    return keys


def test_every_settings_key_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    keys = leaf_keys(Settings)
    assert len(keys) > 30
    missing = [key for key in keys if f"`{key}`" not in text]
    assert missing == [], f"undocumented settings keys: {missing}"
