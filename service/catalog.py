"""Request-time filters of one loaded model: hidden items, category labels, recent interactions.

SQL is the authority (items.hidden, items.categories, interactions); this module keeps the
part a request needs as arrays over the bundle's item rows, so filtering costs a few array
look-ups instead of a query. The registry refreshes them from SQL when items or interactions
change (its poller, Redis events, or the API call that made the change in this process).

Writers take ``_lock`` and replace arrays instead of editing shared ones where a reader
could see half an update; readers never lock.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

_MASK_CACHE = 64  # label combinations whose boolean masks are kept


class Catalog:
    """Hidden flags, category labels and titles over the rows of one bundle, and over
    ``spare`` rows after them for folded items (service/fresh/items.py). A spare row is
    hidden until :meth:`assign` gives it to an item and :meth:`apply` reads that item's
    row; :meth:`clear_rows` hands it back."""

    def __init__(
        self, n_items: int, item_row: Callable[[str], int | None], spare: int = 0
    ) -> None:
        self.n_items = n_items
        self.size = n_items + spare
        self._item_row = item_row
        self.free = np.zeros(self.size, dtype=bool)  # spare rows no item holds
        self.free[n_items:] = True
        self.hidden = self.free.copy()
        self.n_hidden = 0  # hidden rows that hold an item
        self.labels: dict[str, np.ndarray] = {}  # label -> sorted int64 rows
        self.titles: list[str | None] = [None] * self.size  # shown with every recommendation
        self.revision = ""  # watermark of the SQL rows applied; part of every cache key
        self._masks: OrderedDict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    # -- loading and updates ---------------------------------------------------------------
    def load(self, rows: Iterable[Any], revision: str) -> None:
        """Initial fill from (external_id, hidden, categories, title) rows."""
        hidden = self.free.copy()
        titles: list[str | None] = [None] * self.size
        lists: dict[str, list[int]] = {}
        for external_id, is_hidden, categories, title in rows:
            row = self._item_row(external_id)
            if row is None:
                continue
            titles[row] = title
            if is_hidden:
                hidden[row] = True
            for label in categories or ():
                lists.setdefault(str(label), []).append(row)
        with self._lock:
            self.hidden = hidden
            self.titles = titles
            self.n_hidden = int((hidden & ~self.free).sum())
            self.labels = {k: np.unique(np.asarray(v, dtype=np.int64)) for k, v in lists.items()}
            self._masks.clear()
            self.revision = revision

    def apply(self, rows: Iterable[Any], revision: str) -> int:
        """Apply changed (external_id, hidden, categories, title) rows; return how many were
        ours."""
        changed = 0
        with self._lock:
            labels = dict(self.labels)
            hidden = self.hidden
            titles = list(self.titles)  # readers keep the list they got: replace, never mutate
            for external_id, is_hidden, categories, title in rows:
                row = self._item_row(external_id)
                if row is None:
                    continue
                changed += 1
                hidden[row] = bool(is_hidden)
                titles[row] = title
                wanted = {str(c) for c in categories or ()}
                for label, members in list(labels.items()):
                    pos = np.searchsorted(members, row)
                    present = pos < members.size and members[pos] == row
                    if present and label not in wanted:
                        labels[label] = np.delete(members, pos)
                    elif not present and label in wanted:
                        labels[label] = np.insert(members, pos, row)
                for label in wanted - labels.keys():
                    labels[label] = np.asarray([row], dtype=np.int64)
            self.n_hidden = int((hidden & ~self.free).sum())
            self.labels = labels
            self.titles = titles
            self._masks = OrderedDict()
            if revision > self.revision:
                self.revision = revision
        return changed

    def assign(self, rows: Iterable[int]) -> None:
        """Spare rows now held by folded items (still hidden until :meth:`apply`)."""
        with self._lock:
            for row in rows:
                self.free[row] = False

    def clear_rows(self, rows: Iterable[int]) -> None:
        """Hand spare rows back: hidden, untitled, in no label."""
        rows = sorted({int(r) for r in rows})
        if not rows:
            return
        gone = np.asarray(rows, dtype=np.int64)
        with self._lock:
            titles = list(self.titles)
            for row in rows:
                self.free[row] = True
                self.hidden[row] = True
                titles[row] = None
            self.labels = {
                k: v[~np.isin(v, gone)] for k, v in self.labels.items()
            }  # fmt: skip
            self.titles = titles
            self.n_hidden = int((self.hidden & ~self.free).sum())
            self._masks = OrderedDict()

    # -- queries -----------------------------------------------------------------------------
    def rows_with(self, labels: tuple[str, ...]) -> np.ndarray:
        """Sorted rows carrying every label in ``labels`` (empty if one is unknown)."""
        arrays = [self.labels.get(label) for label in labels]
        if any(a is None for a in arrays):
            return np.empty(0, dtype=np.int64)
        arrays.sort(key=len)
        rows = arrays[0]
        for other in arrays[1:]:
            rows = np.intersect1d(rows, other, assume_unique=True)
        return rows

    def label_filter(self, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, boolean mask over all items) for a label combination, cached."""
        masks = self._masks
        hit = masks.get(labels)
        if hit is not None:
            return hit
        rows = self.rows_with(labels)
        mask = np.zeros(self.size, dtype=bool)
        mask[rows] = True
        masks[labels] = (rows, mask)
        while len(masks) > _MASK_CACHE:
            try:
                masks.popitem(last=False)
            except KeyError:  # another request trimmed it first
                break
        return rows, mask


class SeenOverlay:
    """Items each user interacted with after the bundle was trained (from SQL), by row.

    ``token(user)`` names a user's rows (their count and a checksum) and is part of the key
    of their cached pages: a page computed from rows that changed meanwhile is stored under
    the old token, where no later read looks (invalidating the user's entries alone cannot
    stop a request that read the old rows from storing its page after the invalidation)."""

    def __init__(self, item_row: Callable[[str], int | None]) -> None:
        self._item_row = item_row
        self._by_user: dict[str, np.ndarray] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, pairs: Iterable[tuple[str, str]]) -> set[str]:
        """Add (user external id, item external id) pairs; return the users that changed."""
        new: dict[str, set[int]] = {}
        for user_id, item_id in pairs:
            row = self._item_row(item_id)
            if row is not None:
                new.setdefault(user_id, set()).add(row)
        changed: set[str] = set()
        with self._lock:
            for user_id, rows in new.items():
                old = self._by_user.get(user_id)
                merged = np.union1d(old, list(rows)) if old is not None else np.array(sorted(rows))
                merged = merged.astype(np.int64)
                if old is None or merged.size != old.size:
                    self._set(user_id, merged)
                    changed.add(user_id)
        return changed

    def _set(self, user_id: str, rows: np.ndarray) -> None:
        # the rows first: a request reads the token before the rows, so one that saw the new
        # token reads the new rows; one that saw the old token may read either, and its page
        # goes under the old token (never an old page under the new one)
        self._by_user[user_id] = rows
        self._tokens[user_id] = f"{rows.size}.{zlib.crc32(rows.tobytes()):08x}"

    def rows(self, user_id: str) -> np.ndarray | None:
        return self._by_user.get(user_id)

    def token(self, user_id: str) -> str:
        """The user's rows by name ("" without any): changes whenever they do."""
        return self._tokens.get(user_id, "")

    def forget(self, rows: Iterable[int]) -> set[str]:
        """Drop rows handed back by folded items (a slot's next item is another one);
        returns the users that changed."""
        gone = np.asarray(sorted({int(r) for r in rows}), dtype=np.int64)
        changed: set[str] = set()
        if gone.size == 0:
            return changed
        with self._lock:
            for user_id, held in list(self._by_user.items()):
                keep = ~np.isin(held, gone)
                if not keep.all():
                    self._set(user_id, held[keep])
                    changed.add(user_id)
        return changed
