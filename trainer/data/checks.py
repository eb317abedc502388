"""Vectorised validation of a dataset bundle's arrays.

Each check runs over whole arrays with numpy and only on failure locates the first bad
row, so validating Amazon-sized data costs milliseconds. Every failure is one
:class:`~trainer.errors.DataError` line naming the file and the row: 1-based data rows for
the ``.inter`` file (see :mod:`trainer.data.tables`), 0-based row indices (= item ids) for
``.npy`` files.
"""

from __future__ import annotations

import numpy as np

from trainer.data.tables import row_error
from trainer.errors import DataError

SPLIT_NAMES = ("train", "valid", "test")


def check_ids(ids: np.ndarray, n: int | None, *, label: str, column: str, bound_by: str) -> None:
    """Ids must be >= 0 and, when ``n`` is known (a mapping file), < n.

    ``bound_by`` says where ``n`` comes from, for the message (e.g. "u_id_mapping.csv").
    """
    bad = ids < 0 if n is None else (ids < 0) | (ids >= n)
    if bad.any():
        r = int(np.argmax(bad))
        if ids[r] < 0:
            raise row_error(label, r + 1, f"{column} {ids[r]} is negative")
        raise row_error(
            label,
            r + 1,
            f"{column} {ids[r]} is out of range: {bound_by} defines {n} ids (0..{n - 1})",
        )


def check_mapping_used(
    ids: np.ndarray, n: int, rows: np.ndarray, *, label: str, column: str, inter: str
) -> None:
    """Every id a (user) mapping file defines must occur in the interactions.

    An id that never occurs means the mapping belongs to other interactions (another
    filtering, another split); loading it would pair embeddings with the wrong external ids.
    ``rows[k]`` is the mapping file's data row of id k.
    """
    unused = np.flatnonzero(np.bincount(ids, minlength=n)[:n] == 0)
    if unused.size:
        k = int(unused[np.argmin(rows[unused])])
        raise row_error(
            label,
            int(rows[k]),
            f"{column} {k} has no row in {inter} ({unused.size} of {n} ids are unused): "
            "the mapping does not match the interactions",
        )


def check_labels(labels: np.ndarray, *, label: str) -> None:
    """x_label must be 0 (train), 1 (valid) or 2 (test)."""
    bad = (labels < 0) | (labels > 2)
    if bad.any():
        r = int(np.argmax(bad))
        raise row_error(label, r + 1, f"x_label {labels[r]} is not 0, 1 or 2 (train/valid/test)")


def check_duplicates(users: np.ndarray, items: np.ndarray, n_items: int, *, label: str) -> None:
    """No (user, item) pair may appear twice; the message names both rows."""
    key = users * np.int64(n_items) + items
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[order][1:] == key[order][:-1]) + 1
    if dup.size:
        # Stable sort keeps file order inside a group, so order[j - 1] is an earlier row
        # with the same pair; report the duplicate that comes first in the file.
        j = dup[np.argmin(order[dup])]
        first, second = int(order[j - 1]), int(order[j])
        raise DataError(
            f"{label}: rows {first + 1} and {second + 1} are the same pair "
            f"(user {users[second]}, item {items[second]})"
        )


def check_eval_users(users: np.ndarray, labels: np.ndarray, n_users: int, *, label: str) -> None:
    """Every user with a valid or test row needs at least one training row.

    A user without training items has no embedding signal, so their evaluation rows would
    only measure the initialisation.
    """
    has_train = np.bincount(users[labels == 0], minlength=n_users) > 0
    bad = (labels != 0) & ~has_train[users]
    if bad.any():
        r = int(np.argmax(bad))
        raise row_error(
            label,
            r + 1,
            f"user {users[r]} has a {SPLIT_NAMES[labels[r]]} row but no training rows",
        )


def check_features(arr: np.ndarray, n_items: int, *, label: str) -> np.ndarray:
    """A modality matrix: 2-D, numeric, n_items rows, all finite. Returns it as float32."""
    if arr.ndim != 2:
        raise DataError(f"{label}: expected a 2-D array [n_items, dim], got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{label}: expected numbers, got dtype {arr.dtype}")
    if arr.shape[0] != n_items:
        raise DataError(f"{label}: has {arr.shape[0]} rows but the dataset has {n_items} items")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    # A float64 sum of float32 values cannot overflow, so it is finite iff every value is:
    # one cheap pass instead of a boolean matrix as large as the features.
    if not np.isfinite(arr.sum(dtype=np.float64)):
        r = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise DataError(f"{label}: row {r} (item {r}) contains NaN or inf")
    return arr


def check_mask(arr: np.ndarray, n_items: int, *, label: str) -> np.ndarray:
    """A per-item boolean mask of length n_items."""
    if arr.dtype != np.bool_ or arr.shape != (n_items,):
        raise DataError(
            f"{label}: expected a bool array of shape ({n_items},), got {arr.dtype} {arr.shape}"
        )
    return arr
