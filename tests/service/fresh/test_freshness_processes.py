"""Every API process serves what another folded in: two app instances (each with its own
registry, live model, cache) on one database, SQLite and PostgreSQL; an IVF index too."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from service.settings import Settings
from tests.service.fresh.helpers import FRESH, eventually, new_item, rec_ids, two_apps


def run_two_processes(settings: Settings, data_dir: Path) -> None:
    with two_apps(settings) as (a, b, write, _):
        like = a.app.state.margo.registry.current.bundle.item_ids[8]
        body = {"items": [new_item(data_dir, "everywhere", like)]}
        r = a.post("/items", json=body, headers=write)
        assert r.status_code == 200 and r.json()["folded"] == ["everywhere"], r.text
        # a folded it and serves it at once; b within its poll interval
        assert rec_ids(a, "4", category=FRESH) == ["everywhere"]
        eventually(lambda: rec_ids(b, "4", category=FRESH) == ["everywhere"], what="b serves it")
        assert b.get("/items/everywhere").json()["fold_in"]["status"] == "folded"
        assert "everywhere" in [i["item_id"] for i in b.get(
            f"/items/{like}/similar", params={"k": 10}).json()["items"]]  # fmt: skip
        # a user unknown to the model posts to a; b answers fold-in from a's stored fold
        seeds = rec_ids(a, "11", k=3)
        records = [{"user_id": "wanderer", "item_id": i} for i in seeds]
        r = a.post("/interactions", json={"interactions": records}, headers=write)
        assert r.status_code == 201
        first = a.get("/users/wanderer/recommendations").json()
        assert first["strategy"] == "fold-in"

        def b_page() -> dict | None:  # the seeds' vectors with the wanderer come with b's poll
            page = b.get("/users/wanderer/recommendations").json()
            same = [i["item_id"] for i in page["items"]] == [i["item_id"] for i in first["items"]]
            return page if page["strategy"] == "fold-in" and same else None

        eventually(b_page, what="b folds the user in and serves a's page")


def test_every_process_serves_folded_items_and_users_sqlite(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    run_two_processes(job_settings(), tiny_model[0])


def test_every_process_serves_folded_items_and_users_postgresql(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path], postgres_db: str
) -> None:
    run_two_processes(job_settings(database_url=postgres_db), tiny_model[0])


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_folded_items_are_found_beside_an_ann_index(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path], kind: str
) -> None:
    settings = job_settings(ann_threshold_items=10, ann_kind=kind, ivf_lists=4, ivf_nprobe=1)
    with two_apps(settings) as (a, _, write, _):
        model = a.app.state.margo.registry.current
        assert model.index.params.kind.value == kind
        ntotal = model.index.index.ntotal
        tops = {u: rec_ids(a, u, k=1)[0] for u in map(str, range(0, 60, 2))}
        like = max(set(tops.values()), key=list(tops.values()).count)
        body = {"items": [new_item(tiny_model[0], "ann-new", like)]}
        assert a.post("/items", json=body, headers=write).json()["folded"] == ["ann-new"]
        assert model.index.index.ntotal == ntotal  # the FAISS index itself is unchanged
        fans = [u for u, top in tops.items() if top == like]
        assert any("ann-new" in rec_ids(a, u, k=20) for u in fans)
        assert rec_ids(a, "2", category=FRESH) == ["ann-new"]


def test_redis_events_spread_folds_before_the_next_poll(
    job_settings: Callable[..., Settings],
    tiny_model: tuple[Path, Path],
    redis_url: tuple[str, str],
) -> None:
    url, prefix = redis_url
    # a 30 s poll: only the pub/sub messages can explain b following within seconds
    settings = job_settings(redis_url=url, cache_prefix=prefix, poll_interval_s=30.0)
    with two_apps(settings) as (a, b, write, _):
        time.sleep(0.5)  # let b subscribe
        like = a.app.state.margo.registry.current.bundle.item_ids[9]
        body = {"items": [new_item(tiny_model[0], "evented", like)]}
        assert a.post("/items", json=body, headers=write).json()["folded"] == ["evented"]
        eventually(lambda: rec_ids(b, "6", category=FRESH) == ["evented"], timeout=5.0)
        before = b.get("/users/6/recommendations").json()  # cached in Redis by b
        records = [{"user_id": "6", "item_id": i} for i in rec_ids(a, "20", k=4)]
        r = a.post("/interactions", json={"interactions": records}, headers=write)
        assert r.status_code == 201

        def moved() -> bool:
            page = b.get("/users/6/recommendations").json()
            return page["fold_in"] is not None and page["items"] != before["items"]

        eventually(moved, timeout=5.0, what="b serves the refolded user")


def test_a_page_computed_before_the_poll_is_not_served_after_it(
    job_settings: Callable[..., Settings],
    tiny_model: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind a CI failure: b computes a wanderer's page from rows without their
    new interactions, its poller applies them and drops the wanderer's cached pages, and only
    then does the request store its page (the items the write updated were applied before the
    request, so the page's key named them). Keyed by the user's rows too, it is never read."""
    from service.api import users as users_api

    settings = job_settings(poll_interval_s=30.0)  # b's poller stays out: the test runs it
    with two_apps(settings) as (a, b, write, _):
        records = [{"user_id": "wanderer", "item_id": i} for i in rec_ids(a, "11", k=3)]
        assert a.post("/interactions", json={"interactions": records},
                      headers=write).status_code == 201  # fmt: skip
        assert a.get("/users/wanderer/recommendations").json()["strategy"] == "fold-in"
        registry_b = b.app.state.margo.registry
        original, calls = users_api.recommend, []

        def poll_meanwhile(*args, **kwargs):  # the page first, then b's poll, then the store
            page = original(*args, **kwargs)
            if not calls:
                calls.append(page["strategy"])
                registry_b.poll_once()
            return page

        monkeypatch.setattr(users_api, "recommend", poll_meanwhile)
        # the poll's first steps (the items the write updated) before the request, the rest
        # (the new interactions) while it computes
        registry_b.current.refresh_folded(registry_b.db)
        assert b.get("/users/wanderer/recommendations").json()["strategy"] == "popular"
        assert calls == ["popular"]
        assert b.get("/users/wanderer/recommendations").json()["strategy"] == "fold-in"


def test_processes_that_applied_the_same_folds_name_them_alike(
    job_settings: Callable[..., Settings], tiny_model: tuple[Path, Path]
) -> None:
    """The folded items' part of a page's cache key (shared through Redis) is the SQL
    watermark of the rows applied: a process that applied two writes in one poll names its
    state as the writer does after applying them one by one."""
    with two_apps(job_settings(poll_interval_s=30.0)) as (a, b, write, _):
        ma, mb = (c.app.state.margo.registry.current for c in (a, b))
        ids = ma.bundle.item_ids
        revisions = []
        for n, like in enumerate((ids[3], ids[5])):
            body = {"items": [new_item(tiny_model[0], f"pair-{n}", like)]}
            assert a.post("/items", json=body, headers=write).json()["folded"] == [f"pair-{n}"]
            revisions.append(ma.folded.revision)
        assert revisions[0] < revisions[1] and mb.folded.revision < revisions[0]
        b.app.state.margo.registry.poll_once()
        assert mb.folded.revision == ma.folded.revision
        assert sorted(rec_ids(b, "4", category=FRESH)) == ["pair-0", "pair-1"]
