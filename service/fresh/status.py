"""What ``GET /items/{id}`` says about an item the serving model did not train on."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy.orm import Session

from service.db.crud import foldin as fsql
from service.fresh import fold
from service.fresh.schemas import FoldedItemInfo, ItemFoldInStatus

if TYPE_CHECKING:
    from service.live import LiveModel


def item_status(session: Session, model: LiveModel, item_id: str, db_id: int) -> ItemFoldInStatus:
    """Folded (with provenance), pending text, waiting for content, failed or unavailable."""
    if model.folded.row(item_id) is not None:
        return ItemFoldInStatus(
            status="folded",
            provenance=FoldedItemInfo.model_validate(model.folded.provenance.get(item_id)),
        )
    reason = fold.unavailable_reason(model.bundle)
    if reason is not None:
        return ItemFoldInStatus(status="unavailable", detail=f"{reason}; served after a retrain")
    stored = fsql.folded_items(session, version=model.version, external_ids=[item_id])
    if stored and stored[0][1] == "failed":
        return ItemFoldInStatus(status="failed", detail=stored[0][5])
    if stored:  # in SQL, not applied here yet (within a poll interval) or evicted for capacity
        return ItemFoldInStatus(
            status="folded",
            detail="stored; this process serves it after its next refresh, or after a "
            "retrain if MARGO_FOLDIN_MAX_ITEMS is reached",
            provenance=FoldedItemInfo.model_validate(stored[0][4]),
        )
    if fsql.pending_text_items(session, item_ids=[db_id]):
        return ItemFoldInStatus(status="pending", detail="text content is being encoded")
    have = fsql.item_features_of(session, item_ids=[db_id]).get(db_id, {})
    folder = fold.item_folder(model.bundle)
    missing = [m for m in (folder.modalities if folder else []) if m not in have]
    detail = f"no content for modality {missing[0]!r}" if missing else "not folded yet"
    return ItemFoldInStatus(status="waiting", detail=detail)


def updated_status(model: LiveModel, item_id: str) -> ItemFoldInStatus | None:
    """A trained item whose embedding this process holds recomputed from the users who
    interacted with it since training (service/fresh/sync.py ``update_catalogue_items``)."""
    row = model.bundle.item_index(item_id)
    how = model.folded.updated.provenance.get(row) if row is not None else None
    if how is None:
        return None
    users = int(how.get("interactions", 0))
    return ItemFoldInStatus(
        status="updated",
        detail=f"embedding recomputed with {users} user(s) who interacted with it since "
        "training; learned at the next retrain",
    )


def folded_weights(model: LiveModel, item_id: str) -> list[float] | None:
    row = model.folded.row(item_id)
    if row is None:
        return None
    return np.asarray(model.weights_of(np.asarray([row]))[0]).tolist()
