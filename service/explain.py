"""Response items of a recommendation: scores split by modality, titles, confidence, and
the ``cold`` mark and provenance of folded items (service/fresh/). Built as plain dicts for
orjson (service/ranking.py ranks, this module describes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.live import LiveModel
from trainer import scoring
from trainer.scoring import ModalityTerms


def modality_terms(model: LiveModel, user_emb: np.ndarray, rows: np.ndarray) -> ModalityTerms:
    """The user's (e_u [M, d]) scores of ``rows`` split by modality (trainer/scoring.py), from
    the v_i the ranking used: the contributions add up to its score."""
    return scoring.modality_terms(
        user_emb, model.emb_of(rows), model.weights_of(rows), model.vectors_of(rows)
    )


def _confidence(model: LiveModel, rows: np.ndarray) -> list[int]:
    return model.pos_count_of(rows).tolist()


def _cold(model: LiveModel, item: dict[str, Any], row: int, explain: bool) -> dict[str, Any]:
    """Mark a folded item: ``cold`` and, with explanations, where its vector came from."""
    if row >= model.n_items:
        item["cold"] = True
        if explain:
            item["fold_in"] = model.folded.provenance.get(item["item_id"])
    return item


def explained_items(
    model: LiveModel, user_emb: np.ndarray, rows: np.ndarray, offset: int, *, explain: bool
) -> list[dict[str, Any]]:
    if rows.size == 0:
        return []
    terms = modality_terms(model, user_emb, rows)
    score = terms.score
    ids, titles = model.item_ids_of(rows), model.catalog.titles
    low = model.low_confidence_positives
    positives = _confidence(model, rows)
    out: list[dict[str, Any]] = []
    if not explain:
        for r, (row, s, p) in enumerate(zip(rows.tolist(), score.tolist(), positives, strict=True)):
            item = {
                "item_id": ids[r],
                "title": titles[row],
                "rank": offset + r + 1,
                "score": s,
                "modalities": None,
                "top_modality": None,
                "positives": p,
                "low_confidence": p < low,
                "cold": False,
            }
            out.append(_cold(model, item, row, False))
        return out
    names = model.channels
    # the trainer's reliability score per modality beside the weight (None: the bundle has none)
    rel = model.reliability
    nones = [None] * len(names)
    if rel is None:
        rel_score = rel_conf = [nones] * rows.size
    elif rows.size and rows.max() >= model.n_items:  # folded items have no score
        warm = np.minimum(rows, model.n_items - 1)
        rel_score, rel_conf = rel.score[warm].tolist(), rel.confidence[warm].tolist()
        for r, row in enumerate(rows.tolist()):
            if row >= model.n_items:
                rel_score[r] = rel_conf[r] = nones
    else:
        rel_score, rel_conf = rel.score[rows].tolist(), rel.confidence[rows].tolist()
    columns = zip(
        rows.tolist(),
        score.tolist(),
        terms.similarity.tolist(),
        terms.weight.tolist(),
        terms.contribution.tolist(),
        terms.share.tolist(),
        terms.top_modality.tolist(),
        positives,
        rel_score,
        rel_conf,
        strict=True,
    )
    for r, (row, s, sim, w, c, sh, t, p, rs, rc) in enumerate(columns):
        item = {
                "item_id": ids[r],
                "title": titles[row],
                "rank": offset + r + 1,
                "score": s,
                "modalities": {
                    name: {
                        "score": sim[m],
                        "weight": w[m],
                        "contribution": c[m],
                        "share": sh[m],
                        "reliability": rs[m],
                        "reliability_confidence": rc[m],
                    }
                    for m, name in enumerate(names)
                },
                "top_modality": names[t],
                "positives": p,
                "low_confidence": p < low,
                "cold": False,
            }  # fmt: skip
        out.append(_cold(model, item, row, True))
    return out


def popular_items(model: LiveModel, rows: np.ndarray, offset: int) -> list[dict[str, Any]]:
    ids, titles = model.bundle.item_ids, model.catalog.titles
    popularity = model.arrays["item_popularity"][rows].tolist()
    low = model.low_confidence_positives
    return [
        {
            "item_id": ids[row],
            "title": titles[row],
            "rank": offset + r + 1,
            "score": float(pop),
            "modalities": None,
            "top_modality": None,
            "positives": p,
            "low_confidence": p < low,
            "cold": False,
        }
        for r, (row, pop, p) in enumerate(
            zip(rows.tolist(), popularity, _confidence(model, rows), strict=True)
        )
    ]
