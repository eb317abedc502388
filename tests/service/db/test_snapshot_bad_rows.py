"""A stored vector that cannot be trained on (NaN/inf, bytes that do not match its size) is
skipped by the snapshot with a warning naming the item and modality; the retrain goes on
(issue 14), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import select

from service.db.session import Database
from service.db.snapshot import take_snapshot
from service.db.tables import Item, ItemFeature
from service.settings import Settings
from tests.service.db.test_snapshot import seeded  # noqa: F401 - the fixture


def test_bad_vectors_are_skipped_with_a_warning_naming_them(
    seeded: tuple[Database, Settings],  # noqa: F811
    tmp_path: Path,
) -> None:
    db, _ = seeded
    with db.session() as session:
        rows = session.execute(
            select(ItemFeature, Item.external_id)
            .join(Item, Item.id == ItemFeature.item_id)
            .where(ItemFeature.modality == "image")
            .order_by(Item.id)
            .limit(3)
        ).all()
        (nan_row, nan_id), (short_row, short_id), (ok_row, ok_id) = rows
        values = np.frombuffer(nan_row.vector, np.float32).copy()
        values[2] = np.nan
        nan_row.vector = values.tobytes()
        short_row.vector = short_row.vector[:-4]
        ok_vector = np.frombuffer(ok_row.vector, np.float32).copy()
    snap = take_snapshot(db, tmp_path / "snap")
    assert len(snap.warnings) == 2
    assert f"item {nan_id!r}, modality 'image'" in snap.warnings[0] or any(
        f"item {nan_id!r}, modality 'image'" in w for w in snap.warnings
    )
    text = " | ".join(snap.warnings)
    assert f"item {nan_id!r}, modality 'image': vector skipped (value 2 is NaN or inf)" in text
    assert f"item {short_id!r}, modality 'image'" in text and "bytes stored for" in text
    data = snap.data
    feats = data.features["image"]
    assert np.isfinite(feats).all()
    assert not feats[data.item_ids.index(nan_id)].any()  # zeros, like a missing vector
    assert not feats[data.item_ids.index(short_id)].any()
    assert np.array_equal(feats[data.item_ids.index(ok_id)], ok_vector)
    assert snap.missing_vectors["image"] == 2
