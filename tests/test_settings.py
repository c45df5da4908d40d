"""Every setting is documented where users look for it: `.env.example` lists each one with a comment."""

from __future__ import annotations

from bot.config import Settings
from tests.conftest import ROOT


def test_every_setting_is_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = [field.validation_alias.choices[0] for field in Settings.model_fields.values()]  # type: ignore[union-attr]
    missing = [name for name in names if name not in example]
    assert not missing, f"add these to .env.example with a comment: {missing}"
