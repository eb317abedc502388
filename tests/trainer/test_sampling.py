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


def test_n_negatives_repeats_each_pair_with_its_own_true_negatives():
    rng = np.random.default_rng(0)
    pairs = np.unique(np.stack([rng.integers(0, 50, 600), rng.integers(0, 40, 600)], 1), axis=0)
    s = TripletSampler(pairs, 40, seed=1, n_negatives=3)
    batches = list(s.epoch(64))
    # batch_size counts pairs: the step count is the one-negative sampler's, 3x the triplets
    assert len(batches) == s.n_batches(64) == TripletSampler(pairs, 40, seed=1).n_batches(64)
    assert all(len(b[0]) == 3 * 64 for b in batches[:-1])
    users, pos, neg = (np.concatenate([b[j] for b in batches]) for j in range(3))
    keys, counts = np.unique(np.stack([users, pos], 1), axis=0, return_counts=True)
    np.testing.assert_array_equal(keys, pairs)
    assert (counts == 3).all()
    # a pair's copies are adjacent (one batch holds all of a pair's negatives)
    assert (users[0::3] == users[1::3]).all() and (pos[0::3] == pos[2::3]).all()
    assert not s.is_positive(users, neg).any()


def test_one_negative_is_the_default_stream():
    pairs = np.array([[0, 1], [0, 2], [1, 0], [2, 3], [3, 4]])
    a = [tuple(map(tuple, b)) for b in TripletSampler(pairs, 9, seed=3).epoch(2)]
    b = [tuple(map(tuple, b)) for b in TripletSampler(pairs, 9, seed=3, n_negatives=1).epoch(2)]
    assert a == b
