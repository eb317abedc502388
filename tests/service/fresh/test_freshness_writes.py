"""The written users' folds (service/fresh/user_sync.py): one history query, one stacked solve and
one upsert per batch, equal to folding the users one by one (SQLite and PostgreSQL); users
written again while their fold waits are folded once, from their newest history; the queue is
bounded and its users still get their folds on their next read."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.db.crud import foldin as fsql
from service.db.session import Database
from service.db.tables import FoldedUser, Interaction, User
from service.fresh import fold, user_folds, user_sync
from service.settings import Settings
from tests.service.conftest import start_client
from tests.service.fresh.helpers import content_of, rec_ids
from tests.service.jobs.helpers import api_key

Live = tuple[TestClient, dict[str, str], Database]


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, job_settings: Callable[..., Settings]) -> Iterator[Live]:
    """(client, write headers, database) of an app serving the tiny model."""
    if request.param == "postgresql":
        settings = job_settings(database_url=request.getfixturevalue("postgres_db"))
    else:
        settings = job_settings()
    write = api_key(settings, "write")
    db = Database(settings.database_url)
    try:
        for client in start_client(settings):
            yield client, write, db
    finally:
        db.dispose()


def post(client: TestClient, write: dict[str, str], records: list[tuple[str, str, int]]) -> None:
    body = {"interactions": [{"user_id": u, "item_id": i, "timestamp": t} for u, i, t in records]}
    r = client.post("/interactions", json=body, headers=write)
    assert r.status_code == 201, r.text


def newest_interaction(db: Database, user: str) -> int:
    with db.session() as session:
        stmt = select(func.max(Interaction.id)).join(User, User.id == Interaction.user_id)
        return int(session.scalar(stmt.where(User.external_id == user)))


def stored(db: Database, user: str) -> tuple[np.ndarray, int, int]:
    """(emb, items, last_interaction) of the user's folded row."""
    with db.session() as session:
        stmt = select(FoldedUser.emb, FoldedUser.items, FoldedUser.last_interaction)
        row = session.execute(
            stmt.join(User, User.id == FoldedUser.user_id).where(User.external_id == user)
        ).one()
    return np.frombuffer(row[0], np.float32), int(row[1]), int(row[2])


def test_a_batch_folds_and_stores_as_users_one_by_one(
    app: Live, tiny_model: tuple[Path, Path]
) -> None:
    client, write, db = app
    model = client.app.state.margo.registry.current
    ids = model.bundle.item_ids
    # an item in SQL the model cannot use yet (one modality of two): skipped by the fold
    half = {"item_id": "half", "content": {"image": content_of(tiny_model[0], ids[3])["image"]}}
    assert client.post("/items", json={"items": [half]}, headers=write).status_code == 200
    post(client, write, [
        ("solo", ids[1], 1),  # an unknown user, one interaction
        ("twice", ids[2], 1), ("twice", ids[5], 2), ("twice", ids[2], 3),  # a duplicate item
        ("odd", "half", 1), ("odd", ids[7], 2),  # an item the model does not have
        ("only-odd", "half", 1),  # none the model has: no fold
        ("4", ids[9], 1), ("4", ids[11], 2),  # a known user: training items and prior too
    ])  # fmt: skip
    users = ["solo", "twice", "odd", "only-odd", "4", "nobody"]
    with db.session() as session:
        many = fsql.user_histories(session, external_ids=users, limit=1000)
        one = {u: fsql.user_history(session, external_id=u, limit=1000) for u in users}
        assert many == {u: h for u, h in one.items() if h[1]}  # "nobody": not in SQL
        assert sorted(many["twice"][1]) == sorted([ids[2], ids[5]])  # each item once
        # the window keeps each user's newest ``limit`` interactions
        short = fsql.user_histories(session, external_ids=users, limit=1)
        assert short == {u: fsql.user_history(session, external_id=u, limit=1) for u in short}
        assert len(short["twice"][1]) == 1 and len(short) == 5
    for u in users[:-1]:
        model.users.drop([u])
    folded = user_folds.fold_and_store_users(model, db, users)
    assert set(folded) == {"solo", "twice", "odd", "4"}
    folder = model.user_folder
    want = {
        "solo": folder.fold_in(np.array([1])),
        "twice": folder.fold_in(np.array([2, 5])),  # the history holds each item once
        "odd": folder.fold_in(np.array([7])),
    }
    row = model.bundle.user_index("4")
    seen = np.union1d([9, 11], model.bundle.seen_items(row))
    want["4"] = folder.fold_in(seen, prior=model.queries[row], user=row)
    for u, q in want.items():
        np.testing.assert_allclose(folded[u].query, q, rtol=1e-5, atol=1e-6)
        emb, items, last = stored(db, u)
        np.testing.assert_array_equal(emb, folded[u].query)  # stored as folded
        assert last == newest_interaction(db, u) and model.users.get(u) is folded[u]
    assert stored(db, "4")[1] == seen.size and folded["4"].prior == "trained"
    assert folded["solo"].prior == fold.NEW_USER_PRIOR and stored(db, "twice")[1] == 2


def test_the_bulk_upsert_never_replaces_a_newer_fold(app: Live) -> None:
    client, write, db = app
    ids = client.app.state.margo.registry.current.bundle.item_ids
    post(client, write, [("a", ids[1], 1), ("b", ids[2], 1)])
    with db.session() as session:
        uid = {u: fsql.user_histories(session, external_ids=[u], limit=5)[u][0] for u in "ab"}
        rows = [
            {"user_id": uid["a"], "emb": b"new", "items": 2, "last_interaction": 10**9},
            {"user_id": uid["b"], "emb": b"new", "items": 2, "last_interaction": 10**9},
        ]
        fsql.save_folded_users(session, version="v", rows=rows)
    with db.session() as session:
        older = [{**rows[0], "emb": b"old", "last_interaction": 5}, {**rows[1], "emb": b"newer",
                 "last_interaction": 10**9 + 1}]  # fmt: skip
        fsql.save_folded_users(session, version="v", rows=older)
        got = dict(session.execute(select(FoldedUser.user_id, FoldedUser.emb).where(
            FoldedUser.model_version == "v")).all())  # fmt: skip
    assert {k: bytes(v) for k, v in got.items()} == {uid["a"]: b"new", uid["b"]: b"newer"}


def test_users_written_while_their_fold_waits_fold_once_from_the_newest_history(
    app: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, write, db = app
    model = client.app.state.margo.registry.current
    ids = model.bundle.item_ids
    calls: list[list[str]] = []
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()
    real = user_sync.fold_users_on_write

    def folds(model_, db_, users):  # once armed, the next fold waits for the test
        calls.append(list(users))
        if hold.is_set():
            hold.clear()
            entered.set()
            assert release.wait(10)
        return real(model_, db_, users)

    writes = user_sync.WriteFolds()
    monkeypatch.setattr(user_sync, "fold_users_on_write", folds)
    monkeypatch.setattr(user_sync, "WRITES", writes)
    post(client, write, [("w1", ids[1], 1), ("w2", ids[2], 1)])
    post(client, write, [("w3", ids[3], 1)])
    assert calls == [["w1", "w2"], ["w3"]]  # each request's background task folded its own
    calls.clear()
    hold.set()  # a fold under way in another thread; two batches posted meanwhile
    folder = threading.Thread(
        target=user_sync.fold_after_write, args=(model, db, ["w1", "w3"], 200)
    )
    folder.start()
    assert entered.wait(10)
    post(client, write, [("w1", ids[4], 2), ("w3", ids[5], 2)])
    post(client, write, [("w1", ids[6], 3), ("w2", ids[7], 2)])
    assert calls == [["w1", "w3"]]  # the posts only queued their users
    # the backlog: the batch being folded (w1, w3) and the users queued behind it (w1, w3, w2)
    assert writes.in_flight == 2 and len(writes) == 3 and writes.backlog() == 5
    metrics = client.get("/metrics").text
    assert "margo_foldin_write_backlog 5.0" in metrics
    release.set()
    folder.join(10)
    assert calls == [["w1", "w3"], ["w1", "w3", "w2"]]  # then w1 once more, not twice
    assert writes.coalesced == 1 and len(writes) == 0 and writes.dropped == 0
    assert writes.backlog() == 0
    metrics = client.get("/metrics").text
    assert "margo_foldin_write_backlog 0.0" in metrics
    assert 'margo_foldin_write_users_total{outcome="coalesced"} 1.0' in metrics
    assert f'margo_foldin_write_users_total{{outcome="folded"}} {writes.folded:.1f}' in metrics
    for user, n in (("w1", 3), ("w2", 2), ("w3", 2)):  # every posted interaction counted
        assert stored(db, user)[2] == newest_interaction(db, user)
        assert model.users.get(user).items == n


def test_a_full_queue_leaves_its_oldest_users_to_their_reads(
    app: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, write, db = app
    model = client.app.state.margo.registry.current
    ids = model.bundle.item_ids
    writes = user_sync.WriteFolds()
    monkeypatch.setattr(user_sync, "WRITES", writes)
    writes._busy = True  # another thread is folding: the posts below only queue
    post(client, write, [(f"q{n}", ids[n], 1) for n in range(5)])
    post(client, write, [(f"q{n}", ids[n], 1) for n in range(5, 7)])
    assert list(writes._waiting) == [f"q{n}" for n in range(7)]
    user_sync.fold_after_write(model, db, ["q1"], 4)  # a bound of 4: the 3 oldest leave
    assert list(writes._waiting) == ["q3", "q4", "q5", "q6"] and writes.dropped == 3
    assert writes.coalesced == 1
    # q0 waits for no fold: its read folds it, with its interaction
    assert model.users.get("q0") is None
    page = client.get("/users/q0/recommendations").json()
    assert page["strategy"] == "fold-in" and page["fold_in"]["interactions"] == 1
    assert ids[0] not in rec_ids(client, "q0")
    # a read of a waiting user folds them (no row yet) and takes them off the queue
    assert client.get("/users/q3/recommendations").json()["strategy"] == "fold-in"
    assert list(writes._waiting) == ["q4", "q5", "q6"] and writes.forgotten == 1
    writes._busy = False
    user_sync.fold_after_write(model, db, ["q7"], 10)
    assert len(writes) == 0 and writes.folded == 3  # q7 has no interactions: no fold
    for u in ("q3", "q4", "q5", "q6"):
        assert model.users.get(u) is not None
        assert stored(db, u)[2] == newest_interaction(db, u)


def test_a_fold_that_read_before_a_write_is_not_cached(
    app: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, write, db = app
    model = client.app.state.margo.registry.current
    ids = model.bundle.item_ids
    post(client, write, [("racer", ids[1], 1), ("calm", ids[2], 1)])
    real = fold.fold_users

    def write_meanwhile(model_, histories):  # the user writes again while the fold runs
        out = real(model_, histories)
        model_.users.drop(["racer"])
        return out

    monkeypatch.setattr(fold, "fold_users", write_meanwhile)
    folded = user_folds.fold_and_store_users(model, db, ["racer", "calm"])
    assert set(folded) == {"racer", "calm"}
    assert model.users.get("racer") is None  # its next read goes to SQL
    assert model.users.get("calm") is folded["calm"]


def test_the_cache_remembers_a_bounded_number_of_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.fresh import users

    cache = users.FoldedUserCache(10)
    entry = users.FoldedUser(np.zeros((2, 2), np.float32), 1, 1, "none")
    since = cache.mark()
    cache.drop(["a"])
    assert not cache.put("a", entry, since=since) and cache.get("a") is None
    assert cache.put("b", entry, since=since) and cache.put("a", entry)  # no since: held
    assert cache.put("a", entry, since=cache.mark())
    monkeypatch.setattr(users, "DROPS_KEPT", 2)
    old = cache.mark()
    cache.drop(["x"])
    cache.drop(["y"])
    cache.drop(["z"])  # x's drop is forgotten: a fold from before it cannot be trusted
    assert not cache.put("b", entry, since=old)
    assert cache.put("b", entry, since=cache.mark())


def test_a_user_the_math_refuses_is_left_out_of_the_batch(
    app: Live, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client, write, db = app
    model = client.app.state.margo.registry.current
    ids = model.bundle.item_ids
    post(client, write, [("4", ids[1], 1), ("fine", ids[2], 1), ("6", ids[3], 1)])
    queries = model.queries.copy()
    queries[model.bundle.user_index("4")] = np.nan  # a corrupt prior: the math refuses it
    monkeypatch.setattr(model, "queries", queries)
    folded = fold.fold_users(model, {u: ([i], 1) for u, i in
                                     (("4", ids[1]), ("fine", ids[2]), ("6", ids[3]))})  # fmt: skip
    assert set(folded) == {"fine", "6"} and "cannot fold user '4'" in caplog.text
    np.testing.assert_allclose(
        folded["fine"].query, model.user_folder.fold_in(np.array([2])), rtol=1e-5, atol=1e-6
    )
