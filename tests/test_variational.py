"""Variational estimators with continuous latents (review Sec. 3.2.1) against
exact answers on a linear-Gaussian model (tests/linear_gaussian.py).

Every unbiasedness check is tests/stats.py's z-test: per coordinate
|mean - exact| <= z·se + ATOL over n keys, z by Bonferroni, with the smallest
detectable bias printed.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import linear_gaussian as lg
from sajax.core import GUIDE, MODEL, OBJECTIVE, Batch, ConditionalSampler, Estimate, Estimator
from sajax.diagnostics import gradient_stats
from sajax.estimators import dreg, from_objective, iwae, reinforce, reparam_elbo, stl_elbo
from stats import assert_detects, assert_power, assert_same_mean, assert_unbiased, flat, flat_draws

ATOL = 1e-4  # float32 round-off on O(1) gradients averaged over many keys
N_ELBO = 20_000

# name -> factory(model, guide, K); K is a required keyword of every estimator
FACTORIES = {"reinforce": lambda m, q, k=1: reinforce(m, q, num_samples=k),
             "reparam-mc": lambda m, q, k=1: reparam_elbo(m, q, num_samples=k),
             "reparam-analytic": lambda m, q, k=1: reparam_elbo(m, q, num_samples=k, kl="analytic"),
             "stl": lambda m, q, k=1: stl_elbo(m, q, num_samples=k),
             "iwae": lambda m, q, k=1: iwae(m, q, num_samples=k),
             "dreg": lambda m, q, k=1: dreg(m, q, num_samples=k)}
ELBO_ESTIMATORS = ("reinforce", "reparam-mc", "reparam-analytic", "stl")


@pytest.fixture(scope="module")
def problem():
    """θ, data, the exact-posterior φ* and a wrong φ (φ* perturbed)."""
    theta = lg.make_theta(jax.random.PRNGKey(0))
    x = lg.make_data(theta, jax.random.PRNGKey(1))
    phi_star = lg.exact_posterior_params(theta)
    phi_wrong = lg.perturb(phi_star, jax.random.PRNGKey(2), 0.3)
    return {"theta": theta, "x": x, "batch": Batch(x, jnp.arange(x.shape[0])),
            "exact": {MODEL: theta, GUIDE: phi_star},
            "wrong": {MODEL: theta, GUIDE: phi_wrong}}


def _draws(estimator, params, batch, seed, n):
    """Grads [n, ...] and metrics [n] of ``estimator`` over n keys (jit + vmap)."""
    run = jax.jit(jax.vmap(lambda k: estimator.estimate(params, (), k, batch)))
    out = run(jax.random.split(jax.random.PRNGKey(seed), n))
    return out.grads, out.metrics


def _descent(tree):
    return jax.tree_util.tree_map(jnp.negative, tree)


@jax.jit
def _elbo_references(params, x):
    """Closed forms, from one program: -∇ mean ELBO (descent), the mean ELBO and mean log p(x)."""
    return (_descent(lg.elbo_grad(params, x)), lg.mean_elbo(params, x),
            jnp.mean(lg.log_marginal(params[MODEL], x)))


@pytest.fixture(scope="module")
def elbo_draws(problem):
    """Every ELBO estimator over the same n keys (paired comparisons)."""
    m, q = lg.model(), lg.guide()
    return {name: _draws(FACTORIES[name](m, q), problem["wrong"], problem["batch"], 11, N_ELBO)
            for name in ELBO_ESTIMATORS}


# --------------------------------------------------------------------------
# Interface


@pytest.mark.parametrize("name", list(FACTORIES))
def test_bad_arguments_raise_at_build_time(name):
    factory, m, q = FACTORIES[name], lg.model(), lg.guide()
    with pytest.raises(ValueError, match="num_samples"):
        factory(m, q, 0)
    with pytest.raises(TypeError, match="num_samples"):
        factory(m, q, 2.5)
    with pytest.raises(TypeError, match="guide"):
        factory(m, object(), 1)
    raw = {"reinforce": reinforce, "reparam-mc": reparam_elbo, "reparam-analytic": reparam_elbo,
           "stl": stl_elbo, "iwae": iwae, "dreg": dreg}[name]
    with pytest.raises(TypeError, match="num_samples"):   # K is required and keyword-only
        raw(m, q)
    with pytest.raises(TypeError):
        raw(m, q, 1)


def test_reparam_options_raise_at_build_time():
    m, q = lg.model(), lg.guide()
    with pytest.raises(ValueError, match="kl"):
        reparam_elbo(m, q, num_samples=1, kl="exact")
    no_dist = ConditionalSampler(q.sample_and_log_prob, q.log_prob)
    with pytest.raises(ValueError, match="guide.dist"):
        reparam_elbo(m, no_dist, num_samples=1, kl="analytic")
    with pytest.raises(ValueError, match="model.prior"):
        reparam_elbo(m._replace(prior=None), q, num_samples=1, kl="analytic")


@pytest.mark.parametrize("name", list(FACTORIES))
def test_interface(problem, name):
    """Stateless init over the training set; JAX-integer K; grads shaped like params
    (extra groups get zeros); the objective under OBJECTIVE; a missing group
    is a ValueError naming it."""
    params = dict(problem["wrong"], extra={"w": jnp.ones(3)})
    est = FACTORIES[name](lg.model(), lg.guide(), jnp.int32(3))
    assert est.init(jax.random.PRNGKey(0), params, problem["x"]) == ()
    out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), problem["batch"])
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    np.testing.assert_array_equal(out.grads["extra"]["w"], 0.0)
    key = "iw_bound" if name in ("iwae", "dreg") else "elbo"
    assert out.metrics[OBJECTIVE] == out.metrics[key] and out.metrics[key].shape == ()
    with pytest.raises(ValueError, match="guide"):
        est.estimate({MODEL: params[MODEL]}, (), jax.random.PRNGKey(1), problem["batch"])


def test_special_cases_coincide_key_by_key(problem):
    """IWAE(K=1) = reparameterized ELBO (Eq. 19 with K = 1 is Eq. 13);
    DReG(K=1) = STL; DReG's θ-gradient is IWAE's, for the same key."""
    params, batch, m, q = problem["wrong"], problem["batch"], lg.model(), lg.guide()
    key = jax.random.PRNGKey(7)

    def run(est):
        return jax.jit(est.estimate)(params, (), key, batch)

    pairs = [(run(iwae(m, q, num_samples=1)), run(reparam_elbo(m, q, num_samples=1)), (MODEL, GUIDE)),
             (run(dreg(m, q, num_samples=1)), run(stl_elbo(m, q, num_samples=1)), (MODEL, GUIDE)),
             (run(dreg(m, q, num_samples=5)), run(iwae(m, q, num_samples=5)), (MODEL,))]
    for a, b, groups in pairs:
        for g in groups:
            np.testing.assert_allclose(flat(a.grads[g]), flat(b.grads[g]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pairs[0][0].metrics["iw_bound"], pairs[0][1].metrics["elbo"], rtol=1e-6)
    # DReG's φ-gradient really differs from IWAE's sample by sample.
    assert np.max(np.abs(flat(pairs[2][0].grads[GUIDE]) - flat(pairs[2][1].grads[GUIDE]))) > 1e-2


# --------------------------------------------------------------------------
# The ELBO (Eq. 7): closed form


def test_iw_bound_tightens_with_k_towards_log_marginal(problem):
    """Eq. 19: L = I_1 <= I_5 <= I_50 <= log p(x), and I_K -> log p(x)."""
    params, batch, x = problem["wrong"], problem["batch"], problem["x"]
    n = 4000
    _, elbo, log_px = _elbo_references(params, x)
    log_px = float(log_px)
    means, ses = [], []
    for seed, k in enumerate((1, 5, 50)):
        _, metrics = _draws(iwae(lg.model(), lg.guide(), num_samples=k), params, batch, 100 + seed, n)
        v = np.asarray(metrics["iw_bound"], np.float64)
        if k == 1:
            assert_unbiased(v, [float(elbo)], "I_1 vs closed-form ELBO", atol=ATOL)
        means.append(v.mean())
        ses.append(v.std(ddof=1) / math.sqrt(n))
    for i in range(2):
        assert means[i + 1] - means[i] > 5 * math.hypot(ses[i], ses[i + 1])
    assert log_px - means[2] > 5 * ses[2]
    assert log_px - means[2] < 0.2 * (log_px - means[0])


@pytest.mark.parametrize("name", ELBO_ESTIMATORS)
def test_elbo_gradient_unbiased_for_closed_form(problem, elbo_draws, name):
    """REINFORCE (Alg. 3), reparameterized (Eq. 13, MC and analytic KL) and STL
    gradients average to -∇ of the closed-form ELBO; the reported ELBO to the ELBO."""
    grads, metrics = elbo_draws[name]
    exact, elbo, _ = _elbo_references(problem["wrong"], problem["x"])
    t = assert_unbiased(grads, exact, name, atol=ATOL)
    assert_power(t, 0.5, name)
    assert_unbiased(metrics["elbo"], [float(elbo)], f"{name} elbo", atol=ATOL)


def test_elbo_estimators_agree_pairwise(elbo_draws):
    names = list(elbo_draws)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert_same_mean(elbo_draws[a][0], elbo_draws[b][0], f"{a} vs {b}", atol=ATOL)
    # The θ-step of Algorithm 3 is the reparameterized θ-gradient itself.
    np.testing.assert_allclose(flat_draws(elbo_draws["reinforce"][0][MODEL]),
                               flat_draws(elbo_draws["stl"][0][MODEL]), rtol=1e-5, atol=1e-5)


def test_broken_reparameterization_is_caught(problem):
    """A guide whose samples do not carry the reparameterization path (a common
    bug) leaves reparam_elbo's φ-gradient with mean zero: the z-test fails."""
    q = lg.guide()

    def no_path(phi, key, x, n):
        h, log_q = q.sample_and_log_prob(phi, key, x, n)
        return jax.lax.stop_gradient(h), log_q

    broken = reparam_elbo(lg.model(), q._replace(sample_and_log_prob=no_path), num_samples=1)
    grads, _ = _draws(broken, problem["wrong"], problem["batch"], 12, N_ELBO)
    exact, _, _ = _elbo_references(problem["wrong"], problem["x"])
    assert_detects(grads[GUIDE], exact[GUIDE], "reparam_elbo without the sample path", atol=ATOL)


def test_quadrature_route_is_exact_for_elbo(problem):
    """The Gauss-Hermite route reproduces the closed-form ELBO and its gradient
    at K = 1, which validates it as the reference for ∇I_K below."""
    params, x = problem["wrong"], problem["x"]
    quadrature = jax.jit(lg.mean_iw_bound_by_quadrature, static_argnums=(2,))
    descent, elbo, _ = _elbo_references(params, x)
    np.testing.assert_allclose(quadrature(params, x, 1), elbo, rtol=1e-6)
    np.testing.assert_allclose(flat(jax.jit(jax.grad(lg.mean_iw_bound_by_quadrature), static_argnums=(2,))(params, x, 1)),
                               flat(_descent(descent)), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# The IW-LB (Eq. 19): quadrature


@pytest.fixture(scope="module")
def iw2(problem):
    """-∇I_2 by quadrature, its accuracy, and IWAE/DReG draws over the same keys."""
    params, batch, x = problem["wrong"], problem["batch"], problem["x"]
    grad_quad = jax.jit(jax.grad(lg.mean_iw_bound_by_quadrature), static_argnums=(2, 3))
    ref = grad_quad(params, x, 2, 16)
    quad_err = float(np.max(np.abs(flat(ref) - flat(grad_quad(params, x, 2, 12)))))
    draws = {name: _draws(FACTORIES[name](lg.model(), lg.guide(), 2), params, batch, 21, N_ELBO)
             for name in ("iwae", "dreg")}
    return {"exact": _descent(ref), "quad_err": quad_err, "atol": ATOL + 10 * quad_err,
            "bound": float(jax.jit(lg.mean_iw_bound_by_quadrature, static_argnums=(2,))(params, x, 2)),
            "draws": draws}


@pytest.mark.parametrize("name", ["iwae", "dreg"])
def test_iw_gradient_unbiased_for_quadrature(problem, iw2, name):
    """K = 2: IWAE (Burda et al.) and DReG (Tucker et al.) average to -∇I_2,
    computed by quadrature (an independent route); the reported bound to I_2."""
    assert iw2["quad_err"] < 1e-3
    grads, metrics = iw2["draws"][name]
    t = assert_unbiased(grads, iw2["exact"], name, atol=iw2["atol"])
    assert_power(t, 0.5, name)
    assert_unbiased(metrics["iw_bound"], [iw2["bound"]], f"{name} iw_bound", atol=iw2["atol"])
    # I_2's gradient is not the ELBO's: a wrong reference is caught
    assert_detects(grads, _elbo_references(problem["wrong"], problem["x"])[0],
                   f"{name} vs the ELBO gradient", atol=iw2["atol"])


def test_dreg_agrees_with_iwae_and_lowers_variance(iw2):
    g_iwae, g_dreg = iw2["draws"]["iwae"][0], iw2["draws"]["dreg"][0]
    assert_same_mean(g_dreg[GUIDE], g_iwae[GUIDE], "dreg vs iwae (guide)", atol=ATOL)
    # DReG lowers the inference-network gradient variance (Tucker et al. 2019).
    var_iwae = np.var(flat_draws(g_iwae[GUIDE]), axis=0).sum()
    var_dreg = np.var(flat_draws(g_dreg[GUIDE]), axis=0).sum()
    assert var_dreg < 0.5 * var_iwae


# --------------------------------------------------------------------------
# Variance


def test_path_derivative_variance_vanishes_at_exact_posterior(problem):
    """q = p(h|x): the STL and DReG φ-gradients are 0 for every draw
    (Roeder et al. 2017), the reparameterized-MC one is not; the MC ELBO
    equals log p(x) for every draw (review footnote 7)."""
    params, batch = problem["exact"], problem["batch"]
    m, q = lg.model(), lg.guide()
    key = jax.random.PRNGKey(31)
    stats = {name: gradient_stats(est, params, batch, key, num_keys=1000)
             for name, est in (("stl", stl_elbo(m, q, num_samples=1)), ("dreg", dreg(m, q, num_samples=5)),
                               ("mc", reparam_elbo(m, q, num_samples=1)), ("iwae", iwae(m, q, num_samples=5)))}
    for name in ("stl", "dreg"):
        assert float(stats[name][GUIDE].total_variance) < 1e-10, name
        assert float(stats[name][GUIDE].norm_of_mean) < 1e-5, name
        assert float(stats[name][MODEL].total_variance) > 0.1, name
    for name in ("mc", "iwae"):
        assert float(stats[name][GUIDE].total_variance) > 1.0, name
    _, metrics = _draws(reparam_elbo(m, q, num_samples=1), params, batch, 32, 200)
    log_px = float(_elbo_references(params, problem["x"])[2])
    np.testing.assert_allclose(metrics["elbo"], log_px, rtol=1e-5)


def _side_by_side(estimators: dict) -> Estimator:
    """Stateless estimators evaluated at the same key, as one: groups named ``"<name>/<group>"``,
    so that ``gradient_stats`` compiles one program for all of them (the draws are those of
    separate calls with the same key)."""
    def estimate(params, state, key, batch):
        grads = {}
        for name, est in estimators.items():
            grads.update({f"{name}/{g}": v for g, v in est.estimate(params, state, key, batch).grads.items()})
        return Estimate(grads, state, {})

    return Estimator(lambda key, params, data: (), estimate)


@pytest.mark.runtime_bound
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
        both = _side_by_side({"iwae": iwae(m, q, num_samples=k), "dreg": dreg(m, q, num_samples=k)})
        s = gradient_stats(both, params, batch, jax.random.PRNGKey(k), num_keys=4000, chunk=100)
        snr["iwae"].append(float(s[f"iwae/{GUIDE}"].snr))
        snr["dreg"].append(float(s[f"dreg/{GUIDE}"].snr))
        snr["iwae-model"].append(float(s[f"iwae/{MODEL}"].snr))
    iw, dr, th = snr["iwae"], snr["dreg"], snr["iwae-model"]
    assert all(b < a for a, b in zip(iw, iw[1:])), iw
    assert iw[-1] < iw[0] / 3, iw
    assert all(b >= 0.9 * a for a, b in zip(dr, dr[1:])), dr
    assert dr[-1] > dr[0], dr
    assert all(b > 2 * a for a, b in zip(th, th[1:])), th


# --------------------------------------------------------------------------
# The public building kit: from_objective, score_function_estimator, complete_grads


def _hand_elbo(stop_path: bool = False):
    """A user's reparameterized ELBO estimate (Eq. 12-13) of the linear-Gaussian
    model, K = 1, written against the protocols only; ``stop_path`` breaks it
    (the sample no longer carries ∂h/∂φ)."""
    m, q = lg.model(), lg.guide()

    def objective(p, key, batch):
        x = batch.x
        h, log_q = q.sample_and_log_prob(p[GUIDE], key, x, 1)
        if stop_path:
            h, log_q = jax.lax.stop_gradient(h), q.log_prob(p[GUIDE], x, jax.lax.stop_gradient(h))
        return jnp.mean(m.log_prior(p[MODEL], h) + m.log_likelihood(p[MODEL], x, h) - log_q)

    return objective


def test_from_objective_is_unbiased_for_the_closed_form_elbo(problem):
    """from_objective turns a user's stochastic ELBO into an estimator whose
    grads average to -∇ of the closed-form ELBO (z-test) and whose metric
    averages to the ELBO; the same objective without the reparameterization
    path (its φ-gradient is the score term only, mean zero) is caught."""
    est = from_objective(_hand_elbo(), metric="elbo", groups=(MODEL, GUIDE))
    grads, metrics = _draws(est, problem["wrong"], problem["batch"], 41, N_ELBO)
    exact, elbo, _ = _elbo_references(problem["wrong"], problem["x"])
    t = assert_unbiased(grads, exact, "from_objective(ELBO)", atol=ATOL)
    assert_power(t, 0.5, "from_objective(ELBO)")
    assert_unbiased(metrics["elbo"], [float(elbo)], "from_objective elbo", atol=ATOL)
    broken = from_objective(_hand_elbo(stop_path=True), metric="elbo", groups=(MODEL, GUIDE))
    g_broken, _ = _draws(broken, problem["wrong"], problem["batch"], 42, N_ELBO)
    assert_detects(g_broken[GUIDE], exact[GUIDE], "from_objective without the sample path", atol=ATOL)


def test_from_objective_contract(problem):
    """Key by key the built-in reparam_elbo (which is built by from_objective);
    groups it does not move get zeros; a missing group names itself; the
    metric, OBJECTIVE and has_aux metrics; groups=None differentiates all of params."""
    params = dict(problem["wrong"], baseline={"w": jnp.ones(3)})
    key, batch = jax.random.PRNGKey(5), problem["batch"]
    est = from_objective(_hand_elbo(), metric="elbo", groups=(MODEL, GUIDE))
    assert est.init(key, params, problem["x"]) == ()
    out = jax.jit(est.estimate)(params, (), key, batch)
    ref = jax.jit(reparam_elbo(lg.model(), lg.guide(), num_samples=1).estimate)(problem["wrong"], (), key, batch)
    for g in (MODEL, GUIDE):
        np.testing.assert_allclose(flat(out.grads[g]), flat(ref.grads[g]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out.grads["baseline"]["w"], 0.0)
    assert out.metrics[OBJECTIVE] == out.metrics["elbo"]
    with pytest.raises(ValueError, match="guide"):
        est.estimate({MODEL: params[MODEL]}, (), key, batch)
    whole = from_objective(lambda p, k, b: _hand_elbo()(p, k, b), groups=None)
    out_all = jax.jit(whole.estimate)(problem["wrong"], (), key, batch)
    assert sorted(out_all.metrics) == [OBJECTIVE]
    np.testing.assert_allclose(flat(out_all.grads), flat({g: out.grads[g] for g in (GUIDE, MODEL)}), rtol=1e-6)
    aux = from_objective(lambda p, k, b: (_hand_elbo()(p, k, b), {"twice": jnp.float32(2.0)}),
                         metric="elbo", groups=(MODEL, GUIDE), has_aux=True)
    assert float(jax.jit(aux.estimate)(params, (), key, batch).metrics["twice"]) == 2.0
    with pytest.raises(TypeError, match="objective"):
        from_objective(3.0)
    with pytest.raises(TypeError, match="groups"):
        from_objective(_hand_elbo(), groups=(MODEL, 3))


def test_score_function_estimator_builds_reinforce(problem):
    """A user's REINFORCE surrogate (Algorithm 3, Eq. 11) through the public
    helper gives reinforce's grads key by key; K is required."""
    from sajax.estimators import score_function_estimator

    def surrogate(log_p, log_q):
        signal = jax.lax.stop_gradient(log_p - log_q)
        return jnp.mean(log_p + signal * log_q), jnp.mean(signal)

    m, q, key = lg.model(), lg.guide(), jax.random.PRNGKey(6)
    est = score_function_estimator(m, q, surrogate, num_samples=3, metric="elbo")
    out = jax.jit(est.estimate)(problem["wrong"], (), key, problem["batch"])
    ref = jax.jit(reinforce(m, q, num_samples=3).estimate)(problem["wrong"], (), key, problem["batch"])
    for g in (MODEL, GUIDE):
        np.testing.assert_array_equal(flat(out.grads[g]), flat(ref.grads[g]))
    assert float(out.metrics["elbo"]) == float(ref.metrics["elbo"])
    with pytest.raises(TypeError, match="num_samples"):
        score_function_estimator(m, q, surrogate)
    with pytest.raises(TypeError, match="surrogate"):
        score_function_estimator(m, q, None, num_samples=1)


def test_complete_grads_fills_the_groups_not_moved():
    from sajax.estimators import complete_grads

    params = {MODEL: {"w": jnp.ones((2, 3))}, "baseline": (jnp.ones(2), jnp.zeros(()))}
    grads = complete_grads(params, {MODEL: {"w": -jnp.ones((2, 3))}})
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    np.testing.assert_array_equal(flat(grads["baseline"]), 0.0)
    np.testing.assert_array_equal(grads[MODEL]["w"], -1.0)
