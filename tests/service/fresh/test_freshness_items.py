"""New items are folded into the live model at once (service/fresh/): recommended, similar,
filtered, explained as cold with their provenance; 422 names item and modality; a retrain
replaces their folded vectors; text goes through an encode job."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.db.session import Database
from service.db.tables import FoldedItem, Item, ItemFeature
from tests.service.fresh.helpers import FRESH, content_of, new_item, rec_ids
from tests.service.jobs.helpers import FAST, wait_job

Live = tuple[TestClient, dict, dict]


def model_of(client: TestClient):  # the app's live model
    return client.app.state.margo.registry.current


def test_a_new_item_is_folded_in_and_served_at_once(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, _, write = live
    model = model_of(client)
    like = model.bundle.item_ids[3]
    body = {"items": [new_item(tiny_model[0], "new-1", like)]}
    r = client.post("/items", json=body, headers=write)
    assert r.status_code == 200, r.text
    assert r.json()["folded"] == ["new-1"] and r.json()["pending"] == {}
    # GET /items: cold, folded, with its nearest catalogue items per modality
    item = client.get("/items/new-1").json()
    assert item["cold"] is True and item["fold_in"]["status"] == "folded"
    prov = item["fold_in"]["provenance"]
    assert prov["model_version"] == model.version
    assert set(prov["neighbours"]) == {"image", "text"}
    assert prov["neighbours"]["image"][0]["item_id"] == like  # its content is like's, nearly
    assert item["model"]["positives"] == 0 and item["model"]["low_confidence"] is True
    assert set(item["model"]["weights"]) == set(model.channels)
    # recommended, with the category filter (it is the only item with that label)
    page = client.get("/users/0/recommendations", params={"category": FRESH}).json()
    assert [i["item_id"] for i in page["items"]] == ["new-1"]
    first = page["items"][0]
    assert first["cold"] is True and first["fold_in"]["model_version"] == model.version
    assert first["title"] == "New new-1"
    terms = first["modalities"]
    assert abs(sum(t["contribution"] for t in terms.values()) - first["score"]) < 1e-6
    # similar items of the new item, and the new item among the neighbours of its twin
    similar = client.get("/items/new-1/similar", params={"k": 5}).json()["items"]
    assert len(similar) == 5 and "new-1" not in [s["item_id"] for s in similar]
    twin = client.get(f"/items/{like}/similar", params={"k": 10}).json()["items"]
    assert "new-1" in [s["item_id"] for s in twin]
    assert next(s for s in twin if s["item_id"] == "new-1")["cold"] is True


def test_a_new_item_reaches_the_unfiltered_ranking_of_users_who_like_its_twin(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, _, write = live
    model = model_of(client)
    users = [str(n) for n in range(0, 120, 3) if model.bundle.user_index(str(n)) is not None]
    tops = {u: rec_ids(client, u, k=1)[0] for u in users}
    like = max(set(tops.values()), key=list(tops.values()).count)  # many users' top item
    fans = [u for u, top in tops.items() if top == like]
    body = {"items": [new_item(tiny_model[0], "twin", like)]}
    r = client.post("/items", json=body, headers=write)
    assert r.status_code == 200, r.text
    hits = [u for u in fans if "twin" in rec_ids(client, u, k=20)]
    assert len(hits) >= max(1, len(fans) // 2), (fans, hits)


def test_hiding_and_relabelling_a_folded_item_apply(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, _, write = live
    like = model_of(client).bundle.item_ids[5]
    client.post("/items", json={"items": [new_item(tiny_model[0], "n2", like)]}, headers=write)
    assert rec_ids(client, "1", category=FRESH) == ["n2"]
    assert client.patch("/items/n2", json={"hidden": True}, headers=write).status_code == 200
    assert rec_ids(client, "1", category=FRESH) == []
    client.patch("/items/n2", json={"hidden": False, "categories": ["other"]}, headers=write)
    assert rec_ids(client, "1", category=FRESH) == []
    assert rec_ids(client, "1", category="other") == ["n2"]


def test_an_item_with_part_of_its_content_waits(live: Live, tiny_model: tuple[Path, Path]) -> None:
    client, _, write = live
    like = model_of(client).bundle.item_ids[2]
    content = content_of(tiny_model[0], like)
    item = {"item_id": "half", "content": {"image": content["image"]}}
    r = client.post("/items", json={"items": [item]}, headers=write)
    assert r.status_code == 200 and r.json()["folded"] == []
    assert "text" in r.json()["pending"]["half"]
    status = client.get("/items/half").json()["fold_in"]
    assert status["status"] == "waiting" and "'text'" in status["detail"]
    # the rest of its content arrives: folded now
    item = {"item_id": "half", "content": {"text": content["text"]}}
    assert client.post("/items", json={"items": [item]}, headers=write).json()["folded"] == ["half"]
    assert client.get("/items/half").json()["fold_in"]["status"] == "folded"


def test_stored_content_the_model_cannot_take_is_422_naming_item_and_modality(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, _, write = live
    model = model_of(client)
    settings = client.app.state.margo.settings
    content = content_of(tiny_model[0], model.bundle.item_ids[1])
    r = client.post("/items", json={"items": [{"item_id": "odd"}]}, headers=write)
    assert r.status_code == 200
    db = Database(settings.database_url)
    try:  # a vector of another size, stored before (e.g. for an older model)
        with db.session() as session:
            item_id = session.scalar(select(Item.id).where(Item.external_id == "odd"))
            bad = np.ones(7, np.float32).tobytes()
            session.add(ItemFeature(item_id=item_id, modality="image", dim=7, vector=bad))
        body = {"items": [{"item_id": "ok"}, {"item_id": "odd", "title": "T",
                                               "content": {"text": content["text"]}}]}  # fmt: skip
        r = client.post("/items", json=body, headers=write)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert detail.startswith("items.1.content.image:") and "'odd'" in detail
        assert "7 values" in detail and "16" in detail
        # nothing of the batch was stored
        assert client.get("/items/ok").status_code == 404
        assert client.get("/items/odd").json()["title"] is None
        with db.session() as session:
            assert session.scalars(select(FoldedItem)).all() == []
    finally:
        db.dispose()


def test_bad_vectors_are_422_naming_item_and_modality(live: Live) -> None:
    client, _, write = live
    body = {"items": [{"item_id": "x", "content": {"image": {"vector": [1.0, 2.0]}}}]}
    r = client.post("/items", json=body, headers=write)
    assert r.status_code == 422
    assert r.json()["detail"].startswith("items.0.content.image.vector: has 2 values")
    body = {"items": [{"item_id": "x", "content": {"sound": {"vector": [1.0]}}}]}
    r = client.post("/items", json=body, headers=write)
    assert r.status_code == 422 and "items.0.content.sound" in r.json()["detail"]


def test_text_content_is_encoded_by_a_job_then_folded(
    live: Live, tiny_model: tuple[Path, Path], fake_encoder: list[list[str]]
) -> None:
    client, admin, write = live
    like = model_of(client).bundle.item_ids[4]
    image = content_of(tiny_model[0], like)["image"]
    item = {"item_id": "texty", "categories": [FRESH],
            "content": {"image": image, "text": {"text": "a fine new thing"}}}  # fmt: skip
    r = client.post("/items", json={"items": [item]}, headers=write)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["folded"] == [] and body["job_id"]
    assert "encoded" in body["pending"]["texty"] and body["job_id"] in body["pending"]["texty"]
    job = wait_job(client, body["job_id"], admin)
    assert job["status"] == "succeeded", job
    assert job["kind"] == "encode" and job["metrics"]["folded"] == ["texty"]
    assert fake_encoder == [["a fine new thing"]]
    assert client.get("/items/texty").json()["fold_in"]["status"] == "folded"
    assert rec_ids(client, "2", category=FRESH) == ["texty"]


def test_a_retrain_replaces_folded_vectors_with_learned_ones(
    live: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, admin, write = live
    before = model_of(client)
    like = before.bundle.item_ids[6]
    items = [new_item(tiny_model[0], f"r{n}", like) for n in range(2)]
    assert client.post("/items", json={"items": items}, headers=write).json()["folded"] == [
        "r0", "r1",
    ]  # fmt: skip
    records = [{"user_id": str(u), "item_id": "r0", "timestamp": 1_800_000_000}
               for u in range(30)]  # fmt: skip
    r = client.post("/interactions", json={"interactions": records}, headers=write)
    assert r.status_code == 201
    r = client.post("/retrain", json={"hyperparameters": FAST}, headers=admin)
    job = wait_job(client, r.json()["job_id"], admin, timeout=300)  # export scores reliability
    assert job["status"] == "succeeded", job
    after = model_of(client)
    assert after.version == job["result_version"] != before.version
    learned = client.get("/items/r0").json()
    assert learned["cold"] is False and learned["fold_in"] is None
    assert learned["model"]["model_version"] == after.version
    assert learned["model"]["positives"] > 0
    # the folded rows of the old version are gone; the model learned both items
    db = Database(client.app.state.margo.settings.database_url)
    try:
        with db.session() as session:
            rows = session.execute(select(FoldedItem.model_version)).all()
    finally:
        db.dispose()
    assert all(v == after.version for (v,) in rows)
    assert after.row_of("r0") is not None and after.row_of("r0") < after.n_items
    assert len(after.folded) == 0


def test_metrics_report_folded_items_and_users(live: Live, tiny_model: tuple[Path, Path]) -> None:
    client, _, write = live
    like = model_of(client).bundle.item_ids[7]
    client.post("/items", json={"items": [new_item(tiny_model[0], "m1", like)]}, headers=write)
    client.post("/interactions", json={"interactions": [{"user_id": "newbie", "item_id": "m1"}]},
                headers=write)  # fmt: skip
    text = client.get("/metrics").text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("margo_foldin_")
    }
    assert values["margo_foldin_items"] == 1 and values["margo_foldin_items_bytes"] > 0
    assert values["margo_foldin_users"] == 1 and values["margo_foldin_users_bytes"] > 0
    assert values["margo_foldin_items_capacity"] == 10_000


def test_an_evicted_items_slot_carries_nothing_of_it_to_the_next(
    job_settings, tiny_model: tuple[Path, Path]
) -> None:
    """At MARGO_FOLDIN_MAX_ITEMS the item folded longest ago leaves; the row its slot gave it
    must leave with it: its users' seen rows and its labels are not the next item's."""
    from tests.service.fresh.helpers import two_apps

    with two_apps(job_settings(foldin_max_items=2)) as (a, _, write, _):
        model = model_of(a)
        ids = model.bundle.item_ids

        def fold(item_id: str, like: str, label: str) -> int:
            body = {"items": [new_item(tiny_model[0], item_id, like, categories=[label])]}
            assert a.post("/items", json=body, headers=write).json()["folded"] == [item_id]
            return model.row_of(item_id)

        first = fold("first", ids[3], "old-label")
        records = [{"user_id": "fan", "item_id": "first"}, {"user_id": "fan", "item_id": ids[0]}]
        assert a.post("/interactions", json={"interactions": records},
                      headers=write).status_code == 201  # fmt: skip
        assert first in model.overlay.rows("fan").tolist()
        fold("second", ids[4], "new-label")
        third = fold("third", ids[5], "new-label")  # "first" leaves
        assert model.row_of("first") is None and len(model.folded) == 2
        assert third not in model.overlay.rows("fan").tolist()  # the fan never saw "third"
        assert first not in model.overlay.rows("fan").tolist()
        assert rec_ids(a, "fan", category="old-label") == []
        assert set(rec_ids(a, "fan", category="new-label")) == {"second", "third"}


def test_a_slot_taken_again_in_the_call_that_freed_it_is_scrubbed_first(
    job_settings, tiny_model: tuple[Path, Path]
) -> None:
    """Past the margin of waiting slots (20 items folded in one call at capacity 20) a slot
    is freed and taken again at once: its old item's users and labels still leave it."""
    from tests.service.fresh.helpers import two_apps

    with two_apps(job_settings(foldin_max_items=20)) as (a, _, write, _):
        model = model_of(a)
        ids = model.bundle.item_ids

        def post(prefix: str, label: str) -> None:
            body = {"items": [new_item(tiny_model[0], f"{prefix}{n}", ids[n], categories=[label])
                              for n in range(20)]}  # fmt: skip
            assert len(a.post("/items", json=body, headers=write).json()["folded"]) == 20

        # the fan's item is known before it is folded: folded first, evicted first
        assert a.post("/items", json={"items": [{"item_id": "old0"}]},
                      headers=write).status_code == 200  # fmt: skip
        records = [{"user_id": "fan", "item_id": "old0"}, {"user_id": "fan", "item_id": ids[0]}]
        assert a.post("/interactions", json={"interactions": records},
                      headers=write).status_code == 201  # fmt: skip
        post("old", "old-label")
        oldest = model.row_of("old0")
        assert oldest in model.overlay.rows("fan").tolist()
        post("new", "new-label")
        taker = model.folded.item_id(oldest)
        assert taker is not None and taker.startswith("new")  # taken again in that call
        assert oldest not in model.overlay.rows("fan").tolist()
        assert rec_ids(a, "fan", category="old-label") == []
        assert taker in rec_ids(a, "fan", category="new-label")
