"""Freshness benchmark (issue 16): fold-in of new users, new interactions and new items vs a
model retrained with them, on MMRec's fixed splits (x_label 0/1/2 = train/valid/test); the
protocol is in the report (bench/templates/freshness.md). ``--epochs`` caps each stage.

    nice -n 10 .venv/bin/python -m bench.freshness --quick   # smoke (synthetic, 2 epochs)
    nice -n 10 .venv/bin/python -m bench.freshness --datasets mlsmall --seeds 0,1,2 [--serve]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import scipy.sparse as sp
import torch

from bench import harness as H
from bench import serve_load as S
from trainer import metrics as M
from trainer.bundle import load_bundle
from trainer.data import load_dataset, write_dataset
from trainer.export import export_model
from trainer.foldin import ItemFoldIn, ItemUsers, fold_in_items, fold_in_user
from trainer.foldin.interactions import updated_catalogue, with_user_out
from trainer.foldin.refresh import refresh
from trainer.scoring import item_vectors
from trainer.train import fit

DATA = {"mlsmall": H.MLSMALL_MMREC, "amazon-scientific": H.DATA / "amazon-scientific-mmrec"}
SYNTH = {"n_users": 2000, "n_items": 1000, "n_interactions": 25000, "modalities": {"image": 128, "text": 64}}
QUICK_SYNTH = {"n_users": 300, "n_items": 200, "n_interactions": 3000, "modalities": {"image": 16, "text": 8}}
NEW_USERS, NEW_ITEMS, HELD_BACK, K = 0.1, 0.1, 0.2, 20
R20 = f"recall@{K}"
RUNS = ("base", "retrained", "returning-base")  # trained per (dataset, seed)
SERVE_ROUNDS = 2  # ABBA blocks of the serving cost: 4 runs per arm (a p99 at 1 connection is noisy)


@dataclass
class Split:  # full-dataset indices
    new_users: np.ndarray  # held out entirely
    cold_items: np.ndarray  # held out with all their rows
    base_users: np.ndarray  # users of the base copy (sorted: row b of the base bundle)
    base_items: np.ndarray  # items of the base copy (sorted)
    base_rows: np.ndarray  # int [n, 3] (user, item, x_label) of the base copy
    held_back: np.ndarray  # int [n, 2] held-back training pairs of base users on base items


def held_back(n_users: int, train: np.ndarray) -> np.ndarray:
    """bool per row of ``train`` (file row order): among its user's last round(20%) rows."""
    counts = np.bincount(train[:, 0], minlength=n_users)
    pos = np.empty(len(train), np.int64)  # position of each row among its user's rows
    pos[np.argsort(train[:, 0], kind="stable")] = np.arange(len(train)) - np.repeat(np.cumsum(counts) - counts, counts)
    return pos >= counts[train[:, 0]] - np.round(HELD_BACK * counts[train[:, 0]])


def make_split(n_users: int, n_items: int, train: np.ndarray, valid: np.ndarray, test: np.ndarray, seed: int) -> Split:
    """``train`` in file row order: the held-back rows are each user's last round(20%)."""
    rng = np.random.default_rng([seed, 16])
    new_users = np.sort(rng.choice(n_users, max(1, round(NEW_USERS * n_users)), replace=False))
    cold = np.sort(rng.choice(n_items, max(1, round(NEW_ITEMS * n_items)), replace=False))
    back = held_back(n_users, train)
    warm_u, warm_i = ~np.isin(np.arange(n_users), new_users), ~np.isin(np.arange(n_items), cold)
    keep = warm_u[train[:, 0]] & warm_i[train[:, 1]] & ~back
    base_users = np.unique(train[keep, 0])
    in_base = np.isin(np.arange(n_users), base_users)
    rows = [np.c_[train[keep], np.zeros(keep.sum(), np.int64)]]
    for label, pairs in ((1, valid), (2, test)):
        k = in_base[pairs[:, 0]] & warm_i[pairs[:, 1]]
        rows.append(np.c_[pairs[k], np.full(k.sum(), label, np.int64)])
    held = train[back & in_base[train[:, 0]] & warm_i[train[:, 1]]]
    return Split(new_users, cold, base_users, np.flatnonzero(warm_i), np.concatenate(rows), held)


# -- training: a fresh process per run, one machine-wide slot each; bundles exported when evaluated --
def train_run(data_path: str, out: str, seed: int, epochs: int | None, slots: str, n_slots: int) -> dict[str, Any]:
    os.nice(10)
    torch.set_num_threads(1)
    with H.training_slot(Path(slots), n_slots):
        cfg = H.train_config(seed=seed, threads=1, **({"epochs": epochs} if epochs else {}))
        data, load = load_dataset(data_path), H.loadavg()
        res = fit(data, cfg, progress=False)
        torch.save(res, f"{out}.fit.pt")  # the fit, so a newer exporter can write its bundle
    rec = {"data": data_path, "config": cfg.model_dump(mode="json"), "seconds": round(res.seconds, 1),
           "valid_r20": res.valid.get(R20),
           "stages": [(s.stage, s.best_epoch, s.epochs_run) for s in res.stages], "test_r20": res.test.get(R20),
           "loadavg_start": load, "loadavg_end": H.loadavg(), "date": H.machine_info()["date"]}
    H.atomic_write_json(Path(f"{out}.run.json"), rec)
    return rec


# -- evaluation ------------------------------------------------------------------------------------
def sub(m: Any, rows: np.ndarray, cols: np.ndarray) -> Any:  # a CSR block
    return m[rows][:, cols].tocsr()


def micro_recall(top: np.ndarray, target: Any) -> float:  # share of all target pairs in the lists (row n: row n)
    return float(M.hit_matrix(top, np.arange(top.shape[0]), target).sum() / max(target.nnz, 1))


def bundle_of(run_dir: Path, name: str, data_path: Any) -> Any:
    """The run's bundle, exported from its saved fit as ``margo train`` does where missing."""
    try:
        ItemFoldIn.from_bundle(b := load_bundle(run_dir / name))
    except Exception:  # noqa: BLE001 - not exported yet, or an older fold-in format
        cfg, fitted = json.loads((run_dir / f"{name}.run.json").read_text())["config"], torch.load(run_dir / f"{name}.fit.pt", weights_only=False)
        b = load_bundle(export_model(fitted, load_dataset(data_path), H.train_config(**cfg), run_dir / name, overwrite=True))
    return b


def evaluate_cell(data: Any, split: Split, run_dir: Path) -> dict[str, Any]:
    """The three questions for one (dataset, seed) from its base and retrained bundles."""
    base, full = bundle_of(run_dir, "base", run_dir / "base-data"), bundle_of(run_dir, "retrained", data.path)
    W, C, R, N = split.base_items, split.cold_items, split.base_users, split.new_users
    assert base.item_ids == [data.item_ids[i] for i in W] and full.item_ids == data.item_ids
    train, test = (M.csr_from_pairs(p, data.n_users, data.n_items) for p in (data.train, data.test))
    row_of, secs = np.full(data.n_items, -1), []
    row_of[W] = np.arange(len(W))
    vb, vf, qf = base.item_vectors(), full.item_vectors(), full.query_vectors()

    def fold(users: np.ndarray, known: bool) -> np.ndarray:  # every training row on a base item posted
        return fold_users(base, train, users, row_of, np.arange(len(users)) if known else None, secs)

    res: dict[str, Any] = {"n_new_users": len(N), "n_returning": len(R), "n_new_items": len(C), "n_held_back_rows": len(split.held_back)}
    tr, tg = sub(train, N, W), sub(test, N, W)  # new users: popular (today), fold-in, retrained
    pop = base.arrays["item_popularity"].astype(np.float32)
    q_new = fold(N, False)
    res["new_users"] = {"popular": M.evaluate_scores(lambda u: np.tile(pop, (len(u), 1)), len(W), tr, tg, (K,)),
                        "fold-in": M.evaluate_vectors(q_new, vb, tr, tg, (K,)),
                        "retrained": M.evaluate_vectors(qf[N], vf[W], tr, tg, (K,))}
    tr, tg, q_ret = sub(train, R, W), sub(test, R, W), fold(R, True)  # returning users
    u_of = np.full(data.n_users, -1)
    u_of[R] = np.arange(len(R))
    base_pairs = load_dataset(run_dir / "base-data").train[:, :2]
    held = np.c_[u_of[split.held_back[:, 0]], row_of[split.held_back[:, 1]]]
    bn = with_user_out(base, base_pairs)  # n from the base graph where the bundle predates it
    res["returning"] = returning_arms(bn, base_pairs, held, np.arange(len(R)), q_ret, (tr, tg), (qf[R], vf[W]))
    if (run_dir / "returning-base.run.json").is_file():  # the protocol: only the 20% held back
        res["returning_only"] = returning_only(data, run_dir, (qf, vf))
    res["fold_in_user_ms"], t = float(np.median(secs) * 1e3), time.perf_counter()
    folded = fold_in_items(base, {m: data.features[m][C] for m in base.manifest.fold_in.modalities})
    res["fold_in_items_ms_per_item"] = (time.perf_counter() - t) * 1e3 / len(C)
    cols, empty_w, empty_c = np.r_[W, C], sp.csr_matrix((len(R), len(W))), sp.csr_matrix((len(R), len(C)))
    tg_cold, tg_warm = sp.hstack([empty_w, sub(test, R, C)]).tocsr(), sp.hstack([sub(test, R, W), empty_c]).tocsr()
    warm_u, res["new_items"] = np.flatnonzero(np.diff(tg_warm.indptr) > 0), {"chance": K / len(cols)}
    for arm, q, keys in (("fold-in", q_ret, np.vstack([vb, folded.vectors])), ("retrained", qf[R], vf[cols])):
        kt = np.ascontiguousarray(keys.T)
        top = M.full_ranking_topk(lambda u, q=q, kt=kt: q[u] @ kt, np.arange(len(R)), sub(train, R, cols), K)
        res["new_items"][arm] = {"cold_recall": micro_recall(top, tg_cold), "cold_pairs": tg_cold.nnz,
                                 "warm": M.topk_metrics(top[warm_u], warm_u, tg_warm, (K,)),
                                 "all": all_targets(top, tg_cold, tg_warm)}
    res["new_items"]["fold-in"]["warm_without_new_items"] = res["returning"]["fold-in"]
    res["new_items"]["with interactions"] = posted_items(bn, data, split, (train, test), u_of,
                                                         (q_new, q_ret), vb, secs=res)
    return res


def fold_users(base: Any, train: Any, users: np.ndarray, row_of: np.ndarray, rows: np.ndarray | None,
               secs: list[float]) -> np.ndarray:
    """Each user's query folded from every training row of theirs on a base item; ``rows``: their rows
    in the base bundle (a returning user: trained self part and prior), None for new users."""
    qb = base.query_vectors()
    out = np.zeros((len(users), qb.shape[1]), np.float32)
    for n, u in enumerate(users):
        items, t = row_of[train[u].indices], time.perf_counter()
        known = None if rows is None else int(rows[n])
        out[n] = np.asarray(fold_in_user(base, items[items >= 0], prior=None if known is None else qb[known],
                                         user=known)).reshape(-1)
        secs.append(time.perf_counter() - t)
    return out


def returning_arms(bn: Any, base_pairs: np.ndarray, held: np.ndarray, rows: np.ndarray, q_fold: np.ndarray,
                   pairs: tuple[Any, Any], retrained: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """R@20 of the base bundle's users ``rows`` (train / test ``pairs``) whose ``held`` pairs (base rows)
    are posted after training: stale, their fold, a graph refresh (trainer/foldin/refresh.py, all held
    pairs at once), the fold plus the item update (served) and the ``retrained`` (q, v)."""
    ev = lambda q, v: M.evaluate_vectors(q, v, *pairs, (K,))  # noqa: E731
    ue, ie = refresh(bn, base_pairs, held)
    return {"stale": ev(bn.query_vectors()[rows], bn.item_vectors()), "fold-in": ev(q_fold, bn.item_vectors()),
            "retrained": ev(*retrained),
            "graph refresh": ev(ue.reshape(bn.n_users, -1)[rows], item_vectors(ie, bn.arrays["item_weights"])),
            "fold-in + item update": ev(q_fold, updated_items(bn, base_pairs, held))}


def returning_only(data: Any, run_dir: Path, full: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Returning users as the issue states them: a base trained without only every user's last 20%
    of training rows (all users and items kept, rows unchanged), those rows posted afterwards."""
    name = json.loads((run_dir / "returning-base.run.json").read_text())["data"]
    base = with_user_out(b := bundle_of(run_dir, "returning-base", name), pairs := load_dataset(name).train[:, :2])
    assert b.item_ids == data.item_ids and b.user_ids == data.user_ids
    held = data.train[held_back(data.n_users, data.train)][:, :2]
    users = np.unique(held[:, 0])
    train, test = (M.csr_from_pairs(p, data.n_users, data.n_items) for p in (data.train, data.test))
    q = fold_users(base, train, users, np.arange(data.n_items), users, [])
    out = returning_arms(base, pairs, held, users, q, (sub(train, users, np.arange(data.n_items)),
                         sub(test, users, np.arange(data.n_items))), (full[0][users], full[1]))
    return {**out, "n_users": len(users), "n_held_back_rows": len(held)}


def all_targets(top: np.ndarray, tg_cold: Any, tg_warm: Any) -> dict[str, float]:
    """Users' R@20 over all their test targets, warm and new items (what a cold gain costs warm)."""
    tg = (tg_cold + tg_warm).tocsr()
    users = np.flatnonzero(np.diff(tg.indptr) > 0)
    return M.topk_metrics(top[users], users, tg, (K,))


def updated_items(bn: Any, base_pairs: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The base catalogue's v with each held-back pair's item given that user (users held fixed),
    pairs already trained on left out: updated_catalogue, the function the service serves."""
    known = set(map(tuple, np.asarray(base_pairs).tolist()))
    new = np.unique(held, axis=0)
    new = new[[tuple(p) not in known for p in new.tolist()]]
    new = new[np.argsort(new[:, 1], kind="stable")]
    items, starts = np.unique(new[:, 1], return_index=True)
    posted = {int(i): ItemUsers(u) for i, u in zip(items, np.split(new[:, 0], starts[1:]), strict=True)}
    rows, upd = updated_catalogue(bn, posted)
    emb = np.array(bn.arrays["item_emb"], np.float32)
    emb[rows] = upd
    return item_vectors(emb, bn.arrays["item_weights"])


def posted_items(bn: Any, data: Any, split: Split, pairs: tuple[Any, Any], u_of: np.ndarray,
                 queries: tuple[np.ndarray, np.ndarray], vb: np.ndarray,
                 secs: dict[str, Any]) -> dict[str, Any]:
    """New items with every training row on them posted afterwards (trainer/foldin/interactions.py):
    a base user's by their row, a new user's by their folded q; then each returning user folded again
    with the new items they posted (their vectors, as served). The same ranking as "fold-in"."""
    W, C, R, N = split.base_items, split.cold_items, split.base_users, split.new_users
    (train, test), (q_new, q_ret) = pairs, queries
    n_of = np.full(data.n_users, -1)
    n_of[N] = np.arange(len(N))
    on_cold = sub(train, np.arange(data.n_users), C).tocsc()  # [all users, C]
    users = []
    for k in range(len(C)):
        us = on_cold.indices[on_cold.indptr[k] : on_cold.indptr[k + 1]]
        users.append(ItemUsers(u_of[us][u_of[us] >= 0], user_vectors=q_new[n_of[us][n_of[us] >= 0]]))
    t = time.perf_counter()
    folded = fold_in_items(bn, {m: data.features[m][C] for m in bn.manifest.fold_in.modalities}, users=users)
    secs["fold_in_items_with_interactions_ms_per_item"] = (time.perf_counter() - t) * 1e3 / len(C)
    row_of = np.full(data.n_items, -1)
    row_of[W] = np.arange(len(W))
    cold_of, q = sub(train, R, C), q_ret.copy()
    for n in np.flatnonzero(np.diff(cold_of.indptr) > 0):
        rows = row_of[train[R[n]].indices]
        q[n] = fold_in_user(bn, rows[rows >= 0], item_vectors=folded.vectors[cold_of[n].indices], user=n)
    cols = np.r_[W, C]
    tg_cold = sp.hstack([sp.csr_matrix((len(R), len(W))), sub(test, R, C)]).tocsr()
    tg_warm = sp.hstack([sub(test, R, W), sp.csr_matrix((len(R), len(C)))]).tocsr()
    warm_u = np.flatnonzero(np.diff(tg_warm.indptr) > 0)
    kt = np.ascontiguousarray(np.vstack([vb, folded.vectors]).T)
    top = M.full_ranking_topk(lambda u: q[u] @ kt, np.arange(len(R)), sub(train, R, cols), K)
    return {"cold_recall": micro_recall(top, tg_cold), "cold_pairs": tg_cold.nnz,
            "warm": M.topk_metrics(top[warm_u], warm_u, tg_warm, (K,)),
            "all": all_targets(top, tg_cold, tg_warm),
            "posted_pairs": int(on_cold.nnz), "posted_by_new_users": int(np.isin(on_cold.indices, N).sum()),
            "users_refolded": int((np.diff(cold_of.indptr) > 0).sum())}


# -- serving cost: the recommendation route for fold-in users vs known users, one server ------------
def serving_cost(args: Any, log: Any, n_items: int = 100_000, n_fold: int = 2000, seconds: float = 10.0) -> dict[str, Any]:
    """serve_load's bundle, server and wrk; ``n_fold`` new users post 10 interactions each, then ABBA."""
    (work := args.workdir / "freshness" / "serve").mkdir(parents=True, exist_ok=True)
    S.setup_db(H.REPO, db := work / "serve.db", S.ensure_bundle(work, n_items), work)
    env = S.service_env(H.REPO, db, work)
    key = H.margo(["keys", "create", "--role", "write"], env).split()[0]
    out, rng = {"n_items": n_items, "fold_in_users": n_fold, "known_users": S.USERS, "runs": []}, np.random.default_rng(0)
    recs = [{"user_id": f"fu{u}", "item_id": f"i{i}"} for u in range(n_fold) for i in rng.choice(n_items, 10, replace=False)]
    with S.serve(H.REPO, env, work) as (port, _):
        url, t = f"http://127.0.0.1:{port}", time.perf_counter()
        # batches of MARGO_FOLDIN_WRITE_USERS (200) users, each posted once the server has folded the
        # last (its /metrics): every user folded on write, as under a steady writer. A larger burst
        # leaves the users past the bound to their first read, which folds them inline (~4 ms each)
        for s in range(0, len(recs), 2000):
            httpx.post(f"{url}/interactions", json={"interactions": recs[s : s + 2000]}, headers={"X-API-Key": key}, timeout=600).raise_for_status()
            H.wait_for(lambda s=s: write_folds(url)["folded"] >= (s + 2000) // 10, 600)
        out["folds_drained_s"], out["write_folds"] = time.perf_counter() - t, write_folds(url)
        out["strategy"] = httpx.get(f"{url}/users/fu0/recommendations?k={K}", timeout=30).json().get("strategy")
        with H.hold_slots(args.workdir / "slots", args.max_train, timeout=120, log=log) as held:
            out["held_bench_slots"], out["loadavg_before"] = held, H.loadavg()
            for arm in ("known", "fold-in", "fold-in", "known") * SERVE_ROUNDS:
                path, users = (S.REC, S.USERS) if arm == "known" else (S.REC.replace("{user}", "f{user}"), n_fold)
                for conns in (1, 32):
                    S.run_wrk(path, port, conns, 2, work, users)  # warm-up
                    out["runs"].append({"arm": arm, **S.run_wrk(path, port, conns, seconds, work, users)})
            out["loadavg_after"] = H.loadavg()
    for arm in ("known", "fold-in"):
        out[arm] = {f"{m}_c{c}": float(np.median([r[m] for r in out["runs"] if r["arm"] == arm and r["connections"] == c])) for m, c in (("rps", 32), ("p99_ms", 1), ("p50_ms", 1))}
    log(f"[freshness] serving: known {out['known']} fold-in {out['fold-in']}")
    return out


def write_folds(url: str) -> dict[str, float]:
    """The server's written users by outcome (``margo_foldin_write_users_total``)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {k: float(v) for k, v in re.findall(r'margo_foldin_write_users_total\{outcome="(\w+)"\} (\S+)', text)}


def serving_md(sv: dict[str, Any]) -> str:
    rps, p99, p50 = (sv["fold-in"][k] / sv["known"][k] for k in ("rps_c32", "p99_ms_c1", "p50_ms_c1"))
    keys = ("rps_c32", "p99_ms_c1", "p50_ms_c1")
    table = H.md_table(["users", "req/s at 32 connections", "p99 ms at 1", "p50 ms at 1"],
                       [(a, *(sv[a][k] for k in keys)) for a in ("known", "fold-in")])
    runs = sum(r["arm"] == "known" and r["connections"] == 1 for r in sv["runs"])
    drained = (f"with every user folded on write ({sv['write_folds']})" if "write_folds" in sv
               else "right after the posts (some users folded by their first read)")
    return H.template("freshness", "serving", sv=sv, table=table, rps=rps, p99=p99, p50=p50, runs=runs, drained=drained,
                      strategy=repr(sv["strategy"]), verdict="holds" if rps >= 0.9 and p99 <= 1.1 else "does not hold")


# -- report ----------------------------------------------------------------------------------------
def flat(c: dict[str, Any]) -> dict[str, float]:
    """One cell's numbers by row name (arms, ratios, timings)."""
    nu, rt, ni = c["new_users"], c["returning"], c["new_items"]
    out = {f"new users {m} {a}": nu[a][m] for a in nu for m in (R20, f"ndcg@{K}")}
    out |= {f"new users fold-in / {a}": nu["fold-in"][R20] / nu[a][R20] for a in ("popular", "retrained")}
    for key, tag in (("returning", "returning"), ("returning_only", "returning, own base")):
        if (rt := c.get(key)) is None:  # evaluations before the issue's own protocol lack it
            continue
        out |= {f"{tag} {R20} {a}": rt[a][R20] for a in rt if isinstance(rt[a], dict)}
        gap = rt["retrained"][R20] - rt["stale"][R20]  # no gap to recover: NaN
        out[f"{tag}: share of the stale-retrained gap recovered by the user fold alone"] = (
            (rt["fold-in"][R20] - rt["stale"][R20]) / gap if gap > 0 else float("nan"))
        for arm, text in (("graph refresh", "a graph refresh"),
                          ("fold-in + item update", "the fold-in + item update (served)")):
            if arm in rt:  # the item update: served since 49f4b58 (an evaluation before it lacks the arm)
                share = (rt[arm][R20] - rt["stale"][R20]) / gap if gap > 0 else float("nan")
                out[f"{tag}: share of the gap recovered by {text}"] = share
    rt = c["returning"]
    out |= {f"new items cold recall@{K} {a}": ni[a]["cold_recall"] for a in ("fold-in", "retrained")} | {
        "new items cold recall fold-in / retrained": ni["fold-in"]["cold_recall"] / ni["retrained"]["cold_recall"]}
    if "with interactions" in ni:  # evaluations before the arm lack it
        wi = ni["with interactions"]
        out |= {f"new items cold recall@{K} with their interactions posted": wi["cold_recall"],
                "new items with interactions: cold recall / retrained":
                    wi["cold_recall"] / ni["retrained"]["cold_recall"],
                f"warm {R20} with new items and their interactions posted": wi["warm"][R20],
                "warm with posted new items / without new items":
                    wi["warm"][R20] / ni["fold-in"]["warm_without_new_items"][R20]}
    for arm, text in (("fold-in", "features only"), ("with interactions", "interactions posted"),
                      ("retrained", "retrained")):
        if "all" in ni.get(arm, {}):
            out[f"{R20} over warm + new items' targets, {text}"] = ni[arm]["all"][R20]
    w, wo = ni["fold-in"]["warm"][R20], ni["fold-in"]["warm_without_new_items"][R20]
    out |= {f"new items cold recall@{K} chance": ni.get("chance", float("nan")), f"warm {R20} with new items folded in": w,
            f"warm {R20} without them": wo, f"warm {R20} retrained (all items)": ni["retrained"]["warm"][R20], "warm with / without new items": w / wo,
            "warm retrained with / without its new items": ni["retrained"]["warm"][R20] / rt["retrained"][R20]}
    out |= {"fold_in_user ms (median)": c["fold_in_user_ms"],
            "fold_in_items ms per item": c["fold_in_items_ms_per_item"]}
    if "fold_in_items_with_interactions_ms_per_item" in c:
        out["fold_in_items with interactions ms per item"] = c["fold_in_items_with_interactions_ms_per_item"]
    return out


TARGETS = (("new users fold-in / popular", 2.0, "new users: fold-in >= 2x popular"),
           ("new users fold-in / retrained", 0.85, "new users: fold-in >= 85% of retrained"),
           ("returning, own base: share of the gap recovered by the fold-in + item update (served)", 0.7,
            "returning users (the issue's protocol, own base): the served fold (user + the items they touched) recovers >= 70% of the gap"),
           ("returning: share of the gap recovered by the fold-in + item update (served)", 0.7,
            "returning users (base of the other questions too): the served fold recovers >= 70% of the gap"),
           ("new items cold recall fold-in / retrained", 0.5, "new items: cold recall >= 50% of retrained"),
           ("new items with interactions: cold recall / retrained", 0.5,
            "new items with their training interactions posted: cold recall >= 50% of retrained"),
           ("warm with / without new items", 0.99, "new items: warm R@20 unchanged (>= 99% of without them)"))


def summarise(evals: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, Any], str]:
    """Mean ± std over seeds of every row, and whether each target holds (on the mean)."""
    summary, lines = {}, []
    for ds, cells in evals.items():
        flats, run0 = [flat(c) for c in cells], cells[0]["runs"]["base"]
        rows = {k: H.mean_std([f[k] for f in flats]) for k in flats[0] if all(k in f for f in flats)}
        targets = [t for t in TARGETS if t[0] in rows]  # rows an older evaluation lacks: no verdict
        per_seed = {key: [bool(f[key] >= bound) for f in flats] for key, bound, _ in targets}
        holds = {text: bool(rows[key][0] >= bound) for key, bound, text in targets}
        summary[ds] = {"seeds": [c["seed"] for c in cells], "rows": rows, "targets": holds, "per_seed": per_seed}
        same = len({json.dumps({k: v for k, v in r["config"].items() if k != "seed"}) for c in cells for r in c["runs"].values()}) == 1
        cfg = {k: run0["config"][k] for k in ("model", "backbone", "id_channel", "epochs", "patience")}
        lines += [f"\n## {ds}\n\nseeds {summary[ds]['seeds']}; {cfg} ({'the same' if same else 'DIFFERENT'} config in every run "
                  f"but the seed); seed {cells[0]['seed']}: " + ", ".join(f"{k[2:]} {cells[0][k]}" for k in cells[0] if k.startswith("n_")),
                  "", H.md_table(["row", "mean", "std"], [(k, *v) for k, v in rows.items()]), "",
                  *[f"- {text}: **{'holds' if holds[text] else 'does not hold'}** (per seed: {per_seed[key]})"
                    for key, _, text in targets],
                  "", "runs (seed, run, stages (stage, best epoch, epochs run), seconds, date): "
                  + "; ".join(str((c["seed"], b, r["stages"], round(r["seconds"]), r.get("date"))) for c in cells for b, r in c["runs"].items())]
    return summary, "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------
def prepare(name: str, seed: int, args: Any) -> tuple[Any, Split, Path, list[tuple[str, str]]]:
    """The dataset, its split, the run folder and the (data, bundle) runs it still needs."""
    synth = (args.workdir / "freshness" / ("synth-quick" if args.quick else name), "import_synth")
    data = load_dataset(DATA.get(name) or H.ensure_dataset(*synth, seed=0, **(QUICK_SYNTH if args.quick else SYNTH)))
    split = make_split(data.n_users, data.n_items, data.train, data.valid, data.test, seed)
    run_dir = args.workdir / "freshness" / ("quick" if args.quick else "runs") / f"{name}-s{seed}"
    if not (run_dir / "base-data" / "stats.json").is_file() and not args.report_only:  # ids renumbered, external kept
        run_dir.mkdir(parents=True, exist_ok=True)
        u_new, i_new, r = np.full(data.n_users, -1), np.full(data.n_items, -1), split.base_rows
        u_new[split.base_users], i_new[split.base_items] = np.arange(len(split.base_users)), np.arange(len(split.base_items))
        write_dataset(run_dir / "base-data", name=data.name, interactions=np.c_[u_new[r[:, 0]], i_new[r[:, 1]], r[:, 2]],
                      features={m: f[split.base_items] for m, f in data.features.items()}, overwrite=True,
                      user_ids=[data.user_ids[u] for u in split.base_users], item_ids=[data.item_ids[i] for i in split.base_items])
    ret = run_dir.parent / f"{name}-returning-data"  # every user's last 20% held back (no seed in it)
    if not (ret / "stats.json").is_file() and not args.report_only:
        back, parts = held_back(data.n_users, data.train), (data.train, data.valid, data.test)
        rows = np.concatenate([np.c_[x[:, :2], np.full(len(x), k, np.int64)] for k, x in enumerate(parts) if len(x)])
        write_dataset(ret, name=data.name, interactions=np.delete(rows, np.flatnonzero(back), axis=0), features=data.features,
                      user_ids=data.user_ids, item_ids=data.item_ids, overwrite=True)
    todo = [(str(d), str(run_dir / b)) for d, b in ((run_dir / "base-data", "base"), (data.path, "retrained"), (ret, "returning-base"))
            if not (run_dir / f"{b}.run.json").is_file()]
    return data, split, run_dir, todo


def main(argv: list[str] | None = None) -> int:
    p = H.parser(__doc__, ("--datasets", "mlsmall,synth,amazon-scientific", None), ("--seeds", "0,1,2", None))
    p.add_argument("--epochs", type=int, help="cap on epochs per stage (default: the trainer's)")
    for flag, text in (("--train-only", "train the missing runs, no evaluation"), ("--re-eval", "evaluate again where eval.json exists"),
                       ("--serve", "also measure the serving cost of fold-in users (~16 minutes)")):
        p.add_argument(flag, action="store_true", help=text)
    args = H.parse_args(p, argv, datasets="synth", seeds="0", epochs=2)
    log = H.make_logger(args.workdir / "freshness" / "log.txt")
    # seeds outer, datasets inner: every dataset gets a first seed before any gets a second
    cells = [(n, s, *prepare(n, s, args)) for s in map(int, args.seeds.split(",")) for n in args.datasets.split(",")]
    if (jobs := [(d, out, s) for _, s, _, _, _, todo in cells for d, out in todo]) and not args.report_only:
        log(f"[freshness] training {len(jobs)} runs (load {H.loadavg()})")
        with H.process_pool(args.jobs) as pool:
            futs = {pool.submit(train_run, d, out, s, args.epochs, str(args.workdir / "slots"), args.max_train): out for d, out, s in jobs}
            for f in as_completed(futs):
                try:
                    log(f"[freshness] trained {futs[f]}: " + str({k: v for k, v in f.result().items() if k != "config"}))
                except Exception as exc:  # noqa: BLE001 - one failed run must not stop the others
                    log(f"[freshness] FAILED {futs[f]}: {exc!r}")
    if args.train_only:
        return 0
    info, evals = H.machine_info(threads=1), {}
    dirty = subprocess.run(["git", "status", "--porcelain", "trainer/foldin"], cwd=H.REPO, capture_output=True, text=True).stdout.split()
    checkout = f"{H.git_commit()}, trainer/foldin uncommitted: {dirty[1::2] or 'none'}"
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")  # evaluation: one BLAS thread
    for n, s, data, split, run_dir, _ in cells:
        ev_file, done = run_dir / "eval.json", all((run_dir / f"{b}.run.json").is_file() for b in RUNS)
        if done and not args.report_only and (args.re_eval or not ev_file.is_file()):
            t, runs = time.perf_counter(), {b: json.loads((run_dir / f"{b}.run.json").read_text()) for b in RUNS}
            H.atomic_write_json(ev_file, {"seed": s, **H.isolated(evaluate_cell, data, split, run_dir), "runs": runs, "loadavg": H.loadavg(), "checkout": checkout})
            log(f"[freshness] evaluated {n} seed {s} in {time.perf_counter() - t:.0f}s")
        if ev_file.is_file():
            evals.setdefault(n, []).append(json.loads(ev_file.read_text()))
    summary, md = summarise(evals)
    md += "".join(f"\n\n## {n}\n\nnot measured: no seed with both runs trained and evaluated" for n in args.datasets.split(",") if n not in evals)
    if args.serve and not args.report_only:
        H.atomic_write_json(args.workdir / "freshness" / "serve.json", {"date": H.machine_info()["date"], **serving_cost(args, log)})
    if (serve_file := args.workdir / "freshness" / "serve.json").is_file():
        md += serving_md(summary.setdefault("serving", json.loads(serve_file.read_text())))
    head = H.template("freshness", "head", machine=H.machine_md(info),
                      checkouts=sorted({c.get("checkout", "?") for cells in evals.values() for c in cells}),
                      loads=[c.get("loadavg", ["?"])[0] for v in evals.values() for c in v])
    data = {"machine": info, "args": vars(args), "summary": summary, "cells": evals}
    H.write_report(args.results, "freshness", data, head + "\n" + md, log=log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
