"""POST /interactions: all-or-nothing batches, unknown users created, idempotent re-sends."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db.tables import Interaction, User

REC = "/users/{}/recommendations"


def count(client: TestClient, table: type) -> int:
    with client.app.state.margo.db.session() as session:
        return session.scalar(select(func.count()).select_from(table))


def post(client: TestClient, headers: dict, records: list[dict]):  # noqa: ANN201
    return client.post("/interactions", json={"interactions": records}, headers=headers)


def test_batch_is_stored_and_users_created(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    n0, users0 = count(client, Interaction), count(client, User)
    r = post(
        client,
        write,
        [
            {"user_id": "0", "item_id": "1", "timestamp": 1_800_000_000, "weight": 2.0},
            {"user_id": "brand-new", "item_id": "2"},
        ],
    )
    assert r.status_code == 201 and r.json() == {"accepted": 2, "written": 2, "duplicates": 0}
    assert count(client, Interaction) == n0 + 2 and count(client, User) == users0 + 1


def test_unknown_item_rejects_the_whole_batch(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    n0, users0 = count(client, Interaction), count(client, User)
    records = [{"user_id": f"nobody-{n}", "item_id": "3"} for n in range(5)]
    records[3]["item_id"] = "no-such-item"
    records.append({"user_id": "x", "item_id": "also-missing"})
    r = post(client, write, records)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("interactions.3.item_id") and "no-such-item" in detail
    assert count(client, Interaction) == n0 and count(client, User) == users0  # nothing written


def test_resending_is_idempotent(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    records = [
        {"user_id": "7", "item_id": "4", "timestamp": 1_800_000_001},
        {"user_id": "7", "item_id": "4", "timestamp": 1_800_000_001},  # repeated in the batch
        {"user_id": "7", "item_id": "5"},  # no timestamp: identified by the pair
    ]
    n0 = count(client, Interaction)
    assert post(client, write, records).json() == {"accepted": 3, "written": 2, "duplicates": 1}
    assert post(client, write, records).json() == {"accepted": 3, "written": 0, "duplicates": 3}
    assert count(client, Interaction) == n0 + 2
    # the same pair at another time is another interaction
    again = [{"user_id": "7", "item_id": "4", "timestamp": 1_800_000_002}]
    assert post(client, write, again).json()["written"] == 1


def test_new_interactions_drop_cached_recommendations(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    first = client.get(REC.format("3"), params={"k": 5, "explain": False}).json()["items"]
    cache = client.app.state.margo.cache
    assert client.get(REC.format("3"), params={"k": 5, "explain": False}).status_code == 200
    hits = cache.stats()["hits"]
    assert hits >= 1  # the second request was a cache hit
    post(client, write, [{"user_id": "3", "item_id": first[0]["item_id"]}])
    after = client.get(REC.format("3"), params={"k": 5, "explain": False}).json()["items"]
    assert first[0]["item_id"] not in [it["item_id"] for it in after]
    assert cache.stats()["hits"] == hits  # recomputed, not served from the cache


def test_batch_limits_and_auth(live: tuple[TestClient, dict, dict]) -> None:
    client, _, write = live
    big = [{"user_id": "u", "item_id": "1", "timestamp": t} for t in range(10_001)]
    r = post(client, write, big)
    assert r.status_code == 422 and "interactions" in r.json()["detail"]
    assert post(client, {}, [{"user_id": "u", "item_id": "1"}]).status_code == 401
    ok = post(client, write, big[:10_000])
    assert ok.status_code == 201 and ok.json()["written"] == 10_000


def test_a_stored_batch_is_201_when_the_live_update_cannot_reach_sql(
    live: tuple[TestClient, dict, dict], monkeypatch
) -> None:
    """The rows are committed before the fold/overlay step; SQL failing there is not a 503
    (a retry would resend a stored batch); the poller applies them later."""
    from sqlalchemy.exc import OperationalError

    client, _, write = live
    registry = client.app.state.margo.registry

    def down(_users: list[str]) -> None:
        raise OperationalError("SELECT 1", {}, Exception("PostgreSQL does not answer"))

    monkeypatch.setattr(registry, "interactions_added", down)
    n0 = count(client, Interaction)
    r = post(client, write, [{"user_id": "0", "item_id": "3", "timestamp": 1_800_000_001}])
    assert r.status_code == 201 and r.json()["written"] == 1
    assert count(client, Interaction) == n0 + 1
    monkeypatch.undo()
    registry.poll_once()  # the poller catches up: the item is seen, so excluded
    got = client.get(REC.format("0"), params={"k": 50}).json()["items"]
    assert "3" not in {i["item_id"] for i in got}
