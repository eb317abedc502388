"""Property-based fuzzing of every operation of the served OpenAPI spec (schemathesis), with
no key and with a key of each role: no input makes the API answer 5xx (issue 14). SQLite; a
small number of examples per operation keeps it to well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from service.app import create_app
from service.auth import HEADER
from service.db.migrate import upgrade
from service.jobs import queue as queue_mod
from service.settings import Settings
from tests.service.conftest import ROLES, make_keys
from tests.service.factories import make_bundle

EXAMPLES = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """A started app (its lifespan ran) serving a small bundle, and a key per role. Retrain
    jobs are handed to a recorder instead of training (the fuzzing is about the API)."""
    root = tmp_path_factory.mktemp("fuzz")
    cfg = Settings(database_url=f"sqlite:///{root / 'margo.db'}", model_dir=root / "models",
                   redis_url=None, poll_interval_s=0.2, public_reads=False)  # fmt: skip
    upgrade(cfg.database_url)
    make_bundle(cfg.model_dir / "m1", seed=1)
    keys = make_keys(cfg.database_url)
    original = queue_mod.job_function
    queue_mod.job_function = lambda dotted=queue_mod.JOB_FUNCTION: lambda *a, **k: "recorded"
    app = create_app(cfg)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            assert app.state.margo.registry.wait_ready(30)
            client.post("/items", json={"items": [{"item_id": f"i{n}"} for n in range(5)]},
                        headers={HEADER: keys["write"]})  # fmt: skip
            yield app, keys
    finally:
        queue_mod.job_function = original


@pytest.fixture(scope="module")
def api_schema(served: tuple[Any, dict[str, str]]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served[0])


def test_no_input_is_a_server_error(api_schema: Any, served: tuple[Any, dict[str, str]]) -> None:
    _, keys = served
    seen = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        seen.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def no_server_error(case: Any) -> None:
            for role in (None, *ROLES):
                headers = {HEADER: keys[role]} if role else {}
                response = case.call(headers=headers)
                assert response.status_code < 500 or response.status_code == 503, (
                    role, case.method, case.formatted_path, response.status_code,
                    response.text[:300],
                )  # fmt: skip
                case.validate_response(response, checks=[not_a_server_error], headers=headers)

        no_server_error()
    assert len(seen) >= 15, seen


def test_the_spec_lists_every_route(api_schema: Any) -> None:
    operations = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert ("POST", "/interactions") in operations and ("GET", "/jobs/{job_id}") in operations
    assert len(operations) >= 15


