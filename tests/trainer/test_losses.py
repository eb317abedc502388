"""MARGO Eqs. 2-8 against hand computations, and where their gradients go."""

import math

import pytest
import torch

from trainer import losses


def test_eq2_modality_scores():
    user = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]])  # [B=1, M=2, d=2]
    item = torch.tensor([[[3.0, 4.0], [5.0, -2.0]]])
    assert losses.modality_scores(user, item).tolist() == [[11.0, -2.0]]


def test_eq3_fused_score_weighted_and_sum():
    scores = torch.tensor([[11.0, -2.0]])
    assert losses.fused_score(scores, None).item() == 9.0
    w = torch.tensor([[0.25, 0.75]])
    assert losses.fused_score(scores, w).item() == pytest.approx(0.25 * 11 - 0.75 * 2)


def test_eq4_bpr_loss_is_batch_mean_of_minus_log_sigmoid():
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 1.0])
    want = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert losses.bpr_loss(pos, neg).item() == pytest.approx(want, rel=1e-6)


def test_bpr_over_repeated_pairs_is_the_mean_over_each_pairs_negatives():
    # two pairs, two negatives each (the sampler's adjacent copies): y_pos 2 and 0, y_neg (0, 2)
    # and (1, 1). By hand: pair 1 mean(log(1+e^-2), log 2), pair 2 log(1+e); their mean
    pos = torch.tensor([2.0, 2.0, 0.0, 0.0])
    neg = torch.tensor([0.0, 2.0, 1.0, 1.0])
    pair1 = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    pair2 = math.log(1 + math.e)
    assert losses.bpr_loss(pos, neg).item() == pytest.approx((pair1 + pair2) / 2, rel=1e-6)


def test_eq5_rating_gap():
    assert losses.rating_gap(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 2.0]])).tolist() == [
        [2.0, -1.0]
    ]


def test_eq6_target_masks_negative_gaps_and_drops_all_negative_rows():
    gap = torch.tensor([[1.0, -1.0], [2.0, 2.0], [-1.0, -2.0], [math.log(3.0), 0.0]])
    z, valid = losses.reliability_target(gap)
    assert valid.tolist() == [True, True, False, True]
    torch.testing.assert_close(z[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(z[1], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(z[2], torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(z[3], torch.tensor([0.75, 0.25]))  # e^ln3 / (e^ln3 + e^0)


def test_eq6_literal_mode_gives_uniform_target_for_all_negative_rows():
    z, valid = losses.reliability_target(torch.tensor([[-1.0, -2.0], [1.0, -1.0]]), literal=True)
    assert valid.all()
    torch.testing.assert_close(z[0], torch.tensor([0.5, 0.5]))
    assert z[1, 1].item() == pytest.approx(0.0, abs=1e-100)


def test_eq7_confidence():
    pos = torch.tensor([10.0, 1.0, 3.0])
    neg = torch.tensor([5.0, 2.0, 3.0])
    got = losses.confidence(pos, neg, tau_conf=5.0)
    torch.testing.assert_close(got, torch.tensor([math.tanh(1.0), 0.0, 0.0]))


def test_eq8_calibration_loss_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    gamma = torch.tensor([0.5, 1.0])
    valid = torch.tensor([True, False])
    w_pos = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    w_neg = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    # row 0: q = (0.4, 0.6), KL(z||q) = 1 * log(1 / 0.4); row 1 is invalid
    want = (0.5 * math.log(1 / 0.4) + 0.0) / 2
    got = losses.calibration_loss(z, gamma, valid, w_pos, w_neg)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_eq8_equals_paper_literal_kl_minus_log2():
    """A2: KL(z || w_i + w_k) = KL(z || (w_i + w_k)/2) - log 2."""
    z = torch.tensor([[0.7, 0.3]])
    wi, wk = torch.tensor([[0.6, 0.4]]), torch.tensor([[0.1, 0.9]])
    literal = (z * torch.log(z / (wi + wk))).sum()
    ours = losses.calibration_loss(z, torch.ones(1), torch.ones(1, dtype=torch.bool), wi, wk)
    assert ours.item() == pytest.approx(literal.item() + math.log(2), rel=1e-6)


def _calibration_grads(stopgrad: bool):
    torch.manual_seed(0)
    user = torch.randn(4, 2, 3, requires_grad=True)
    item_pos = torch.randn(4, 2, 3, requires_grad=True)
    item_neg = torch.randn(4, 2, 3, requires_grad=True)
    logits = torch.zeros(8, 2, requires_grad=True)
    w = torch.softmax(logits, -1)
    w_pos, w_neg = w[:4], w[4:]
    ps = losses.modality_scores(user, item_pos)
    ns = losses.modality_scores(user, item_neg)
    # make sure some triplets are valid with positive confidence
    ps = ps + 5.0
    l_cal, _ = losses.calibration_from_scores(
        ps,
        ns,
        losses.fused_score(ps, w_pos),
        losses.fused_score(ns, w_neg),
        w_pos,
        w_neg,
        tau_conf=5.0,
        stopgrad=stopgrad,
    )
    l_cal.backward()
    return user.grad, logits.grad


def test_calibration_gradient_reaches_only_weights_with_stopgrad():
    user_grad, logit_grad = _calibration_grads(stopgrad=True)
    assert user_grad is None or torch.count_nonzero(user_grad) == 0
    assert torch.count_nonzero(logit_grad) > 0


def test_calibration_gradient_reaches_embeddings_without_stopgrad():
    user_grad, logit_grad = _calibration_grads(stopgrad=False)
    assert user_grad is not None and torch.count_nonzero(user_grad) > 0
    assert torch.count_nonzero(logit_grad) > 0


def test_all_negative_rows_give_finite_gradients_without_stopgrad():
    gap = torch.tensor([[-1.0, -2.0], [1.0, -1.0]], requires_grad=True)
    z, valid = losses.reliability_target(gap)
    l = losses.calibration_loss(
        z, torch.ones(2), valid, torch.full((2, 2), 0.5), torch.full((2, 2), 0.5)
    )
    l.backward()
    assert torch.isfinite(gap.grad).all()


def test_embedding_norm_reg_is_sum_of_frobenius_norms_over_batch():
    # RecBole/MMRec EmbLoss: (||U||_F + ||P||_F + ||N||_F) / B, norms not squared
    u = torch.tensor([[3.0, 4.0], [0.0, 0.0]])  # ||U||_F = 5
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # 1
    n = torch.tensor([[2.0, 2.0], [1.0, 1.0]])  # sqrt(10)
    want = (5.0 + 1.0 + math.sqrt(10.0)) / 2
    assert losses.embedding_norm_reg(u, p, n).item() == pytest.approx(want, rel=1e-6)
