"""bench/freshness.py's data preparation and scoring on tiny hand-made data (no training)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bench import freshness as F


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = np.array([(u, i) for u in range(20) for i in rng.choice(30, 5 + u % 6, replace=False)])
    train = train[rng.permutation(len(train))]  # row order is what "last" means
    valid = np.array([(u, (u * 7) % 30) for u in range(20)])
    test = np.array([(u, (u * 11 + 3) % 30) for u in range(20)])
    return train, valid, test


def test_split_holds_out_users_items_and_each_users_last_rows() -> None:
    train, valid, test = _data()
    s = F.make_split(20, 30, train, valid, test, seed=3)
    assert len(s.new_users) == 2 and len(s.cold_items) == 3
    rows = s.base_rows
    assert not np.isin(rows[:, 0], s.new_users).any()
    assert not np.isin(rows[:, 1], s.cold_items).any()
    assert set(np.unique(rows[:, 0])) == set(s.base_users)
    assert set(s.base_items).isdisjoint(s.cold_items)
    kept = rows[rows[:, 2] == 0][:, :2]
    for u in s.base_users:
        mine = train[train[:, 0] == u]  # in row order
        n_back = round(0.2 * len(mine))
        first, last = mine[: len(mine) - n_back], mine[len(mine) - n_back :]
        warm = ~np.isin(first[:, 1], s.cold_items)
        assert {tuple(p) for p in kept[kept[:, 0] == u]} == {tuple(p) for p in first[warm]}
        held = s.held_back[s.held_back[:, 0] == u]
        assert {tuple(p) for p in held} == {tuple(p) for p in last if p[1] not in s.cold_items}
    # valid/test rows only for base users on base items; the same seed gives the same split
    assert np.isin(rows[rows[:, 2] > 0][:, 0], s.base_users).all()
    again = F.make_split(20, 30, train, valid, test, seed=3)
    assert np.array_equal(again.base_rows, s.base_rows)


def test_held_back_rows_are_each_users_last_fifth_in_row_order() -> None:
    train, _, _ = _data()
    back = F.held_back(20, train)
    for u in range(20):
        mine = np.flatnonzero(train[:, 0] == u)  # row positions, in row order
        n_back = round(0.2 * len(mine))
        assert back[mine].tolist() == [False] * (len(mine) - n_back) + [True] * n_back
    s = F.make_split(20, 30, train, *_data()[1:], seed=0)  # the split holds back the same rows
    assert {tuple(p) for p in s.held_back} <= {tuple(p) for p in train[back]}


def test_micro_recall_counts_pairs_not_users() -> None:
    top = np.array([[0, 1], [2, 3]])
    # user 0: targets {1, 4} (1 found); user 1: targets {2} (found) -> 2 of 3 pairs
    target = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [1, 4, 2])), shape=(2, 5))
    assert F.micro_recall(top, target) == pytest.approx(2 / 3)


def test_flat_ratios_and_targets() -> None:
    r = {"recall@20": 0.0, "ndcg@20": 0.0}
    cell = {
        "new_users": {"popular": {**r, "recall@20": 0.1}, "fold-in": {**r, "recall@20": 0.25},
                      "retrained": {**r, "recall@20": 0.3}},
        "returning": {"stale": {"recall@20": 0.2}, "fold-in": {"recall@20": 0.27},
                      "retrained": {"recall@20": 0.3}},
        "new_items": {"fold-in": {"cold_recall": 0.04, "warm": {"recall@20": 0.26},
                                  "warm_without_new_items": {"recall@20": 0.27}},
                      "retrained": {"cold_recall": 0.1, "warm": {"recall@20": 0.3}}},
        "fold_in_user_ms": 0.5, "fold_in_items_ms_per_item": 2.0, "seed": 0,
        "runs": {"base": {"config": {"model": "m", "backbone": "b", "id_channel": 1, "epochs": 1,
                                     "patience": 1, "seed": 0}, "stages": [], "seconds": 1.0}},
    }
    f = F.flat(cell)
    assert f["new users fold-in / popular"] == pytest.approx(2.5)
    alone = "returning: share of the stale-retrained gap recovered by the user fold alone"
    assert f[alone] == pytest.approx(0.7)
    update = "returning: share of the gap recovered by the fold-in + item update (served)"
    assert update not in f  # an evaluation without the arm: no verdict on returning users
    verdicts = F.summarise({"t": [cell]})[0]["t"]["targets"]
    assert not any(k.startswith("returning users") for k in verdicts)
    cell["returning"]["fold-in + item update"] = {"recall@20": 0.29}
    assert F.flat(cell)[update] == pytest.approx(0.9)
    assert F.flat(cell)["returning recall@20 fold-in + item update"] == pytest.approx(0.29)
    verdicts = F.summarise({"t": [cell]})[0]["t"]["targets"]
    combined = ("returning users (base of the other questions too): the served fold recovers "
                ">= 70% of the gap")
    own = ("returning users (the issue's protocol, own base): the served fold (user + the items "
           "they touched) recovers >= 70% of the gap")
    assert verdicts[combined] and own not in verdicts  # no returning-base run: no verdict
    # the issue's own protocol (a base without only the held-back rows): rows and verdict of its own
    cell["returning_only"] = {"stale": {"recall@20": 0.2}, "fold-in": {"recall@20": 0.21},
                              "retrained": {"recall@20": 0.3}, "n_users": 5,
                              "fold-in + item update": {"recall@20": 0.25}}
    f2 = F.flat(cell)
    assert f2["returning, own base recall@20 stale"] == 0.2
    assert not any("n_users" in k for k in f2)  # counts are not rows
    served = "returning, own base: share of the gap recovered by the fold-in + item update (served)"
    assert f2[served] == pytest.approx(0.5)
    verdicts = F.summarise({"t": [cell]})[0]["t"]["targets"]
    assert verdicts[combined] and not verdicts[own]
    del cell["returning"]["fold-in + item update"], cell["returning_only"]
    assert f["new items cold recall fold-in / retrained"] == pytest.approx(0.4)
    summary, md = F.summarise({"tiny": [cell]})
    t = summary["tiny"]["targets"]
    assert t["new users: fold-in >= 2x popular"] and not t["new users: fold-in >= 85% of retrained"]
    assert not t["new items: cold recall >= 50% of retrained"]
    assert "does not hold" in md
    # before the "with interactions" arm: no row, no verdict; with it: its ratio and verdict
    posted = "new items with their training interactions posted: cold recall >= 50% of retrained"
    assert posted not in t and "with their interactions posted" not in md
    cell["new_items"]["with interactions"] = {"cold_recall": 0.06, "warm": {"recall@20": 0.25}}
    f = F.flat(cell)
    assert f["new items with interactions: cold recall / retrained"] == pytest.approx(0.6)
    assert f["warm with posted new items / without new items"] == pytest.approx(0.25 / 0.27)
    assert not any("over warm + new" in k for k in f)  # evaluations without the row
    cell["new_items"]["retrained"]["all"] = {"recall@20": 0.31}
    assert F.flat(cell)["recall@20 over warm + new items' targets, retrained"] == 0.31
    summary, md = F.summarise({"tiny": [cell]})
    assert summary["tiny"]["targets"][posted] and f"- {posted}: **holds**" in md
    # a seed evaluated before the arm beside one after: the row is left out, not half-filled
    items = {k: v for k, v in cell["new_items"].items() if k != "with interactions"}
    old = {**cell, "new_items": items}
    summary, _ = F.summarise({"tiny": [cell, old]})
    assert posted not in summary["tiny"]["targets"]


def test_serving_verdict_compares_fold_in_with_known_users() -> None:
    arm = {"rps_c32": 100.0, "p99_ms_c1": 10.0, "p50_ms_c1": 2.0}
    sv = {"n_items": 100, "date": "d", "loadavg_before": [1.0], "strategy": "fold-in",
          "held_bench_slots": True, "known": arm, "fold-in": {**arm, "p50_ms_c1": 4.0},
          "runs": [{"arm": a, "connections": c} for a in ("known", "fold-in") * 3 for c in (1, 32)]}
    md = F.serving_md(sv)
    assert "p50 2.000" in md and "**holds**" in md and "median of 3 runs each" in md
    assert "does not hold" in F.serving_md({**sv, "fold-in": {**arm, "rps_c32": 85.0}})


def test_all_targets_averages_users_over_warm_and_new_items() -> None:
    top = np.tile(np.arange(20), (3, 1))  # every user's top-20 is items 0..19
    # user 0: a new item in the list (20 is not); user 1: a warm item in it; user 2: nothing
    cold = sp.csr_matrix(([1.0, 1.0], ([0, 0], [5, 20])), shape=(3, 30))
    warm = sp.csr_matrix(([1.0], ([1], [3])), shape=(3, 30))
    got = F.all_targets(top, cold, warm)
    assert got["users"] == 2 and got["recall@20"] == pytest.approx((0.5 + 1.0) / 2)
