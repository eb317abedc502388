"""GET /users: find users by id prefix, with whether the live model knows them."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_prefix_search_is_ordered_limited_and_says_who_is_personal(client: TestClient) -> None:
    body = client.get("/users", params={"prefix": "u1", "limit": 3}).json()
    users = body["users"]
    ids = [u["user_id"] for u in users]
    assert ids == sorted(ids) and len(ids) == 3 and all(i.startswith("u1") for i in ids)
    assert all(u["personal"] for u in users)
    assert all(u["interactions"] == 0 for u in users)  # none ingested through the API yet


def test_a_new_user_is_found_with_its_interactions_and_not_personal(client: TestClient) -> None:
    records = [
        {"user_id": "new-user", "item_id": "i1", "timestamp": 1_800_000_000},
        {"user_id": "new-user", "item_id": "i2", "timestamp": 1_800_000_001},
    ]
    assert client.post("/interactions", json={"interactions": records}).status_code == 201
    users = client.get("/users", params={"prefix": "new"}).json()["users"]
    assert users == [{"user_id": "new-user", "personal": False, "interactions": 2}]


def test_like_wildcards_match_literally(client: TestClient) -> None:
    assert client.get("/users", params={"prefix": "%"}).json()["users"] == []
    assert client.get("/users", params={"prefix": "u_"}).json()["users"] == []


def test_limit_out_of_range_is_422_naming_it(client: TestClient) -> None:
    r = client.get("/users", params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
