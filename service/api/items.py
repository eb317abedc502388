"""Items: metadata with the active model's reliability weights and scores, edits, similar items."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Path, Query
from sqlalchemy.orm import Session

from service.api.deps import LiveModelDep, RegistryDep, SessionDep, StateDep
from service.api.reliability import reliability_of
from service.api.responses import errors
from service.auth import ReadAccess, WriteAccess
from service.db import crud
from service.db.tables import Item
from service.errors import InvalidRequest, NotFound
from service.fresh.fold import FoldRefused
from service.fresh.schemas import ItemsWriteOut
from service.fresh.status import folded_weights, item_status, updated_status
from service.fresh.sync import fold_and_store
from service.jobs.encode import submit_encode
from service.limits import SafeId
from service.live import LiveModel
from service.ranking import similar_rows
from service.schemas import (
    ItemIn,
    ItemModelInfo,
    ItemOut,
    ItemPatch,
    ItemsIn,
    SimilarItem,
    SimilarOut,
)
from service.state import ServiceState

router = APIRouter(prefix="/items", tags=["items"])

ItemId = Annotated[SafeId, Path(min_length=1, max_length=255)]


def model_info(model: LiveModel | None, item_id: str) -> ItemModelInfo | None:
    row = model.bundle.item_index(item_id) if model is not None else None
    if model is not None and row is None and (weights := folded_weights(model, item_id)):
        return ItemModelInfo(  # folded in: no training positives, no reliability score
            model_version=model.version,
            weights=dict(zip(model.channels, weights, strict=True)),
            positives=0,
            popularity=0,
            low_confidence=True,
            reliability=None,
            reliability_absent="a folded item has no reliability score (the model never "
            "trained on it)",
        )
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
        reliability=reliability_of(model.reliability, model.channels, row),
        reliability_absent=model.reliability_absent,
    )


def item_out(item: Item, model: LiveModel | None, session: Session | None = None) -> ItemOut:
    cold = model is not None and model.bundle.item_index(item.external_id) is None
    return ItemOut(
        item_id=item.external_id,
        title=item.title,
        categories=list(item.categories or []),
        metadata=dict(item.meta or {}),
        hidden=item.hidden,
        model=model_info(model, item.external_id),
        cold=cold,
        fold_in=(
            item_status(session, model, item.external_id, item.id)
            if cold and model is not None and session is not None
            else updated_status(model, item.external_id) if model is not None
            else None
        ),
    )


RECOMMENDABLE = (
    "metadata, categories and the hidden flag apply at once; a new item with content vectors "
    "for every modality of the model is folded in and recommended within seconds (listed in "
    "folded), one with text once its encoding job has run (pending); new content of an item "
    "the model trained on is learned at the next retrain (POST /retrain)"
)
Features = dict[str, tuple[bytes, int, str | None]]


def reference_dims(state: ServiceState) -> dict[str, int]:
    """Vector size per modality: the active model's input sizes, then what SQL stores."""
    with state.db.session() as session:
        dims = crud.feature_dims(session)
    live = state.registry.current
    if live is not None:
        for channel in live.bundle.manifest.channels:
            if channel.feature_dim:
                dims[channel.name] = channel.feature_dim
    return dims


def item_features(
    n: int, item: ItemIn, dims: dict[str, int], text_modalities: list[str]
) -> Features:
    """Check one item's content against the reference sizes; 422 names the item and modality."""
    from trainer.data.text import TEXT_DIM

    out: Features = {}
    for modality, content in item.content.items():
        where = f"items.{n}.content.{modality}"
        if dims and modality not in dims:
            known = ", ".join(sorted(dims))
            raise InvalidRequest(f"{where}: unknown modality (known: {known})")
        if (content.vector is None) == (content.text is None):
            raise InvalidRequest(f"{where}: give exactly one of vector or text")
        if content.text is not None:
            if modality not in text_modalities:
                raise InvalidRequest(
                    f"{where}: raw text is accepted for {', '.join(text_modalities) or 'no'} "
                    "modalities only; send a vector"
                )
            if dims.get(modality, TEXT_DIM) != TEXT_DIM:
                raise InvalidRequest(
                    f"{where}: text encodes to {TEXT_DIM} values but the modality has "
                    f"{dims[modality]}; send a vector"
                )
            out[modality] = (b"", 0, content.text)  # encoded by an encode job (or a retrain)
            continue
        vector = np.asarray(content.vector, dtype=np.float64)
        if modality in dims and vector.shape[0] != dims[modality]:
            raise InvalidRequest(
                f"{where}.vector: has {vector.shape[0]} values, the modality has {dims[modality]}"
            )
        if vector.size == 0 or not np.isfinite(vector).all():
            bad = "is empty" if vector.size == 0 else "contains NaN or inf"
            raise InvalidRequest(f"{where}.vector: {bad}")
        out[modality] = (vector.astype(np.float32).tobytes(), int(vector.shape[0]), None)
    return out


def sent_fields(item: ItemIn) -> dict[str, Any]:
    """The item attributes the client sent (an update leaves the others as they are)."""
    sent = item.model_fields_set
    fields: dict[str, Any] = {}
    if "title" in sent:
        fields["title"] = item.title
    if "categories" in sent:
        fields["categories"] = list(item.categories or [])
    if "metadata" in sent:
        fields["meta"] = dict(item.metadata or {})
    if "hidden" in sent:
        fields["hidden"] = bool(item.hidden)
    return fields


@router.post(
    "",
    response_model=ItemsWriteOut,
    responses=errors(401, 403, 422),
    dependencies=[WriteAccess],
    summary="Create or update items: metadata, categories, hidden flag, modality content",
)
def write_items(body: ItemsIn, state: StateDep) -> ItemsWriteOut:
    ids = [it.item_id for it in body.items]
    if len(set(ids)) != len(ids):
        dup = next(n for n, i in enumerate(ids) if ids.index(i) != n)
        raise InvalidRequest(f"items.{dup}.item_id: {ids[dup]!r} appears twice in the batch")
    dims = reference_dims(state)
    checked = [
        item_features(n, it, dims, state.settings.text_modalities)
        for n, it in enumerate(body.items)
    ]
    created, updated = [], []
    live = state.registry.current
    with_content = [it.item_id for it, f in zip(body.items, checked, strict=True) if f]
    waiting: dict[str, str] = {}
    with state.db.session() as session:
        for it, features in zip(body.items, checked, strict=True):
            fields = sent_fields(it)
            _, was_created = crud.upsert_item(
                session, external_id=it.item_id, fields=fields, features=features
            )
            (created if was_created else updated).append(it.item_id)
        if live is not None and with_content:
            try:  # in this transaction: the item and its folded vector commit together
                waiting = fold_and_store(session, live.bundle, live.version, with_content)
            except FoldRefused as exc:
                n = ids.index(exc.item_id)
                raise InvalidRequest(
                    f"items.{n}.content.{exc.modality or ''}: item {exc.item_id!r} cannot be "
                    f"folded into model {live.version}: {exc.reason}"
                ) from None
    texts = [i for i, f in zip(ids, checked, strict=True) if any(v[2] for v in f.values())]
    job_id = submit_encode(state, texts) if texts else None
    state.registry.items_changed()
    pending = {
        i: f"{why} (job {job_id})" if job_id and i in texts else why for i, why in waiting.items()
    }
    folded = [i for i in with_content if live is not None and i not in waiting]
    folded = [i for i in folded if live is not None and live.bundle.item_index(i) is None]
    return ItemsWriteOut(
        created=created,
        updated=updated,
        recommendable=RECOMMENDABLE,
        folded=folded,
        pending=pending,
        job_id=job_id,
    )


@router.get(
    "/{item_id}", response_model=ItemOut, responses=errors(401, 403, 404), dependencies=[ReadAccess]
)
def get_item(item_id: ItemId, session: SessionDep, registry: RegistryDep) -> ItemOut:
    item = crud.get_item(session, external_id=item_id)
    if item is None:
        raise NotFound(f"no item {item_id!r}")
    return item_out(item, registry.current, session)


@router.patch(
    "/{item_id}",
    response_model=ItemOut,
    responses=errors(401, 403, 404, 422),
    summary="Hide or re-label an item (applies to recommendations at once)",
    dependencies=[WriteAccess],
)
def patch_item(item_id: ItemId, patch: ItemPatch, state: StateDep) -> ItemOut:
    with state.db.session() as session:
        item = crud.update_item(session, external_id=item_id, **patch.model_dump())
        if item is None:
            raise NotFound(f"no item {item_id!r}")
    state.registry.items_changed()
    return item_out(item, state.registry.current)


@router.get(
    "/{item_id}/similar",
    response_model=SimilarOut,
    responses=errors(401, 403, 404, 422, 503),
    dependencies=[ReadAccess],
)
def similar(
    item_id: ItemId,
    model: LiveModelDep,
    state: StateDep,
    k: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> SimilarOut:
    row = model.row_of(item_id)  # a folded item has neighbours too
    if row is None:
        raise NotFound(f"item {item_id!r} is not in model {model.version} (nor folded into it)")
    rows, scores = similar_rows(model, row, k, state.ranking)
    ids = model.item_ids_of(rows)
    return SimilarOut(
        item_id=item_id,
        model_version=model.version,
        items=[
            SimilarItem(item_id=ids[n], rank=n + 1, score=s, cold=r >= model.n_items)
            for n, (r, s) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True))
        ],
    )
