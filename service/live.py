"""A model version loaded for serving: bundle, index, filters and the arrays requests use.

``LiveModel.load`` does all the slow work (checksums, index build or read, SQL filters) before
the registry swaps it in; after that a request only reads it. Nothing here mutates the bundle.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from service.catalog import Catalog, SeenOverlay
from service.db import crud
from service.db.session import Database
from service.fresh import fold, sync
from service.fresh.items import FoldedItemSet
from service.fresh.users import FoldedUserCache
from service.index import ItemIndex, bundle_index
from service.settings import Settings
from trainer.bundle import (
    RELIABILITY_CONFIDENCE,
    RELIABILITY_SCORE,
    ItemReliability,
    ModelBundle,
    load_bundle,
)
from trainer.errors import BundleError

log = logging.getLogger(__name__)

OVERLAY_MARGIN = dt.timedelta(minutes=5)
"""Interactions this long before the bundle's creation still count as 'ingested since'."""
REFRESH_OVERLAP = dt.timedelta(seconds=5)
"""Refreshes re-read this much before their watermark (rows may commit out of order)."""


def parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def revision_of(value: dt.datetime | None) -> str:
    value = crud.as_utc(value)
    return value.isoformat(timespec="microseconds") if value else ""


@dataclass
class LiveModel:
    version: str
    bundle: ModelBundle
    index: ItemIndex
    catalog: Catalog
    overlay: SeenOverlay
    arrays: dict[str, np.ndarray]  # the bundle's arrays as plain ndarray views (no memmap)
    queries: np.ndarray  # [n_users, M*d] float32
    popular_order: np.ndarray  # item rows by popularity, most popular first
    low_confidence_positives: int
    created_at: dt.datetime
    folded: FoldedItemSet  # items folded in since training: rows n_items.. (service/fresh/)
    users: FoldedUserCache  # users' folded queries (service/fresh/users.py)
    load_seconds: float = 0.0
    overlay_since: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    _reliability_order: dict[tuple[str, int], np.ndarray] = field(
        default_factory=dict, repr=False
    )

    @property
    def channels(self) -> list[str]:
        return self.bundle.channels

    @property
    def n_items(self) -> int:
        return self.bundle.n_items

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        version: str,
        bundle_path: str | Path,
        settings: Settings,
        db: Database | None,
        bundle: ModelBundle | None = None,
        index: ItemIndex | None = None,
    ) -> LiveModel:
        """Verify and load a bundle, read or build its index, read its filters from SQL.

        ``bundle``/``index``: already verified/built by this process (registration), used
        as they are. Raises BundleError (trainer.errors) for a corrupt or mismatched bundle.
        """
        started = time.perf_counter()
        path = Path(bundle_path)
        if bundle is None:
            bundle = load_bundle(path, verify=True, mmap=True)
        vectors = bundle.item_vectors()
        dim = len(bundle.channels) * bundle.dim
        if vectors.shape != (bundle.n_items, dim):
            raise BundleError(
                f"{path}: item vectors {vectors.shape}, expected {(bundle.n_items, dim)}"
            )
        if index is None:
            index = bundle_index(bundle, version, settings, vectors)
        # plain views: np.memmap's per-index overhead would show on every request
        arrays = {name: np.asarray(a) for name, a in bundle.arrays.items()}
        popularity = arrays["item_popularity"]
        # most popular first, ties broken by row so the order is total and stable
        popular_order = np.lexsort((np.arange(bundle.n_items), -popularity.astype(np.int64)))
        created = parse_time(bundle.manifest.created_at) or dt.datetime.now(dt.UTC)
        folded = FoldedItemSet(
            bundle.n_items, len(bundle.channels), bundle.dim, settings.foldin_max_items
        )

        def row_of(item_id: str) -> int | None:
            row = bundle.item_index(item_id)
            return row if row is not None else folded.row(item_id)

        model = cls(
            version=version,
            bundle=bundle,
            index=index,
            catalog=Catalog(bundle.n_items, row_of, spare=folded.slots.limit),
            overlay=SeenOverlay(row_of),
            arrays=arrays,
            queries=bundle.query_vectors(),
            popular_order=popular_order,
            low_confidence_positives=settings.low_confidence_positives,
            created_at=created,
            overlay_since=created - OVERLAY_MARGIN,
            folded=folded,
            users=FoldedUserCache(settings.foldin_max_users),
        )
        if db is not None:
            # folded items first: the catalogue and the overlay resolve their ids to rows
            sync.refresh_items(model, db, full=True)
            sync.fold_missing(model, db, settings.foldin_max_items)
            sync.refresh_items(model, db)
            model.refresh_catalog(db, full=True)
            model.refresh_overlay(db)
        _ = model.user_folder  # its precomputation here, not in the first fold-in request
        model.load_seconds = time.perf_counter() - started
        log.info(
            "loaded model %s: %d items, %s index, %.2fs",
            version,
            bundle.n_items,
            index.params.kind.value,
            model.load_seconds,
        )
        return model

    # -- refresh from SQL ------------------------------------------------------------------
    def refresh_catalog(self, db: Database, *, full: bool = False) -> int:
        """Re-read items changed since the last refresh (all of them with ``full``)."""
        with db.session() as session:
            watermark = crud.items_watermark(session)
            revision = revision_of(watermark)
            if full:
                self.catalog.load(crud.item_filter_rows(session), revision)
                return self.n_items
            if revision <= self.catalog.revision:
                return 0
            since = None
            if self.catalog.revision:
                # a little overlap: a row committed late may carry a slightly older timestamp
                since = dt.datetime.fromisoformat(self.catalog.revision) - REFRESH_OVERLAP
            rows = crud.item_filter_rows(session, since=since)
        return self.catalog.apply(rows, revision)

    def refresh_overlay(self, db: Database) -> set[str]:
        """Add interactions ingested since the last refresh; return the users that changed."""
        with db.session() as session:
            rows = crud.interactions_since(session, since=self.overlay_since)
        if rows:
            newest = max(crud.as_utc(r[2]) or self.overlay_since for r in rows)
            self.overlay_since = max(self.overlay_since, newest - REFRESH_OVERLAP)
        return self.overlay.add((u, i) for u, i, _ in rows)

    def refresh_folded(self, db: Database) -> int:
        """Apply items other processes (or the encode job) folded since the last refresh."""
        return sync.refresh_items(self, db)

    # -- rows: the bundle's items, then folded ones (service/fresh/items.py) -------------------
    def row_of(self, item_id: str) -> int | None:
        """The item's row: its bundle row, else its folded slot's row (set per instance)."""
        row = self.bundle.item_index(item_id)
        return row if row is not None else self.folded.row(item_id)

    @property
    def n_rows(self) -> int:
        """Rows a request may see: the bundle's items and the folded slots in use."""
        return self.bundle.n_items + self.folded.high_water

    def item_id(self, row: int) -> str:
        n = self.bundle.n_items
        return self.bundle.item_ids[row] if row < n else (self.folded.item_id(row) or "")

    def item_ids_of(self, rows: np.ndarray) -> list[str]:
        ids, n = self.bundle.item_ids, self.bundle.n_items
        return [ids[r] if r < n else (self.folded.item_id(r) or "") for r in rows.tolist()]

    def _split(self, rows: np.ndarray) -> tuple[bool, np.ndarray]:
        """(all rows are bundle rows, mask of the folded ones)."""
        cold = rows >= self.bundle.n_items
        return (not cold.any()), cold

    def _gather(
        self, rows: np.ndarray, base: np.ndarray, side: np.ndarray, updated: str | None = None
    ) -> np.ndarray:
        """Rows of ``base`` (bundle rows) or ``side`` (folded slots); with ``updated`` (the
        UpdatedItems array it names), recomputed catalogue rows from there."""
        plain, cold = self._split(rows)
        if plain:
            out = base[rows]
        else:
            out = np.empty((rows.size, *base.shape[1:]), dtype=base.dtype)
            out[~cold] = base[rows[~cold]]
            out[cold] = side[rows[cold] - self.bundle.n_items]
        if updated is not None:
            upd = self.folded.updated
            hit, slots = upd.lookup(rows)  # the index first: the arrays then hold its slots
            if slots.size:
                out[hit] = getattr(upd, updated)[slots]
        return out

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """v_i of item rows, bundle (recomputed where updated) or folded, float32 [r, M*d]."""
        if self.folded.high_water == 0 and not len(self.folded.updated):
            return self.index.vectors[rows]
        return self._gather(rows, self.index.vectors, self.folded.vectors, "vectors")

    def emb_of(self, rows: np.ndarray) -> np.ndarray:
        return self._gather(rows, self.arrays["item_emb"], self.folded.emb, "emb")

    def weights_of(self, rows: np.ndarray) -> np.ndarray:
        return self._gather(rows, self.arrays["item_weights"], self.folded.weights)

    def pos_count_of(self, rows: np.ndarray) -> np.ndarray:
        """Training positives per row (0 for folded items: the model saw none)."""
        counts = self.arrays["item_pos_count"]
        plain, cold = self._split(rows)
        if plain:
            return counts[rows]
        out = np.zeros(rows.size, dtype=counts.dtype)
        out[~cold] = counts[rows[~cold]]
        return out

    def search(self, query: np.ndarray, n: int) -> np.ndarray:
        """About the ``n`` best rows, each once: the bundle's index without the updated
        catalogue rows (it holds their trained vectors), those exactly with their recomputed
        vectors, and the folded items exactly."""
        ids = self.index.search(query, n)
        parts = [ids]
        upd = self.folded.updated
        snapshot = upd.index  # one snapshot for both: each updated row comes from one side
        rows, slots = snapshot
        if rows.size and n > 0:
            stale = upd.lookup(ids, snapshot)[0]
            if stale.any():  # as many of the others as asked for: search past the dropped
                ids = self.index.search(query, n + int(stale.sum()))
                stale = upd.lookup(ids, snapshot)[0]
            parts[0] = ids[~stale]
            scores = upd.vectors[slots] @ query
            top = np.argpartition(-scores, n - 1)[:n] if n < rows.size else slice(None)
            parts.append(rows[top])
        if self.folded.high_water:
            parts.append(self.folded.search(query, n))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def exact_scores(self, query: np.ndarray) -> np.ndarray:
        """``v_i . q`` of every row, float32 [n_rows]."""
        scores = self.index.exact_scores(query)
        upd = self.folded.updated
        rows, slots = upd.index
        if rows.size:
            scores[rows] = upd.vectors[slots] @ query  # a fresh product: ours to change
        hw = self.folded.high_water
        if hw == 0:
            return scores
        return np.concatenate([scores, self.folded.vectors[:hw] @ query])

    @property
    def trained_until(self) -> dt.datetime:
        """Interactions ingested from this time on are new to the model (the overlay's start)."""
        return self.created_at - OVERLAY_MARGIN

    @cached_property
    def user_folder(self) -> object | None:
        """The bundle's user fold-in (service/fresh/fold.py), None when it has none."""
        return fold.user_folder(self.bundle)

    # -- per-request helpers -----------------------------------------------------------------
    def excluded_rows(self, user_row: int | None, user_id: str) -> np.ndarray:
        """Rows the user has seen: training interactions plus those ingested since."""
        recent = self.overlay.rows(user_id)
        if user_row is None:
            return recent if recent is not None else np.empty(0, dtype=np.int64)
        ptr = self.arrays["seen_indptr"]
        seen = self.arrays["seen_indices"][ptr[user_row] : ptr[user_row + 1]]
        if recent is None:
            return np.sort(seen).astype(np.int64)
        return np.union1d(seen, recent)

    @cached_property
    def reliability(self) -> ItemReliability | None:
        """The bundle's reliability score and confidence per (item, channel), or None for a
        bundle without them (``reliability_absent`` says why). Its arrays are the plain views
        in ``arrays``, like every other array a request reads (built once: requests read it)."""
        rel = self.bundle.reliability
        if rel is None:
            return None
        return replace(
            rel,
            score=self.arrays[RELIABILITY_SCORE],
            confidence=self.arrays[RELIABILITY_CONFIDENCE],
        )

    @cached_property
    def reliability_absent(self) -> str | None:
        return self.bundle.reliability_absent

    def reliability_order(self, channel: int, by: str = "weight") -> np.ndarray:
        """Item rows by the channel's learned weight (``by="weight"``) or reliability score
        (``by="score"``), lowest first, ties by row (cached)."""
        order = self._reliability_order.get((by, channel))
        if order is None:
            if by == "score":
                rel = self.reliability
                if rel is None:
                    raise ValueError(f"model {self.version} has no reliability score")
                values = np.asarray(rel.score[:, channel])
            else:
                values = self.arrays["item_weights"][:, channel]
            order = np.lexsort((np.arange(self.n_items), values))
            self._reliability_order[(by, channel)] = order
        return order
