"""Product modules stay small enough to read whole: none over MAX_LINES (the architecture
rule of README "Architecture"). A module that outgrows it is split by what it does, not
squeezed: the check counts every line, blank lines and docstrings included."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400
PRODUCT = ("service", "trainer", "migrations")


def test_no_product_module_is_over_the_limit() -> None:
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for package in PRODUCT
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert len(sizes) > 50  # the packages were found
    over = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not over, f"modules over {MAX_LINES} lines (split them): {over}"
