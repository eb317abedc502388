"""GET /reliability: the items whose modality the model trusts least (or most).

A catalogue team's audit list: low learned weights flag images that do not show the product
and descriptions that say little about it (the MARGO paper's case study).
``GET /reliability/histogram`` is the catalogue-wide view: the distribution of every item's
learned weight per modality (the paper's Fig. 5), which the dashboard also uses to place one
item's weights among the catalogue's.
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
from service.schemas import (
    ModalityHistogram,
    Order,
    ReliabilityHistogramOut,
    ReliabilityItem,
    ReliabilityOut,
)

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


QUANTILES = {"p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90}


@router.get(
    "/reliability/histogram",
    response_model=ReliabilityHistogramOut,
    responses=errors(401, 403, 503),
    dependencies=[ReadAccess],
)
def reliability_histogram(
    model: LiveModelDep,
    bins: Annotated[int, Query(ge=2, le=200)] = 20,
    min_positives: Annotated[
        int, Query(ge=0, description="skip items with fewer training positives")
    ] = 0,
) -> ReliabilityHistogramOut:
    """Histogram of the active model's learned weights, per modality, on one shared x-axis."""
    weights = np.asarray(model.arrays["item_weights"], dtype=np.float64)
    if min_positives:
        weights = weights[model.arrays["item_pos_count"] >= min_positives]
    if len(weights):
        low, high = float(weights.min()), float(weights.max())
    else:
        low, high = 0.0, 1.0
    if high - low < 1e-9:  # unweighted fusion: every weight equal; centre one bin on it
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    out = []
    for m, name in enumerate(model.channels):
        column = weights[:, m]
        counts, _ = np.histogram(column, bins=edges)
        out.append(
            ModalityHistogram(
                modality=name,
                counts=counts.tolist(),
                mean=float(column.mean()) if len(column) else 0.0,
                quantiles={
                    k: float(np.quantile(column, q)) if len(column) else 0.0
                    for k, q in QUANTILES.items()
                },
            )
        )
    return ReliabilityHistogramOut(
        model_version=model.version,
        n_items=len(weights),
        min_positives=min_positives,
        edges=edges.tolist(),
        modalities=out,
    )
