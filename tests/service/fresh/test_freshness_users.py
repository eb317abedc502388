"""Users' queries are folded in from the interactions they post (service/fresh/): an unknown
user gets ``fold-in``, a known user's page moves at once; folds are stored in SQL per model
version, held in a bounded LRU, and a new model version folds again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.session import Database
from service.db.tables import FoldedUser
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.fresh.helpers import rec_ids
from tests.service.jobs.helpers import api_key

Live = tuple[TestClient, dict, dict]


def model_of(client: TestClient):
    return client.app.state.margo.registry.current


def post(client: TestClient, write: dict, user: str, items: list[str]) -> None:
    records = [{"user_id": user, "item_id": i} for i in items]
    r = client.post("/interactions", json={"interactions": records}, headers=write)
    assert r.status_code == 201, r.text


def folded_rows(client: TestClient) -> list[tuple[str, int, int]]:
    db = Database(client.app.state.margo.settings.database_url)
    try:
        with db.session() as session:
            stmt = select(FoldedUser.model_version, FoldedUser.items, FoldedUser.last_interaction)
            return [tuple(r) for r in session.execute(stmt).all()]
    finally:
        db.dispose()


def cluster_items(client: TestClient, user: str, n: int) -> list[str]:
    """Items a known user's trained query ranks highest: a coherent taste to give a newcomer."""
    return rec_ids(client, user, k=n)


def test_unknown_user_with_interactions_gets_fold_in(live: Live) -> None:
    client, _, write = live
    popular = client.get("/users/newcomer/recommendations", params={"k": 10}).json()
    assert popular["strategy"] == "popular" and popular["fold_in"] is None
    liked = cluster_items(client, "3", 5)
    post(client, write, "newcomer", liked[:3])
    page = client.get("/users/newcomer/recommendations", params={"k": 10}).json()
    assert page["strategy"] == "fold-in"
    assert page["fold_in"] == {"interactions": 3, "prior": "none"}
    got = [i["item_id"] for i in page["items"]]
    assert not set(liked[:3]) & set(got)  # seen items are still excluded
    assert got != [i["item_id"] for i in popular["items"]]
    # personal to what they liked: the page keeps to the liked items' taste cluster (the tiny
    # data's categories) more than the popular list does (the fold-in rule: users.py)
    model = model_of(client)

    def share(items: list[str]) -> int:
        meta = model.bundle.item_meta
        taste = {meta[model.row_of(i)]["categories"][0] for i in liked[:3]}
        return sum(meta[model.row_of(i)]["categories"][0] in taste for i in items[:10])

    others = [i["item_id"] for i in popular["items"] if i["item_id"] not in liked[:3]]
    assert share(got) >= 9 and share(got) > share(others), (liked, got)
    first = page["items"][0]
    assert first["modalities"] is not None
    assert abs(sum(t["contribution"] for t in first["modalities"].values()) - first["score"]) < 1e-6
    # the query equals the fold of the math over the same items (no second formula here)
    rows = np.asarray([model.row_of(i) for i in liked[:3]])
    want = model.user_folder.fold_in(rows[::-1])
    got_q = model.users.get("newcomer").query
    np.testing.assert_allclose(got_q, want, rtol=1e-5, atol=1e-6)
    # stored with the model version, recomputed on write (not on read)
    assert folded_rows(client) == [(model.version, 3, folded_rows(client)[0][2])]


def test_new_interactions_change_a_known_users_page(live: Live) -> None:
    client, _, write = live
    model = model_of(client)
    before = rec_ids(client, "5", k=10)
    # the user takes to items another user (of other tastes) loves
    other = next(str(u) for u in range(6, 120) if rec_ids(client, str(u), k=3)[0] not in before)
    theirs = rec_ids(client, other, k=6)
    post(client, write, "5", theirs[:4])
    page = client.get("/users/5/recommendations", params={"k": 10}).json()
    assert page["strategy"] == "personal" and page["fold_in"]["prior"] == "trained"
    after = [i["item_id"] for i in page["items"]]
    assert after != [i for i in before if i not in theirs[:4]][:10]  # not only the seen removed
    ptr = model.arrays["seen_indptr"]
    row = model.bundle.user_index("5")
    assert page["fold_in"]["interactions"] >= 4
    assert page["fold_in"]["interactions"] <= 4 + int(ptr[row + 1] - ptr[row])
    # a user with no interactions since training keeps the trained query, no SQL row
    same = client.get("/users/7/recommendations", params={"k": 10}).json()
    assert same["strategy"] == "personal" and same["fold_in"] is None


def test_a_second_post_refolds_and_drops_cached_pages(live: Live) -> None:
    client, _, write = live
    liked = cluster_items(client, "9", 6)
    post(client, write, "n2", liked[:1])
    one = client.get("/users/n2/recommendations", params={"k": 10}).json()
    assert one["fold_in"]["interactions"] == 1
    post(client, write, "n2", liked[1:3])
    three = client.get("/users/n2/recommendations", params={"k": 10}).json()
    assert three["fold_in"]["interactions"] == 3
    assert [i["item_id"] for i in three["items"]] != [i["item_id"] for i in one["items"]]
    assert len(folded_rows(client)) == 1  # one row per (user, version), replaced


def test_folded_users_are_bounded_and_reported(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    settings = job_settings(foldin_max_users=2)
    write = api_key(settings, "write")
    for client in start_client(settings):
        liked = cluster_items(client, "1", 3)
        for n in range(4):
            post(client, write, f"cap{n}", liked[:2])
            assert client.get(f"/users/cap{n}/recommendations").json()["strategy"] == "fold-in"
        model = model_of(client)
        assert len(model.users) == 2 and model.users.evicted >= 2
        metrics = client.get("/metrics").text
        assert "margo_foldin_users 2.0" in metrics and "margo_foldin_users_capacity 2.0" in metrics
        # an evicted user comes back (from its SQL row) on their next request
        assert model.users.get("cap0") is None
        page = client.get("/users/cap0/recommendations", params={"k": 5}).json()
        assert page["strategy"] == "fold-in" and model.users.get("cap0") is not None


def test_a_new_model_version_folds_users_again(live: Live, tmp_path: Path) -> None:
    import shutil

    client, admin, write = live
    old = model_of(client)
    liked = cluster_items(client, "2", 3)
    post(client, write, "drifter", liked)
    first = client.get("/users/drifter/recommendations").json()
    assert first["strategy"] == "fold-in" and [r[0] for r in folded_rows(client)] == [old.version]
    copy = shutil.copytree(old.bundle.path, tmp_path / "models" / "tiny-again")
    client.app.state.margo.registry.register(copy)
    r = client.post("/models/tiny-again/activate", headers=admin)
    assert r.status_code == 200, r.text
    assert folded_rows(client) == []  # the old version's folds are dropped at activation
    again = client.get("/users/drifter/recommendations").json()
    assert again["model_version"] == "tiny-again" and again["strategy"] == "fold-in"
    assert [i["item_id"] for i in again["items"]] == [i["item_id"] for i in first["items"]]
    assert [r[0] for r in folded_rows(client)] == ["tiny-again"]  # folded lazily on that read


def test_interactions_with_an_item_before_it_is_folded_count_once_it_is(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    from tests.service.fresh.helpers import content_of

    client, _, write = live
    content = content_of(tiny_model[0], model_of(client).bundle.item_ids[10])
    half = {"item_id": "late", "content": {"image": content["image"]}}  # text still missing
    assert client.post("/items", json={"items": [half]}, headers=write).json()["folded"] == []
    post(client, write, "early-bird", ["late"])
    assert client.get("/users/early-bird/recommendations").json()["strategy"] == "popular"
    rest = {"item_id": "late", "content": {"text": content["text"]}}
    r = client.post("/items", json={"items": [rest]}, headers=write)
    assert r.status_code == 200 and r.json()["folded"] == ["late"], r.text
    page = client.get("/users/early-bird/recommendations").json()
    assert page["strategy"] == "fold-in" and page["fold_in"]["interactions"] == 1
    assert "late" not in [i["item_id"] for i in page["items"]]  # seen: excluded
