"""GET /reliability: the items whose modality content can be trusted least (or most).

A catalogue team's audit list: a low reliability score flags images that do not show the
product and descriptions that say little about it. Items are ordered by the trainer's
reliability score per (item, modality) (``by=score``, the default when the model has one)
with the model's learned fusion weight beside it; ``by=weight`` keeps the ordering by the
learned weight (the only one a model bundle without the score offers).
``GET /reliability/histogram`` is the catalogue-wide view: the distribution of every item's
learned weight (``of=weight``, the paper's Fig. 5) or reliability score (``of=score``) per
modality, which the dashboard also uses to place one item among the catalogue's.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from service.api.deps import LiveModelDep, SessionDep
from service.api.responses import errors
from service.auth import ReadAccess
from service.db import crud
from service.errors import Conflict, InvalidRequest
from service.limits import INT64_MAX
from service.live import LiveModel
from service.schemas import (
    ModalityHistogram,
    Order,
    ReliabilityHistogramOut,
    ReliabilityItem,
    ReliabilityOut,
    ReliabilityScore,
    ReliabilityValue,
)
from trainer.bundle import ItemReliability

router = APIRouter(tags=["reliability"])


def reliability_of(
    rel: ItemReliability | None, channels: list[str], row: int
) -> dict[str, ReliabilityScore] | None:
    """{modality: ReliabilityScore} of one item row, or None for a model without the score."""
    if rel is None:
        return None
    score = np.asarray(rel.score[row]).tolist()
    conf = np.asarray(rel.confidence[row]).tolist()
    return {
        name: ReliabilityScore(score=s, confidence=c)
        for name, s, c in zip(channels, score, conf, strict=True)
    }


def needs_score(model: LiveModel, what: str) -> ItemReliability:
    """The model's reliability score, or 409 saying why it has none."""
    rel = model.reliability
    if rel is None:
        raise Conflict(
            f"{what}: model {model.version} has no reliability score "
            f"({model.reliability_absent})"
        )
    return rel


@router.get(
    "/reliability",
    response_model=ReliabilityOut,
    responses=errors(401, 403, 409, 422, 503),
    dependencies=[ReadAccess],
)
def reliability(
    model: LiveModelDep,
    session: SessionDep,
    modality: Annotated[str, Query(description="one of the model's modalities")],
    order: Order = Order.ASC,
    by: Annotated[
        ReliabilityValue | None,
        Query(description="order by the reliability score (default when the model has one) "
              "or by the learned weight (default otherwise)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    min_positives: Annotated[
        int, Query(ge=0, le=INT64_MAX, description="skip items with fewer training positives")
    ] = 0,
    min_confidence: Annotated[
        float, Query(ge=0, le=1, description="skip items whose score has a lower confidence")
    ] = 0.0,
) -> ReliabilityOut:
    channels = model.channels
    if modality not in channels:
        raise InvalidRequest(f"unknown modality {modality!r}; this model has {', '.join(channels)}")
    m = channels.index(modality)
    rel = model.reliability
    if by is None:
        by = ReliabilityValue.SCORE if rel is not None else ReliabilityValue.WEIGHT
    if by is ReliabilityValue.SCORE:
        rel = needs_score(model, "by=score")
    if min_confidence and rel is None:
        rel = needs_score(model, "min_confidence")
    ranked = model.reliability_order(m, by.value)
    if order is Order.DESC:
        ranked = ranked[::-1]
    arrays = model.arrays
    positives = arrays["item_pos_count"]
    if min_positives:
        ranked = ranked[positives[ranked] >= min_positives]
    if min_confidence and rel is not None:
        ranked = ranked[rel.confidence[ranked, m] >= min_confidence]
    rows = ranked[:limit].tolist()
    ids = [model.bundle.item_ids[r] for r in rows]
    titles = crud.item_titles(session, external_ids=ids)
    low = model.low_confidence_positives
    items = []
    for row, item_id in zip(rows, ids, strict=True):
        w = np.asarray(arrays["item_weights"][row]).tolist()
        scores = reliability_of(rel, channels, row)
        p = int(positives[row])
        items.append(
            ReliabilityItem(
                item_id=item_id,
                title=titles.get(item_id),
                score=scores[modality].score if scores else None,
                confidence=scores[modality].confidence if scores else None,
                weight=w[m],
                weights=dict(zip(channels, w, strict=True)),
                reliability=scores,
                positives=p,
                low_confidence=p < low,
            )
        )
    return ReliabilityOut(
        model_version=model.version,
        modality=modality,
        order=order,
        by=by,
        reliability_method=rel.method if rel is not None else None,
        reliability_absent=model.reliability_absent,
        items=items,
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
        int, Query(ge=0, le=INT64_MAX, description="skip items with fewer training positives")
    ] = 0,
    of: Annotated[
        ReliabilityValue,
        Query(description="histogram of the learned weights or of the reliability scores"),
    ] = ReliabilityValue.WEIGHT,
) -> ReliabilityHistogramOut:
    """Histogram of the active model's learned weights or reliability scores, per modality,
    on one shared x-axis ([0, 1] for scores)."""
    keep = model.arrays["item_pos_count"] >= min_positives if min_positives else slice(None)
    confidence = None
    if of is ReliabilityValue.SCORE:
        rel = model.reliability
        if rel is None:
            return ReliabilityHistogramOut(
                model_version=model.version,
                of=of,
                reliability_absent=model.reliability_absent,
                n_items=0,
                min_positives=min_positives,
                edges=[],
                modalities=[],
            )
        values = np.asarray(rel.score, dtype=np.float64)[keep]
        confidence = np.asarray(rel.confidence, dtype=np.float64)[keep]
        edges = np.linspace(0.0, 1.0, bins + 1)  # the score's own range: comparable across models
    else:
        values = np.asarray(model.arrays["item_weights"], dtype=np.float64)[keep]
        edges = weight_edges(values, bins)
    out = []
    for m, name in enumerate(model.channels):
        column = values[:, m]
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
                mean_confidence=(
                    float(confidence[:, m].mean()) if confidence is not None and len(column)
                    else None
                ),
            )
        )
    return ReliabilityHistogramOut(
        model_version=model.version,
        of=of,
        reliability_absent=None,
        n_items=len(values),
        min_positives=min_positives,
        edges=edges.tolist(),
        modalities=out,
    )


def weight_edges(weights: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges spanning the weights (learned weights have no fixed range)."""
    if len(weights):
        low, high = float(weights.min()), float(weights.max())
    else:
        low, high = 0.0, 1.0
    if high - low < 1e-9:  # unweighted fusion: every weight equal; centre one bin on it
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)
