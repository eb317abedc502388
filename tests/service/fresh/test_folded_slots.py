"""Slots of folded and updated items (service/fresh/items.py ``Slots``): a freed slot waits
REUSE_AFTER_S before another item takes it, within a bounded margin; a row freed and taken
again in one call is reported freed as well, so its old item's traces can be scrubbed."""

from __future__ import annotations

import numpy as np
import pytest

from service.fresh import items
from service.fresh.items import REUSE_AFTER_S, FoldedItemSet, FoldedRow, Slots, UpdatedRow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(items.time, "monotonic", c)
    return c


def row(item_id: str) -> FoldedRow:
    return FoldedRow(item_id, np.ones((2, 3), np.float32), np.ones(2, np.float32), {})


def test_a_freed_slot_waits_before_it_is_taken_again(clock: Clock) -> None:
    slots = Slots(capacity=4)
    assert slots.limit == 4 + 16
    taken = [slots.take() for _ in range(4)]
    assert taken == [0, 1, 2, 3]
    slots.free(1)
    assert slots.take() == 4  # 1 was freed just now: a new slot
    clock.now += REUSE_AFTER_S
    assert slots.take() == 1  # long enough ago
    assert Slots(capacity=0).limit == 0 and Slots(capacity=320).limit == 340


def test_all_slots_taken_reuses_the_one_freed_longest_ago(clock: Clock) -> None:
    slots = Slots(capacity=2)
    for _ in range(slots.limit):
        slots.take()
    slots.free(5)
    slots.free(3)
    assert slots.take() == 5 and slots.take() == 3  # nothing else left: at once, oldest first
    assert slots.grown(0, 0) == 16 and slots.grown(16, 16) == slots.limit
    assert slots.grown(3, 16) == 16


def test_evicted_rows_are_reported_even_when_taken_again_at_once(clock: Clock) -> None:
    folded = FoldedItemSet(n_items=10, n_channels=2, dim=3, capacity=2)
    first_rows, _ = folded.put([row("a"), row("b")])
    assert first_rows == [10, 11]
    written, freed = folded.put([row("c")])  # "a" leaves; "c" gets a new slot, not a's
    assert freed == [10] and written == [12]
    assert folded.item_id(10) is None and folded.row("c") == 12
    for n in range(40):  # a steady stream at capacity: the margin of waiting slots suffices
        written, freed = folded.put([row(f"x{n}")])
        assert not set(written) & set(freed)
    assert folded.high_water == folded.slots.limit == 18 and len(folded) == 2


def test_a_row_freed_and_taken_again_in_one_call_is_reported_freed(clock: Clock) -> None:
    folded = FoldedItemSet(n_items=100, n_channels=2, dim=3, capacity=20)
    folded.put([row(f"old{n}") for n in range(20)])
    # 20 new items at once: 20 evictions, 16 new slots (the margin), then the slots just
    # freed in this very call: reported among the freed rows as well as the written ones
    written, freed = folded.put([row(f"new{n}") for n in range(20)])
    again = set(written) & set(freed)
    assert len(freed) == 20 and len(again) == 4 and folded.high_water == folded.slots.limit
    assert all(folded.item_id(r).startswith("new") for r in again)


def test_updated_items_wait_before_their_slots_are_reused(clock: Clock) -> None:
    folded = FoldedItemSet(n_items=10, n_channels=2, dim=3, capacity=1)

    def update(r: int) -> UpdatedRow:
        return UpdatedRow(r, np.full((2, 3), r, np.float32), np.ones(2, np.float32), {})

    folded.put_updates([update(3)])
    index_before = folded.updated.index  # a reader's snapshot names row 3 at its slot
    folded.put_updates([update(4)])  # 3 falls back to trained; 4 takes a new slot
    _, slots = folded.updated.lookup(np.array([3]), index_before)
    assert folded.updated.emb[slots[0]].mean() == 3.0  # the snapshot still reads row 3's
    clock.now += REUSE_AFTER_S
    folded.put_updates([update(5)])
    hit, slots = folded.updated.lookup(np.array([5]))
    assert hit.tolist() == [True] and slots.tolist() == [0]  # 3's slot, once it waited
