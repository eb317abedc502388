"""Interactions posted for a folded item move its vector (service/fresh/sync.py, the math in
trainer/foldin/interactions.py), in the process that took them and in every other one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.settings import Settings
from tests.service.fresh.helpers import FRESH, content_of, eventually, new_item, two_apps
from trainer.bundle import load_bundle, write_bundle
from trainer.bundle_foldin import USER_OUT
from trainer.foldin import ItemUsers, fold_in_items, has_user_out
from trainer.manifest import MANIFEST

POSTERS = ["0", "5", "9", "14", "21"]  # users the tiny model trained


@pytest.fixture
def settings_without_n(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path], tmp_path: Path
) -> Callable[..., Settings]:
    """job_settings whose model is the tiny bundle without ``foldin_user_out``, as FREEDOM
    bundles exported before it was written are."""
    bundle = load_bundle(tiny_model[1])
    assert USER_OUT in bundle.arrays  # the exporter writes it
    raw = json.loads((bundle.path / MANIFEST).read_text())
    arrays = {k: v for k, v in bundle.arrays.items() if k != USER_OUT}
    write_bundle(tmp_path / "models" / "tiny", manifest=raw, arrays=arrays,
                 user_ids=bundle.user_ids, item_ids=bundle.item_ids, item_meta=bundle.item_meta)
    return job_settings


def fresh_score(client, user: str) -> float:
    page = client.get(f"/users/{user}/recommendations", params={"category": FRESH}).json()
    assert [i["item_id"] for i in page["items"]] == ["posted"], page
    return float(page["items"][0]["score"])


def folded_vector(client, item_id: str) -> np.ndarray:
    model = client.app.state.margo.registry.current
    return model.vectors_of(np.array([model.row_of(item_id)]))[0].copy()


def run(settings: Settings, data_dir: Path) -> None:
    with two_apps(settings) as (a, b, write, _):
        model = a.app.state.margo.registry.current
        assert has_user_out(model.bundle) and USER_OUT in model.bundle.arrays
        like = model.bundle.item_ids[8]
        body = {"items": [new_item(data_dir, "posted", like)]}
        assert a.post("/items", json=body, headers=write).json()["folded"] == ["posted"]
        b_model = b.app.state.margo.registry.current
        eventually(lambda: b_model.row_of("posted") is not None, what="b serves the item")
        before = folded_vector(a, "posted")
        np.testing.assert_array_equal(folded_vector(b, "posted"), before)
        score_a = fresh_score(a, "3")
        prov = a.get("/items/posted").json()["fold_in"]["provenance"]
        assert prov["interactions"] == 0
        # five users the model trained post the item (one of them twice: counted once)
        records = [{"user_id": u, "item_id": "posted"} for u in [*POSTERS, POSTERS[0]]]
        records[-1]["event_type"] = "purchase"
        r = a.post("/interactions", json={"interactions": records}, headers=write)
        assert r.status_code == 201, r.text
        # a folds it again from them (after answering): the trainer's fold with those users
        after = folded_vector(a, "posted")
        assert not np.allclose(after, before)
        content = body["items"][0]["content"]
        feats = {m: np.asarray([content[m]["vector"]], np.float32) for m in content}
        rows = np.array([model.bundle.user_index(u) for u in POSTERS])
        want = fold_in_items(model.bundle, feats, users=[ItemUsers(rows)]).vectors[0]
        np.testing.assert_allclose(after, want, rtol=1e-5, atol=1e-6)
        assert a.get("/items/posted").json()["fold_in"]["provenance"]["interactions"] == 5
        # user 3 (not a poster) sees its score move, in a at once and in b after its poll
        assert fresh_score(a, "3") != pytest.approx(score_a)
        eventually(lambda: np.allclose(folded_vector(b, "posted"), after), what="b applies it")
        assert fresh_score(b, "3") == pytest.approx(fresh_score(a, "3"))
        assert b.get("/items/posted").json()["fold_in"]["provenance"]["interactions"] == 5
        # a user the model never saw counts by their folded query once they have one
        seeds = [i for i in model.bundle.item_ids[:3]]
        r = a.post("/interactions", headers=write, json={"interactions": [
            {"user_id": "newcomer", "item_id": i} for i in seeds]})  # fmt: skip
        assert a.get("/users/newcomer/recommendations").json()["strategy"] == "fold-in"
        r = a.post("/interactions", headers=write,
                   json={"interactions": [{"user_id": "newcomer", "item_id": "posted"}]})
        assert a.get("/items/posted").json()["fold_in"]["provenance"]["interactions"] == 6
        assert not np.allclose(folded_vector(a, "posted"), after)


def test_posted_interactions_move_a_folded_items_vector_sqlite(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    run(job_settings(), tiny_model[0])


def test_posted_interactions_move_a_folded_items_vector_postgresql(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path], postgres_db: str
) -> None:
    run(job_settings(database_url=postgres_db), tiny_model[0])


def test_an_item_folded_after_its_interactions_takes_them(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    """Interactions posted while the item waited for content count when it is folded."""
    with two_apps(job_settings()) as (a, _, write, _):
        content = content_of(tiny_model[0], a.app.state.margo.registry.current.bundle.item_ids[10])
        half = {"item_id": "late", "content": {"image": content["image"]}}
        assert a.post("/items", json={"items": [half]}, headers=write).json()["folded"] == []
        r = a.post("/interactions", headers=write, json={"interactions": [
            {"user_id": u, "item_id": "late"} for u in POSTERS[:2]]})  # fmt: skip
        assert r.status_code == 201
        rest = {"item_id": "late", "content": {"text": content["text"]}}
        assert a.post("/items", json={"items": [rest]}, headers=write).json()["folded"] == ["late"]
        assert a.get("/items/late").json()["fold_in"]["provenance"]["interactions"] == 2


def test_a_bundle_without_n_folds_items_from_content_only(
    settings_without_n: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    with two_apps(settings_without_n()) as (a, _, write, _):
        model = a.app.state.margo.registry.current
        assert not has_user_out(model.bundle)
        body = {"items": [new_item(tiny_model[0], "plain", model.bundle.item_ids[8])]}
        assert a.post("/items", json=body, headers=write).json()["folded"] == ["plain"]
        before = folded_vector(a, "plain")
        r = a.post("/interactions", headers=write,
                   json={"interactions": [{"user_id": u, "item_id": "plain"} for u in POSTERS]})
        assert r.status_code == 201
        np.testing.assert_array_equal(folded_vector(a, "plain"), before)
        assert a.get("/items/plain").json()["fold_in"]["provenance"]["interactions"] == 0
