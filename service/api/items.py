"""Items: metadata with the active model's reliability weights, edits, similar items."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from service.api.deps import LiveModelDep, RegistryDep, SessionDep, StateDep
from service.api.responses import errors
from service.db import crud
from service.db.tables import Item
from service.errors import NotFound
from service.live import LiveModel
from service.ranking import similar_rows
from service.schemas import ItemModelInfo, ItemOut, ItemPatch, SimilarItem, SimilarOut

router = APIRouter(prefix="/items", tags=["items"])

ItemId = Annotated[str, Path(min_length=1, max_length=255)]


def model_info(model: LiveModel | None, item_id: str) -> ItemModelInfo | None:
    row = model.bundle.item_index(item_id) if model is not None else None
    if model is None or row is None:
        return None
    arrays = model.arrays
    positives = int(arrays["item_pos_count"][row])
    weights = np.asarray(arrays["item_weights"][row]).tolist()
    return ItemModelInfo(
        model_version=model.version,
        weights=dict(zip(model.channels, weights, strict=True)),
        positives=positives,
        popularity=int(arrays["item_popularity"][row]),
        low_confidence=positives < model.low_confidence_positives,
    )


def item_out(item: Item, model: LiveModel | None) -> ItemOut:
    return ItemOut(
        item_id=item.external_id,
        title=item.title,
        categories=list(item.categories or []),
        metadata=dict(item.meta or {}),
        hidden=item.hidden,
        model=model_info(model, item.external_id),
    )


@router.get("/{item_id}", response_model=ItemOut, responses=errors(404))
def get_item(item_id: ItemId, session: SessionDep, registry: RegistryDep) -> ItemOut:
    item = crud.get_item(session, external_id=item_id)
    if item is None:
        raise NotFound(f"no item {item_id!r}")
    return item_out(item, registry.current)


@router.patch(
    "/{item_id}",
    response_model=ItemOut,
    responses=errors(404, 422),
    summary="Hide or re-label an item (applies to recommendations at once)",
)
def patch_item(item_id: ItemId, patch: ItemPatch, state: StateDep) -> ItemOut:
    with state.db.session() as session:
        item = crud.update_item(session, external_id=item_id, **patch.model_dump())
        if item is None:
            raise NotFound(f"no item {item_id!r}")
    state.registry.items_changed()
    return item_out(item, state.registry.current)


@router.get("/{item_id}/similar", response_model=SimilarOut, responses=errors(404, 422, 503))
def similar(
    item_id: ItemId,
    model: LiveModelDep,
    state: StateDep,
    k: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> SimilarOut:
    row = model.bundle.item_index(item_id)
    if row is None:
        raise NotFound(f"item {item_id!r} is not in model {model.version}")
    rows, scores = similar_rows(model, row, k, state.ranking)
    ids = model.bundle.item_ids
    return SimilarOut(
        item_id=item_id,
        model_version=model.version,
        items=[
            SimilarItem(item_id=ids[r], rank=n + 1, score=s)
            for n, (r, s) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True))
        ],
    )
