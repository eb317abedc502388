"""Dataset bundle -> SQL: copy a registered model's dataset in, so the database alone can be
retrained (the reverse of service/db/snapshot.py).

At registration the bundle's users and items are upserted (service/registry.py); this adds
what a retrain needs besides them, read from the dataset the bundle's manifest names
(``dataset.path``, checked against ``dataset.fingerprint``). It runs at registration and again
at the start of every retrain (:func:`seed_active_model`, for a model registered before its
dataset was at hand):

- the interactions with their train/valid/test labels, once (the first model with its dataset
  at hand seeds the history; later data arrives through POST /interactions);
- each item's feature vector per modality where SQL has none yet.

Seeded interactions are dated before the bundle (they are its training data), so the
serving overlay of "ingested since the model" does not take them for new ones.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import crud
from service.db.session import Database
from service.db.tables import Interaction, Item, ItemFeature, User, utcnow
from trainer.errors import DataError
from trainer.manifest import Manifest

if TYPE_CHECKING:
    from trainer.bundle import ModelBundle

log = logging.getLogger(__name__)

BATCH = 20_000
SNAPSHOT_SOURCE = '"source": "sql snapshot"'
"""stats.json of a dataset built from SQL by a retrain (service/db/snapshot.py)."""
SEED_AGE = dt.timedelta(hours=1)
"""Seeded interactions are dated this long before the bundle's creation."""


def item_rows(bundle: ModelBundle) -> list[dict[str, Any]]:
    """SQL rows of a bundle's items: external id, title, categories, other metadata."""
    meta = bundle.item_meta or [{} for _ in bundle.item_ids]
    rows = []
    for external_id, m in zip(bundle.item_ids, meta, strict=True):
        m = m if isinstance(m, dict) else {}
        rows.append(
            {
                "external_id": external_id,
                "title": m.get("title"),
                "categories": [str(c) for c in m.get("categories") or ()],
                "metadata": {k: v for k, v in m.items() if k not in ("title", "categories")},
            }
        )
    return rows


def dataset_dir(manifest: Manifest, bundle_path: Path) -> Path | None:
    """The dataset folder the manifest names (relative paths: from the working directory,
    else from beside the model directory)."""
    raw = manifest.dataset.path
    if not raw:
        return None
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [path, bundle_path.parent.parent / path]
    return next((p for p in candidates if p.is_dir()), None)


def seeded_already(session: Session) -> bool:
    """Whether a dataset's interactions were copied in before (they carry a split label)."""
    stmt = select(Interaction.id).where(Interaction.split.is_not(None)).limit(1)
    return session.scalar(stmt) is not None


def needs_seed(session: Session, manifest: Manifest, n_items: int) -> bool:
    has_interactions = seeded_already(session)
    modalities = [c for c in manifest.channels if c.feature_dim]
    n_features = session.scalar(select(func.count()).select_from(ItemFeature)) or 0
    return not has_interactions or n_features < n_items * len(modalities)


def seed_from_dataset(
    session: Session, manifest: Manifest, bundle_path: Path, bundle_created: dt.datetime
) -> dict[str, int]:
    """Seed interactions (empty database only) and missing feature vectors; returns counts."""
    from trainer.data.dataset import load_dataset
    from trainer.data.tables import int_columns

    root = dataset_dir(manifest, bundle_path)
    if root is None:
        log.info("%s: its dataset is not on this machine; SQL keeps no copy", bundle_path.name)
        return {}
    if (
        SNAPSHOT_SOURCE in (root / "stats.json").read_text(encoding="utf-8", errors="replace")
        if (root / "stats.json").is_file()
        else False
    ):
        return {}  # built from SQL by a retrain: nothing to copy back
    try:
        data = load_dataset(root)
    except DataError as exc:
        log.warning("%s: its dataset cannot be read (%s); not seeding", bundle_path.name, exc)
        return {}
    expected = manifest.dataset.fingerprint
    if expected and data.fingerprint != expected:
        log.warning("%s: dataset at %s has changed since training; not seeding", bundle_path, root)
        return {}
    items = dict(session.execute(select(Item.external_id, Item.id)).all())
    counts = {"interactions": 0, "features": 0}

    # -- interactions, with the split the model was trained and validated on ------------------
    if not seeded_already(session):
        users = dict(session.execute(select(User.external_id, User.id)).all())
        # records ingested through the API before the seed stay as they are
        stored = set(
            session.execute(
                select(Interaction.user_id, Interaction.item_id, Interaction.timestamp)
            ).all()
        )
        inter_file = next(root.glob("*.inter"))
        cols = int_columns(
            inter_file.read_text(encoding="utf-8"),
            label=str(inter_file),
            names=("userID", "itemID", "x_label"),
        )
        stamps = _timestamps(inter_file, len(cols["userID"]))
        created = bundle_created - SEED_AGE
        rows = [
            {
                "user_id": users[data.user_ids[u]],
                "item_id": items[data.item_ids[i]],
                "timestamp": int(t),
                "weight": 1.0,
                "split": int(x),
                "created_at": created,
            }
            for u, i, x, t in zip(
                cols["userID"].tolist(),
                cols["itemID"].tolist(),
                cols["x_label"].tolist(),
                stamps.tolist(),
                strict=True,
            )
        ]
        rows = [r for r in rows if (r["user_id"], r["item_id"], r["timestamp"]) not in stored]
        for start in range(0, len(rows), BATCH):
            session.execute(Interaction.__table__.insert(), rows[start : start + BATCH])
        counts["interactions"] = len(rows)

    # -- feature vectors the database lacks -------------------------------------------------
    have = set(session.execute(select(ItemFeature.item_id, ItemFeature.modality)).all())
    now = utcnow()
    for modality, matrix in data.features.items():
        rows = [
            {
                "item_id": items[ext],
                "modality": modality,
                "dim": int(matrix.shape[1]),
                "vector": np.ascontiguousarray(matrix[n], dtype=np.float32).tobytes(),
                "source_text": None,
                "updated_at": now,
            }
            for n, ext in enumerate(data.item_ids)
            if ext in items and (items[ext], modality) not in have
        ]
        for start in range(0, len(rows), BATCH):
            session.execute(ItemFeature.__table__.insert(), rows[start : start + BATCH])
        counts["features"] += len(rows)
    log.info("seeded from %s: %s", root, counts)
    return counts


def seed_active_model(db: Database) -> None:
    """Seed from the active model's dataset when SQL lacks it (a database whose model was
    registered before seeding existed gets its history here, before a snapshot needs it)."""
    from trainer.bundle import read_manifest

    with db.session() as session:
        version = crud.active_version(session)
        active = crud.get_model(session, version=version) if version else None
        if active is None:
            return
        try:
            manifest = read_manifest(active.bundle_path)
        except Exception:  # noqa: BLE001 - an unreadable bundle just has nothing to seed
            return
        if needs_seed(session, manifest, active.n_items):
            created = crud.as_utc(active.created_at) or utcnow()
            seed_from_dataset(session, manifest, Path(active.bundle_path), created)


def _timestamps(inter_file: Path, n: int) -> np.ndarray:
    """The .inter timestamp column as integers, or zeros when it is absent or fractional."""
    from trainer.data.tables import int_columns

    try:
        cols = int_columns(
            inter_file.read_text(encoding="utf-8"), label=str(inter_file), names=("timestamp",)
        )
        return cols["timestamp"]
    except DataError:
        return np.zeros(n, dtype=np.int64)
