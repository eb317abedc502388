"""Folded user queries of one loaded model, kept with the interaction overlay (an LRU).

A user's query is folded when they post interactions (in the process that takes the POST)
and stored in SQL with the model version; every other process drops its copy when it learns
of the interactions (Redis event or poll) and reads the SQL row on that user's next request.
So a request never folds unless the row is missing or stale (a new model version, or the
writer's fold has not run or was dropped: see ``WriteFolds`` in ``service/fresh/user_sync.py``).

At most ``capacity`` users are held (``MARGO_FOLDIN_MAX_USERS``); the least recently used
goes first (it is read back from SQL when that user returns).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FoldedUser:
    emb: np.ndarray  # float32 [M, d]: e_u^m
    items: int  # interacted items the fold used
    last_interaction: int  # newest interactions.id it saw
    prior: str  # "trained" (the user's own vector) or what the math used for a new user
    query: np.ndarray = field(init=False)  # float32 [M*d]: q_u = concat_m e_u^m

    def __post_init__(self) -> None:
        emb = np.ascontiguousarray(self.emb, dtype=np.float32)
        object.__setattr__(self, "emb", emb)
        object.__setattr__(self, "query", emb.reshape(-1))

    def info(self) -> dict[str, Any]:
        return {"interactions": self.items, "prior": self.prior}


DROPS_KEPT = 100_000
"""Users whose latest drop the cache remembers (``mark``/``put``'s ``since``)."""


class FoldedUserCache:
    """The LRU of folded users. A drop (the user wrote) is remembered by a tick, so that a
    fold that read SQL before the drop does not put its now stale entry back: ``since =
    mark()`` before reading, ``put(..., since=since)`` after."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, FoldedUser] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self._tick = 0
        self._dropped: OrderedDict[str, int] = OrderedDict()  # user -> tick of the last drop
        self._forgotten = -1  # drops at or before this tick are no longer told apart

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user_id: str) -> FoldedUser | None:
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None:
                self._entries.move_to_end(user_id)
        return entry

    def mark(self) -> int:
        """The tick to pass to ``put`` as ``since`` (take it before reading SQL)."""
        with self._lock:
            return self._tick

    def put(self, user_id: str, entry: FoldedUser, *, since: int | None = None) -> bool:
        """Hold the entry, unless the user was dropped after tick ``since`` (the entry may
        predate their newest interactions: their next read goes to SQL). True if held."""
        if self.capacity <= 0:
            return False
        with self._lock:
            if since is not None and (
                self._dropped.get(user_id, -1) > since or since < self._forgotten
            ):
                return False
            self._entries[user_id] = entry
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evicted += 1
        return True

    def drop(self, user_ids: Any) -> None:
        with self._lock:
            self._tick += 1
            for user_id in map(str, user_ids):
                self._entries.pop(user_id, None)
                self._dropped.pop(user_id, None)
                self._dropped[user_id] = self._tick
            while len(self._dropped) > DROPS_KEPT:
                _, tick = self._dropped.popitem(last=False)
                self._forgotten = max(self._forgotten, tick)

    def nbytes(self) -> int:
        """Bytes of the held query vectors (the dict's own overhead left out)."""
        entries = list(self._entries.values())
        return sum(e.emb.nbytes for e in entries)
