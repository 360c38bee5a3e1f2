"""Semi-amortized VI (SA-VAE), Hamiltonian VI and the amortization-gap split, against
closed forms on the linear-Gaussian model (review Sec. 3.2.1 items 4-5; DESIGN.md,
"How an estimator is proven right")."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_gaussian as lg
from fast_jit import fast_jit, run_fast
from sajax.core import GUIDE, MODEL
from sajax.estimators._refined_q import (
    REVERSE,
    auxiliary_bound,
    hvi,
    leapfrog,
    mlp_reverse_model,
    refine_gaussian,
    semi_amortized,
)
from sajax.estimators._variational import reparam_elbo
from sajax.evaluate.amortization import amortization_gap
from stats import assert_detects, assert_power, assert_unbiased

N_DRAWS = 2000
KEY = jax.random.PRNGKey(5)
STEP = 0.1


def encoder(phi, x):
    """The linear-Gaussian guide's (μ, log σ) = (A x + c, s)."""
    return x @ phi["A"].T + phi["c"], phi["s"]


def elbo_lambda(theta, mean, log_std, x):
    """Closed-form ELBO of q = N(μ_b, diag σ_b²) per example, [B] (lg.elbo with A = 0, c = μ_b)."""
    d, dx = mean.shape[-1], x.shape[-1]
    one = lambda m, s, xb: lg.elbo(theta, {"A": jnp.zeros((d, dx)), "c": m, "s": s}, xb[None])[0]
    return jax.vmap(one)(mean, jnp.broadcast_to(log_std, mean.shape), x)


def _estimate(estimator, params, key, x):
    """One estimate, compiled fast (eager dispatch of the small ops is slower)."""
    return run_fast(lambda p, k: estimator.estimate(p, (), k, x), params, key)


def _draws(estimator, params, x, seed, n=N_DRAWS):
    run = fast_jit(jax.vmap(lambda k: estimator.estimate(params, (), k, x)))
    return run(jax.random.split(jax.random.PRNGKey(seed), n))


def _lgp(key):
    theta = lg.make_theta(jax.random.fold_in(key, 0))
    return theta, lg.make_data(theta, jax.random.fold_in(key, 1))


@pytest.fixture(scope="module")
def lgp():
    """Orthogonal W (diagonal posterior), data, and a guide φ off the exact posterior."""
    theta, x = run_fast(_lgp, jax.random.PRNGKey(0))
    phi = lg.perturb(lg.exact_posterior_params(theta), jax.random.PRNGKey(2), 0.5)
    return {"theta": theta, "x": x, "phi": phi, "params": {MODEL: theta, GUIDE: phi}}


# --------------------------------------------------------------------------
# SA-VAE


def test_refinement_reaches_the_posterior_in_closed_form(lgp):
    """Closed-form refinement: μ_K - μ* = (I - αΛ)^K (μ0 - μ*) exactly; λ_K -> posterior as K grows."""
    theta, x, phi = lgp["theta"], lgp["x"], lgp["phi"]
    mu_star, cov = lg.posterior(theta, x)
    prec = 1.0 / jnp.diag(cov)                                      # Λ (diagonal: orthogonal W)
    mean0, log_std0 = encoder(phi, x)

    def refine(k):
        return lambda m, s: refine_gaussian(jax.random.PRNGKey(3), lg.model(), theta, x, m, s,
                                            num_steps=k, step_size=STEP, elbo=elbo_lambda)

    m3, _ = run_fast(refine(3), mean0, log_std0)
    np.testing.assert_allclose(m3, mu_star + (1 - STEP * prec) ** 3 * (mean0 - mu_star), rtol=1e-4, atol=1e-5)
    m300, s300 = run_fast(refine(300), mean0, log_std0)
    np.testing.assert_allclose(m300, mu_star, atol=1e-4)
    np.testing.assert_allclose(s300, jnp.broadcast_to(-0.5 * jnp.log(prec), s300.shape), atol=1e-4)
    assert float(jnp.max(jnp.abs(m3 - mu_star))) < float(jnp.max(jnp.abs(mean0 - mu_star)))


def test_refinement_clips_each_example(lgp):
    """max_grad_norm bounds each example's step: ||λ1 - λ0|| <= α · max_grad_norm."""
    mean0, log_std0 = encoder(lgp["phi"], lgp["x"])
    m1, s1 = run_fast(lambda m, s: refine_gaussian(jax.random.PRNGKey(0), lg.model(), lgp["theta"], lgp["x"], m, s,
                                                   num_steps=1, step_size=STEP, max_grad_norm=1e-2),
                      mean0, log_std0)
    moved = np.sqrt(np.sum(np.square(m1 - mean0), -1) + np.sum(np.square(s1 - log_std0), -1))
    assert np.all(moved <= STEP * 1e-2 * (1 + 1e-4)) and np.all(moved > 0.5 * STEP * 1e-2)


def test_monte_carlo_refinement_mean_in_closed_form(lgp):
    """Default (one-draw, fresh-noise) refinement: ∇_μ L̂ = -Λ(μ - μ*) - Λ σ ε is linear in μ with a
    zero-mean noise term, so E[μ_K] = μ* + (I - αΛ)^K (μ0 - μ*) exactly (z-test over keys)."""
    theta, x, phi = lgp["theta"], lgp["x"], lgp["phi"]
    mu_star, cov = lg.posterior(theta, x)
    mean0, log_std0 = encoder(phi, x)
    run = jax.vmap(lambda k: refine_gaussian(k, lg.model(), theta, x, mean0, log_std0, num_steps=3,
                                             step_size=STEP)[0])
    draws = run_fast(run, jax.random.split(jax.random.PRNGKey(4), N_DRAWS))
    exact = lambda k: mu_star + (1 - STEP / jnp.diag(cov)) ** k * (mean0 - mu_star)
    t = assert_unbiased(draws, exact(3), "E[μ_K], Monte Carlo refinement")
    assert_power(t, 0.1, "E[μ_K]")
    assert_detects(draws, exact(2), "E[μ_K] vs one step fewer")


@pytest.fixture(scope="module")
def sa_draws(lgp):
    """SA-VAE draws with deterministic (closed-form) refinement, differentiate True and False."""
    out = {}
    for diff in (True, False):
        est = semi_amortized(lg.model(), encoder, num_steps=3, step_size=STEP, differentiate=diff,
                             refine_elbo=elbo_lambda, num_samples=4)
        out[diff] = _draws(est, lgp["params"], lgp["x"], 10 + diff)
    return out


def _lambda_k(theta, phi, x):
    return refine_gaussian(jax.random.PRNGKey(0), lg.model(), theta, x, *encoder(phi, x), num_steps=3,
                           step_size=STEP, elbo=elbo_lambda)


def _exact_sa(theta, phi, x):
    """Exact ascent directions (θ at fixed λ_K; φ through λ_K(φ); both at λ0) and the ELBO gain."""
    lam = _lambda_k(theta, phi, x)
    g_theta_k = jax.grad(lambda t: jnp.mean(elbo_lambda(t, *lam, x)))(theta)
    g_phi_k = jax.grad(lambda p: jnp.mean(elbo_lambda(theta, *_lambda_k(theta, p, x), x)))(phi)
    at_0 = lg.elbo_grad({MODEL: theta, GUIDE: phi}, x)
    gain = jnp.mean(elbo_lambda(theta, *lam, x)) - lg.mean_elbo({MODEL: theta, GUIDE: phi}, x)
    return g_theta_k, g_phi_k, at_0[MODEL], at_0[GUIDE], gain


def test_semi_amortized_gradients_match_closed_form(lgp, sa_draws):
    """z-tests: θ-grad = ∂L(λ_K)/∂θ; φ-grad = dL(λ_K(φ))/dφ (unrolled) or ∇_φ L(λ0) (stopped)."""
    g_theta_k, g_phi_k, g_theta_0, g_phi_0, exact_gain = run_fast(_exact_sa, lgp["theta"], lgp["phi"], lgp["x"])
    neg = lambda t: jax.tree_util.tree_map(jnp.negative, t)
    for diff in (True, False):
        grads = neg(sa_draws[diff].grads)
        t = assert_unbiased(grads[MODEL], g_theta_k, f"SA-VAE θ (differentiate={diff})")
        assert_power(t, 0.1, "SA-VAE θ")
    t = assert_unbiased(neg(sa_draws[True].grads)[GUIDE], g_phi_k, "SA-VAE φ through the steps")
    assert_power(t, 0.1, "SA-VAE φ")
    t = assert_unbiased(neg(sa_draws[False].grads)[GUIDE], g_phi_0, "SA-VAE φ stopped (at λ0)")
    assert_power(t, 0.1, "SA-VAE φ stopped")
    # broken variants: the stopped φ-gradient is not the unrolled one; θ at λ0 is not θ at λ_K
    assert_detects(neg(sa_draws[False].grads)[GUIDE], g_phi_k, "stopped φ vs unrolled gradient")
    assert_detects(neg(sa_draws[True].grads)[MODEL], g_theta_0, "θ-grad vs the gradient at λ0")
    assert float(exact_gain) > 0
    assert_unbiased(sa_draws[True].metrics["refinement_gain"], exact_gain, "SA-VAE ELBO gain λ0 -> λ_K")


@pytest.fixture(scope="module")
def reparam_ref(lgp):
    """reparam_elbo's estimates with the two halves of ``split(KEY)`` (one compile for both)."""
    est = reparam_elbo(lg.model(), lg.guide(), num_samples=1)
    run = lambda p, k: [est.estimate(p, (), kk, lgp["x"]) for kk in jax.random.split(k)]
    return run_fast(run, lgp["params"], KEY)


def test_semi_amortized_without_steps_is_reparam_elbo(lgp, reparam_ref):
    """K = 0 with Monte Carlo refinement: the same gradient as reparam_elbo (paired, same noise)."""
    sa = _estimate(semi_amortized(lg.model(), encoder, num_samples=1, num_steps=0, step_size=STEP),
                   lgp["params"], KEY, lgp["x"])
    ref = reparam_ref[1]
    for a, b in zip(jax.tree_util.tree_leaves(sa.grads), jax.tree_util.tree_leaves(ref.grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sa.metrics["objective"], ref.metrics["objective"], rtol=1e-5)


# --------------------------------------------------------------------------
# HVI


def test_leapfrog_is_volume_preserving_and_reversible():
    """jacfwd of (z0, v0) -> (z_T, v_T): log|det| = 0; negate v, step again, negate v: back to start."""
    grad = jax.grad(lambda z: -0.25 * jnp.sum(z ** 4) - 0.5 * z @ jnp.array([[2.0, 0.5], [0.5, 1.0]]) @ z)

    def flow(u):
        z, v = leapfrog(grad, u[:2], u[2:], 0.1, 7)
        return jnp.concatenate([z, v])

    u0 = jnp.array([0.7, -1.2, 0.3, 0.9])
    def check(u):
        u1 = flow(u)
        return jnp.linalg.slogdet(jax.jacfwd(flow)(u)), flow(jnp.concatenate([u1[:2], -u1[2:]]))

    (sign, logdet), back = run_fast(check, u0)
    assert float(sign) == 1.0 and abs(float(logdet)) < 1e-5
    np.testing.assert_allclose(back, jnp.concatenate([u0[:2], -u0[2:]]), atol=1e-5)
    z, v = leapfrog(grad, u0[:2], u0[2:], 0.1, 0)
    np.testing.assert_array_equal(jnp.concatenate([z, v]), u0)


def test_hvi_without_leapfrog_is_reparam_elbo(lgp, reparam_ref):
    """T = 0, r = N(0, I): the auxiliary terms cancel, the same gradient as reparam_elbo (same z0 key)."""
    out = _estimate(hvi(lg.model(), lg.guide(), num_samples=1, num_leapfrog=0, step_size=0.1),
                    lgp["params"], KEY, lgp["x"])
    ref = reparam_ref[0]
    for a, b in zip(jax.tree_util.tree_leaves(out.grads), jax.tree_util.tree_leaves(ref.grads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.metrics["objective"], ref.metrics["objective"], rtol=1e-5)


def test_hvi_with_an_mlp_reverse_model(lgp, reparam_ref):
    """ψ lives in its own group; with T = 0 log r(v0|x, z0) has no θ in it, so θ's gradient is
    reparam_elbo's (same z0 key), while ψ gets a gradient of its own."""
    rev = mlp_reverse_model(lg.DATA_DIM, lg.LATENT_DIM, hidden=(4,))
    params = {**lgp["params"], REVERSE: run_fast(rev.init, jax.random.PRNGKey(8))}
    out = _estimate(hvi(lg.model(), lg.guide(), num_samples=1, num_leapfrog=0, reverse=rev.apply),
                    params, KEY, lgp["x"])
    ref = reparam_ref[0]
    for a, b in zip(jax.tree_util.tree_leaves(out.grads[MODEL]), jax.tree_util.tree_leaves(ref.grads[MODEL])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(out.grads[REVERSE]))
    assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree_util.tree_leaves(out.grads[REVERSE]))) > 0


def linear_reverse(psi, x, z):
    """r(v | x, z) = N(g (z - (A x + c)), exp(2 s)): the exact conditional form for a 1-D Gaussian."""
    return psi["gain"] * (z - (x @ psi["A"].T + psi["c"])), jnp.broadcast_to(psi["s"], z.shape)


@pytest.fixture(scope="module")
def hvi1d():
    """d = 1: posterior N(m(x), σp²); q = N(m(x), (2σp)²); T leapfrog steps of total time πσp/2
    (a quarter period, which maps N(0, 1) momenta onto the posterior spread)."""
    def setup(key):
        theta = lg.make_theta(key, latent_dim=1, scales=(1.5,))
        return theta, lg.make_data(theta, jax.random.fold_in(key, 1))

    theta, x = run_fast(setup, jax.random.PRNGKey(0))
    phi = lg.exact_posterior_params(theta)
    phi = {**phi, "s": phi["s"] + math.log(2.0)}
    sigma_p = float(jnp.exp(lg.exact_posterior_params(theta)["s"][0]))
    return {"theta": theta, "x": x, "phi": phi, "sigma_p": sigma_p}


def _bound_by_quadrature(params, x, reverse, step_size, num_leapfrog, order=6):
    """Mean over the batch of E_{ε, v0}[auxiliary_bound] by 2-D Gauss-Hermite quadrature (d = 1).

    The leapfrog of a Gaussian target is linear, so the integrand is quadratic in (ε, v0) and
    the quadrature is exact."""
    nodes, weights = lg._gauss_hermite_grid(2, order)
    phi = params[GUIDE]
    mean = x @ phi["A"].T + phi["c"]                                          # [B, 1]
    z0 = mean[None] + jnp.exp(phi["s"]) * nodes[:, None, :1]                  # [M, B, 1]
    v0 = jnp.broadcast_to(nodes[:, None, 1:], z0.shape)
    log_q0 = lg.guide().log_prob(phi, x, z0)
    f = auxiliary_bound(lg.model(), reverse, params[MODEL], params.get(REVERSE), x, z0, log_q0, v0,
                        step_size=step_size, num_leapfrog=num_leapfrog)       # [M, B]
    return jnp.mean(weights @ f)


def _exact_reverse(theta, sigma_p, step, t):
    """ψ of the exact r(v_T | z_T) for q = N(m, 4σp²): the leapfrog matrix of a harmonic
    oscillator with ω² = Λ = 1/σp², raised to the T-th power."""
    lam = 1.0 / sigma_p ** 2
    one = np.array([[1 - step ** 2 * lam / 2, step], [-step * lam * (1 - step ** 2 * lam / 4), 1 - step ** 2 * lam / 2]])
    m = np.linalg.matrix_power(one, t)
    c = m @ np.diag([4 * sigma_p ** 2, 1.0]) @ m.T
    post = lg.exact_posterior_params(theta)
    psi = {"gain": jnp.asarray(c[1, 0] / c[0, 0], jnp.float32), "A": post["A"], "c": post["c"],
           "s": jnp.asarray([0.5 * math.log(c[1, 1] - c[1, 0] ** 2 / c[0, 0])], jnp.float32)}
    return psi, c[0, 0]


def test_hvi_bound_closes_the_gap_with_the_exact_reverse_model(hvi1d):
    """Bound = log p(x) - KL(N(m, C_zz) || posterior) exactly; <= log p(x); the gap shrinks."""
    theta, x, phi, sp = hvi1d["theta"], hvi1d["x"], hvi1d["phi"], hvi1d["sigma_p"]
    t = 8
    step = math.pi * sp / 2 / t
    psi, c_zz = _exact_reverse(theta, sp, step, t)
    params = {MODEL: theta, GUIDE: phi, REVERSE: psi}
    def gaps(p):
        log_p = jnp.mean(lg.log_marginal(p[MODEL], x))
        return [log_p - _bound_by_quadrature(p, x, rev, step, k)
                for rev, k in ((None, 0), (linear_reverse, t), (None, t))]

    gap_0, gap_exact, gap_std = map(float, run_fast(gaps, params))
    kl = lambda var: 0.5 * (var / sp ** 2 - 1 - math.log(var / sp ** 2))
    np.testing.assert_allclose(gap_0, kl(4 * sp ** 2), atol=1e-4)          # the ELBO's gap, KL(q || p)
    np.testing.assert_allclose(gap_exact, kl(c_zz), atol=1e-4)
    assert gap_exact < 0.05 * gap_0 and gap_std > 0 and gap_exact > -1e-5


def test_hvi_gradients_match_quadrature(hvi1d):
    """z-test of every group's gradient (θ, φ, ψ) against ∇ of the exact (quadrature) bound."""
    theta, x, phi, sp = hvi1d["theta"], hvi1d["x"], hvi1d["phi"], hvi1d["sigma_p"]
    psi, _ = _exact_reverse(theta, sp, 0.3, 2)
    params = lg.perturb({MODEL: theta, GUIDE: phi, REVERSE: psi}, jax.random.PRNGKey(7), 0.2)
    est = hvi(lg.model(), lg.guide(), num_leapfrog=2, step_size=0.3, reverse=linear_reverse, num_samples=4)
    grads = jax.tree_util.tree_map(jnp.negative, _draws(est, params, x, 12).grads)
    exact, wrong = run_fast(lambda p: [jax.grad(_bound_by_quadrature)(p, x, linear_reverse, 0.3, t)
                                       for t in (2, 1)], params)
    t = assert_unbiased(grads, exact, "HVI (θ, φ, ψ)")
    assert_power(t, 0.1, "HVI")
    assert_detects(grads, wrong, "HVI vs the one-step bound's gradient")


# --------------------------------------------------------------------------
# Amortization gap


def _gap_problem(key):
    theta = lg.make_theta(key)
    theta = {**theta, "W": jnp.array([[1.2, 0.6], [0.3, -0.8], [0.9, 0.5]])}
    x = lg.make_data(theta, jax.random.fold_in(key, 1), 16)
    prec = jnp.eye(2) + theta["W"].T @ theta["W"] * jnp.exp(-2.0 * theta["log_sigma"])
    cov = jnp.linalg.inv(prec)
    a = cov @ theta["W"].T * jnp.exp(-2.0 * theta["log_sigma"])
    best = {"A": a, "c": -a @ theta["b"], "s": -0.5 * jnp.log(jnp.diag(prec))}   # q* = N(m(x), 1/diag Λ)
    kl_best = 0.5 * (jnp.sum(jnp.log(jnp.diag(prec))) - jnp.linalg.slogdet(prec)[1])
    bad = {**best, "c": best["c"] + jnp.array([0.5, -0.3]), "s": best["s"] + 0.2}
    return {"theta": theta, "x": x, "best": best, "bad": bad, "kl_best": kl_best,
            "known": lg.elbo(theta, best, x) - lg.elbo(theta, bad, x), "elbo_best": lg.elbo(theta, best, x)}


@pytest.fixture(scope="module")
def gap_problem():
    """Non-orthogonal W (a diagonal q cannot be exact); the best diagonal q* and its KL in closed form."""
    out = run_fast(_gap_problem, jax.random.PRNGKey(0))
    return {**out, "kl_best": float(out["kl_best"]), "known": np.asarray(out["known"]),
            "elbo_best": np.asarray(out["elbo_best"])}


def test_amortization_gap_split_matches_closed_forms(gap_problem):
    """Monte Carlo everywhere (IW log p(x), MC ELBOs): q* reaches the best diagonal ELBO, the gaps
    add up, the approximation gap is KL(q* || p) and the bad encoder's gap is the known one.

    Both true gaps are the same for every example (the shift of the bad encoder is constant), so
    the spread over the 16 examples is pure Monte Carlo noise and the reported standard error
    (15 degrees of freedom) sets the tolerance: 5 se (false alarm ~2e-4)."""
    g = gap_problem
    params = {MODEL: g["theta"], GUIDE: g["bad"]}
    out = amortization_gap(lg.model(), encoder, params, jax.random.PRNGKey(3), g["x"], num_steps=1000,
                           learning_rate=0.05, num_samples=8, eval_samples=4000, iw_samples=4000, chunk=1000)
    pe = out.per_example
    found = np.asarray(elbo_lambda(g["theta"], jnp.asarray(pe["optimal_mean"], jnp.float32),
                                   jnp.asarray(pe["optimal_log_std"], jnp.float32), g["x"]))
    np.testing.assert_allclose(found, g["elbo_best"], atol=2e-3)             # closed-form ELBO at λ*
    np.testing.assert_allclose(pe["inference_gap"], pe["approximation_gap"] + pe["amortization_gap"], atol=1e-9)
    for name, known in (("approximation_gap", g["kl_best"]), ("amortization_gap", g["known"][0])):
        stat = getattr(out, name)
        print(f"{name}: {stat.mean:.4f} ± {stat.stderr:.4f} (known {float(known):.4f})")
        assert abs(stat.mean - known) <= 5 * stat.stderr + 1e-3 and stat.stderr < 0.02, name
    np.testing.assert_allclose(pe["log_marginal"], lg.log_marginal(g["theta"], g["x"]), atol=0.03)
    assert not out.exact_log_marginal and out.amortization_gap.stderr > 0
    np.testing.assert_allclose(out.amortization_gap.mean, np.mean(pe["amortization_gap"]))


def test_amortization_gap_with_exact_answers(gap_problem):
    """Exact log p(x) and closed-form ELBOs: the split is the closed form to optimizer precision."""
    g = gap_problem
    params = {MODEL: g["theta"], GUIDE: g["bad"]}
    out = amortization_gap(lg.model(), encoder, params, jax.random.PRNGKey(4), g["x"], num_steps=1000,
                           learning_rate=0.05, batch_size=3, log_marginal=lg.log_marginal,
                           elbo=lambda t, m, s, x: elbo_lambda(t, m, s, x))
    pe = out.per_example
    assert out.exact_log_marginal and pe["approximation_gap"].shape == (g["x"].shape[0],)
    np.testing.assert_allclose(pe["approximation_gap"], g["kl_best"], atol=2e-3)
    np.testing.assert_allclose(pe["amortization_gap"], g["known"], atol=2e-3)


# --------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_clearly(lgp):
    m = lg.model()
    with pytest.raises(ValueError, match="num_steps"):
        semi_amortized(m, encoder, num_samples=1, num_steps=-1)
    with pytest.raises(ValueError, match="step_size"):
        semi_amortized(m, encoder, num_samples=1, step_size=0.0)
    with pytest.raises(TypeError, match="encoder"):
        semi_amortized(m, 3, num_samples=1)
    with pytest.raises(TypeError, match="refine_elbo"):
        semi_amortized(m, encoder, num_samples=1, refine_elbo="closed")
    with pytest.raises(ValueError, match="latent_dims"):
        from sajax.models import vae
        semi_amortized(m, vae(4, latent_dims=(2, 2), hidden=(3,)), num_samples=1)
    with pytest.raises(ValueError, match="num_leapfrog"):
        hvi(m, lg.guide(), num_samples=1, num_leapfrog=-1)
    with pytest.raises(ValueError, match="step_size"):
        hvi(m, lg.guide(), num_samples=1, step_size=-0.1)
    with pytest.raises(TypeError, match="reverse"):
        hvi(m, lg.guide(), num_samples=1, reverse=5)
    with pytest.raises(ValueError, match="reverse"):
        hvi(m, lg.guide(), num_samples=1, reverse=linear_reverse).estimate(lgp["params"], (), jax.random.PRNGKey(0),
                                                                           lgp["x"])
    with pytest.raises(ValueError, match="guide"):
        semi_amortized(m, encoder, num_samples=1).estimate({MODEL: lgp["theta"]}, (), jax.random.PRNGKey(0), lgp["x"])
    with pytest.raises(TypeError, match="key"):
        amortization_gap(m, encoder, lgp["params"], 0, lgp["x"])
    with pytest.raises(ValueError, match="learning_rate"):
        amortization_gap(m, encoder, lgp["params"], jax.random.PRNGKey(0), lgp["x"], learning_rate=0.0)
    with pytest.raises(ValueError, match="eval_samples"):
        amortization_gap(m, encoder, lgp["params"], jax.random.PRNGKey(0), lgp["x"], eval_samples=0)
    with pytest.raises(ValueError, match="guide"):
        amortization_gap(m, encoder, {MODEL: lgp["theta"]}, jax.random.PRNGKey(0), lgp["x"])
    with pytest.raises(ValueError, match="NaN"):
        amortization_gap(m, encoder, lgp["params"], jax.random.PRNGKey(0), lgp["x"].at[0, 0].set(jnp.nan))
