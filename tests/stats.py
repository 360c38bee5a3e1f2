"""One statistical check of Monte Carlo estimates against exact values
(DESIGN.md, "How to know an estimator is right").

The test.  Given n independent draws of an estimator (e.g. over n keys, by
``vmap``) flattened to ``d`` ``[n, P]`` and the exact value ``e`` ``[P]``, with
the standard error se_j = std_j / √n (ddof = 1), it passes iff for every
coordinate j

    |mean_j - e_j| <= z · se_j + atol,

where ``atol`` covers float32 round-off of the exact value and the mean, and
z is chosen by Bonferroni for a family-wise false-alarm rate ``alpha`` over the
P coordinates: z = Φ⁻¹(1 - alpha / (2P)) (default alpha = 1e-5, so z ≈ 4.4
for one coordinate and ≈ 5.3 for 110).  The mean of thousands of draws is
close to normal, so an unbiased estimator fails with probability <= alpha.

Its power.  If the estimator's true mean is off by b_j on coordinate j, the
test fails with probability >= ``power`` (default 95%) as soon as

    |b_j| >= (z + Φ⁻¹(power)) · se_j + atol    =: detectable_j,

for any single j.  :func:`z_test` returns ``detectable`` (and prints its norm
next to the exact value's, when asserted), so every test states the smallest
bias it would have caught; :func:`assert_power` makes a test fail when that
bias is not small next to the quantity estimated (too few draws), and
:func:`assert_detects` checks that a deliberately broken variant fails.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import jax
import numpy as np

ALPHA = 1e-5
POWER = 0.95


def flat(tree) -> np.ndarray:
    """All coordinates of one value (array or pytree) as a float64 vector [P]."""
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)])


def flat_draws(tree) -> np.ndarray:
    """Draws with a leading axis n (array or pytree) -> float64 [n, P]."""
    return np.concatenate([np.asarray(a, np.float64).reshape(np.shape(a)[0], -1)
                           for a in jax.tree_util.tree_leaves(tree)], axis=1)


def bonferroni_z(num_coordinates: int, alpha: float = ALPHA) -> float:
    """z such that P(max_j |Z_j| > z) <= alpha for P standard normal Z_j."""
    return NormalDist().inv_cdf(1.0 - alpha / (2.0 * num_coordinates))


class ZTest(NamedTuple):
    """Outcome of :func:`z_test`.

    Attributes:
      passed: every coordinate within z·se + atol.
      n, z: number of draws and the threshold used.
      max_z: max_j |mean_j - e_j| / se_j.
      worst: max_j |mean_j - e_j| / (z·se_j + atol) (passed iff <= 1).
      se: [P] standard errors of the mean.
      detectable: [P] bias detected with probability >= power, per coordinate.
      exact_norm: ||e||.
    """

    passed: bool
    n: int
    z: float
    max_z: float
    worst: float
    se: np.ndarray
    detectable: np.ndarray
    exact_norm: float

    def summary(self, what: str = "") -> str:
        return (f"{what}: max |z| = {self.max_z:.2f} (threshold {self.z:.2f}, n = {self.n}, "
                f"P = {self.se.size}); detectable bias ||b|| = {np.linalg.norm(self.detectable):.3g} "
                f"(max per coordinate {self.detectable.max():.3g}) vs ||exact|| = {self.exact_norm:.3g}")


def z_test(draws, exact, *, alpha: float = ALPHA, z: float | None = None, atol: float = 0.0,
           power: float = POWER) -> ZTest:
    """The per-coordinate z-test of the module docstring (draws [n, ...] vs exact [...])."""
    d, e = flat_draws(draws), flat(exact)
    if d.shape[1] != e.size:
        raise ValueError(f"draws have {d.shape[1]} coordinates, exact has {e.size}")
    if not np.all(np.isfinite(d)):
        raise AssertionError("non-finite draws")
    n = d.shape[0]
    z = bonferroni_z(e.size, alpha) if z is None else float(z)
    err = np.abs(d.mean(0) - e)
    se = d.std(0, ddof=1) / math.sqrt(n)
    tol = z * se + atol
    with np.errstate(divide="ignore", invalid="ignore"):
        max_z = float(np.max(np.where(se > 0, err / se, np.where(err > 0, np.inf, 0.0))))
        worst = float(np.max(np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))))
    detectable = (z + NormalDist().inv_cdf(power)) * se + atol
    return ZTest(bool(worst <= 1.0), n, z, max_z, worst, se, detectable, float(np.linalg.norm(e)))


def assert_unbiased(draws, exact, what: str = "", **kw) -> ZTest:
    """Assert that ``draws`` average to ``exact`` (:func:`z_test`); prints the summary."""
    t = z_test(draws, exact, **kw)
    print(t.summary(what))
    assert t.passed, f"{what}: worst |mean - exact| / tol = {t.worst:.3f} (max |z| = {t.max_z:.2f})"
    return t


def assert_same_mean(draws_a, draws_b, what: str = "", **kw) -> ZTest:
    """Paired test on draws from the same keys: mean(a - b) = 0."""
    diff = flat_draws(draws_a) - flat_draws(draws_b)
    return assert_unbiased(diff, np.zeros(diff.shape[1]), what, **kw)


def assert_power(test: ZTest, max_relative: float, what: str = "") -> None:
    """The test could see a bias: ||detectable|| <= max_relative · ||exact||."""
    rel = np.linalg.norm(test.detectable) / test.exact_norm
    assert rel <= max_relative, (f"{what}: too few draws: detectable bias ||b|| / ||exact|| = "
                                 f"{rel:.3g} > {max_relative}")


def assert_detects(draws, wrong, what: str = "", **kw) -> ZTest:
    """A deliberately broken variant (or a wrong reference) must FAIL the z-test."""
    t = z_test(draws, wrong, **kw)
    print(t.summary(f"{what} [must fail]"))
    assert not t.passed, f"{what}: the z-test did not catch a known bias (max |z| = {t.max_z:.2f})"
    return t
