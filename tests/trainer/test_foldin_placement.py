"""Content placement (trainer/foldin/placement.py): each equation against a hand computation."""

import numpy as np
import pytest

from trainer.foldin.placement import (
    ContentPlacement,
    duplicate_weights,
    fit_content_map,
    neighbour_norms,
    place,
)


def test_the_ridge_map_by_hand():
    # x = 0, 1, 2 -> y = 0, 2, 4: xbar 1, ybar 2, centred Gram 2, ridge lam * tr / p = 1 * 2 / 1
    # W = (2 + 2)^-1 * sum xc (y - ybar) = (2 + 0 + 2) / 4 = 1 (least squares alone: 2)
    x, y = np.array([[0.0], [1.0], [2.0]]), np.array([[0.0], [2.0], [4.0]])
    xbar, w, ybar = fit_content_map(x, y, 1.0)
    np.testing.assert_allclose((xbar[0], w[0, 0], ybar[0]), (1.0, 1.0, 2.0))
    assert (np.array([3.0]) - xbar) @ w + ybar == pytest.approx([4.0])  # 2 * 1 + 2
    _, w_small, _ = fit_content_map(x, y, 1e-9)
    assert w_small[0, 0] == pytest.approx(2.0)


def test_neighbour_norms_are_similarity_weighted_by_hand():
    norms = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    rows = np.array([[0, 2], [0, 2], [1, 2]])
    sims = np.array([[0.25, 0.75], [0.5, -0.2], [-0.1, -0.3]])
    got = neighbour_norms(norms, rows, sims)
    np.testing.assert_allclose(got[0], [0.25 * 1 + 0.75 * 5, 0.25 * 2 + 0.75 * 6])  # [4, 5]
    np.testing.assert_allclose(got[1], [1.0, 2.0])  # negative similarity counts 0
    np.testing.assert_allclose(got[2], [4.0, 5.0])  # none positive: the plain mean of rows 1, 2
    # no neighbours at all (a one-item catalogue): the catalogue's mean norm
    alone = neighbour_norms(norms, np.empty((1, 0), int), np.empty((1, 0)))
    np.testing.assert_allclose(alone, [[3.0, 4.0]])


def test_duplicate_weights_by_hand():
    rows = np.array([[4, 5, 4], [1, 2, 3]])
    agree = np.array([[0.95, 0.99, 0.95], [0.97, 0.98, 0.99]])
    got = duplicate_weights(agree, rows, 0.9)
    # (a - 0.9) / 0.1: row 0 -> 0.5, 0.9, (4 again: 0); sum 1.4 > 1 -> divided by 1.4
    np.testing.assert_allclose(got[0], [0.5 / 1.4, 0.9 / 1.4, 0.0])
    # row 1 -> 0.7, 0.8, 0.9: sum 2.4
    np.testing.assert_allclose(got[1], np.array([0.7, 0.8, 0.9]) / 2.4)
    # one weak near duplicate: weight below 1, the map keeps the rest
    np.testing.assert_allclose(duplicate_weights(np.array([[0.92, 0.5]]), rows[:1, :2], 0.9),
                               [[0.2, 0.0]], atol=1e-12)


def test_place_keeps_the_direction_and_sets_the_norm_by_hand():
    pred = np.array([[[3.0, 4.0], [0.0, 0.0]]])  # channel 0: |(3, 4)| = 5; channel 1: zero
    got = place(pred, np.array([[10.0, 2.0]]), 0.5)
    np.testing.assert_allclose(got, [[[3.0, 4.0], [0.0, 0.0]]])  # 0.5 * 10 * (0.6, 0.8); 0 stays 0


def test_content_placement_composes_the_steps():
    rng = np.random.default_rng(0)
    content, emb = rng.normal(size=(30, 4)), rng.normal(size=(30, 2, 3)).astype(np.float32)
    cp = ContentPlacement(content, emb, lam=0.5, scale=0.8)
    new, rows = rng.normal(size=(2, 4)), np.array([[1, 5], [7, 7]])
    sims = np.array([[0.9, 0.1], [0.3, 0.3]])
    xbar, w, ebar = fit_content_map(content, emb.reshape(30, -1), 0.5)
    pred = ((new - xbar) @ w + ebar).reshape(2, 2, 3)
    norms = np.linalg.norm(emb, axis=2)
    want_norm = 0.8 * np.stack([0.9 * norms[1] + 0.1 * norms[5], norms[7]])
    got = cp(new, rows, sims, np.zeros((2, 2)))  # no near duplicate: the map alone
    np.testing.assert_allclose(np.linalg.norm(got, axis=2), want_norm, rtol=1e-5)
    cos = (got * pred).sum(2) / np.linalg.norm(got, axis=2) / np.linalg.norm(pred, axis=2)
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
    # a near duplicate of row 5 in every modality (a = 0.95: k = 0.5) adds half its deviation
    dup = cp(new[:1], rows[:1], sims[:1], np.array([[0.0, 0.95]]))
    shifted = pred[0].ravel() + 0.5 * (emb[5].ravel() - ((content[5] - xbar) @ w + ebar))
    half = 0.5 * want_norm[0] + 0.5 * norms[5]  # half the map's norm, half the twin's
    np.testing.assert_allclose(np.linalg.norm(dup[0], axis=1), half, rtol=1e-5)
    for c in range(2):  # each channel points along the shifted prediction
        a, b = dup[0, c], shifted.reshape(2, 3)[c]
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="must be > 0"):
        ContentPlacement(content, emb, scale=0.0)
