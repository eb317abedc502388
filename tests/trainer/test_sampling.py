import numpy as np

from trainer.sampling import TripletSampler
from trainer.train import early_stopping


def test_epoch_covers_every_pair_once_with_true_negatives():
    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([rng.integers(0, 50, 600), rng.integers(0, 40, 600)], 1), axis=0)
    s = TripletSampler(pairs, 40, seed=1)
    batches = list(s.epoch(64))
    assert len(batches) == s.n_batches(64)
    users = np.concatenate([b[0] for b in batches])
    pos = np.concatenate([b[1] for b in batches])
    neg = np.concatenate([b[2] for b in batches])
    got = np.unique(np.stack([users, pos], 1), axis=0)
    np.testing.assert_array_equal(got, pairs)
    assert not s.is_positive(users, neg).any()


def test_sampler_is_deterministic_given_seed():
    pairs = np.array([[0, 1], [0, 2], [1, 0], [2, 3]])
    a = [tuple(map(tuple, b)) for b in TripletSampler(pairs, 5, seed=3).epoch(2)]
    b = [tuple(map(tuple, b)) for b in TripletSampler(pairs, 5, seed=3).epoch(2)]
    assert a == b


def test_early_stopping_counts_checks_without_improvement():
    best, bad = float("-inf"), 0
    stops = []
    for value in [0.1, 0.2, 0.2, 0.15, 0.19, 0.3, 0.1, 0.1]:
        best, bad, improved, stop = early_stopping(best, value, bad, patience=3)
        stops.append(stop)
    assert best == 0.3
    assert stops == [False, False, False, False, True, False, False, False]
