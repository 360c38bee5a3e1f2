"""Variational estimators with continuous latents (review Sec. 3.2.1) against
exact answers on a linear-Gaussian model (tests/linear_gaussian.py).

Tolerances come from the measured spread over many keys:
|mean - exact| <= 5 std / sqrt(n) + atol, per coordinate.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_gaussian as lg
from sajax.core import Batch, ConditionalSampler
from sajax.diagnostics import gradient_stats
from sajax.estimators.variational import dreg, iwae, reinforce_elbo, reparam_elbo, stl_elbo

ATOL = 1e-4  # float32 round-off on O(1) gradients averaged over many keys


@pytest.fixture(scope="module")
def problem():
    """θ, data, the exact-posterior φ* and a wrong φ (φ* perturbed)."""
    theta = lg.make_theta(jax.random.PRNGKey(0))
    x = lg.make_data(theta, jax.random.PRNGKey(1))
    phi_star = lg.exact_posterior_params(theta)
    phi_wrong = lg.perturb(phi_star, jax.random.PRNGKey(2), 0.3)
    return {"theta": theta, "x": x, "batch": Batch(x, jnp.arange(x.shape[0])),
            "exact": {"model": theta, "guide": phi_star},
            "wrong": {"model": theta, "guide": phi_wrong}}


def _draws(estimator, params, batch, seed, n):
    """Grads [n, ...] and metrics [n] of ``estimator`` over n keys (jit + vmap)."""
    run = jax.jit(jax.vmap(lambda k: estimator.estimate(params, (), k, batch)))
    out = run(jax.random.split(jax.random.PRNGKey(seed), n))
    return out.grads, out.metrics


def _flat(tree):
    """All coordinates of one gradient tree as a vector [P]."""
    return np.concatenate([np.asarray(a).ravel() for a in jax.tree_util.tree_leaves(tree)])


def _flat_draws(tree):
    """A tree of draws with a leading axis -> array [n, P]."""
    return np.concatenate([np.asarray(a).reshape(a.shape[0], -1) for a in jax.tree_util.tree_leaves(tree)], 1)


def _assert_unbiased(draws, exact, atol=ATOL, what=""):
    """Per coordinate |mean(draws) - exact| <= 5 std/sqrt(n) + atol."""
    d, e = _flat_draws(draws), _flat(exact)
    n = d.shape[0]
    err = np.abs(d.mean(0) - e)
    tol = 5.0 * d.std(0, ddof=1) / math.sqrt(n) + atol
    assert np.all(err <= tol), f"{what}: worst |mean - exact| / tol = {np.max(err / tol):.3f}"


def _assert_same_mean(draws_a, draws_b, atol=ATOL, what=""):
    """Paired test on the same keys: |mean(a - b)| <= 5 std(a - b)/sqrt(n) + atol."""
    diff = jax.tree_util.tree_map(jnp.subtract, draws_a, draws_b)
    zero = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape[1:]), diff)
    _assert_unbiased(diff, zero, atol, what)


def _group(tree, name):
    return {name: tree[name]}


# --------------------------------------------------------------------------


def test_bad_arguments_raise_at_build_time(problem):
    m, q = lg.model(), lg.guide()
    for factory in (reinforce_elbo, reparam_elbo, stl_elbo, iwae, dreg):
        with pytest.raises(ValueError, match="num_samples"):
            factory(m, q, num_samples=0)
        with pytest.raises(TypeError, match="num_samples"):
            factory(m, q, num_samples=2.5)
        with pytest.raises(TypeError, match="guide"):
            factory(m, object(), num_samples=1)
    with pytest.raises(ValueError, match="kl"):
        reparam_elbo(m, q, kl="exact")
    no_dist = ConditionalSampler(q.sample_and_log_prob, q.log_prob)
    with pytest.raises(ValueError, match="guide.dist"):
        reparam_elbo(m, no_dist, kl="analytic")
    with pytest.raises(ValueError, match="model.prior"):
        reparam_elbo(m._replace(prior=None), q, kl="analytic")


def test_state_is_empty_and_grads_match_params(problem):
    params = problem["wrong"]
    est = dreg(lg.model(), lg.guide(), 3)
    assert est.init(jax.random.PRNGKey(0), params, problem["batch"]) == ()
    out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), problem["batch"])
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    assert out.metrics["iw_bound"].shape == ()


def test_special_cases_coincide_key_by_key(problem):
    """IWAE(K=1) = reparameterized ELBO (Eq. 19 with K = 1 is Eq. 13);
    DReG(K=1) = STL; DReG's θ-gradient is IWAE's, for the same key."""
    params, batch, m, q = problem["wrong"], problem["batch"], lg.model(), lg.guide()
    key = jax.random.PRNGKey(7)

    def run(est):
        return jax.jit(est.estimate)(params, (), key, batch)

    pairs = [(run(iwae(m, q, 1)), run(reparam_elbo(m, q, 1)), ("model", "guide")),
             (run(dreg(m, q, 1)), run(stl_elbo(m, q, 1)), ("model", "guide")),
             (run(dreg(m, q, 5)), run(iwae(m, q, 5)), ("model",))]
    for a, b, groups in pairs:
        for g in groups:
            np.testing.assert_allclose(_flat(a.grads[g]), _flat(b.grads[g]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pairs[0][0].metrics["iw_bound"], pairs[0][1].metrics["elbo"], rtol=1e-6)
    # DReG's φ-gradient really differs from IWAE's sample by sample.
    assert np.max(np.abs(_flat(pairs[2][0].grads["guide"]) - _flat(pairs[2][1].grads["guide"]))) > 1e-2


def test_iw_bound_tightens_with_k_towards_log_marginal(problem):
    """Eq. 19: L = I_1 <= I_5 <= I_50 <= log p(x), and I_K -> log p(x)."""
    params, batch, x = problem["wrong"], problem["batch"], problem["x"]
    n = 4000
    log_px = float(jnp.mean(lg.log_marginal(problem["theta"], x)))
    means, ses = [], []
    for seed, k in enumerate((1, 5, 50)):
        _, metrics = _draws(iwae(lg.model(), lg.guide(), k), params, batch, 100 + seed, n)
        v = np.asarray(metrics["iw_bound"], np.float64)
        means.append(v.mean())
        ses.append(v.std(ddof=1) / math.sqrt(n))
    elbo = float(lg.mean_elbo(params, x))
    assert abs(means[0] - elbo) <= 5 * ses[0] + ATOL
    for i in range(2):
        assert means[i + 1] - means[i] > 5 * math.hypot(ses[i], ses[i + 1])
    assert log_px - means[2] > 5 * ses[2]
    assert log_px - means[2] < 0.2 * (log_px - means[0])


def test_elbo_gradients_unbiased_for_closed_form(problem):
    """REINFORCE (Alg. 3), reparameterized (Eq. 13, MC and analytic KL) and STL
    gradients average to -∇ of the closed-form ELBO, and to each other."""
    params, batch, m, q = problem["wrong"], problem["batch"], lg.model(), lg.guide()
    n = 20000
    exact = jax.tree_util.tree_map(jnp.negative, lg.elbo_grad(params, problem["x"]))
    estimators = {"reinforce": reinforce_elbo(m, q), "reparam-mc": reparam_elbo(m, q),
                  "reparam-analytic": reparam_elbo(m, q, kl="analytic"), "stl": stl_elbo(m, q)}
    draws = {}
    for name, est in estimators.items():
        grads, metrics = _draws(est, params, batch, 11, n)  # same keys: paired comparisons
        _assert_unbiased(grads, exact, what=name)
        elbo = np.asarray(metrics["elbo"], np.float64)
        assert abs(elbo.mean() - float(lg.mean_elbo(params, problem["x"]))) <= (
            5 * elbo.std(ddof=1) / math.sqrt(n) + ATOL), name
        draws[name] = grads
    names = list(draws)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            _assert_same_mean(draws[a], draws[b], what=f"{a} vs {b}")
    # The θ-step of Algorithm 3 is the reparameterized θ-gradient itself.
    np.testing.assert_allclose(_flat_draws(draws["reinforce"]["model"]), _flat_draws(draws["stl"]["model"]),
                               rtol=1e-5, atol=1e-5)


def test_quadrature_route_is_exact_for_elbo(problem):
    """The Gauss-Hermite route reproduces the closed-form ELBO and its gradient
    at K = 1, which validates it as the reference for ∇I_K below."""
    params, x = problem["wrong"], problem["x"]
    np.testing.assert_allclose(lg.mean_iw_bound_by_quadrature(params, x, 1), lg.mean_elbo(params, x),
                               rtol=1e-6)
    np.testing.assert_allclose(_flat(jax.grad(lg.mean_iw_bound_by_quadrature)(params, x, 1)),
                               _flat(lg.elbo_grad(params, x)), rtol=1e-5, atol=1e-5)


def test_iwae_and_dreg_unbiased_for_iw_bound_gradient(problem):
    """K = 2: IWAE (Burda et al.) and DReG (Tucker et al.) average to -∇I_2,
    computed by quadrature (an independent route), and agree with each other."""
    params, batch, x = problem["wrong"], problem["batch"], problem["x"]
    k, n = 2, 20000
    grad_quad = jax.grad(lg.mean_iw_bound_by_quadrature)
    ref = grad_quad(params, x, k, 16)
    quad_err = np.max(np.abs(_flat(ref) - _flat(grad_quad(params, x, k, 12))))
    assert quad_err < 1e-3
    exact = jax.tree_util.tree_map(jnp.negative, ref)
    atol = ATOL + 10 * quad_err
    g_iwae, m_iwae = _draws(iwae(lg.model(), lg.guide(), k), params, batch, 21, n)
    g_dreg, _ = _draws(dreg(lg.model(), lg.guide(), k), params, batch, 21, n)
    _assert_unbiased(g_iwae, exact, atol, "iwae")
    _assert_unbiased(g_dreg, exact, atol, "dreg")
    _assert_same_mean(_group(g_dreg, "guide"), _group(g_iwae, "guide"), what="dreg vs iwae (guide)")
    bound = np.asarray(m_iwae["iw_bound"], np.float64)
    assert abs(bound.mean() - float(lg.mean_iw_bound_by_quadrature(params, x, k))) <= (
        5 * bound.std(ddof=1) / math.sqrt(n) + atol)
    # DReG lowers the inference-network gradient variance (Tucker et al. 2019).
    var_iwae = np.var(_flat_draws(g_iwae["guide"]), axis=0).sum()
    var_dreg = np.var(_flat_draws(g_dreg["guide"]), axis=0).sum()
    assert var_dreg < 0.5 * var_iwae


def test_path_derivative_variance_vanishes_at_exact_posterior(problem):
    """q = p(h|x): the STL and DReG φ-gradients are 0 for every draw
    (Roeder et al. 2017), the reparameterized-MC one is not; the MC ELBO
    equals log p(x) for every draw (review footnote 7)."""
    params, batch = problem["exact"], problem["batch"]
    m, q = lg.model(), lg.guide()
    key = jax.random.PRNGKey(31)
    stats = {name: gradient_stats(est, params, batch, key, num_keys=1000)
             for name, est in (("stl", stl_elbo(m, q)), ("dreg", dreg(m, q, 5)),
                               ("mc", reparam_elbo(m, q)), ("iwae", iwae(m, q, 5)))}
    for name in ("stl", "dreg"):
        assert float(stats[name]["guide"].total_variance) < 1e-10, name
        assert float(stats[name]["guide"].norm_of_mean) < 1e-5, name
        assert float(stats[name]["model"].total_variance) > 0.1, name
    for name in ("mc", "iwae"):
        assert float(stats[name]["guide"].total_variance) > 1.0, name
    _, metrics = _draws(reparam_elbo(m, q), params, batch, 32, 200)
    log_px = float(jnp.mean(lg.log_marginal(problem["theta"], problem["x"])))
    np.testing.assert_allclose(metrics["elbo"], log_px, rtol=1e-5)


def test_rainforth_snr_iwae_falls_dreg_does_not():
    """Rainforth et al. (2018) Gaussian toy, D = 20, params perturbed from the
    optimum: the IWAE inference-network SNR falls with K (about 1/√K) while
    the generative-network SNR grows; DReG's inference-network SNR does not
    fall (Tucker et al. 2019)."""
    params, data = lg.rainforth_setup(jax.random.PRNGKey(0))
    batch = Batch(data[:1], jnp.arange(1))
    m, q = lg.rainforth_model(), lg.rainforth_guide()
    ks = (1, 10, 100, 1000)
    snr = {"iwae": [], "dreg": [], "iwae-model": []}
    for k in ks:
        key = jax.random.PRNGKey(k)
        s_iwae = gradient_stats(iwae(m, q, k), params, batch, key, num_keys=4000, chunk=1000)
        s_dreg = gradient_stats(dreg(m, q, k), params, batch, key, num_keys=4000, chunk=1000)
        snr["iwae"].append(float(s_iwae["guide"].snr))
        snr["dreg"].append(float(s_dreg["guide"].snr))
        snr["iwae-model"].append(float(s_iwae["model"].snr))
    iw, dr, th = snr["iwae"], snr["dreg"], snr["iwae-model"]
    assert all(b < a for a, b in zip(iw, iw[1:])), iw
    assert iw[-1] < iw[0] / 3, iw
    assert all(b >= 0.9 * a for a, b in zip(dr, dr[1:])), dr
    assert dr[-1] > dr[0], dr
    assert all(b > 2 * a for a, b in zip(th, th[1:])), th
