"""The service's calls into the fold-in math (trainer/foldin, numpy only: the API process
imports it). This module turns SQL content into the math's inputs, its results into rows the
service stores, and its errors into ones that name the item and modality."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.fresh.items import FoldedRow
from service.fresh.users import FoldedUser
from trainer.bundle import ModelBundle
from trainer.foldin import (
    FoldInInputError,
    FoldInUnavailable,
    ItemFoldIn,
    ItemUsers,
    UserFoldIn,
    UserInput,
    UserInputError,
    has_user_out,
)

if TYPE_CHECKING:
    from service.live import LiveModel

log = logging.getLogger(__name__)

PROVENANCE_NEIGHBOURS = 5
"""Nearest catalogue items per modality named in a folded item's provenance."""


class FoldRefused(ValueError):
    """An item's content cannot be folded into the model; names the item and modality."""

    def __init__(self, item_id: str, modality: str | None, reason: str) -> None:
        where = f"item {item_id!r}" + (f", modality {modality!r}" if modality else "")
        super().__init__(f"{where}: {reason}")
        self.item_id = item_id
        self.modality = modality
        self.reason = reason


@dataclass(frozen=True)
class ItemPlan:
    """What can be folded now: items with every content modality, and why the rest wait."""

    ready: dict[str, dict[str, np.ndarray]]  # item id -> modality -> float32 [f_m]
    waiting: dict[str, str]  # item id -> why it is not folded (missing modality, pending)


def item_folder(bundle: ModelBundle) -> ItemFoldIn | None:
    """The bundle's item fold-in (built once per bundle), or None when it has none."""
    try:
        return ItemFoldIn.from_bundle(bundle)
    except FoldInUnavailable:
        return None


def unavailable_reason(bundle: ModelBundle) -> str | None:
    try:
        ItemFoldIn.from_bundle(bundle)
    except FoldInUnavailable as exc:
        return str(exc)
    return None


def plan(
    folder: ItemFoldIn,
    content: dict[str, dict[str, tuple[bytes, int]]],
    pending: set[str],
) -> ItemPlan:
    """Sort items (id -> modality -> (float32 bytes, dim)) into foldable and waiting.

    A stored vector of the wrong size for this model is refused (FoldRefused), not waited on:
    the client must send one that fits."""
    ready: dict[str, dict[str, np.ndarray]] = {}
    waiting: dict[str, str] = {}
    for item_id, stored in content.items():
        if item_id in pending:
            waiting[item_id] = "text content is being encoded"
            continue
        missing = [m for m in folder.modalities if m not in stored]
        if missing:
            waiting[item_id] = f"no content for modality {missing[0]!r} yet"
            continue
        features = {}
        for m in folder.modalities:
            vector, dim = stored[m]
            if dim != folder.dims[m]:
                raise FoldRefused(
                    item_id, m, f"has {dim} values, the model {folder.bundle.path.name} "
                    f"expects {folder.dims[m]}"
                )  # fmt: skip
            features[m] = np.frombuffer(vector, dtype=np.float32, count=dim)
        ready[item_id] = features
    return ItemPlan(ready, waiting)


NO_USERS = ItemUsers(np.empty(0, np.int64))


def fold_items(
    folder: ItemFoldIn,
    ready: dict[str, dict[str, np.ndarray]],
    users: dict[str, ItemUsers] | None = None,
) -> list[FoldedRow]:
    """Fold items (id -> modality -> raw feature vector) in one call; ``users``: the
    interactions posted for some of them (their users; trainer/foldin/interactions.py), used
    where the bundle can (``foldin_user_out``). FoldRefused names the item and modality the
    math refused."""
    if not ready:
        return []
    ids = list(ready)
    features = {m: np.stack([ready[i][m] for i in ids]) for m in folder.modalities}
    posted = None
    if users and has_user_out(folder.bundle):
        posted = [users.get(i, NO_USERS) for i in ids]
    try:
        folded = folder.fold_in(features, users=posted)
    except FoldInInputError as exc:
        item = ids[exc.item] if exc.item is not None and 0 <= exc.item < len(ids) else ids[0]
        raise FoldRefused(item, exc.modality, str(exc)) from exc
    item_ids = folder.bundle.item_ids
    rows = []
    for n, item_id in enumerate(ids):
        rows.append(
            FoldedRow(
                item_id=item_id,
                emb=folded.embeddings[n],
                weights=folded.weights[n],
                provenance=provenance(folded, n, item_ids, folder.bundle.path.name),
            )
        )
    return rows


def provenance(folded: Any, n: int, item_ids: list[str], version: str) -> dict[str, Any]:
    """Where a folded item's vector came from: its nearest catalogue items per modality and
    the prior of its weights (shown in explanations and GET /items/{id})."""
    neighbours = {
        m: [
            {"item_id": item_ids[int(r)], "similarity": round(float(s), 6)}
            for r, s in zip(
                rows[n, :PROVENANCE_NEIGHBOURS].tolist(),
                folded.similarity[m][n, :PROVENANCE_NEIGHBOURS].tolist(),
                strict=True,
            )
        ]
        for m, rows in folded.neighbours.items()
    }
    counted = folded.interactions
    return {"model_version": version, "weight_prior": folded.weight_prior, "neighbours": neighbours,
            "interactions": 0 if counted is None else int(counted[n])}


def stored_row(row: FoldedRow, item_db_id: int) -> dict[str, Any]:
    """The SQL row of a folded item (crud.save_folded_items)."""
    return {
        "item_id": item_db_id,
        "status": "ready",
        "emb": np.ascontiguousarray(row.emb, dtype=np.float32).tobytes(),
        "weights": np.ascontiguousarray(row.weights, dtype=np.float32).tobytes(),
        "provenance": row.provenance,
        "error": None,
    }


def row_from_sql(
    item_id: str, emb: bytes, weights: bytes, provenance: dict[str, Any], shape: tuple[int, int]
) -> FoldedRow:
    m, d = shape
    return FoldedRow(
        item_id=item_id,
        emb=np.frombuffer(emb, dtype=np.float32, count=m * d).reshape(m, d),
        weights=np.frombuffer(weights, dtype=np.float32, count=m),
        provenance=dict(provenance or {}),
    )


# -- users -------------------------------------------------------------------------------------
NEW_USER_PRIOR = "none"
"""A user the model never trained on is folded with no prior (trainer/foldin/users.py: p = 0);
a known user is pulled towards their trained query ("trained")."""


def user_folder(bundle: ModelBundle) -> UserFoldIn | None:
    """The bundle's user fold-in precomputation (built once per bundle: the catalogue's Gram
    matrix and its inverse), or None when it cannot have one."""
    try:
        return UserFoldIn.from_bundle(bundle)
    except FoldInUnavailable:
        return None


def fold_users(
    model: LiveModel, histories: dict[str, tuple[list[str], int]]
) -> dict[str, FoldedUser]:
    """Folded queries of many users (one ``fold_in_many`` call) from the items they
    interacted with: user id -> (history, newest first, of item ids: bundle and folded items
    alike, others skipped; newest interaction id). A known user's training items count too,
    with their trained query as the prior. Users none of whose items the model has are left
    out."""
    folder = model.user_folder
    if folder is None:
        return {}
    shape = (len(model.channels), model.bundle.dim)
    inputs: list[UserInput] = []
    meta: list[tuple[str, int, int, str]] = []  # (user id, items, newest, prior)
    for user_id, (history, newest) in histories.items():
        rows = np.asarray([r for r in map(model.row_of, history) if r is not None], np.int64)
        if rows.size == 0:
            continue
        user_row = model.bundle.user_index(user_id)
        if user_row is not None:  # every interaction: what it trained on, and what came since
            rows = np.union1d(rows, model.bundle.seen_items(user_row).astype(np.int64))
        cold = rows >= model.n_items
        inputs.append(
            UserInput(
                rows[~cold],
                item_vectors=model.vectors_of(rows[cold]) if cold.any() else None,
                prior=model.queries[user_row] if user_row is not None else None,
                user=user_row,  # propagate (FREEDOM): the user's own share of their vector
            )
        )
        prior = "trained" if user_row is not None else NEW_USER_PRIOR
        meta.append((user_id, int(rows.size), newest, prior))
    while inputs:
        try:
            queries = folder.fold_in_many(inputs)
        except UserInputError as exc:  # the rows come from the model itself: a bug, not input
            log.error("model %s: cannot fold user %r: %s", model.version, meta[exc.user][0], exc)
            del inputs[exc.user], meta[exc.user]
            continue
        return {
            user_id: FoldedUser(queries[n].reshape(shape).copy(), items, newest, prior)
            for n, (user_id, items, newest, prior) in enumerate(meta)
        }
    return {}
