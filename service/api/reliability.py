"""GET /reliability: the items whose modality the model trusts least (or most).

A catalogue team's audit list: low learned weights flag images that do not show the product
and descriptions that say little about it (the MARGO paper's case study).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from service.api.deps import LiveModelDep, SessionDep
from service.api.responses import errors
from service.auth import ReadAccess
from service.db import crud
from service.errors import InvalidRequest
from service.schemas import Order, ReliabilityItem, ReliabilityOut

router = APIRouter(tags=["reliability"])


@router.get(
    "/reliability",
    response_model=ReliabilityOut,
    responses=errors(401, 403, 422, 503),
    dependencies=[ReadAccess],
)
def reliability(
    model: LiveModelDep,
    session: SessionDep,
    modality: Annotated[str, Query(description="one of the model's modalities")],
    order: Order = Order.ASC,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    min_positives: Annotated[
        int, Query(ge=0, description="skip items with fewer training positives")
    ] = 0,
) -> ReliabilityOut:
    channels = model.channels
    if modality not in channels:
        raise InvalidRequest(f"unknown modality {modality!r}; this model has {', '.join(channels)}")
    m = channels.index(modality)
    ranked = model.reliability_order(m)
    if order is Order.DESC:
        ranked = ranked[::-1]
    arrays = model.arrays
    positives = arrays["item_pos_count"]
    if min_positives:
        ranked = ranked[positives[ranked] >= min_positives]
    rows = ranked[:limit]
    ids = [model.bundle.item_ids[r] for r in rows.tolist()]
    titles = crud.item_titles(session, external_ids=ids)
    weights = np.asarray(arrays["item_weights"][rows]).tolist()
    low = model.low_confidence_positives
    return ReliabilityOut(
        model_version=model.version,
        modality=modality,
        order=order,
        items=[
            ReliabilityItem(
                item_id=item_id,
                title=titles.get(item_id),
                weight=w[m],
                weights=dict(zip(channels, w, strict=True)),
                positives=int(p),
                low_confidence=int(p) < low,
            )
            for item_id, w, p in zip(ids, weights, positives[rows].tolist(), strict=True)
        ],
    )
