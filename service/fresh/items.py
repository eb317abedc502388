"""Folded items of one loaded model: their vectors beside the bundle's, in rows after it.

Bundle items are rows ``0 .. n_items-1``; a folded item gets a slot ``s`` and is row
``n_items + s`` everywhere a request uses rows (filters, the seen overlay, explanations), so
the ranking treats both alike. The FAISS index of the bundle is never changed (an IVF or HNSW
index stays exactly as built); folded vectors are searched exactly beside it
(:meth:`FoldedItemSet.search`, one matrix-vector product over at most ``capacity`` rows).

At most ``capacity`` items are held (``MARGO_FOLDIN_MAX_ITEMS``); past it the item folded
longest ago is evicted (it stays in SQL, and is served again after the next retrain, or when
the model is reloaded and it is among the newest). Arrays grow by doubling, up to capacity.

Writers hold ``_lock``; readers never lock. A slot's vector is written before its row is
unhidden in the catalogue, and a freed slot is scrubbed from the catalogue and the seen
overlay before it is reused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
        self._free: list[int] = []
        self.evicted = 0  # items dropped for capacity since the model was loaded
        self.generation = 0  # bumped on every change: part of the response cache key
        self.revision = ""  # SQL watermark of the rows applied
        self._lock = threading.Lock()

    # -- reads -------------------------------------------------------------------------------
    def __len__(self) -> int:
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
        """Bytes of the arrays held (allocated slots, not only the live ones)."""
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
        updates the catalogue for both (written rows become visible there)."""
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
            self.generation += 1
        # a row evicted and then reused in the same call is live again, not freed
        return written, [r for r in freed if r not in set(written)]

    def remove(self, item_ids: list[str]) -> list[int]:
        """Drop items (their folds failed or the model now knows them); returns freed rows."""
        freed = []
        with self._lock:
            for item_id in item_ids:
                if item_id in self._slot:
                    freed.append(self._release(item_id))
            if freed:
                self.generation += 1
        return freed

    def _take_slot(self) -> int:
        if self._free:
            return self._free.pop(0)  # the slot freed longest ago: in-flight readers are done
        slot = len(self.ids)
        if slot >= self.vectors.shape[0]:
            self._grow(max(16, min(self.capacity, 2 * self.vectors.shape[0])))
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
        self._free.append(slot)
        return self.base + slot
