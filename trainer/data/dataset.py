"""Dataset bundle in the MMRec layout: the trainer's input contract (ARCHITECTURE.md, step 1).

A bundle is a directory::

    <name>.inter            tab-separated, header ``userID itemID rating timestamp x_label``;
                            internal ids 0..n-1; x_label 0/1/2 = train/valid/test
    <modality>_feat.npy     float32 [n_items, d], row i = item i (one file per modality)
    u_id_mapping.csv        optional, ``raw_user_id userID`` (MMRec's ``user_id userID`` too)
    i_id_mapping.csv        optional, ``raw_item_id itemID [title] [categories]`` (or MMRec's
                            ``asin itemID``); other columns are ignored. Every user the
                            mapping defines must occur in the interactions (else it belongs
                            to other data); items may be cold (features, no interactions)
    <modality>_corrupt.npy  optional bool [n_items]: ground-truth corruption (synthetic data)
    stats.json              counts, written by :func:`write_dataset`, never read back

Other files are ignored; in particular MMRec's pickled ``user_graph_dict.npy`` is never
opened, and every ``.npy`` is loaded with ``allow_pickle=False``. Only ``userID``,
``itemID`` and ``x_label`` are required in the ``.inter`` header (rating and timestamp are
not used for implicit-feedback training).

Item count: the size of ``i_id_mapping.csv`` when present, else max item id + 1; every
feature matrix must have exactly that many rows (users likewise with ``u_id_mapping.csv``).

Fingerprint: sha256 over, in order, ``b"inter\\0" + sha256(.inter bytes)`` and, for every
``*_feat.npy`` sorted by file name, ``name + b"\\0" + sha256(file bytes)``. Renaming the
dataset keeps it; changing any interaction or feature byte, or a modality's name, changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from trainer.atomic import atomic_dir
from trainer.data import checks
from trainer.data.layout import (
    CORRUPT_SUFFIX,
    FEAT_SUFFIX,
    INTER_SUFFIX,
    STATS_FILE,
    check_name,
    write_files,
)
from trainer.data.mapping import (
    ITEM_COLUMNS,
    ITEM_MAP,
    USER_COLUMNS,
    USER_MAP,
    read_mapping,
)
from trainer.data.tables import int_columns
from trainer.errors import DataError

TRAIN, VALID, TEST = 0, 1, 2


@dataclass
class Dataset:
    """A loaded, validated bundle. Arrays use internal ids 0..n-1."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray  # int64 [n_train, 2] (user, item)
    valid: np.ndarray  # int64 [n_valid, 2]
    test: np.ndarray  # int64 [n_test, 2]
    features: dict[str, np.ndarray]  # modality -> float32 [n_items, d_m], file name order
    user_ids: list[str]
    item_ids: list[str]
    item_meta: list[dict] | None
    fingerprint: str
    path: Path | None = None
    corruption: dict[str, np.ndarray] | None = None  # modality -> bool [n_items]

    def __repr__(self) -> str:
        dims = {m: f.shape[1] for m, f in self.features.items()}
        return (
            f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, "
            f"train={len(self.train)}, valid={len(self.valid)}, test={len(self.test)}, "
            f"modalities={dims})"
        )

    def train_matrix(self) -> sp.csr_matrix:
        """Binary float32 CSR [n_users, n_items] of the training pairs."""
        data = np.ones(len(self.train), dtype=np.float32)
        m = sp.csr_matrix(
            (data, (self.train[:, 0], self.train[:, 1])), shape=(self.n_users, self.n_items)
        )
        m.sort_indices()
        return m

    def select_modalities(self, names: list[str]) -> Dataset:
        """A copy keeping only ``names`` (file name order is kept); unknown names are an error."""
        _check_known(names, list(self.features), where=self.name)
        keep = [m for m in self.features if m in names]
        corruption = None
        if self.corruption is not None:
            corruption = {m: v for m, v in self.corruption.items() if m in keep} or None
        return dataclasses.replace(
            self, features={m: self.features[m] for m in keep}, corruption=corruption
        )


def load_dataset(path: str | Path, modalities: list[str] | None = None) -> Dataset:
    """Load and validate a bundle directory.

    Parameters
    ----------
    modalities
        Feature files to load (None: all). Naming a modality the bundle lacks is an error.

    Raises
    ------
    DataError
        One line naming the file and, where it applies, the row.
    """
    root = Path(path)
    return _load(root, modalities, shown=root)


def write_dataset(
    out: str | Path,
    *,
    name: str,
    interactions: np.ndarray,
    features: dict[str, np.ndarray],
    user_ids: list[str],
    item_ids: list[str],
    item_meta: list[dict] | None = None,
    ratings: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
    corruption: dict[str, np.ndarray] | None = None,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
    extra_arrays: dict[str, np.ndarray] | None = None,
    stats: dict | None = None,
    on_validated: Callable[[Dataset], None] | None = None,
) -> Path:
    """Write a bundle atomically and return its path.

    The bundle is built in a temporary directory beside ``out``, loaded back with the same
    validation as :func:`load_dataset`, then renamed into place, so a failure leaves
    nothing behind and an existing bundle is only replaced by a valid one.

    Parameters
    ----------
    interactions
        int [n, 3] (user, item, x_label) with internal ids.
    ratings, timestamps
        Written to the rating/timestamp columns; default 1.0 and 0 (implicit feedback).
    extra_files
        File name -> text content (e.g. a licence), written into the bundle as is.
    extra_arrays
        File name (``.npy`` added if missing) -> array, e.g. ``tags_missing.npy``.
    stats
        Extra entries (provenance: source, filters, seed) merged into ``stats.json``.
    on_validated
        Called with the Dataset loaded back for validation (what :func:`load_dataset` would
        return), so a caller that trains on it does not read the files a second time.
    """
    out = Path(out)
    check_name(name)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: already exists (pass overwrite=True to replace it)")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    with atomic_dir(out) as tmp:  # a reader sees the old bundle or the new one, never half
        write_files(
            tmp,
            name=name,
            interactions=interactions,
            features=features,
            user_ids=user_ids,
            item_ids=item_ids,
            item_meta=item_meta,
            ratings=ratings,
            timestamps=timestamps,
            corruption=corruption,
            extra_files=extra_files or {},
            extra_arrays=extra_arrays or {},
        )
        ds = _load(tmp, None, shown=out)
        summary = {**_stats(ds), **(stats or {})}
        (tmp / STATS_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if on_validated is not None:
        on_validated(ds)
    return out


# -- loading ---------------------------------------------------------------------------------


def _load(root: Path, modalities: list[str] | None, *, shown: Path) -> Dataset:
    """Load ``root``; messages name files as if they were under ``shown``."""
    if not root.is_dir():
        raise DataError(f"{shown}: not a directory")
    inters = sorted(p.name for p in root.glob(f"*{INTER_SUFFIX}"))
    if len(inters) != 1:
        found = ", ".join(inters) or "none"
        raise DataError(f"{shown}: expected exactly one {INTER_SUFFIX} file, found {found}")
    inter_path = root / inters[0]
    inter_label = str(shown / inters[0])
    raw = inter_path.read_bytes()
    digests = [("inter", hashlib.sha256(raw).digest())]
    text = _decode(raw, inter_label)
    cols = int_columns(text, label=inter_label, names=("userID", "itemID", "x_label"))
    users, items, labels = cols["userID"], cols["itemID"], cols["x_label"]

    user_ids, _, user_rows = _read_map(root / USER_MAP, USER_COLUMNS, shown)
    item_ids, item_meta, _ = _read_map(root / ITEM_MAP, ITEM_COLUMNS, shown)
    n_users = len(user_ids) if user_ids is not None else int(max(users.max(), -1)) + 1
    n_items = len(item_ids) if item_ids is not None else int(max(items.max(), -1)) + 1
    checks.check_ids(
        users,
        n_users if user_ids is not None else None,
        label=inter_label,
        column="userID",
        bound_by=USER_MAP,
    )
    checks.check_ids(
        items,
        n_items if item_ids is not None else None,
        label=inter_label,
        column="itemID",
        bound_by=ITEM_MAP,
    )
    if user_rows is not None:
        # items may lack interactions (cold catalogue items with features); users may not
        checks.check_mapping_used(
            users, n_users, user_rows, label=str(shown / USER_MAP), column="userID",
            inter=inters[0],
        )  # fmt: skip
    checks.check_labels(labels, label=inter_label)
    checks.check_duplicates(users, items, n_items, label=inter_label)
    checks.check_eval_users(users, labels, n_users, label=inter_label)

    feat_files = sorted(p.name for p in root.glob(f"*{FEAT_SUFFIX}"))
    available = [f[: -len(FEAT_SUFFIX)] for f in feat_files]
    if modalities is not None:
        _check_known(modalities, available, where=str(shown))
    features: dict[str, np.ndarray] = {}
    corruption: dict[str, np.ndarray] = {}
    for fname, m in zip(feat_files, available, strict=True):
        digests.append((fname, _file_digest(root / fname)))
        if modalities is not None and m not in modalities:
            continue
        arr = _load_npy(root / fname, str(shown / fname))
        features[m] = checks.check_features(arr, n_items, label=str(shown / fname))
        mask_path = root / f"{m}{CORRUPT_SUFFIX}"
        if mask_path.is_file():
            label = str(shown / mask_path.name)
            corruption[m] = checks.check_mask(_load_npy(mask_path, label), n_items, label=label)

    pairs = np.stack([users, items], axis=1)
    return Dataset(
        name=inters[0][: -len(INTER_SUFFIX)],
        n_users=n_users,
        n_items=n_items,
        train=pairs[labels == TRAIN],
        valid=pairs[labels == VALID],
        test=pairs[labels == TEST],
        features=features,
        user_ids=user_ids if user_ids is not None else [str(u) for u in range(n_users)],
        item_ids=item_ids if item_ids is not None else [str(i) for i in range(n_items)],
        item_meta=item_meta,
        fingerprint=_fingerprint(digests),
        path=shown,
        corruption=corruption or None,
    )


def _decode(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{label}: not valid utf-8 text (byte {e.start})") from None


def _read_map(
    path: Path, columns: tuple[str, str], shown: Path
) -> tuple[list[str] | None, list[dict] | None, np.ndarray | None]:
    if not path.is_file():
        return None, None, None
    return read_mapping(path, columns=columns, label=str(shown / path.name))


def _load_npy(path: Path, label: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        # allow_pickle=False refuses object arrays: we never execute pickled data.
        raise DataError(f"{label}: not a plain numeric .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{label}: cannot read as .npy ({e})") from None


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.digest()


def _fingerprint(digests: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for tag, digest in digests:
        h.update(tag.encode("utf-8") + b"\0" + digest)
    return h.hexdigest()


def _check_known(names: list[str], available: list[str], *, where: str) -> None:
    unknown = [m for m in names if m not in available]
    if unknown:
        raise DataError(
            f"{where}: unknown modality {', '.join(map(repr, unknown))} "
            f"(available: {', '.join(available) or 'none'})"
        )


# -- writing ---------------------------------------------------------------------------------


def _stats(ds: Dataset) -> dict:
    """Counts written to stats.json."""
    pairs = np.concatenate([ds.train, ds.valid, ds.test])
    per_user = np.bincount(pairs[:, 0], minlength=ds.n_users)
    n = len(pairs)
    splits = {"train": ds.train, "valid": ds.valid, "test": ds.test}
    return {
        "dataset": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": n,
        "density": n / max(ds.n_users * ds.n_items, 1),
        "split": {k: len(v) for k, v in splits.items()},
        "split_users": {k: int(np.unique(v[:, 0]).size) for k, v in splits.items()},
        "items_without_train_interaction": int(
            (np.bincount(ds.train[:, 1], minlength=ds.n_items) == 0).sum()
        ),
        "interactions_per_user": {
            "min": int(per_user.min()) if n else 0,
            "median": float(np.median(per_user)) if n else 0.0,
            "max": int(per_user.max()) if n else 0,
        },
        "modalities": {
            m: {
                "shape": list(f.shape),
                **(
                    {"corrupted_items": int(ds.corruption[m].sum())}
                    if ds.corruption and m in ds.corruption
                    else {}
                ),
            }
            for m, f in ds.features.items()
        },
        "fingerprint": ds.fingerprint,
    }
