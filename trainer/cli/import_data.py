"""``margo import movielens|csv|synth``: raw data -> a dataset bundle (MMRec layout)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from trainer.cli.parsing import kv_int_map, kv_lists, kv_paths


def _add_split_options(p: argparse.ArgumentParser, min_rating: float | None, k_core: int) -> None:
    p.add_argument(
        "--min-rating",
        type=float,
        default=min_rating,
        help=f"keep ratings >= this as implicit positives (default {min_rating}; "
        "a negative value keeps every rating)",
    )
    p.add_argument(
        "--k-core",
        type=int,
        default=k_core,
        help=f"iterative k-core filter on users and items, 0 = off (default {k_core})",
    )
    p.add_argument(
        "--seed", type=int, default=2026, help="seed of the per-user 8:1:1 split (default 2026)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def cmd_movielens(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_movielens

    out = import_movielens(
        a.path,
        a.out,
        min_rating=None if a.min_rating < 0 else a.min_rating,
        k_core=a.k_core,
        seed=a.seed,
        with_tags=a.tags,
        overwrite=a.overwrite,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def cmd_csv(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_csv

    out = import_csv(
        a.interactions,
        a.out,
        items_csv=a.items,
        user_col=a.user_col,
        item_col=a.item_col,
        rating_col=a.rating_col,
        timestamp_col=a.timestamp_col,
        min_rating=None if a.min_rating is None or a.min_rating < 0 else a.min_rating,
        text_cols=a.text or {},
        npy_features=a.features or {},
        title_col=a.title_col,
        category_col=a.category_col,
        k_core=a.k_core,
        seed=a.seed,
        overwrite=a.overwrite,
        drop_bad_rows=a.drop_bad_rows,
        max_reported=a.max_reported,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def cmd_synth(a: argparse.Namespace) -> int:
    from trainer.data.importers import import_synth

    out = import_synth(
        a.out,
        n_users=a.users,
        n_items=a.items,
        n_interactions=a.interactions,
        modalities=a.modalities,
        corrupt_fraction=a.corrupt_fraction,
        corrupt_modality=a.corrupt_modality,
        seed=a.seed,
        overwrite=a.overwrite,
        popularity_skew=a.popularity_skew,
        unnormalised=a.unnormalised,
    )
    print(f"wrote dataset bundle {out}")
    return 0


def add(sub: Any) -> None:
    imp = sub.add_parser("import", help="turn raw data into a dataset bundle (MMRec layout)")
    isub = imp.add_subparsers(dest="source", required=True, metavar="SOURCE")

    ml = isub.add_parser("movielens", help="a MovieLens folder (ml-latest-small or ml-100k)")
    ml.add_argument("path", type=Path, help="folder with ratings.csv/movies.csv or u.data/u.item")
    ml.add_argument("out", type=Path, help="dataset bundle folder to write")
    ml.add_argument(
        "--tags", action="store_true", help="add a 'tags' modality (ml-latest-small only)"
    )
    _add_split_options(ml, 4.0, 5)
    ml.set_defaults(func=cmd_movielens)

    cs = isub.add_parser(
        "csv", help="an interactions CSV plus item text columns and/or .npy features"
    )
    cs.add_argument("interactions", type=Path, help="CSV with a user and an item column")
    cs.add_argument("out", type=Path, help="dataset bundle folder to write")
    cs.add_argument("--items", type=Path, help="items CSV (one row per item, with the item column)")
    cs.add_argument("--user-col", default="user", help="user id column (default user)")
    cs.add_argument(
        "--item-col", default="item", help="item id column, in both CSVs (default item)"
    )
    cs.add_argument("--rating-col", help="rating column, needed by --min-rating")
    cs.add_argument("--timestamp-col", help="timestamp column (kept in the bundle)")
    cs.add_argument("--title-col", help="items CSV column shown as the item title")
    cs.add_argument("--category-col", help="items CSV column of pipe-separated category labels")
    cs.add_argument(
        "--text",
        type=kv_lists,
        metavar="MOD=COL[+COL]...",
        help="text modalities encoded with MiniLM, e.g. text=title+description",
    )
    cs.add_argument(
        "--features",
        type=kv_paths,
        metavar="MOD=FILE.npy,...",
        help="precomputed features, rows in items-CSV order (or sorted item ids)",
    )
    cs.add_argument(
        "--drop-bad-rows",
        action="store_true",
        help="skip the interactions file's bad rows (counted in stats.json) instead of stopping",
    )
    cs.add_argument(
        "--max-reported",
        type=int,
        default=20,
        metavar="N",
        help="how many bad rows the error lists, earliest first (all are counted; default 20)",
    )
    _add_split_options(cs, None, 0)
    cs.set_defaults(func=cmd_csv)

    sy = isub.add_parser(
        "synth", help="synthetic data with planted preferences and corrupted modalities"
    )
    sy.add_argument("out", type=Path, help="dataset bundle folder to write")
    sy.add_argument("--users", type=int, default=19445, help="number of users (default 19445)")
    sy.add_argument("--items", type=int, default=7050, help="number of items (default 7050)")
    sy.add_argument(
        "--interactions", type=int, default=160792, help="distinct user-item pairs (default 160792)"
    )
    sy.add_argument(
        "--modalities",
        type=kv_int_map,
        default={"image": 4096, "text": 384},
        metavar="MOD=DIM,...",
        help="modalities and sizes (default image=4096,text=384)",
    )
    sy.add_argument(
        "--corrupt-fraction",
        type=float,
        default=0.2,
        help="fraction of items with one modality replaced by noise (default 0.2)",
    )
    sy.add_argument(
        "--corrupt-modality", help="always corrupt this modality (default: a random one per item)"
    )
    sy.add_argument(
        "--popularity-skew",
        type=float,
        default=0.4,
        help="s in item popularity rank ** -s; 1.0 or more is Zipf-like heavy-tailed (default 0.4)",
    )
    sy.add_argument(
        "--unnormalised",
        action="store_true",
        help="raw feature scales: per-column scales over 4 orders of magnitude plus offsets",
    )
    sy.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    sy.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    sy.set_defaults(func=cmd_synth)
