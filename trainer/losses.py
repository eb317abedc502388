"""MARGO's equations, each implemented once and named after the paper (ALGORITHMS.md 1.3).

Shapes: B = batch, M = channels (modalities), d = embedding size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Eq. 6 literally maps a negative gap to -e^6; used only in the paper-literal mode (A1).
LITERAL_NEG = -math.exp(6.0)


def modality_scores(user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
    """Eq. 2: y_ui^m = e_u^m . e_i^m.  user, item: [B, M, d] -> [B, M]."""
    return (user * item).sum(-1)


def fused_score(scores: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Eq. 3: y_ui = w_i^T [y_ui^1..y_ui^M]; with no weights the stage-I sum (Eq. 9).

    scores [B, M], weights [B, M] or None -> [B].
    """
    return scores.sum(-1) if weights is None else (weights * scores).sum(-1)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Eq. 4 as a batch mean (A4), natural log (A6): mean(-log sigmoid(y_ui - y_uk))."""
    return F.softplus(neg - pos).mean()


def embedding_norm_reg(*rows: torch.Tensor) -> torch.Tensor:
    """The baselines' regulariser as RecBole/MMRec define it: sum_t ||E_t||_F / B.

    ``rows`` are the batch's embedding rows (users, positives, negatives), each [B, d]; the
    Frobenius norms are not squared, so the pull on a row shrinks as 1/sqrt(B) relative to
    a squared L2 and MMRec's weights (BPR-MF 1.0, LightGCN 1e-2 .. 1e-6) keep their meaning.
    """
    return sum(torch.linalg.vector_norm(r) for r in rows) / rows[-1].shape[0]


def rating_gap(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Eq. 5: d_uik = [y_ui^m - y_uk^m]_m.  [B, M] -> [B, M]."""
    return pos_scores - neg_scores


def reliability_target(
    gap: torch.Tensor, *, literal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: z_uik = softmax_m(g(d_uik)); returns (z [B, M], valid [B] bool).

    g masks negative gaps to -inf (A1), so channels that rank the negative higher get zero
    reliability. A triplet whose every gap is negative has no defined target: it is marked
    invalid (dropped from L_cal). ``literal`` uses the paper's -e^6 instead, for which such
    rows become uniform and stay valid.
    """
    negative = gap < 0
    if literal:
        z = torch.softmax(gap.masked_fill(negative, LITERAL_NEG), dim=-1)
        return z, torch.ones(gap.shape[0], dtype=torch.bool, device=gap.device)
    valid = ~negative.all(-1)
    # all-negative rows would give softmax(-inf, ...) = NaN (and NaN gradients without
    # stop-gradient); give them finite logits and zero them through `valid` instead
    logits = gap.masked_fill(negative, float("-inf"))
    logits = torch.where(valid[:, None], logits, torch.zeros_like(gap))
    return torch.softmax(logits, dim=-1) * valid[:, None], valid


def confidence(pos: torch.Tensor, neg: torch.Tensor, tau_conf: float) -> torch.Tensor:
    """Eq. 7 (A3): gamma_uik = tanh((y_ui - y_uk) / tau_conf) if y_ui > y_uk else 0.  -> [B]."""
    return torch.tanh((pos - neg) / tau_conf).clamp(min=0.0)


def calibration_loss(
    z: torch.Tensor,
    gamma: torch.Tensor,
    valid: torch.Tensor,
    w_pos: torch.Tensor,
    w_neg: torch.Tensor,
) -> torch.Tensor:
    """Eq. 8 with A2 and A4: mean_B( gamma * valid * KL(z || (w_i + w_k) / 2) ).

    The paper's KL(z || w_i (+) w_k) equals this minus log 2 (same gradients); the mean of
    the two weight vectors is a distribution, so the loss is non-negative. z = 0 entries
    contribute 0; the log is clamped so that, without stop-gradient, their gradient is 0 * finite
    rather than 0 * inf = NaN. z, gamma [B, M]/[B]; w_pos, w_neg [B, M].
    """
    q = 0.5 * (w_pos + w_neg)
    kl = (z * (torch.log(z.clamp_min(1e-30)) - torch.log(q.clamp_min(1e-12)))).sum(-1)
    return (gamma * valid.to(kl.dtype) * kl).mean()


def calibration_from_scores(
    pos_scores: torch.Tensor,
    neg_scores: torch.Tensor,
    pos: torch.Tensor,
    neg: torch.Tensor,
    w_pos: torch.Tensor,
    w_neg: torch.Tensor,
    *,
    tau_conf: float,
    stopgrad: bool = True,
    literal: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_cal (Eq. 8) of one batch from its channel scores [B, M] and fused scores [B].

    With ``stopgrad`` (the paper) z and gamma are detached, so L_cal reaches only the weight
    logits through w_pos/w_neg; without it ("w/o nograd") gradients also flow through
    Eqs. 5-7 into the embeddings.
    """
    gap = rating_gap(pos_scores, neg_scores)
    if stopgrad:
        gap, pos, neg = gap.detach(), pos.detach(), neg.detach()
    z, valid = reliability_target(gap, literal=literal)
    gamma = confidence(pos, neg, tau_conf)
    l_cal = calibration_loss(z, gamma, valid, w_pos, w_neg)
    stats = {"valid_frac": float(valid.float().mean()), "gamma_mean": float(gamma.detach().mean())}
    return l_cal, stats
