"""The README matches the code: every API operation is in its endpoint table, every setting in
its settings table (and nothing there that the code lacks)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_OPERATION = re.compile(r"\b(GET|POST|PATCH|PUT|DELETE) (/[^\s`?,)]*)")


def _table_rows(text: str, header: str) -> list[str]:
    """The body rows of the markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def readme_operations() -> set[tuple[str, str]]:
    rows = _table_rows(README.read_text(), "| endpoint |")
    return {(m, _normalise(p)) for row in rows for m, p in _OPERATION.findall(row)}


def readme_settings() -> set[str]:
    """``MARGO_A_B`` / ``_C`` in one cell names MARGO_A_B and MARGO_A_C."""
    names = set()
    for row in _table_rows(README.read_text(), "| variable |"):
        cell = row.split("|")[1]
        tokens = re.findall(r"`([A-Z_0-9]+)`", cell)
        base = tokens[0].rsplit("_", 1)[0]
        names.add(tokens[0])
        names.update(base + t if t.startswith("_") else t for t in tokens[1:])
    return names


def test_every_operation_is_in_the_endpoint_table() -> None:
    from starlette.routing import Route

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(database_url="sqlite://", redis_url=None))
    code = {
        (method.upper(), _normalise(path))
        for path, ops in app.openapi()["paths"].items()
        for method in ops
    }
    documented = readme_operations()
    assert code - documented == set(), "operations missing from the README's endpoint table"
    # the table may also list plain routes kept out of the schema (/metrics), never unserved ones
    served = code | {
        (method, _normalise(route.path))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    assert documented - served == set(), "the README lists operations the API does not have"


def test_every_setting_is_in_the_settings_table() -> None:
    from service.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    code = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    documented = readme_settings()
    assert code - documented == set(), "settings missing from the README's settings table"
    assert documented - code == set(), "the README lists settings the code does not have"
