"""bench/quality.py's plan: issue 17's screening rows run on one dataset and seed only, the
sweep's rows everywhere, and every row's config is one the trainer accepts (no training here)."""

from __future__ import annotations

from bench import harness as H
from bench import quality as Q


def _plan(seeds: list[int]) -> list[H.Step]:
    p = H.parser(None)
    p.add_argument("--datasets", nargs="+", default=list(Q.DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=seeds)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--baseline-patience", type=int, default=50)
    p.add_argument("--rows", nargs="+")
    p.add_argument("--synth", type=int, default=0)
    return Q.plan(H.parse_args(p, []))


def test_screen_rows_only_at_their_dataset_and_seed() -> None:
    steps = _plan([0, 1, 2])
    for v in Q.SCREEN:
        where = {(s.meta["dataset"], s.meta["seed"]) for s in steps if s.label.endswith(f", {v}]")}
        assert where == {Q.SCREEN_AT}, v
    for v in Q.SWEEP:
        where = {(s.meta["dataset"], s.meta["seed"]) for s in steps if s.label.endswith(f", {v}]")}
        assert where == {(ds, seed) for ds in Q.DATASETS for seed in (0, 1, 2)}, v


def test_every_planned_config_is_valid() -> None:
    for s in _plan([0]):
        H.train_config(**s.cfg)  # raises on an unknown field or a value out of bounds


def test_select_skips_screen_rows_for_the_default() -> None:
    base = {"seeds": [0], "valid_recall@20": (0.30, 0.0)}
    better = {**base, "valid_recall@20": (0.40, 0.0)}
    screened = f"margo+id [freedom, {next(iter(Q.SCREEN))}]"
    one = {ds: {"margo+id [freedom, prune 0.5]": base} for ds in Q.DATASETS}
    one[Q.SCREEN_AT[0]][screened] = better
    # measured on one dataset only: never chosen against a row measured on both
    assert Q.select(one, ("margo",)) == "margo+id [freedom, prune 0.5]"
    both = {ds: {"margo+id [freedom, prune 0.5]": base, screened: better} for ds in Q.DATASETS}
    assert Q.select(both, ("margo",)) == screened
    assert Q.select(both, ("margo",), (*Q.SWEEP, *Q.SCREEN)) == "margo+id [freedom, prune 0.5]"
