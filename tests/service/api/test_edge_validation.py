"""Validation at the edge (issue 14): values the database or the model cannot hold are a 422
naming the field, on SQLite and on the real PostgreSQL (which refuses NUL in text); a key is
checked before a body is parsed; oversized bodies are a 413; an escaped exception is a JSON 500
that does not reach the server (so the keep-alive connection survives)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.db.migrate import upgrade
from service.errors import install_handlers
from service.middleware import LimitBody, ObserveRequests
from service.settings import Settings
from tests.service.conftest import make_keys, start_client
from tests.service.factories import make_bundle

BIG = 2**64


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_db")
    return sqlite_url


@pytest.fixture
def api(
    make_settings: Callable[..., Settings], db_url: str
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """(client with a write key, keys by role) of an app serving a small bundle; items i0..i9
    exist in SQL."""
    settings = make_settings(database_url=db_url, max_body_bytes=64 * 1024)
    upgrade(settings.database_url)
    make_bundle(settings.model_dir / "m1", seed=1)
    keys = make_keys(settings.database_url)
    for client in start_client(settings, keys["write"]):
        r = client.post("/items", json={"items": [{"item_id": f"i{n}"} for n in range(10)]})
        assert r.status_code == 200, r.text
        yield client, keys


def refused(r: Any, *where: str) -> str:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"}
    for w in where:
        assert w in body["detail"], (w, body["detail"])
    return body["detail"]


@pytest.mark.parametrize("field", ["user_id", "item_id"])
def test_nul_in_interaction_ids_is_422_naming_the_record(api: Any, field: str) -> None:
    client, _ = api
    records = [{"user_id": "u1", "item_id": "i1"}, {"user_id": "u2", "item_id": "i2"}]
    records[1][field] = "bad\x00id"
    detail = refused(client.post("/interactions", json={"interactions": records}),
                     f"interactions.1.{field}")
    assert "U+0000" in detail


def test_control_characters_and_surrogates_in_ids(api: Any) -> None:
    client, _ = api
    for bad in ("a\x01b", "a\x7fb", "tab\there"):
        r = client.post("/interactions", json={"interactions": [{"user_id": bad, "item_id": "i1"}]})
        refused(r, "interactions.0.user_id")
    # a lone surrogate (valid JSON escape, not encodable as UTF-8)
    raw = b'{"interactions": [{"user_id": "x\\ud800", "item_id": "i1"}]}'
    r = client.post("/interactions", content=raw, headers={"content-type": "application/json"})
    refused(r, "interactions.0.user_id")


def test_nul_in_item_fields_is_422_naming_the_item_and_field(api: Any) -> None:
    client, _ = api
    cases: list[tuple[dict[str, Any], str]] = [
        ({"item_id": "x\x00"}, "items.1.item_id"),
        ({"item_id": "ok", "title": "a\x00b"}, "items.1.title"),
        ({"item_id": "ok", "categories": ["fine", "b\x00d"]}, "items.1.categories.1"),
        ({"item_id": "ok", "metadata": {"brand": "a\x00"}}, "items.1.metadata"),
        ({"item_id": "ok", "metadata": {"k\x00": 1}}, "items.1.metadata"),
        ({"item_id": "ok", "metadata": {"deep": [{"s": "\x00"}]}}, "deep.0.s"),
        ({"item_id": "ok", "content": {"text": {"text": "\x00"}}}, "items.1.content.text.text"),
    ]
    for item, where in cases:
        r = client.post("/items", json={"items": [{"item_id": "i1"}, item]})
        refused(r, where)
    # text keeps its ordinary whitespace
    r = client.post("/items", json={"items": [{"item_id": "i1", "title": "a\tb\nc\r"}]})
    assert r.status_code == 200, r.text
    assert client.get("/items/i1").json()["title"] == "a\tb\nc\r"


def test_nul_in_patch_and_retrain_note(api: Any) -> None:
    client, keys = api
    refused(client.patch("/items/i1", json={"title": "t\x00"}), "title")
    refused(client.patch("/items/i1", json={"categories": ["\x00"]}), "categories.0")
    # a label the dataset bundle cannot write would fail every later retrain
    refused(client.patch("/items/i1", json={"categories": ["a|b"]}), "categories", "'|'")
    refused(client.patch("/items/i1", json={"categories": [""]}), "categories")
    r = client.post("/retrain", json={"note": "n\x00"}, headers={"X-API-Key": keys["admin"]})
    refused(r, "note")


@pytest.mark.parametrize(
    "path,where",
    [
        ("/items/a%00b", "item_id"),
        ("/items/a%00b/similar", "item_id"),
        ("/jobs/a%00b", "job_id"),
        ("/models/a%00b", "version"),
        ("/users?prefix=a%00", "prefix"),
        ("/users/a%00b/recommendations", "user_id"),
        ("/users/a%01b/recommendations", "user_id"),
    ],
)
def test_nul_in_path_and_query_is_422_naming_the_parameter(api: Any, path: str, where: str) -> None:
    client, _ = api
    refused(client.get(path), where)


def test_patch_path_with_nul(api: Any) -> None:
    client, _ = api
    refused(client.patch("/items/a%00b", json={"hidden": True}), "item_id")


@pytest.mark.parametrize(
    "path,where",
    [
        (f"/jobs?offset={BIG}", "offset"),
        (f"/jobs?offset={2**63}", "offset"),
        (f"/reliability/histogram?min_positives={BIG}", "min_positives"),
        (f"/reliability?modality=image&min_positives={BIG}", "min_positives"),
        (f"/users/u1/recommendations?offset={BIG}", "offset"),
    ],
)
def test_integers_beyond_64_bits_in_queries(api: Any, path: str, where: str) -> None:
    client, _ = api
    refused(client.get(path), where)


def test_integer_limits_of_the_timestamp(api: Any) -> None:
    client, _ = api
    for ts in (BIG, 2**63, -(2**63) - 1):
        r = client.post("/interactions", json={"interactions": [
            {"user_id": "u", "item_id": "i1"}, {"user_id": "u", "item_id": "i2", "timestamp": ts},
        ]})  # fmt: skip
        refused(r, "interactions.1.timestamp")
    r = client.post("/interactions", json={"interactions": [
        {"user_id": "u", "item_id": "i1", "timestamp": 2**63 - 1},
    ]})  # fmt: skip
    assert r.status_code == 201, r.text


def raw_post(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity", "1e39", "-3.5e38"])
def test_non_finite_or_float32_overflowing_weights(api: Any, weight: str) -> None:
    client, _ = api
    text = (
        '{"interactions": [{"user_id": "u", "item_id": "i1"},'
        f' {{"user_id": "u", "item_id": "i2", "weight": {weight}}}]}}'
    )
    refused(raw_post(client, "/interactions", text), "interactions.1.weight")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "3.5e38", "-1e300"])
def test_bad_vector_values_name_item_modality_and_position(api: Any, value: str) -> None:
    client, _ = api
    vec = ", ".join(["0.5"] * 5 + [value] + ["0.1"] * 2)
    text = (
        '{"items": [{"item_id": "i1"}, {"item_id": "i2", "content": {"image": {"vector": ['
        + vec
        + "]}}}]}"
    )
    detail = refused(raw_post(client, "/items", text), "items.1.content.image.vector", "value 5")
    assert "float32" in detail or "finite" in detail


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e39", "18446744073709551616"])
def test_bad_metadata_numbers(api: Any, value: str) -> None:
    client, _ = api
    text = '{"items": [{"item_id": "i3", "metadata": {"price": [1, ' + value + "]}}]}"
    refused(raw_post(client, "/items", text), "items.0.metadata", "price.1")


def test_metadata_nested_too_deep(api: Any) -> None:
    client, _ = api
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    refused(client.post("/items", json={"items": [{"item_id": "i3", "metadata": deep}]}),
            "nested deeper")


def test_valid_values_still_stored(api: Any) -> None:
    client, _ = api
    meta = {"price": 3.4e38, "count": 2**63 - 1, "tags": ["a\tb"], "nested": {"x": None}}
    vec = [3.4e38, -1e-30] + [0.0] * 6
    r = client.post("/items", json={"items": [
        {"item_id": "i4", "metadata": meta, "content": {"image": {"vector": vec}}},
    ]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert client.get("/items/i4").json()["metadata"] == meta


# -- key before body, body limit ----------------------------------------------------------------
def test_malformed_body_without_a_key_is_401(api: Any) -> None:
    client, keys = api
    anon = {"X-API-Key": ""}
    for path in ("/interactions", "/items", "/retrain"):
        r = client.post(path, content=b"{not json", headers={**anon, "content-type":
                                                                "application/json"})
        assert r.status_code == 401, (path, r.status_code, r.text)
        assert r.json()["error"] == "unauthorized"
    r = client.patch("/items/i1", content=b"[[[", headers=anon)
    assert r.status_code == 401
    # a read key on a write route: 403, still before the body
    r = client.post("/interactions", content=b"{", headers={"X-API-Key": keys["read"]})
    assert r.status_code == 403
    # with the right key the malformed body is the problem
    r = client.post("/interactions", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_body_over_the_limit_is_413_json(api: Any) -> None:
    client, _ = api
    records = [{"user_id": f"user-{n:06d}", "item_id": "i1"} for n in range(3000)]
    body = orjson.dumps({"interactions": records})
    assert len(body) > 64 * 1024
    r = client.post("/interactions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large" and "MARGO_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        for n in range(0, len(body), 4096):
            yield body[n : n + 4096]

    r = client.post("/interactions", content=chunks(), headers={"content-type":
                                                                "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    # under the limit: fine
    small = orjson.dumps({"interactions": records[:100]})
    r = client.post("/interactions", content=small, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text


def test_escaped_exception_is_a_json_500_that_stays_inside_the_app() -> None:
    """raise_server_exceptions=True: the test client re-raises whatever reaches the server."""
    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_middleware(LimitBody, max_bytes=10)
    app.add_middleware(ObserveRequests, metrics=False, log_requests=False)
    with TestClient(app, raise_server_exceptions=True) as client:
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json() == {"error": "internal", "detail": "internal server error (RuntimeError)"}
        assert "x-request-id" in r.headers
        r = client.post("/boom", content=b"x" * 11)
        assert r.status_code == 413 and r.headers["connection"] == "close"
