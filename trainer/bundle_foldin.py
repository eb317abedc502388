"""The fold-in part of a model bundle (format 3; the rest: trainer/bundle.py).

Backbone models export what serving needs to place a NEW item without retraining
(trainer/foldin): the feature projections ``proj_<m>_*`` (D1 / F1, since format 1), and since
format 3 the catalogue's item states the item graph is applied to, ``foldin_state.npy``
(float32 [n_items, M, d]), the L2-normalised features of each modality's kNN graph,
``foldin_knn_<m>.npy`` ([n_items, f_m], float16 to keep bundles small), the standardisation
``foldin_mu_<m>.npy`` / ``foldin_scale_<m>.npy`` ([f_m]) when the model standardised its
features, for features wider than ``search_rank`` a low-rank prefilter of the search
(``foldin_basis_<m>.npy`` [f_m, r], ``foldin_low_<m>.npy`` [n_items, r]), and the manifest's
``fold_in`` record (k, graph mixing, layer-0 rule). FREEDOM bundles add the propagation
parts (``PROPAGATION`` below; trainer/foldin/propagation.py folds users and items with them).

A bundle has the record and all its arrays, or none of them. Reading fold-in from a bundle
without them raises ``FoldInUnavailable`` with the reason (older format, or a model without
a feature graph such as BPR-MF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.errors import BundleError
from trainer.manifest import MANIFEST, FoldInInfo, Manifest

FOLDIN_STATE = "foldin_state"
FOLDIN_PREFIX = "foldin_"
# optional, all or none (FREEDOM backbone): F3's layer mean split by node, float32
#   foldin_user_self  [n_users, M, d]  P_u / (L+1): a user's own share of e_u
#   foldin_user_msg   [n_items, M, d]  m_i: e_u = self_u + sum_{i in N(u)} m_i / sqrt(|N(u)|)
#   foldin_item_edges [n_items, M, d]  Z_i - X_i / (L+1) (id node included): what an item's
#                                      edges (and id embedding) add to its embedding
USER_SELF, USER_MSG, ITEM_EDGES = "foldin_user_self", "foldin_user_msg", "foldin_item_edges"
PROPAGATION = (USER_SELF, USER_MSG, ITEM_EDGES)
# optional beside the propagation parts (newer FREEDOM exports): the users' side of F3, what a
# new item's edges bring it (trainer/foldin/interactions.py), the mirror of foldin_user_msg
#   foldin_user_out   [n_users, M, d]  n_u = sum_{l<L} (A^l X0)_u / (sqrt(d_u) (L+1)):
#                                      Z_i = X_i / (L+1) + sum_{u in N(i)} n_u / sqrt(|N(i)|)
# A bundle without it (older exports) still loads; its items fold from features only.
USER_OUT = "foldin_user_out"


def knn_name(modality: str) -> str:
    return f"foldin_knn_{modality}"


def mu_name(modality: str) -> str:
    return f"foldin_mu_{modality}"


def scale_name(modality: str) -> str:
    return f"foldin_scale_{modality}"


def basis_name(modality: str) -> str:
    return f"foldin_basis_{modality}"


def low_name(modality: str) -> str:
    return f"foldin_low_{modality}"


class FoldInError(ValueError):
    """Base class of fold-in errors (a ValueError: bad input or an unsuitable bundle)."""


class FoldInUnavailable(FoldInError):
    """The bundle carries no fold-in state; the message says why."""


class FoldInInputError(FoldInError):
    """Bad input to fold-in; ``item`` (row of the request) and ``modality`` say where."""

    def __init__(self, message: str, *, item: int | None = None, modality: str | None = None):
        super().__init__(message)
        self.item = item
        self.modality = modality


def fold_in_info(manifest: Manifest, path: Path | str = "bundle") -> FoldInInfo:
    """The bundle's ``fold_in`` record, or ``FoldInUnavailable`` saying why it has none."""
    if manifest.fold_in is not None:
        return manifest.fold_in
    if manifest.format_version < 3:
        why = (
            f"bundle format {manifest.format_version} predates fold-in "
            "(re-export or retrain with this version to get it)"
        )
    else:
        why = f"model {manifest.model!r} was exported without fold-in state (no feature graph)"
    raise FoldInUnavailable(f"{path}: fold-in unavailable: {why}")


def check_foldin(
    path: Path,
    manifest: Manifest,
    arrays: dict[str, np.ndarray],
    sizes: dict[str, int],
    *,
    verify: bool,
) -> None:
    """The fold-in arrays come with the manifest's ``fold_in`` record, in the shapes it implies;
    with ``verify`` the state is finite."""
    info = manifest.fold_in
    present = [n for n in arrays if n.startswith(FOLDIN_PREFIX)]
    if info is None:
        if present:
            raise BundleError(f"{path / MANIFEST}: {present[0]}.npy without a fold_in record")
        return
    channels = manifest.channel_names
    dims = {c.name: c.feature_dim for c in manifest.channels}
    where = path / MANIFEST
    if set(info.graphs) != set(channels):
        raise BundleError(f"{where}: fold_in.graphs names {sorted(info.graphs)}, not {channels}")
    for mix in info.graphs.values():
        if not set(mix) <= set(info.modalities):
            raise BundleError(f"{where}: fold_in.graphs mixes {sorted(mix)}, not modalities")
    want = {FOLDIN_STATE: (sizes["I"], sizes["M"], sizes["D"])}
    for m in info.modalities:
        if dims.get(m) is None:
            raise BundleError(f"{where}: fold_in modality {m!r} is not a content channel")
        want[knn_name(m)] = (sizes["I"], int(dims[m]))
        if info.standardized:
            want[mu_name(m)] = want[scale_name(m)] = (int(dims[m]),)
        r = info.search_rank
        if r is not None and int(dims[m]) > r:  # the low-rank prefilter of wide features
            want[basis_name(m)], want[low_name(m)] = (int(dims[m]), r), (sizes["I"], r)
    propagation = [n for n in PROPAGATION if n in arrays]
    if propagation:  # FREEDOM's F3 split by node (trainer/models/freedom.py): all or none
        want[PROPAGATION[0]] = (sizes["U"], sizes["M"], sizes["D"])
        want.update({n: (sizes["I"], sizes["M"], sizes["D"]) for n in PROPAGATION[1:]})
    if USER_OUT in arrays:  # part of the propagation split: meaningless without it
        if not propagation:
            raise BundleError(f"{path / (USER_OUT + '.npy')}: without the propagation parts "
                              f"{list(PROPAGATION)}")
        want[USER_OUT] = (sizes["U"], sizes["M"], sizes["D"])
    for m in info.modalities:  # D1 / F1: the projection a new item's layer-0 node comes from
        want.update({f"proj_{m}_{p}": arrays.get(f"proj_{m}_{p}", np.empty(0)).shape
                     for p in ("w1", "b1")})
    for name, shape in want.items():
        if name not in arrays:
            raise BundleError(f"{where}: fold_in record without {name}.npy")
        if arrays[name].shape != shape:
            raise BundleError(f"{path / (name + '.npy')}: shape {arrays[name].shape}, "
                              f"expected {shape}")
    extra = sorted(set(present) - set(want))
    if extra:
        raise BundleError(f"{path / (extra[0] + '.npy')}: not part of the fold_in record")
    if verify and not np.isfinite(arrays[FOLDIN_STATE]).all():
        raise BundleError(f"{path / (FOLDIN_STATE + '.npy')}: contains NaN or inf")
