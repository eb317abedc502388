"""Folded items of one loaded model: their vectors beside the bundle's, in rows after it.

Bundle items are rows ``0 .. n_items-1``; a folded item gets a slot ``s`` and is row
``n_items + s`` everywhere a request uses rows (filters, the seen overlay, explanations), so
the ranking treats both alike. The FAISS index of the bundle is never changed (an IVF or HNSW
index stays exactly as built); folded vectors are searched exactly beside it
(:meth:`FoldedItemSet.search`, one matrix-vector product over at most ``Slots.limit`` rows).

At most ``capacity`` items are held (``MARGO_FOLDIN_MAX_ITEMS``); past it the item folded
longest ago is evicted (it stays in SQL, and is served again after the next retrain, or when
the model is reloaded and it is among the newest). Arrays grow by doubling, up to capacity
plus a margin of freed slots (:class:`Slots`).

Writers hold ``_lock``; readers never lock. A slot's vector is written before its row is
unhidden in the catalogue; a freed slot is scrubbed from the catalogue and the seen overlay
(every row ``put`` and ``remove`` free, a row taken again in the same call included), and is
taken again only REUSE_AFTER_S after it was freed, so a request that read its row before
does not find the next item's id or vector there.

Catalogue items whose vectors were recomputed from the users who interacted with them since
training (:class:`UpdatedItems`, ``FoldedItemSet.updated``; service/fresh/sync.py) keep their
bundle rows; the model reads their new vectors instead of the bundle's, leaves them out of
the FAISS results and scores them exactly beside the folded items (service/live.py). They are
counted apart (their own ``len``, ``nbytes``, ``evicted``: /metrics'
margo_foldin_updated_items*), at most ``capacity`` of them besides the folded items.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer import scoring


@dataclass(frozen=True)
class FoldedRow:
    """One folded item as SQL stores it (service/db/crud/foldin.py)."""

    item_id: str
    emb: np.ndarray  # float32 [M, d]
    weights: np.ndarray  # float32 [M]
    provenance: dict[str, Any]


@dataclass(frozen=True)
class UpdatedRow:
    """A catalogue item's recomputed embedding (its bundle ``row``) and its trained weights."""

    row: int
    emb: np.ndarray  # float32 [M, d]
    weights: np.ndarray  # float32 [M]
    provenance: dict[str, Any]


REUSE_AFTER_S = 5.0
"""A freed slot is taken again only this long after it was freed (longer than a request holds
the rows it read), unless every slot is taken."""


class Slots:
    """Slot numbers of a set of at most ``capacity`` entries: up to ``limit`` slots (the
    capacity plus a margin) so that a freed slot can wait REUSE_AFTER_S before it is reused;
    when all of them are taken (more than the margin freed within that time) the one freed
    longest ago is reused at once. The caller holds its lock."""

    def __init__(self, capacity: int) -> None:
        self.limit = capacity + (max(16, capacity // 16) if capacity > 0 else 0)
        self.taken = 0  # slots ever taken: 0 .. taken - 1
        self._free: deque[tuple[float, int]] = deque()  # (when freed, slot), oldest first

    def free(self, slot: int) -> None:
        self._free.append((time.monotonic(), slot))

    def take(self) -> int:
        """A slot freed long enough ago, else a new one, else the one freed longest ago."""
        if self._free and (
            self.taken >= self.limit or self._free[0][0] <= time.monotonic() - REUSE_AFTER_S
        ):
            return self._free.popleft()[1]
        self.taken += 1
        return self.taken - 1

    def grown(self, slot: int, size: int) -> int:
        """The array size to hold ``slot`` (``size`` when it does already): doubling, capped
        at ``limit``."""
        return size if slot < size else min(self.limit, max(16, 2 * size, slot + 1))


class UpdatedItems:
    """Catalogue rows with a recomputed embedding, at most ``capacity`` (past it the one
    updated longest ago falls back to its trained vector until its next update).

    Readers take ``index`` (sorted rows, their slots: one tuple, swapped whole) and then the
    slot arrays; a writer grows the arrays and writes a slot before it publishes an index
    that names it, so a reader's arrays always hold the slots its index names."""

    def __init__(self, n_channels: int, dim: int, capacity: int) -> None:
        self.n_channels = n_channels
        self.dim = dim
        self.capacity = capacity
        self.vectors = np.zeros((0, n_channels * dim), dtype=np.float32)
        self.emb = np.zeros((0, n_channels, dim), dtype=np.float32)
        self.index: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.provenance: dict[int, dict[str, Any]] = {}  # row -> how it was updated
        self._slot: dict[int, int] = {}
        self._age: OrderedDict[int, None] = OrderedDict()  # updated longest ago first
        self.slots = Slots(capacity)
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._slot)

    def nbytes(self) -> int:
        return int(self.vectors.nbytes + self.emb.nbytes)

    def lookup(
        self, rows: np.ndarray, index: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the updated ones among ``rows``, their slots), by ``index`` (a snapshot
        the caller took) or the current one."""
        updated, slots = self.index if index is None else index
        if updated.size == 0 or rows.size == 0:
            return np.zeros(rows.shape, dtype=bool), np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(updated, rows), updated.size - 1)
        hit = updated[pos] == rows
        return hit, slots[pos[hit]]

    def put(self, rows: np.ndarray, emb: np.ndarray, weights: np.ndarray,
            provenance: list[dict[str, Any]]) -> None:
        """Set the embeddings ``emb`` [k, M, d] (and vectors with the rows' ``weights``
        [k, M]) of catalogue ``rows`` (distinct); the caller holds the set's lock."""
        if self.capacity <= 0 or len(rows) == 0:
            return
        keep = slice(-self.capacity, None)
        rows = [int(r) for r in np.asarray(rows)[keep]]
        emb, weights, provenance = emb[keep], weights[keep], provenance[keep]
        vectors = scoring.item_vectors(np.asarray(emb, np.float32), np.asarray(weights, np.float32))
        for row in rows:
            if row in self._age:
                self._age.move_to_end(row)
        over = len(self._slot) + sum(r not in self._slot for r in rows) - self.capacity
        if over > 0:  # out of the index before their slots are reused: they read as trained
            for _ in range(over):
                old, _ = self._age.popitem(last=False)
                self.slots.free(self._slot.pop(old))
                self.provenance.pop(old, None)
            self.evicted += over
            self._publish()
        for n, row in enumerate(rows):
            slot = self._slot.get(row)
            if slot is None:
                slot = self._take_slot()
                self._slot[row] = slot
            self.emb[slot] = emb[n]
            self.vectors[slot] = vectors[n]
            self.provenance[row] = provenance[n]
            self._age[row] = None
            self._age.move_to_end(row)
        self._publish()

    def _publish(self) -> None:
        ordered = np.asarray(sorted(self._slot), np.int64)
        self.index = (ordered, np.asarray([self._slot[r] for r in ordered.tolist()], np.int64))

    def _take_slot(self) -> int:
        slot = self.slots.take()
        size = self.slots.grown(slot, self.vectors.shape[0])
        if size > self.vectors.shape[0]:
            vectors = np.zeros((size, self.vectors.shape[1]), dtype=np.float32)
            emb = np.zeros((size, self.n_channels, self.dim), dtype=np.float32)
            n = self.vectors.shape[0]
            vectors[:n], emb[:n] = self.vectors, self.emb
            self.vectors, self.emb = vectors, emb  # copied, then swapped: readers see either
        return slot


class FoldedItemSet:
    def __init__(self, n_items: int, n_channels: int, dim: int, capacity: int) -> None:
        self.base = n_items
        self.n_channels = n_channels
        self.dim = dim
        self.capacity = capacity
        self.vectors = np.zeros((0, n_channels * dim), dtype=np.float32)  # v_i per slot
        self.emb = np.zeros((0, n_channels, dim), dtype=np.float32)
        self.weights = np.zeros((0, n_channels), dtype=np.float32)
        self.ids: list[str | None] = []  # slot -> item id (None: free)
        self.provenance: dict[str, dict[str, Any]] = {}
        self._slot: dict[str, int] = {}
        self._age: OrderedDict[str, None] = OrderedDict()  # oldest fold first
        self.slots = Slots(capacity)  # the catalogue keeps slots.limit spare rows for them
        self.evicted = 0  # items dropped for capacity since the model was loaded
        # SQL watermark of the rows applied, set after them: part of the response cache key,
        # the same in every process that applied the same rows (a count of changes was not:
        # one poll may apply what another process applied in two, and Redis shares pages)
        self.revision = ""
        self.updated = UpdatedItems(n_channels, dim, capacity)  # catalogue rows recomputed
        self._lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Folded items held (the updated catalogue items count in ``updated``)."""
        return len(self._slot)

    @property
    def high_water(self) -> int:
        """Slots ever used: rows ``base .. base + high_water - 1`` may be folded items."""
        return len(self.ids)

    def row(self, item_id: str) -> int | None:
        slot = self._slot.get(item_id)
        return None if slot is None else self.base + slot

    def item_id(self, row: int) -> str | None:
        slot = row - self.base
        return self.ids[slot] if 0 <= slot < len(self.ids) else None

    def nbytes(self) -> int:
        """Bytes of the folded items' arrays (allocated slots, not only the live ones)."""
        return int(self.vectors.nbytes + self.emb.nbytes + self.weights.nbytes)

    def search(self, query: np.ndarray, n: int) -> np.ndarray:
        """Rows of the ``n`` folded items with the largest ``v_i . q`` (exact; free slots have
        zero vectors and are hidden in the catalogue, so callers filter them out)."""
        hw = len(self.ids)
        if hw == 0 or n <= 0:
            return np.empty(0, dtype=np.int64)
        scores = self.vectors[:hw] @ query
        top = np.argpartition(-scores, n - 1)[:n] if n < hw else np.arange(hw)
        return top.astype(np.int64) + self.base

    # -- writes ------------------------------------------------------------------------------
    def put(self, rows: list[FoldedRow]) -> tuple[list[int], list[int]]:
        """Add or replace items; returns (rows written, rows freed by eviction). The caller
        scrubs the freed rows first (the catalogue, the seen overlay: a row may be freed and
        written in one call when every slot is taken), then makes the written ones visible."""
        written: list[int] = []
        freed: list[int] = []
        if self.capacity <= 0:
            return written, freed
        with self._lock:
            for item in rows[-self.capacity :]:
                slot = self._slot.get(item.item_id)
                if slot is None:
                    if len(self._slot) >= self.capacity:
                        freed.append(self._evict_oldest())
                    slot = self._take_slot()
                    self._slot[item.item_id] = slot
                    self.ids[slot] = item.item_id
                emb = np.asarray(item.emb, dtype=np.float32).reshape(self.n_channels, self.dim)
                weights = np.asarray(item.weights, dtype=np.float32).reshape(self.n_channels)
                self.emb[slot] = emb
                self.weights[slot] = weights
                self.vectors[slot] = scoring.item_vectors(emb[None], weights[None])[0]
                self.provenance[item.item_id] = item.provenance
                self._age[item.item_id] = None
                self._age.move_to_end(item.item_id)
                written.append(self.base + slot)
        return written, freed

    def put_updates(self, rows: list[UpdatedRow]) -> None:
        """Set recomputed embeddings of catalogue items (service/fresh/sync.py)."""
        if not rows:
            return
        latest = {r.row: r for r in rows}  # one entry a row, the last
        items = list(latest.values())
        with self._lock:
            self.updated.put(
                np.asarray([r.row for r in items], np.int64),
                np.stack([np.asarray(r.emb, np.float32) for r in items]),
                np.stack([np.asarray(r.weights, np.float32) for r in items]),
                [r.provenance for r in items],
            )

    def remove(self, item_ids: list[str]) -> list[int]:
        """Drop items (their folds failed or the model now knows them); returns freed rows."""
        freed = []
        with self._lock:
            for item_id in item_ids:
                if item_id in self._slot:
                    freed.append(self._release(item_id))
        return freed

    def _take_slot(self) -> int:
        slot = self.slots.take()
        size = self.slots.grown(slot, self.vectors.shape[0])
        if size > self.vectors.shape[0]:
            self._grow(size)
        if slot == len(self.ids):
            self.ids.append(None)
        return slot

    def _grow(self, size: int) -> None:
        """Copy into larger arrays, then swap: a reader holds either the old or the new one."""
        vectors = np.zeros((size, self.vectors.shape[1]), dtype=np.float32)
        emb = np.zeros((size, self.n_channels, self.dim), dtype=np.float32)
        weights = np.zeros((size, self.n_channels), dtype=np.float32)
        n = self.vectors.shape[0]
        vectors[:n], emb[:n], weights[:n] = self.vectors, self.emb, self.weights
        self.vectors, self.emb, self.weights = vectors, emb, weights

    def _evict_oldest(self) -> int:
        item_id, _ = self._age.popitem(last=False)
        self.evicted += 1
        return self._release(item_id, aged=True)

    def _release(self, item_id: str, *, aged: bool = False) -> int:
        slot = self._slot.pop(item_id)
        if not aged:
            self._age.pop(item_id, None)
        self.provenance.pop(item_id, None)
        self.ids[slot] = None
        self.vectors[slot] = 0.0
        self.slots.free(slot)
        return self.base + slot
