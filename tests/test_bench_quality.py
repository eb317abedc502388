"""bench/quality.py's plan: issue 17's screening rows run on one dataset and seed only, the
sweep's rows everywhere, and every row's config is one the trainer accepts (no training here)."""

from __future__ import annotations

import json

from bench import harness as H
from bench import quality as Q
from trainer.config import TrainConfig


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


def test_the_trainer_default_is_the_committed_validation_pick() -> None:
    """Issue 17: the default model is what wins on validation. A changed TrainConfig default (or a
    new winning row) fails here until bench/results/quality.json is rerun and agrees."""
    data = json.loads((H.RESULTS / "quality.json").read_text())
    pick = data["default_row"]
    cfgs = [t[pick]["cfg"] for t in data["summary"].values() if pick in t]
    assert len(cfgs) == len(Q.DATASETS) and all(Q.is_trainer_default(c) for c in cfgs), pick


def test_is_trainer_default_reads_protocol_and_left_out_fields() -> None:
    d = TrainConfig()
    row = {"model": "margo", "backbone": "freedom", "id_channel": True,
           "prune_ratio": d.prune_ratio, "alpha": d.alpha, "weight_lr": d.weight_lr,
           "dim": d.dim, "lr": d.lr}
    assert Q.is_trainer_default(row)
    assert not Q.is_trainer_default({**row, "id_channel": False})
    # a row that leaves d and lr out ran at MMRec's (PROTOCOL), not at today's defaults
    left_out = {k: v for k, v in row.items() if k not in Q.PROTOCOL}
    assert Q.is_trainer_default(left_out) == ({"dim": d.dim, "lr": d.lr} == Q.PROTOCOL)
