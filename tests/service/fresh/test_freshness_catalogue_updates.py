"""Interactions posted for a catalogue item move its vector (service/fresh/sync.py
``update_catalogue_items``, the math in trainer/foldin/interactions.py ``updated_catalogue``),
in the process that took them and in every other one; recommendations, explanations and
similar items use the new vector, each item once; a new version starts without updates."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.fresh.items import FoldedItemSet, UpdatedRow
from service.settings import Settings
from tests.service.fresh.helpers import eventually, two_apps
from trainer.bundle import ModelBundle, load_bundle, write_bundle
from trainer.bundle_foldin import USER_OUT
from trainer.foldin import ItemUsers, has_user_out
from trainer.foldin.interactions import ItemEdges
from trainer.manifest import MANIFEST
from trainer.scoring import item_vectors

ALL = {"k": 1000, "exclude_seen": "false", "explain": "true"}
"""Every item of the tiny model (60), seen or not, with the scores split by modality."""


def model_of(client: TestClient):  # the app's live model
    return client.app.state.margo.registry.current


def vector(client: TestClient, item_id: str) -> np.ndarray:
    model = model_of(client)
    return model.vectors_of(np.array([model.row_of(item_id)]))[0].copy()


def scores(client: TestClient, user: str) -> dict[str, float]:
    """The user's score of every item; fails if an item is listed twice."""
    r = client.get(f"/users/{user}/recommendations", params=ALL)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    ids = [i["item_id"] for i in items]
    assert len(ids) == len(set(ids)) == model_of(client).n_items, ids
    for item in items:  # the explanation's split adds up to the score the ranking used
        total = sum(m["contribution"] for m in item["modalities"].values())
        assert total == pytest.approx(item["score"], rel=1e-4, abs=1e-5)
    return {i["item_id"]: float(i["score"]) for i in items}


def similar(client: TestClient, item_id: str) -> dict[str, float]:
    """Every other item's similarity to ``item_id``; fails if one is listed twice."""
    r = client.get(f"/items/{item_id}/similar", params={"k": 1000})
    assert r.status_code == 200, r.text
    ids = [i["item_id"] for i in r.json()["items"]]
    assert len(ids) == len(set(ids)) == model_of(client).n_items - 1 and item_id not in ids
    return {i["item_id"]: float(i["score"]) for i in r.json()["items"]}


def new_users_of(bundle: ModelBundle, row: int, count: int) -> list[str]:
    """``count`` users the model trained who have not seen item ``row``."""
    out = [u for n, u in enumerate(bundle.user_ids) if row not in bundle.seen_items(n)]
    return out[:count]


def expected(bundle: ModelBundle, row: int, users: ItemUsers) -> np.ndarray:
    emb = ItemEdges.from_bundle(bundle).update_items(np.array([row]), [users])
    return item_vectors(emb, np.asarray(bundle.arrays["item_weights"][[row]]))[0]


def foldin_items_metric(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("margo_foldin_updated_items "):
            return float(line.split()[1])
    raise AssertionError("no margo_foldin_updated_items")


def run(settings: Settings) -> None:
    with two_apps(settings) as (a, b, write, _):
        model = model_of(a)
        bundle = model.bundle
        assert has_user_out(bundle)
        row = 11
        target = bundle.item_ids[row]
        posters = new_users_of(bundle, row, 6)
        bystander = next(u for u in new_users_of(bundle, row, 20) if u not in posters)
        trained = bundle.item_vectors()[row]
        np.testing.assert_array_equal(vector(a, target), trained)
        before = scores(a, bystander)
        # five posters (one twice: counted once) and a poster who trained on it (not counted)
        had = next(n for n in range(bundle.n_users) if row in bundle.seen_items(n))
        records = [{"user_id": u, "item_id": target} for u in [*posters[:5], posters[0]]]
        records.append({"user_id": bundle.user_ids[had], "item_id": target})
        r = a.post("/interactions", json={"interactions": records}, headers=write)
        assert r.status_code == 201, r.text
        rows = np.array([bundle.user_index(u) for u in posters[:5]])
        want = expected(bundle, row, ItemUsers(rows))
        np.testing.assert_allclose(vector(a, target), want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(want, trained)
        assert model.folded.updated.provenance[row]["interactions"] == 5
        assert foldin_items_metric(a) == 1
        shown = a.get(f"/items/{target}").json()
        assert shown["cold"] is False and shown["fold_in"]["status"] == "updated", shown
        assert "with 5 user(s)" in shown["fold_in"]["detail"]
        assert a.get(f"/items/{bundle.item_ids[row + 1]}").json()["fold_in"] is None
        # a non-poster's score moves, by the new vector, in a at once and in b after its poll
        after = scores(a, bystander)
        q = model.queries[bundle.user_index(bystander)]
        assert after[target] == pytest.approx(float(want @ q), rel=1e-4, abs=1e-5)
        assert after[target] != pytest.approx(before[target])
        others = [i for i in before if i != target]
        assert [after[i] for i in others] == pytest.approx([before[i] for i in others])
        eventually(lambda: np.allclose(vector(b, target), want, rtol=1e-5, atol=1e-6),
                   what="b applies the update")
        assert scores(b, bystander)[target] == pytest.approx(after[target])
        # the candidate search: each row once, the exact best by the served vectors among them
        served = model.vectors_of(np.arange(model.n_rows))
        for query in (want, trained, -want):
            found = model.search(query.astype(np.float32), 5).tolist()
            assert len(found) == len(set(found)), found
            best = np.lexsort((np.arange(len(served)), -(served @ query)))[:5]
            assert set(best.tolist()) <= set(found), (best, found)
        # similar items: each once, by the new vector, as a neighbour and as the query
        v = bundle.item_vectors()
        near = similar(a, target)
        assert [near[i] for i in others] == pytest.approx(
            [float(v[bundle.item_index(i)] @ want) for i in others], rel=1e-4, abs=1e-5)
        first = bundle.item_ids[0]
        assert similar(a, first)[target] == pytest.approx(float(v[0] @ want), rel=1e-4, abs=1e-5)
        for item_id in (target, first):
            assert similar(b, item_id) == pytest.approx(similar(a, item_id))
        # a user the model never saw counts by their folded query, once they have one
        r = a.post("/interactions", headers=write, json={"interactions": [
            {"user_id": "newcomer", "item_id": i} for i in (*bundle.item_ids[:2], target)]})
        assert r.status_code == 201, r.text
        q_new = model.users.get("newcomer").query.reshape(1, -1)
        want = expected(bundle, row, ItemUsers(rows, user_vectors=q_new))
        np.testing.assert_allclose(vector(a, target), want, rtol=1e-5, atol=1e-6)
        assert model.folded.updated.provenance[row]["interactions"] == 6
        eventually(lambda: np.allclose(vector(b, target), want, rtol=1e-5, atol=1e-6),
                   what="b applies the newcomer's share")
        # a new version (the same bundle, registered again) starts without updates
        copy = Path(settings.model_dir) / "tiny-again"
        shutil.copytree(bundle.path, copy)
        a.app.state.margo.registry.register(copy, activate=True)
        for client in (a, b):
            eventually(lambda c=client: model_of(c).version != model.version,
                       what="the new version is served")
            fresh = model_of(client)
            assert len(fresh.folded.updated) == 0
            np.testing.assert_array_equal(vector(client, target), trained)


def test_posted_interactions_move_a_catalogue_items_vector_sqlite(
    job_settings: Callable[..., Settings],
) -> None:
    run(job_settings())


def test_posted_interactions_move_a_catalogue_items_vector_postgresql(
    job_settings: Callable[..., Settings], postgres_db: str
) -> None:
    run(job_settings(database_url=postgres_db))


def test_a_bundle_without_n_keeps_catalogue_vectors(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle = load_bundle(tiny_model[1])
    raw = json.loads((bundle.path / MANIFEST).read_text())
    arrays = {k: v for k, v in bundle.arrays.items() if k != USER_OUT}
    write_bundle(tmp_path / "models" / "tiny", manifest=raw, arrays=arrays,
                 user_ids=bundle.user_ids, item_ids=bundle.item_ids, item_meta=bundle.item_meta)
    with two_apps(job_settings()) as (a, _, write, _):
        model = model_of(a)
        assert not has_user_out(model.bundle)
        target = model.bundle.item_ids[11]
        before = vector(a, target)
        posters = new_users_of(model.bundle, 11, 5)
        r = a.post("/interactions", headers=write,
                   json={"interactions": [{"user_id": u, "item_id": target} for u in posters]})
        assert r.status_code == 201
        np.testing.assert_array_equal(vector(a, target), before)
        assert len(model.folded.updated) == 0 and foldin_items_metric(a) == 0


def test_updated_items_are_bounded_and_counted() -> None:
    """At most ``capacity`` updated rows (the one updated longest ago falls back to its trained
    vector), counted apart from the folded items: their own length, bytes and evictions
    (/metrics' margo_foldin_updated_items*)."""
    folded = FoldedItemSet(n_items=10, n_channels=2, dim=3, capacity=2)
    bytes_before = folded.nbytes()
    updated_before = folded.updated.nbytes()
    rng = np.random.default_rng(0)

    def row(r: int) -> UpdatedRow:
        return UpdatedRow(r, rng.standard_normal((2, 3)).astype(np.float32),
                          np.array([0.5, 2.0], np.float32), {"interactions": r})

    first = [row(7), row(2)]
    folded.put_updates(first)
    assert len(folded.updated) == 2 and folded.updated.nbytes() > updated_before
    assert len(folded) == 0 and folded.nbytes() == bytes_before  # counted apart
    hit, slots = folded.updated.lookup(np.array([2, 3, 7, 7]))
    assert hit.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(folded.updated.vectors[slots[0]],
                                  item_vectors(first[1].emb[None], first[1].weights[None])[0])
    again = row(7)
    folded.put_updates([again, row(4)])  # 7 again: now the newest; 2 falls back
    assert len(folded.updated) == 2 and folded.updated.evicted == 1 and folded.evicted == 0
    assert folded.updated.index[0].tolist() == [4, 7]
    assert 2 not in folded.updated.provenance
    _, slots = folded.updated.lookup(np.array([7]))
    np.testing.assert_array_equal(folded.updated.emb[slots[0]], again.emb)
