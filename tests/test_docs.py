"""Docs that cannot drift: every setting is in the operator guide with its default."""

from __future__ import annotations

from pathlib import Path

import pytest

from urbanstack.settings import describe_settings

GUIDE = Path(__file__).parent.parent / "docs" / "broker.md"


@pytest.mark.parametrize("name,kind,default,help_text", describe_settings())
def test_every_setting_is_documented_with_its_default(
    name: str, kind: str, default: object, help_text: str
) -> None:
    rows = [
        line for line in GUIDE.read_text("utf-8").splitlines() if line.startswith(f"| {name} |")
    ]
    assert rows, f"docs/broker.md has no row for the setting {name}"
    assert f"URBANSTACK_{name.upper()}" in rows[0]
    assert (f"`{default}`" if default != "" else "(empty)") in rows[0]
