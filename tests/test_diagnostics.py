"""gradient_stats on estimators whose gradient distribution is known exactly:
grads = μ + scale · σ ⊙ ε with ε ~ N(0, I), so mean μ, variance scale² σ², and
SNR = mean over coordinates of |μ| / (scale σ)."""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sajax.core import Batch, Estimate, Estimator
from sajax.diagnostics import GradStats, gradient_stats

MU = {"model": {"w": jnp.array([1.0, -0.5, 0.2])},
      "guide": {"a": jnp.array([[0.3, -1.0], [2.0, 0.05]])}}
SIGMA = {"model": {"w": jnp.array([0.5, 2.0, 1.0])},
         "guide": {"a": jnp.array([[1.0, 1.0], [0.5, 3.0]])}}
BATCH = Batch(jnp.zeros((2, 1)), jnp.arange(2))


def gaussian_estimator(mu, sigma) -> Estimator:
    """Grads μ + scale σ ε; ``scale`` lives in the state (init gives 1)."""

    def init(key, params, batch):
        return {"scale": jnp.asarray(1.0)}

    def estimate(params, state, key, batch):
        leaves, treedef = jax.tree_util.tree_flatten(mu)
        keys = jax.random.split(key, len(leaves))
        sig = jax.tree_util.tree_leaves(sigma)
        grads = [m + state["scale"] * s * jax.random.normal(k, m.shape)
                 for m, s, k in zip(leaves, sig, keys)]
        return Estimate(jax.tree_util.tree_unflatten(treedef, grads), state, {})

    return Estimator(init, estimate)


def _vec(tree):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)])


@pytest.mark.parametrize("scale", [None, 2.0])
def test_recovers_mean_variance_and_snr(scale):
    n = 20000
    state = None if scale is None else {"scale": jnp.asarray(scale)}
    s = 1.0 if scale is None else scale
    stats = gradient_stats(gaussian_estimator(MU, SIGMA), MU, BATCH, jax.random.PRNGKey(0),
                           num_keys=n, state=state)
    assert set(stats) == {"model", "guide"}
    for g in ("model", "guide"):
        st = stats[g]
        assert isinstance(st, GradStats) and st.num_keys == n
        mu, sd = _vec(MU[g]), s * _vec(SIGMA[g])
        var = sd ** 2
        m_hat, v_hat = _vec(st.mean), _vec(st.variance)
        assert np.all(np.abs(m_hat - mu) <= 5 * sd / math.sqrt(n))
        # Var of the unbiased sample variance of a Gaussian: 2σ⁴/(n-1).
        assert np.all(np.abs(v_hat - var) <= 5 * var * math.sqrt(2 / (n - 1)))
        assert abs(float(st.total_variance) - var.sum()) <= 5 * math.sqrt(np.sum(2 * var ** 2 / (n - 1)))
        assert abs(float(st.norm_of_mean) - np.linalg.norm(mu)) <= 5 * math.sqrt(var.sum() / n)
        r = np.abs(mu) / sd
        # Delta method: sd(|m̂|/ŝ) ≈ sqrt((1 + r²/2) / n) per coordinate.
        assert abs(float(st.snr) - r.mean()) <= np.mean(5 * np.sqrt((1 + r ** 2 / 2) / n))
        np.testing.assert_allclose(float(st.total_variance), v_hat.sum(), rtol=1e-5)
        np.testing.assert_allclose(float(st.norm_of_mean), np.linalg.norm(m_hat), rtol=1e-5)
        np.testing.assert_allclose(float(st.snr), np.mean(np.abs(m_hat) / np.sqrt(v_hat)), rtol=1e-5)


@pytest.mark.parametrize("chunk,typed_key", [(7, False), (300, False), (1000, False), (5000, False),
                                             (300, True)])
def test_chunked_equals_unchunked(chunk, typed_key):
    est = gaussian_estimator(MU, SIGMA)
    key = jax.random.key(3) if typed_key else jax.random.PRNGKey(3)
    full = gradient_stats(est, MU, BATCH, key, num_keys=1000)
    part = gradient_stats(est, MU, BATCH, key, num_keys=1000, chunk=chunk)
    for g in full:
        np.testing.assert_allclose(_vec(part[g].mean), _vec(full[g].mean), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_vec(part[g].variance), _vec(full[g].variance), rtol=1e-4)
        for field in ("snr", "total_variance", "norm_of_mean"):
            np.testing.assert_allclose(float(getattr(part[g], field)), float(getattr(full[g], field)),
                                       rtol=1e-4)


def test_degenerate_coordinates_and_single_group():
    """A coordinate with zero mean and zero spread is left out of the SNR; one
    with zero spread and nonzero mean has SNR +inf; a bare tree is group
    "params"."""
    mu = {"quiet": {"zero": jnp.zeros(1), "noisy": jnp.array([0.5])},
          "fixed": {"const": jnp.array([3.0])},
          "dead": {"zero": jnp.zeros(2)}}
    sigma = {"quiet": {"zero": jnp.zeros(1), "noisy": jnp.array([1.0])},
             "fixed": {"const": jnp.zeros(1)},
             "dead": {"zero": jnp.zeros(2)}}
    stats = gradient_stats(gaussian_estimator(mu, sigma), mu, BATCH, jax.random.PRNGKey(5), num_keys=500)
    noisy = stats["quiet"]
    np.testing.assert_allclose(
        float(noisy.snr), abs(float(noisy.mean["noisy"][0])) / math.sqrt(float(noisy.variance["noisy"][0])),
        rtol=1e-5)
    assert np.isposinf(float(stats["fixed"].snr))
    assert float(stats["fixed"].total_variance) == 0.0
    assert np.isnan(float(stats["dead"].snr))
    assert int(stats["quiet"].num_constant) == 1 and int(stats["dead"].num_constant) == 2


def test_median_snr_is_robust_to_a_constant_coordinate():
    """One constant coordinate makes the mean SNR +inf; the median stays the
    middle ratio of the noisy ones and num_constant counts it."""
    mu = {"g": jnp.array([1.0, 2.0, 3.0, 5.0])}
    sigma = {"g": jnp.array([1.0, 1.0, 1.0, 0.0])}
    st = gradient_stats(gaussian_estimator(mu, sigma), mu, BATCH, jax.random.PRNGKey(7), num_keys=4000)["g"]
    assert np.isposinf(float(st.snr)) and int(st.num_constant) == 1
    ratios = np.abs(_vec(st.mean)[:3]) / np.sqrt(_vec(st.variance)[:3])
    # median of {r1, r2, r3, +inf} is the mean of the 2nd and 3rd smallest
    np.testing.assert_allclose(float(st.snr_median), np.sort(ratios)[1:].mean(), rtol=1e-5)

    bare = gradient_stats(gaussian_estimator(jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0])),
                          jnp.zeros(2), BATCH, jax.random.PRNGKey(6), num_keys=200)
    assert set(bare) == {"params"} and bare["params"].mean.shape == (2,)


def test_bad_arguments():
    est = gaussian_estimator(MU, SIGMA)
    with pytest.raises(ValueError, match="num_keys"):
        gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=1)
    with pytest.raises(TypeError, match="num_keys"):
        gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=10.0)
    with pytest.raises(ValueError, match="chunk"):
        gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=10, chunk=0)


def test_init_gets_the_data_set_or_the_batch():
    """init takes the whole training set (data=); without data or state the
    batch's own data stands in for it."""
    seen = []

    def init(key, params, data):
        seen.append(np.shape(data))
        return {"scale": jnp.asarray(1.0)}

    est = Estimator(init, gaussian_estimator(MU, SIGMA).estimate)
    gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=4, data=np.zeros((7, 1)))
    gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=4)
    gradient_stats(est, MU, BATCH, jax.random.PRNGKey(0), num_keys=4, state={"scale": jnp.asarray(2.0)})
    assert seen == [(7, 1), (2, 1)]
    with pytest.raises(TypeError, match="PRNG key"):
        gradient_stats(est, MU, BATCH, 0, num_keys=4)


def test_exact_gradients_match_independent_enumeration():
    """exact_gradients against tests/exact.py's sums on a tiny two-layer SBN."""
    import exact as ex
    from sajax.core import log_joint
    from sajax.diagnostics import exact_gradients
    from sajax.models import sbn

    sizes, b = (3, 2), 4
    spec = sbn(6, latent_sizes=sizes, kind="linear")
    params = jax.jit(lambda k: jax.tree_util.tree_map(
        lambda a: a + 0.5 * jax.random.normal(k, a.shape), spec.init(jax.random.PRNGKey(0))))(jax.random.PRNGKey(1))
    x = jax.jit(lambda k: jax.random.bernoulli(k, 0.5, (b, 6)).astype(jnp.float32))(jax.random.PRNGKey(2))
    h = jax.jit(lambda: ex.broadcast_latents(ex.enumerate_latents(sizes), b))()

    def log_marginal(theta):
        return jax.nn.logsumexp(log_joint(spec.model, theta, x, h), axis=0)

    def lp(theta):
        return jnp.mean(log_marginal(theta))

    def elbo(p):
        lj, lq = log_joint(spec.model, p["model"], x, h), spec.guide.log_prob(p["guide"], x, h)
        return jnp.mean(jnp.sum(jnp.exp(lq) * (lj - lq), axis=0))

    @jax.jit
    def references(params):
        """∇θ log p(x), ∇ ELBO, ∇φ of the inclusive objective E_p(h|x) log q(h|x), and log p(x)."""
        post = ex.exact_posterior(lambda hh: log_joint(spec.model, params["model"], x, hh), x, sizes)

        def incl(phi):
            return jnp.mean(jnp.sum(post * spec.guide.log_prob(phi, x, h), axis=0))

        return (jax.grad(lp)(params["model"]), jax.grad(elbo)({"model": params["model"], "guide": params["guide"]}),
                jax.grad(incl)(params["guide"]), log_marginal(params["model"]))

    grad_lp, grad_elbo, grad_incl, log_px = references(params)
    got = exact_gradients(spec.model, spec.guide, params, x)
    close = lambda a, b_: np.testing.assert_allclose(_vec(a), _vec(b_), rtol=1e-4, atol=1e-6)
    close(got.log_p["model"], -_vec(grad_lp))
    close(got.elbo, -_vec(grad_elbo))
    close(got.inclusive["guide"], -_vec(grad_incl))
    assert float(np.abs(_vec(got.log_p["guide"])).max()) == 0.0
    np.testing.assert_allclose(got.log_marginal, log_px, rtol=1e-5)
    assert np.all(np.asarray(got.elbo_value) <= np.asarray(got.log_marginal) + 1e-4)
    with pytest.raises(ValueError, match="max_latents=4"):
        exact_gradients(spec.model, spec.guide, params, x, max_latents=4)


def test_burn_in_moves_a_chain_state_towards_the_posterior_and_leaves_stateless_ones():
    """JSA's cache after burn-in at fixed parameters is a chain state whose latents
    follow the exact posterior: the mean of log p(x, h) over examples matches its
    posterior expectation (enumerated) within 4 standard errors, while the fresh
    draw from q that ``init`` makes is detectably off (the test's power)."""
    from exact import broadcast_latents, enumerate_latents

    from sajax.core import log_joint
    from sajax.diagnostics import Candidate, burn_in
    from sajax.estimators import jsa, jsa_latents, reinforce
    from sajax.models import sbn

    n = 512
    spec = sbn(8, (4,))
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    x = jax.jit(lambda k: (jax.random.uniform(k, (n, 8)) < 0.5).astype(jnp.float32))(jax.random.PRNGKey(1))
    batch = Batch(x, jnp.arange(n))
    est = jsa(spec.model, spec.guide, num_moves=2)

    @jax.jit
    def mean_log_joint(state):
        h = jsa_latents(spec.guide, params, x, state)
        return jnp.mean(log_joint(spec.model, params["model"], x, jax.tree_util.tree_map(lambda a: a[None], h)))

    @jax.jit
    def posterior_moments(theta):
        """E_p(h|x) log p(x, h) averaged over the examples, and its standard error, by enumeration."""
        lj = log_joint(spec.model, theta, x, broadcast_latents(enumerate_latents((4,)), n))   # [16, n]
        post = jax.nn.softmax(lj, axis=0)
        expected = jnp.sum(post * lj, axis=0)
        return jnp.mean(expected), jnp.sqrt(jnp.mean(jnp.sum(post * (lj - expected) ** 2, axis=0)) / n)

    exact, se = (float(v) for v in posterior_moments(params["model"]))
    burnt = float(mean_log_joint(burn_in(Candidate(est, params), batch, jax.random.PRNGKey(2), num_steps=30, data=x)))
    fresh = float(mean_log_joint(est.init(jax.random.PRNGKey(3), params, x)))
    assert abs(burnt - exact) < 4 * se, (burnt, exact, se)
    assert abs(fresh - exact) > 4 * se, (fresh, exact, se)   # without burn-in the check fails
    assert burn_in(Candidate(reinforce(spec.model, spec.guide, num_samples=1), params), batch, jax.random.PRNGKey(4),
                   num_steps=3) == ()


# --------------------------------------------------------------------------- silent slips (issue 17, item 7)


def _index_recorder():
    """An estimator whose gradient is the batch's row indices (as floats): it fails on a bare
    array as any per-example estimator would (``batch.index``)."""

    def estimate(params, state, key, batch):
        return Estimate({"g": batch.index.astype(jnp.float32) + 0.0 * jax.random.normal(key)}, state, {})

    return Estimator(lambda key, params, data: (), estimate)


def test_a_bare_array_batch_is_wrapped_or_refused():
    """gradient_stats takes a Batch.  A bare array x is accepted when it is the whole data set
    (no data=, no state=): it becomes Batch(x, arange(B)), the rows init was given.  With
    data= or state= its rows' places in the training set are unknown: TypeError naming the fix."""
    x = jnp.zeros((3, 1))
    st = gradient_stats(_index_recorder(), {"g": jnp.zeros(3)}, x, jax.random.PRNGKey(0), num_keys=2)
    np.testing.assert_array_equal(st["g"].mean, [0.0, 1.0, 2.0])
    for extra in (dict(data=np.zeros((7, 1))), dict(state=())):
        with pytest.raises(TypeError, match=r"batch must be a sajax.core.Batch.*Batch\(x, index\)"):
            gradient_stats(_index_recorder(), {"g": jnp.zeros(3)}, x, jax.random.PRNGKey(0),
                           num_keys=2, **extra)


def _x64():
    """Context manager turning jax_enable_x64 on (jax.enable_x64; older jax: jax.experimental)."""
    import jax.experimental

    return jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64()


def test_chunked_moments_keep_float64_under_x64():
    """Under x64, float64 gradients merged chunk by chunk (Chan et al.'s update) agree with the
    one-shot moments to float64 round-off: the merge's count and weights are not float32."""
    with _x64():
        mu = {"g": jnp.asarray([1.0, -3.0, 1e3], jnp.float64)}
        sigma = {"g": jnp.asarray([1e-3, 2.0, 1.0], jnp.float64)}
        est = gaussian_estimator(mu, sigma)
        full = gradient_stats(est, mu, BATCH, jax.random.PRNGKey(3), num_keys=1000)["g"]
        part = gradient_stats(est, mu, BATCH, jax.random.PRNGKey(3), num_keys=1000, chunk=300)["g"]
        assert full.mean.dtype == jnp.float64
        np.testing.assert_allclose(part.mean, full.mean, rtol=1e-13, atol=0)
        np.testing.assert_allclose(part.variance, full.variance, rtol=1e-11, atol=0)


def test_fit_warns_when_num_steps_ends_inside_an_epoch():
    """fit(num_steps=...) that is not a multiple of the steps per epoch (N // B) ends inside an
    epoch whose permutation is only partly seen: a UserWarning says so and how to avoid it.
    A multiple of the steps per epoch, or epochs=, is silent.  (The SA driver's check; kept
    here with the other silent slips of issue 17, item 7.)"""
    from sajax import sa

    def estimate(params, state, key, batch):
        return Estimate({"model": params["model"] - jnp.mean(batch.x)}, state, {})

    est, data = Estimator(lambda key, params, data: (), estimate), np.ones((8, 1), np.float32)
    kw = dict(key=jax.random.PRNGKey(0), batch_size=2, progress=False)
    with pytest.warns(UserWarning, match=r"num_steps=6 is not a multiple of the 4 steps per epoch"
                                         r".*4 of its 8 examples.*epochs="):
        res = sa.fit(est, optax.sgd(0.1), {"model": jnp.zeros(())}, data, num_steps=6, **kw)
    assert int(res.state.step) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sa.fit(est, optax.sgd(0.1), {"model": jnp.zeros(())}, data, num_steps=8, **kw)
        sa.fit(est, optax.sgd(0.1), {"model": jnp.zeros(())}, data, epochs=1.5, **kw)
