"""External id mapping files of a bundle (``u_id_mapping.csv``, ``i_id_mapping.csv``).

Tab-separated with a header. Columns read:

- the internal id: ``userID`` / ``itemID``, a permutation of 0..n-1;
- the external id, unique and non-empty: ``raw_user_id`` or MMRec's ``user_id`` for users,
  ``raw_item_id`` or MMRec's ``asin`` for items (the first of these the header has);
- items only, optional: ``title`` and ``categories`` (pipe-separated).

Any other column is ignored, so MMRec's own Amazon files (``user_id userID``,
``asin itemID``) load as they are. Bundles are written with the ``raw_*`` names.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from trainer.data.tables import read_table, row_error
from trainer.errors import DataError

USER_MAP = "u_id_mapping.csv"
ITEM_MAP = "i_id_mapping.csv"
USER_COLUMNS = ("raw_user_id", "userID")  # what write_mapping writes
ITEM_COLUMNS = ("raw_item_id", "itemID")
# external-id column names read, in order of preference (MMRec's Amazon data: user_id, asin)
RAW_ALIASES = {"raw_user_id": ("raw_user_id", "user_id"), "raw_item_id": ("raw_item_id", "asin")}
CATEGORY_SEP = "|"


def read_mapping(
    path: Path, *, columns: tuple[str, str], label: str
) -> tuple[list[str], list[dict] | None, np.ndarray]:
    """Read a mapping file.

    Returns
    -------
    ids
        External id of each internal id, in internal id order.
    meta
        Per item ``{"title": str | None, "categories": list[str]}`` when the file has a
        ``title`` or ``categories`` column, else None.
    rows
        int [n]: the 1-based data row of each internal id, for messages about it.
    """
    raw_col, id_col = columns
    table = read_table(path, delimiter="\t", label=label)
    aliases = RAW_ALIASES.get(raw_col, (raw_col,))
    raw_col = next((c for c in aliases if table.has(c)), raw_col)
    if not table.has(raw_col):
        raise DataError(
            f"{label}: missing column {' or '.join(aliases)} (the external id; header has "
            f"{', '.join(table.header) or 'nothing'})"
        )
    table.require(id_col)
    internal = table.ints(id_col)
    raw = table.column(raw_col)
    n = len(table)
    bad = (internal < 0) | (internal >= n)
    if bad.any():
        r = int(np.argmax(bad))
        raise row_error(label, r + 1, f"{id_col} {internal[r]} is not in 0..{n - 1} ({n} rows)")
    _check_unique(internal, label=label, what=id_col)
    empty = [r for r, v in enumerate(raw) if not v]
    if empty:
        raise row_error(label, empty[0] + 1, f"{raw_col} is empty")
    _check_unique(np.asarray(raw, dtype=object), label=label, what=raw_col)

    order = np.argsort(internal)
    ids = [raw[r] for r in order]
    rows = order + 1
    if not (table.has("title") or table.has("categories")):
        return ids, None, rows
    titles = table.column("title") if table.has("title") else [""] * n
    cats = table.column("categories") if table.has("categories") else [""] * n
    meta = [
        {"title": titles[r] or None, "categories": [c for c in cats[r].split(CATEGORY_SEP) if c]}
        for r in order
    ]
    return ids, meta, rows


def write_mapping(
    path: Path, *, columns: tuple[str, str], ids: list[str], meta: list[dict] | None = None
) -> None:
    """Write a mapping file; ``meta`` adds the ``title`` and ``categories`` columns."""
    header = list(columns) + (["title", "categories"] if meta is not None else [])
    with path.open("w", encoding="utf-8", newline="") as f:
        # csv quoting keeps titles with tabs or quotes intact; read_mapping undoes it.
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        for i, raw in enumerate(ids):
            row = [raw, i]
            if meta is not None:
                m = meta[i]
                cats = [str(c) for c in m.get("categories") or []]
                if any(CATEGORY_SEP in c for c in cats):
                    raise DataError(f"{path.name}: item {i}: a category contains '{CATEGORY_SEP}'")
                row += [m.get("title") or "", CATEGORY_SEP.join(cats)]
            w.writerow(row)


def _check_unique(values: np.ndarray, *, label: str, what: str) -> None:
    """Name the first two rows that share a value."""
    order = np.argsort(values, kind="stable")
    s = values[order]
    dup = np.flatnonzero(s[1:] == s[:-1]) + 1
    if dup.size:
        j = dup[np.argmin(order[dup])]
        a, b = int(order[j - 1]), int(order[j])
        raise DataError(f"{label}: rows {a + 1} and {b + 1} have the same {what} {values[b]!r}")
