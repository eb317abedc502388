"""SQL snapshot -> dataset bundle, on SQLite and PostgreSQL: seeded splits are kept, ingested
pairs get a stable hashed split, repeats and non-positive weights drop out, vectors line up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from service.cache import NullCache
from service.db import crud
from service.db.session import Database
from service.db.snapshot import hashed_split, take_snapshot
from service.db.tables import ItemFeature
from service.events import EventBus
from service.registry import Registry
from service.settings import Settings
from trainer.data import load_dataset
from trainer.errors import DataError


@pytest.fixture(params=["sqlite", "postgres"])
def seeded(
    request: pytest.FixtureRequest, job_settings: Callable[..., Settings]
) -> Iterator[tuple[Database, Settings]]:
    """A database seeded by registering the tiny bundle (its dataset's interactions and
    features are copied into SQL)."""
    overrides = {}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("postgres_db")
    settings = job_settings(**overrides)
    db = Database(settings.database_url)
    Registry(settings, db, NullCache(), EventBus(None, prefix="t:")).register(
        settings.model_dir / "tiny"
    )
    yield db, settings
    db.dispose()


def pairs(ds, split: np.ndarray) -> set[tuple[str, str]]:  # noqa: ANN001
    return {(ds.user_ids[u], ds.item_ids[i]) for u, i in split.tolist()}


def test_seeded_database_reproduces_the_dataset(
    seeded: tuple[Database, Settings], tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    db, _ = seeded
    snap = take_snapshot(db, tmp_path / "snap")
    original, copy = load_dataset(tiny_model[0]), load_dataset(snap.path)
    for split in ("train", "valid", "test"):
        assert pairs(copy, getattr(copy, split)) == pairs(original, getattr(original, split))
    assert copy.item_ids == original.item_ids
    for m, feats in original.features.items():
        assert np.array_equal(copy.features[m], feats)
    assert snap.missing_vectors == {}


def test_ingested_pairs_repeats_and_new_items(
    seeded: tuple[Database, Settings], tmp_path: Path
) -> None:
    db, _ = seeded
    with db.session() as session:
        rows = [{"user_id": f"new-{u}", "item_id": str(u % 7), "timestamp": 1} for u in range(40)]
        rows += [{"user_id": "new-0", "item_id": "0", "timestamp": 2}]  # a repeat of a pair
        rows += [{"user_id": "new-0", "item_id": "5", "timestamp": 3, "weight": 0.0}]
        assert crud.ingest_interactions(session, rows=rows).written == 42
        crud.upsert_item(session, external_id="bare", fields={"title": "no content"}, features={})
    first = load_dataset(take_snapshot(db, tmp_path / "a").path)
    second = load_dataset(take_snapshot(db, tmp_path / "b").path)
    assert [pairs(first, getattr(first, s)) for s in ("train", "valid", "test")] == [
        pairs(second, getattr(second, s)) for s in ("train", "valid", "test")
    ]
    everything = pairs(first, np.concatenate([first.train, first.valid, first.test]))
    assert ("new-0", "5") not in everything  # weight 0: not a positive
    assert sum(1 for u, i in everything if (u, i) == ("new-0", "0")) == 1
    # every new user has one pair: it is a training pair whatever its hash says
    assert {(f"new-{u}", str(u % 7)) for u in range(40)} <= pairs(first, first.train)
    assert any(hashed_split(f"new-{u}", str(u % 7)) != 0 for u in range(40))
    bare = first.item_ids.index("bare")
    assert all(not f[bare].any() for f in first.features.values())


def test_a_seeded_pair_keeps_its_label_when_ingested_again(
    seeded: tuple[Database, Settings], tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    db, _ = seeded
    original = load_dataset(tiny_model[0])
    # a validation pair whose hash says "train": ingesting it again must not move it
    valid = [
        (original.user_ids[u], original.item_ids[i])
        for u, i in original.valid.tolist()
        if hashed_split(original.user_ids[u], original.item_ids[i]) == 0
    ]
    user, item = valid[0]
    with db.session() as session:
        rows = [{"user_id": user, "item_id": item, "timestamp": 1_900_000_000}]
        assert crud.ingest_interactions(session, rows=rows).written == 1
    copy = load_dataset(take_snapshot(db, tmp_path / "s").path)
    assert (user, item) in pairs(copy, copy.valid)
    assert pairs(copy, copy.train) == pairs(original, original.train)


def test_hashed_split_is_stable_and_roughly_80_10_10() -> None:
    labels = np.array([hashed_split(f"u{n}", f"i{n % 97}") for n in range(20_000)])
    assert labels.tolist() == [hashed_split(f"u{n}", f"i{n % 97}") for n in range(20_000)]
    shares = np.bincount(labels, minlength=3) / len(labels)
    assert np.allclose(shares, [0.8, 0.1, 0.1], atol=0.01)


def test_vectors_of_two_sizes_are_refused(
    seeded: tuple[Database, Settings], tmp_path: Path
) -> None:
    db, _ = seeded
    with db.session() as session:
        row = session.scalars(select(ItemFeature).where(ItemFeature.modality == "image")).first()
        row.vector, row.dim = np.zeros(3, np.float32).tobytes(), 3
    with pytest.raises(DataError, match="modality 'image' has vectors of sizes"):
        take_snapshot(db, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_empty_database_is_refused(job_settings: Callable[..., Settings], tmp_path: Path) -> None:
    db = Database(job_settings().database_url)
    try:
        with pytest.raises(DataError, match="no interactions"):
            take_snapshot(db, tmp_path / "none")
    finally:
        db.dispose()
