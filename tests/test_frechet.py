"""Fréchet distance (sajax.evaluate.frechet) against closed forms, and the small classifier
on a synthetic separable 784-D problem (no MNIST download)."""
import math

import jax
import numpy as np
import pytest

from sajax.evaluate.frechet import (
    _sqrtm_psd,
    class_accuracy,
    classifier_features,
    feature_frechet_distance,
    frechet_distance,
    gaussian_stats,
    train_classifier,
)


def _random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _broken(mu1, c1, mu2, c2):
    """Without the outer square root: tr(S1 + S2 - 2 S1^{1/2} S2 S1^{1/2}) (a wrong formula)."""
    s = _sqrtm_psd(c1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * s @ c2 @ s))


def test_one_dimensional_closed_form():
    # d² = (μ1 − μ2)² + (σ1 − σ2)²
    for m1, s1, m2, s2 in [(0.0, 1.0, 3.0, 2.0), (-1.5, 0.3, 0.2, 4.0), (2.0, 1e-3, 2.0, 1e-3)]:
        got = frechet_distance([m1], [[s1 ** 2]], [m2], [[s2 ** 2]])
        np.testing.assert_allclose(got, (m1 - m2) ** 2 + (s1 - s2) ** 2, rtol=1e-12, atol=1e-15)


def test_commuting_covariances_closed_form():
    """Diagonal, and the same diagonals rotated by one orthogonal Q (commuting, not diagonal):
    d² = ‖Δμ‖² + Σ_i (√a_i − √b_i)²."""
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.0, 3.0, d)
    b[0] = 0.0                                        # rank-deficient: a dead feature
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), exact, rtol=1e-10)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    got = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    np.testing.assert_allclose(got, exact, rtol=1e-9)


def test_two_dimensional_non_commuting_closed_form():
    """For 2×2 PSD M, tr √M = √(tr M + 2 √det M); with M = S1^{1/2} S2 S1^{1/2}:
    tr M = tr(S1 S2), det M = det S1 det S2, exact for any (non-commuting) pair."""
    rng = np.random.default_rng(1)
    for _ in range(5):
        c1, c2 = _random_spd(rng, 2), _random_spd(rng, 2, scale=3.0)
        mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
        tr_sqrt = math.sqrt(np.trace(c1 @ c2) + 2 * math.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
        exact = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt
        got = frechet_distance(mu1, c1, mu2, c2)
        np.testing.assert_allclose(got, exact, rtol=1e-10)
        assert abs(_broken(mu1, c1, mu2, c2) - exact) > 1e-2 * exact   # the wrong formula is caught
        np.testing.assert_allclose(frechet_distance(mu2, c2, mu1, c1), got, rtol=1e-10)  # symmetric


def test_identical_is_zero_and_symmetric_in_high_dimension():
    rng = np.random.default_rng(2)
    c1, c2 = _random_spd(rng, 64), _random_spd(rng, 64, scale=2.0)
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    assert frechet_distance(mu1, c1, mu1, c1) < 1e-9 * np.trace(c1)
    np.testing.assert_allclose(frechet_distance(mu1, c1, mu2, c2), frechet_distance(mu2, c2, mu1, c1), rtol=1e-9)
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance(mu1, c1, mu1[:3], c1[:3, :3])


def test_sample_estimate_approaches_closed_form():
    """Gaussians fitted to n = 200,000 samples of N(μ1, S1), N(μ2, S2) in 3-D: the plug-in d² is
    within 2% of the exact value (its bias and spread are O(d/n) and O(1/√n))."""
    rng = np.random.default_rng(3)
    c1, c2 = _random_spd(rng, 3), _random_spd(rng, 3, scale=2.0)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, 0.0])
    exact = frechet_distance(mu1, c1, mu2, c2)
    n = 200_000
    x1 = rng.multivariate_normal(mu1, c1, size=n)
    x2 = rng.multivariate_normal(mu2, c2, size=n)
    est = frechet_distance(*gaussian_stats(x1), *gaussian_stats(x2))
    np.testing.assert_allclose(est, exact, rtol=0.02)
    assert abs(_broken(mu1, c1, mu2, c2) - exact) > 0.05 * exact


def _separable(key_seed, n, num_classes=4):
    """Class c: a fixed random [0, 1] prototype image plus uniform noise, clipped: separable."""
    rng = np.random.default_rng(key_seed)
    proto = np.random.default_rng(99).uniform(size=(num_classes, 784))
    y = rng.integers(0, num_classes, size=n)
    x = np.clip(proto[y] + 0.3 * rng.uniform(-1, 1, size=(n, 784)), 0.0, 1.0).astype(np.float32)
    return x, y


def test_classifier_learns_a_separable_problem_and_features_shape():
    x, y = _separable(0, 256)
    params = train_classifier(jax.random.PRNGKey(0), x, y, epochs=6, batch_size=32, learning_rate=3e-3,
                              channels=(4, 8), hidden=16, num_classes=4)
    xt, yt = _separable(1, 200)
    assert class_accuracy(params, xt, yt, batch_size=64) >= 0.95
    f = classifier_features(params, xt, batch_size=64)             # 200 = 3·64 + 8: a padded last chunk
    assert f.shape == (200, 16) and np.all(f >= 0)
    np.testing.assert_allclose(f[:64], classifier_features(params, xt[:64], batch_size=64), rtol=1e-5, atol=1e-6)
    fd = lambda a, b: feature_frechet_distance(params, a, b, batch_size=64)
    assert fd(xt[:100], xt[:100]) < 1e-6
    assert fd(xt[:100], xt[100:]) < fd(xt, x[y == 0])           # same law vs one class only
    with pytest.raises(ValueError, match="labels"):
        train_classifier(jax.random.PRNGKey(0), x, y + 4, num_classes=4)
