"""Ranking: candidates from the index, filters, exact re-scoring, pages and explanations.

Scores follow ALGORITHMS.md 1.8: ``y_ui = sum_m w_i^m (e_u^m . e_i^m) = q_u . v_i``, computed
in float64 from the stored v_i for every candidate (the index only proposes candidates), and
the per-modality contributions of a returned item sum to its score.

Pages that never overlap. A user's ranking is built in stages whose sizes depend only on the
user's state (seen items, filters), never on ``k`` or ``offset``:

1. fetch the ``pool`` best raw candidates from the index (``pool`` = candidate pool plus the
   user's seen items, divided by the share of items the filters let through);
2. drop those fetched before, filter the rest, order them by exact score (ties by row) and
   append them to the ranking;
3. while the ranking is shorter than ``offset + k``, multiply ``pool`` by 4 and go to 1;
   past ``ann_pool_max`` (or a flat index past half the catalogue) rank what is left exactly.

Page ``[offset, offset + k)`` is a slice of that ranking, so for one model version and one
user state every page is a slice of the same list: no item repeats across pages and none is
skipped. A category filter that keeps at most ``exact_subset_max_items`` items is scored
exactly on that subset (no index needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.explain import explained_items, popular_items
from service.fresh.users import FoldedUser
from service.index import IndexKind
from service.live import LiveModel

GROWTH = 4
_EXACT_MARGIN = 32  # extra float32 pre-selections re-scored in float64 (ties at the cut)


@dataclass(frozen=True)
class RankingConfig:
    candidate_pool: int = 128
    ann_pool_max: int = 4096
    exact_subset_max_items: int = 20_000


@dataclass(frozen=True)
class RecQuery:
    user_id: str
    k: int = 20
    offset: int = 0
    exclude_seen: bool = True
    explain: bool = True
    categories: tuple[str, ...] = ()


Scorer = Callable[[np.ndarray], np.ndarray]


def contains(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` are in ``sorted_rows`` (cheaper than np.isin for short arrays)."""
    pos = np.searchsorted(sorted_rows, rows)
    pos[pos == sorted_rows.size] = 0
    return sorted_rows[pos] == rows


Keep = Callable[[np.ndarray], np.ndarray]


# -- exact scores ------------------------------------------------------------------------------
def exact_scorer(model: LiveModel, query: np.ndarray) -> Scorer:
    """Scores ``v_i . q`` of given rows (bundle or folded) in float64: the order every
    ranking uses."""
    query64 = query.astype(np.float64)

    def scorer(rows: np.ndarray) -> np.ndarray:
        return model.vectors_of(rows).astype(np.float64) @ query64

    return scorer


def _by_score(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Rows ordered by score, highest first, ties by row (a total order)."""
    return rows[np.lexsort((rows, -scores))]


def _top_exact(rows: np.ndarray, rough: np.ndarray, scorer: Scorer, need: int) -> np.ndarray:
    """The best ``need`` (plus a margin) of ``rows``: pre-select on ``rough`` float32 scores,
    order the survivors by the exact scorer."""
    take = need + _EXACT_MARGIN
    if rows.size > take:
        part = np.argpartition(-rough, take - 1)[:take]
        rows = rows[part]
    return _by_score(rows, scorer(rows))


# -- staged candidate ranking ------------------------------------------------------------------
def rank_rows(
    model: LiveModel,
    query: np.ndarray,
    *,
    scorer: Scorer,
    keep: Keep,
    need: int,
    pool: int,
    cfg: RankingConfig,
    allowed_all: Callable[[], np.ndarray],
) -> np.ndarray:
    """At least ``need`` item rows in rank order (fewer when the filters leave fewer)."""
    index = model.index
    n = model.n_rows
    flat_limit = n // 2 if index.params.kind is IndexKind.FLAT else n
    parts: list[np.ndarray] = []
    looked = np.empty(0, dtype=np.int64)
    got = 0
    while pool <= cfg.ann_pool_max and pool < flat_limit:
        ids = model.search(query, pool)
        fresh = np.setdiff1d(ids, looked, assume_unique=True) if looked.size else ids
        fresh = fresh[keep(fresh)]
        if fresh.size:
            parts.append(_by_score(fresh, scorer(fresh)))
            got += fresh.size
        if got >= need:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        looked = np.union1d(looked, ids)
        pool *= GROWTH
    # exact over everything not looked at yet
    rows = allowed_all()
    if looked.size:
        rows = rows[~np.isin(rows, looked, assume_unique=True)]
    if rows.size:
        if rows.size < n // 2:
            rough = model.vectors_of(rows) @ query
        else:
            rough = model.exact_scores(query)[rows]
        parts.append(_top_exact(rows, rough, scorer, need - got))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


@dataclass
class Filters:
    """What a request removes: hidden items, seen rows, rows outside the label filter."""

    hidden: np.ndarray  # bool [n_items]
    excluded: np.ndarray  # sorted int64 rows
    label_rows: np.ndarray | None  # sorted rows carrying every label, None = no filter
    label_mask: np.ndarray | None

    def keep(self, rows: np.ndarray) -> np.ndarray:
        ok = ~self.hidden[rows]
        if self.excluded.size:
            ok &= ~contains(self.excluded, rows)
        if self.label_mask is not None:
            ok &= self.label_mask[rows]
        return ok

    def allowed(self, n_items: int) -> np.ndarray:
        rows = self.label_rows if self.label_rows is not None else np.arange(n_items)
        return rows[self.keep(rows)]

    def pass_rate(self, n_items: int, n_hidden: int) -> float:
        share = 1.0 - n_hidden / max(n_items, 1)
        if self.label_rows is not None:
            share *= self.label_rows.size / max(n_items, 1)
        return max(share, 1e-6)


def make_filters(model: LiveModel, user_row: int | None, q: RecQuery) -> Filters:
    excluded = (
        model.excluded_rows(user_row, q.user_id) if q.exclude_seen else np.empty(0, dtype=np.int64)
    )
    label_rows = label_mask = None
    if q.categories:
        label_rows, label_mask = model.catalog.label_filter(q.categories)
    return Filters(model.catalog.hidden, excluded, label_rows, label_mask)


def initial_pool(model: LiveModel, filters: Filters, cfg: RankingConfig) -> int:
    base = cfg.candidate_pool + filters.excluded.size
    rate = filters.pass_rate(model.n_rows, model.catalog.n_hidden)
    return int(np.ceil(base / rate))


# -- the two strategies ------------------------------------------------------------------------
def personal_rows(
    model: LiveModel,
    user_row: int | None,
    q: RecQuery,
    cfg: RankingConfig,
    query: np.ndarray | None = None,
) -> np.ndarray:
    """The user's ranking with ``query``: folded (service/fresh/), else their trained one."""
    if query is None:
        assert user_row is not None, "a user without a trained query needs a folded one"
        query = model.queries[user_row]
    filters = make_filters(model, user_row, q)
    scorer = exact_scorer(model, query)
    n_rows = model.n_rows

    need = q.offset + q.k
    if filters.label_rows is not None and filters.label_rows.size <= cfg.exact_subset_max_items:
        rows = filters.allowed(n_rows)
        rough = model.vectors_of(rows) @ query
        return _top_exact(rows, rough, scorer, need)
    return rank_rows(
        model,
        query,
        scorer=scorer,
        keep=filters.keep,
        need=need,
        pool=initial_pool(model, filters, cfg),
        cfg=cfg,
        allowed_all=lambda: filters.allowed(n_rows),
    )


def popular_rows(model: LiveModel, q: RecQuery, chunk: int = 4096) -> np.ndarray:
    """Most popular items that pass the filters, at least ``offset + k`` of them if any."""
    filters = make_filters(model, None, q)
    need = q.offset + q.k
    order = model.popular_order
    parts: list[np.ndarray] = []
    got = 0
    for start in range(0, order.size, chunk):
        block = order[start : start + chunk]
        block = block[filters.keep(block)]
        parts.append(block)
        got += block.size
        if got >= need:
            break
        chunk *= GROWTH
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# -- response payloads -------------------------------------------------------------------------
def recommend(
    model: LiveModel, q: RecQuery, cfg: RankingConfig, folded: FoldedUser | None = None
) -> dict[str, Any]:
    """The payload of GET /users/{id}/recommendations (plain dicts for orjson).

    ``folded``: the user's query folded in from interactions posted since training
    (service/fresh/user_sync.py ``user_query``); it replaces a known user's trained query and makes
    an unknown user ``fold-in`` instead of ``popular``."""
    user_row = model.bundle.user_index(q.user_id)
    if user_row is None and folded is None:
        rows = popular_rows(model, q)[q.offset : q.offset + q.k]
        items = popular_items(model, rows, q.offset)
        strategy = "popular"
    else:
        if folded is not None:
            query, user_emb = folded.query, folded.emb
        else:
            query, user_emb = model.queries[user_row], model.arrays["user_emb"][user_row]
        rows = personal_rows(model, user_row, q, cfg, query)[q.offset : q.offset + q.k]
        items = explained_items(model, user_emb, rows, q.offset, explain=q.explain)
        strategy = "personal" if user_row is not None else "fold-in"
    return {
        "user_id": q.user_id,
        "model_version": model.version,
        "strategy": strategy,
        "items": items,
        "reliability_absent": model.reliability_absent,
        "fold_in": folded.info() if folded is not None else None,
    }


def similar_rows(
    model: LiveModel, item_row: int, k: int, cfg: RankingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbours of an item in the fused space (inner product of v_i), itself excluded."""
    query = model.vectors_of(np.asarray([item_row], dtype=np.int64))[0]
    filters = Filters(model.catalog.hidden, np.asarray([item_row], dtype=np.int64), None, None)
    scorer = exact_scorer(model, query)
    n_rows = model.n_rows

    rows = rank_rows(
        model,
        query,
        scorer=scorer,
        keep=filters.keep,
        need=k,
        pool=initial_pool(model, filters, cfg),
        cfg=cfg,
        allowed_all=lambda: filters.allowed(n_rows),
    )[:k]
    return rows, scorer(rows)
