"""SQL -> dataset bundle: a consistent snapshot of interactions and item features.

The retrain job's first step (service/jobs/pipeline.py). The bundle is written once, for the
record and the model's manifest; the Dataset validated while writing it is handed back, so
the job trains on it without reading the files again.

One read transaction (REPEATABLE READ on PostgreSQL; SQLite's WAL gives every read
transaction a snapshot) reads users, items, interactions and feature vectors, so rows
committed while the snapshot runs are either all in it or all out.

Rules (README, "Feedback and retraining"):

- positives are the stored (user, item) pairs with weight > 0; repeats of a pair count once;
- a pair keeps the split label it was seeded with (``interactions.split``, even when it was
  also ingested through the API); any other pair gets a label from a hash of its ids
  (80/10/10), the same in every snapshot,
  so neither the active model nor a retrained one ever trained on a validation pair;
- a user whose pairs all landed in valid/test gets them as training pairs (no user may be
  evaluated without training data);
- users without positives are left out; every item is kept, and an item lacking a vector for
  a modality gets zeros there (counted in ``stats.json``);
- a stored vector that cannot be trained on (NaN or inf, or bytes that do not match its size;
  the API refuses both, but rows may predate that) is skipped like a missing one, with a
  warning naming the item and modality (``Snapshot.warnings``, recorded on the job), so one
  bad row cannot block every retrain.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import crud
from service.db.session import Database
from service.db.tables import Interaction, Item, ItemFeature, User
from trainer.data.dataset import TEST, TRAIN, VALID, Dataset, write_dataset
from trainer.errors import DataError

log = logging.getLogger(__name__)

SPLIT_RATIOS = (0.8, 0.1, 0.1)
"""Train/valid/test shares of pairs ingested through the API."""


@dataclass
class Snapshot:
    data: Dataset  # the written bundle as loaded back for validation (all modalities)
    path: Path
    n_users: int
    n_items: int
    n_pairs: int
    modalities: dict[str, int]
    missing_vectors: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # rows skipped, each named


def hashed_split(user_id: str, item_id: str) -> int:
    """Deterministic train/valid/test label of a pair ingested through the API."""
    digest = hashlib.sha256(f"{user_id}\0{item_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < SPLIT_RATIOS[0]:
        return TRAIN
    return VALID if u < SPLIT_RATIOS[0] + SPLIT_RATIOS[1] else TEST


def _begin_snapshot(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def take_snapshot(db: Database, out: Path, *, name: str | None = None) -> Snapshot:
    """Read SQL in one transaction and write the dataset bundle ``out`` (atomically).

    The dataset is named after the database's catalogue (service/db/crud/catalogue.py), so the
    model trained on it registers into the same catalogue; "snapshot" when none is named.
    """
    with db.sessions() as session:
        _begin_snapshot(session)
        name = name or crud.catalogue_dataset(session) or "snapshot"
        items = session.execute(
            select(Item.id, Item.external_id, Item.title, Item.categories).order_by(Item.id)
        ).all()
        pairs = session.execute(
            select(
                Interaction.user_id, Interaction.item_id, Interaction.split, Interaction.timestamp
            )
            .where(Interaction.weight > 0)
            .order_by(Interaction.id)
        ).all()
        user_names = dict(session.execute(select(User.id, User.external_id)).all())
        feats = session.execute(
            select(
                ItemFeature.item_id, ItemFeature.modality, ItemFeature.dim, ItemFeature.vector
            ).where(ItemFeature.dim > 0)
        ).all()
        session.rollback()  # read-only: end the snapshot transaction
    if not pairs:
        raise DataError("the database holds no interactions to train on")

    item_row = {db_id: n for n, (db_id, *_rest) in enumerate(items)}
    item_ids = [str(ext) for _, ext, _, _ in items]
    item_meta = [
        {"title": title or "", "categories": list(cats or [])} for _, _, title, cats in items
    ]

    # -- pairs: one per (user, item); a seeded label beats a hashed one, else the first row ----
    first: dict[tuple[int, int], tuple[int, int]] = {}
    seeded: set[tuple[int, int]] = set()
    for u, i, split, ts in pairs:
        key = (u, i)
        if split is not None and key not in seeded:
            first[key] = (int(split), first.get(key, (0, int(ts)))[1])
            seeded.add(key)
        elif key not in first:
            first[key] = (hashed_split(user_names[u], item_ids[item_row[i]]), int(ts))
    users_sorted = sorted({u for u, _ in first})
    user_row = {u: n for n, u in enumerate(users_sorted)}
    inter = np.array(
        [(user_row[u], item_row[i], lab) for (u, i), (lab, _) in first.items()], dtype=np.int64
    )
    timestamps = np.array([ts for _, ts in first.values()], dtype=np.int64)
    has_train = np.bincount(inter[inter[:, 2] == TRAIN, 0], minlength=len(users_sorted)) > 0
    inter[~has_train[inter[:, 0]], 2] = TRAIN

    # -- features: one float32 matrix per modality --------------------------------------------
    dims: dict[str, int] = {}
    for item_db_id, modality, dim, _ in feats:
        if dims.setdefault(modality, dim) != dim:
            raise DataError(
                f"item_features: modality {modality!r} has vectors of sizes {dims[modality]} "
                f"and {dim} (item {item_ids[item_row[item_db_id]]!r})"
            )
    features = {m: np.zeros((len(items), d), dtype=np.float32) for m, d in sorted(dims.items())}
    filled = {m: np.zeros(len(items), dtype=bool) for m in dims}
    warnings: list[str] = []
    for item_db_id, modality, dim, vector in feats:
        row = item_row[item_db_id]
        values = _vector(vector, dim)
        if isinstance(values, str):
            warnings.append(
                f"item {item_ids[row]!r}, modality {modality!r}: vector skipped ({values})"
            )
            continue
        features[modality][row] = values
        filled[modality][row] = True
    for warning in warnings:
        log.warning("snapshot: %s", warning)
    missing = {m: int((~f).sum()) for m, f in filled.items() if (~f).any()}

    written: list[Dataset] = []
    write_dataset(
        out,
        name=name,
        interactions=inter,
        features=features,
        user_ids=[str(user_names[u]) for u in users_sorted],
        item_ids=item_ids,
        item_meta=item_meta,
        timestamps=timestamps,
        overwrite=True,
        stats={"source": "sql snapshot", "items_missing_vectors": missing},
        on_validated=written.append,
    )
    return Snapshot(
        data=written[0],
        path=out,
        n_users=len(users_sorted),
        n_items=len(items),
        n_pairs=len(inter),
        modalities=dict(sorted(dims.items())),
        missing_vectors=missing,
        warnings=warnings,
    )


def _vector(raw: bytes | None, dim: int) -> np.ndarray | str:
    """The stored float32 vector, or why it cannot be trained on."""
    if raw is None or len(raw) != 4 * dim:
        return f"{0 if raw is None else len(raw)} bytes stored for {dim} float32 values"
    values = np.frombuffer(raw, dtype=np.float32, count=dim)
    if not np.isfinite(values).all():
        return f"value {int(np.argmin(np.isfinite(values)))} is NaN or inf"
    return values
