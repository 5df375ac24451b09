"""The public API's types, as a user's type checker sees them: mypy on ``tests/typing``."""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_types_hold_under_strict_mypy() -> None:
    out, err, status = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "tests" / "typing")]
    )
    assert status == 0, out + err


def test_the_package_ships_its_types() -> None:
    assert (ROOT / "src" / "triggerfish" / "py.typed").is_file()
