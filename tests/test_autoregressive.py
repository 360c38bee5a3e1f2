"""Autoregressive models (review Sec. 3.1.3) and maximum likelihood, against exact answers.

* Normalization: Σ_x p(x) = 1 over all 2^D binary vectors for NADE, MADE (an
  order, random connectivity, a mask ensemble), PixelCNN (3x3 image), the DARN
  prior p(h) and the DARN guide q(h|x).
* Autoregressive structure: the Jacobian of MADE's outputs is non-zero exactly
  where the masks connect (never unless order_j < order_i, and everywhere
  allowed for deterministic degrees); NADE and PixelCNN are strictly lower
  triangular in raster order.
* Sampling: chi-square tests of 20,000 ancestral samples against the
  enumerated probabilities; sampling in the wrong order fails.
* The ensemble is the mixture logsumexp_m log p_m - log M, checked against an
  independent NumPy forward pass per mask; averaging logits instead differs.
* maximum_likelihood equals jax.grad of NADE's log-likelihood written as a
  naive O(D²H) loop; MADE's random-mask objective is the drawn member's.
* DARN's autoregressive guide inside RWS: the θ-gradient is unbiased for the
  exact ∇_θ I_2 (enumerating pairs of latents), a z-test with stated power; a
  guide that samples in the wrong order fails it.
* Bad input: orders, mask sizes, context, x width, non-binary data, names.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from exact import all_binary, broadcast_latents, enumerate_latents
from fast_jit import run_fast
from sajax.core import GUIDE, MODEL, OBJECTIVE, Batch, ConditionalSampler
from sajax.estimators import rws
from sajax.estimators._likelihood import maximum_likelihood
from sajax.models import darn_sbn
from sajax.models._autoregressive import ancestral_scan, made, nade, pixelcnn
from sajax.models._made import MADE, MaskedDense, made_degrees, made_mask_sets
from stats import assert_detects, assert_power, assert_unbiased
from test_wake_sleep import _exact_iw2

N_SAMPLES = 20_000
CHI2_ALPHA = 1e-4          # false-alarm rate of each chi-square test
N_KEYS = 4000
MAX_DETECTABLE = 0.25      # detectable bias / ||exact gradient|| (tests/stats.py, "Its power")


def _params(init, seed, scale):
    """Random parameters N(0, scale²) in the shapes of ``init(key)`` (NumPy: nothing to
    compile), far from the initialization (biases start at 0) so that the tested
    distributions are far from uniform."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda s: rng.normal(0.0, scale, s.shape).astype(np.float32), shapes)


AR_MODELS = {
    "nade": lambda: nade(6, 5),
    "made-order": lambda: made(6, (7, 5), order=(3, 6, 1, 5, 2, 4), seed=1),
    "made-ensemble": lambda: made(6, (7,), num_masks=4, seed=2),
    "made-direct": lambda: made(6, (), order=(2, 1, 4, 3, 6, 5)),     # no hidden layer: one strict mask
    "pixelcnn-3x3": lambda: pixelcnn(3, 3, channels=4, num_layers=1),
}


# --------------------------------------------------------------------------
# Normalization by enumeration


@pytest.mark.parametrize("name", sorted(AR_MODELS))
def test_probabilities_sum_to_one(name):
    spec = AR_MODELS[name]()
    lp = run_fast(lambda: spec.model.log_prob(_params(spec.init, 0, 0.7)[MODEL], all_binary(spec.x_dim)))
    assert float(jnp.std(lp)) > 0.3          # far from uniform
    np.testing.assert_allclose(float(jax.nn.logsumexp(lp)), 0.0, atol=2e-5)


def _darn(likelihood="mlp"):
    return darn_sbn(5, 3, hidden=(6,), likelihood=likelihood)


def _darn_densities(spec, params):
    theta, phi = params[MODEL], params[GUIDE]
    xs = all_binary(5)                                                  # [32, 5]
    hall = broadcast_latents(enumerate_latents((3,)), xs.shape[0])[0]   # [8, 32, 3]
    lp_h = spec.model.log_prior(theta, hall[:, 0])
    lq = spec.guide.log_prob(phi, xs, hall)
    lj = spec.model.log_prior(theta, hall) + spec.model.log_likelihood(theta, xs, hall)
    return lp_h, lq, lj


def test_darn_densities_sum_to_one():
    spec = _darn("made")      # p(x|h) a MADE with context h; the factorial "mlp" one is used below
    lp_h, lq, lj = run_fast(lambda: _darn_densities(spec, _params(spec.init, 0, 0.8)))
    np.testing.assert_allclose(float(jax.nn.logsumexp(lp_h)), 0.0, atol=2e-6)
    np.testing.assert_allclose(jax.nn.logsumexp(lq, axis=0), 0.0, atol=2e-6)
    np.testing.assert_allclose(float(jax.nn.logsumexp(lj)), 0.0, atol=2e-5)


# --------------------------------------------------------------------------
# Autoregressive structure


def _reach(masks):
    """Which input reaches which output through the masks (boolean product) [D_in, D_out·P]."""
    r = masks[0] > 0
    for m in masks[1:]:
        r = (r.astype(np.int64) @ (m > 0).astype(np.int64)) > 0
    return r


@pytest.mark.parametrize("order,seed,hidden", [((4, 2, 5, 1, 3), None, (12, 9)),
                                               ((2, 5, 3, 1, 4), 7, (8, 8)), (None, 3, ())])
def test_made_outputs_depend_only_on_earlier_inputs(order, seed, hidden):
    net = MADE(5, hidden, 2, order, seed, "tanh", context_dim=2, num_masks=3)
    x, c = jax.random.normal(jax.random.PRNGKey(0), (5,)), jnp.ones(2)
    orders, masks = net.mask_sets()

    params = _params(lambda k: net.init(k, x, c), 2, 0.5)

    def jacobians():
        ms = jnp.arange(3)
        jac = jax.vmap(lambda m: jax.jacfwd(lambda xx: net.apply(params, xx, c, mask_index=m))(x))(ms)
        return jac, jax.vmap(lambda m: jax.jacfwd(lambda cc: net.apply(params, x, cc, mask_index=m))(c))(ms)

    jac, jac_c = run_fast(jacobians)
    for m in range(3):
        depends = np.abs(np.asarray(jac[m])).max(axis=1) > 0              # [D out, D in]
        allowed = orders[m][None, :] < orders[m][:, None]
        reach = _reach([mk[m] for mk in masks]).reshape(5, 5, 2).any(-1).T
        np.testing.assert_array_equal(depends, reach)
        assert not np.any(depends & ~allowed), f"mask set {m}: output depends on a later input"
        if seed is None and m == 0:
            np.testing.assert_array_equal(depends, allowed)              # full connectivity
        # the first dimension in the order sees only the context
        assert np.all(np.abs(np.asarray(jac_c[m]))[np.argmin(orders[m])] > 0)


@pytest.mark.parametrize("name", ["nade", "pixelcnn-3x3"])
def test_raster_order_is_strictly_lower_triangular(name):
    spec = AR_MODELS[name]()
    theta = _params(spec.init, 0, 0.7)[MODEL]
    xs = jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (8, spec.x_dim)).astype(jnp.float32)
    jac = np.asarray(run_fast(lambda: jax.vmap(jax.jacfwd(lambda xx: spec.logits(theta, xx[None])[0]))(xs)))
    depends = np.any(jac != 0.0, axis=0)        # over 8 inputs (ReLU units may be off at one)
    np.testing.assert_array_equal(depends, np.tril(np.ones_like(depends), k=-1))


# --------------------------------------------------------------------------
# Ancestral sampling: chi-square against enumerated probabilities


def _chi2(samples, log_p):
    """(statistic, dof, p-value) of sample counts over the 2^D cells vs exp(log_p);
    cells expected to hold < 5 samples are pooled."""
    d = samples.shape[-1]
    idx = np.asarray(samples, np.int64) @ (2 ** np.arange(d - 1, -1, -1))
    counts = np.bincount(idx, minlength=2 ** d)
    expected = np.exp(np.asarray(log_p, np.float64)) * len(idx)
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp_ = np.append(expected[~small], expected[small].sum())
    obs, exp_ = (obs, exp_) if small.any() else (obs[:-1], exp_[:-1])
    stat = float(np.sum((obs - exp_) ** 2 / exp_))
    dof = len(obs) - 1
    return stat, dof, float(sps.chi2.sf(stat, dof))


def _assert_chi2(samples, log_p, what, must_fail=False):
    stat, dof, pval = _chi2(samples, log_p)
    threshold = sps.chi2.isf(CHI2_ALPHA, dof)
    print(f"{what}: chi2 = {stat:.1f} (dof {dof}, threshold {threshold:.1f} at alpha {CHI2_ALPHA}), p = {pval:.3g}")
    assert (stat > threshold) if must_fail else (stat <= threshold), what


SAMPLED = {
    "nade": lambda: nade(4, 5),
    "made-order": lambda: made(4, (8,), order=(2, 4, 1, 3), seed=5),
    "made-ensemble": lambda: made(4, (8,), num_masks=3, seed=6),
    "pixelcnn-2x2": lambda: pixelcnn(2, 2, channels=4, num_layers=1),
}


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_ancestral_samples_match_enumeration(name):
    spec = SAMPLED[name]()

    def log_p_and_samples():
        theta = _params(spec.init, 0, 1.0)[MODEL]
        return spec.model.log_prob(theta, all_binary(4)), spec.model.sample(theta, jax.random.PRNGKey(7), N_SAMPLES)

    log_p, x = run_fast(log_p_and_samples)
    _assert_chi2(x, log_p, name)


def test_sampling_in_the_wrong_order_fails():
    spec = SAMPLED["made-order"]()

    def log_p_and_wrong_samples():
        theta = _params(spec.init, 0, 1.0)[MODEL]
        wrong = ancestral_scan(lambda x: spec.logits(theta, x), jnp.arange(4), jax.random.PRNGKey(8),
                               jnp.zeros((N_SAMPLES, 4)))
        return spec.model.log_prob(theta, all_binary(4)), wrong

    log_p, wrong = run_fast(log_p_and_wrong_samples)
    _assert_chi2(wrong, log_p, "MADE sampled in the identity order [must fail]", must_fail=True)


def test_darn_samples_match_enumeration():
    spec = _darn("made")
    x1 = jnp.asarray([[1.0, 0.0, 1.0, 1.0, 0.0]])
    hall = all_binary(3)[:, None]                                       # [8, 1, 3]

    def densities_and_samples():
        params = _params(spec.init, 0, 0.8)
        theta, phi = params[MODEL], params[GUIDE]
        k1, k2 = jax.random.split(jax.random.PRNGKey(9))
        lj = spec.model.log_prior(theta, hall) + spec.model.log_likelihood(theta, all_binary(5), hall)
        hq, lq = spec.guide.sample_and_log_prob(phi, k2, x1, N_SAMPLES)
        return (lj, spec.guide.log_prob(phi, x1, hall)[:, 0], spec.model.sample(theta, k1, N_SAMPLES),
                hq, lq - spec.guide.log_prob(phi, x1, hq))

    lj, lq_all, (x, h), hq, lq_err = run_fast(densities_and_samples)
    _assert_chi2(jnp.concatenate([x, h], -1), lj.T.reshape(-1), "DARN (x, h) ~ p")   # cell index (x, h)
    _assert_chi2(hq[:, 0], lq_all, "DARN h ~ q(h|x)")
    np.testing.assert_allclose(lq_err, 0.0, atol=1e-6)


# --------------------------------------------------------------------------
# The mask ensemble is a mixture of likelihoods


def _numpy_member_log_probs(theta, orders_masks, x):
    """log p_m(x) [M, N] by a float64 NumPy forward pass per mask set (relu MLP)."""
    _, masks = orders_masks
    t = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), theta)
    out = []
    for m in range(masks[0].shape[0]):
        h = x
        for layer, mk in enumerate(masks):
            p = t[f"masked_{layer}"]
            h = h @ (p["kernel"] * mk[m]) + p["bias"]
            h = np.maximum(h, 0.0) if layer < len(masks) - 1 else h
        out.append(np.sum(x * h - np.logaddexp(0.0, h), axis=-1))
    return np.stack(out)


def test_ensemble_is_the_mixture_of_its_members():
    spec = made(6, (7,), num_masks=5, seed=3)
    x = np.asarray(all_binary(6), np.float64)

    def log_probs_and_logits():
        theta = _params(spec.init, 0, 1.0)[MODEL]
        xf = jnp.asarray(x, jnp.float32)
        return theta, spec.model.log_prob(theta, xf), jnp.stack([spec.logits(theta, xf, m) for m in range(5)])

    theta, lp, logits = run_fast(log_probs_and_logits)
    members = _numpy_member_log_probs(theta, made_mask_sets(6, (7,), 5, None, 3), x)
    mixture = np.logaddexp.reduce(members, axis=0) - np.log(5)
    np.testing.assert_allclose(lp, mixture, atol=1e-4)
    assert len({tuple(o) for o in spec.orders}) == 5                  # five different orders
    avg_logits = np.mean(np.asarray(logits, np.float64), 0)           # the broken variant: one averaged net
    broken = np.sum(x * avg_logits - np.logaddexp(0.0, avg_logits), axis=-1)
    assert np.max(np.abs(broken - mixture)) > 0.05


# --------------------------------------------------------------------------
# maximum_likelihood


def _naive_nade_log_prob(theta, x):
    """log p(x) of NADE by the textbook loop over i (O(D²H)), independent of the cumsum."""
    lp = 0.0
    for i in range(x.shape[-1]):
        a = theta["c"] + x[:, :i] @ theta["W"][:i]
        logit = theta["b"][i] + jax.nn.sigmoid(a) @ theta["V"][i]
        lp = lp + x[:, i] * logit - jax.nn.softplus(logit)
    return lp


def test_maximum_likelihood_is_the_exact_gradient():
    spec = nade(6, 5)
    x = all_binary(6)[::3]
    est = maximum_likelihood(spec.model)
    est.init(None, {MODEL: None}, x)                                   # binary data accepted

    def estimate_and_exact():
        theta = _params(spec.init, 0, 0.7)[MODEL]
        params = {MODEL: theta, "other": {"w": jnp.ones(2)}}
        out = est.estimate(params, (), jax.random.PRNGKey(0), Batch(x, jnp.arange(len(x))))
        return out, jax.value_and_grad(lambda t: jnp.mean(_naive_nade_log_prob(t, x)))(theta)

    out, (value, grad) = run_fast(estimate_and_exact)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, -b, rtol=1e-5, atol=1e-6),
                           out.grads[MODEL], grad)
    np.testing.assert_array_equal(out.grads["other"]["w"], 0.0)
    np.testing.assert_allclose(out.metrics[OBJECTIVE], value, rtol=1e-6)
    np.testing.assert_array_equal(out.metrics["log_likelihood"], out.metrics[OBJECTIVE])


def test_random_mask_objective_is_the_drawn_member():
    spec = made(6, (7,), num_masks=4, seed=2)
    x = all_binary(6)[::5]
    est = maximum_likelihood(spec.model, stochastic_log_prob=spec.random_mask_log_prob)
    keys = jax.random.split(jax.random.PRNGKey(11), 8)

    def estimates_and_members():
        theta = _params(spec.init, 0, 0.7)[MODEL]
        grads = jax.vmap(lambda k: est.estimate({MODEL: theta}, (), k, Batch(x, jnp.arange(len(x)))).grads)(keys)
        members = [jax.grad(lambda t: jnp.mean(spec.log_prob_mask(t, x, m)))(theta) for m in range(4)]
        return grads[MODEL], members

    grads, members = run_fast(estimates_and_members)
    drawn = np.asarray(jax.vmap(lambda k: jax.random.randint(k, (), 0, 4))(keys))
    assert len(set(drawn.tolist())) > 1
    for i, m in enumerate(drawn):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[i], -b, rtol=1e-5, atol=1e-6),
                               grads, members[m])


# --------------------------------------------------------------------------
# DARN's autoregressive guide inside an existing estimator (RWS)


def _wrong_order_guide(spec):
    """q sampled in the reverse order (a broken sampler) but scored by the true log q."""

    def sample_and_log_prob(phi, key, x, n):
        ctx = jnp.broadcast_to(x, (n,) + x.shape).reshape((-1, x.shape[-1]))
        h = ancestral_scan(lambda hh: spec.guide_logits(phi, ctx, hh), jnp.arange(2, -1, -1), key,
                           jnp.zeros((ctx.shape[0], 3))).reshape((n, x.shape[0], 3))
        return h, spec.guide.log_prob(phi, x, h)

    return ConditionalSampler(sample_and_log_prob, spec.guide.log_prob)


def test_darn_guide_in_rws_is_unbiased_for_grad_iw_bound():
    spec = _darn("mlp")
    x = jnp.asarray([[1, 0, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 0, 0, 0], [0, 1, 0, 1, 1]], jnp.float32)
    hall = broadcast_latents(enumerate_latents((3,)), x.shape[0])[0]          # [8, 4, 3]
    keys = jax.random.split(jax.random.PRNGKey(12), N_KEYS)
    batch = Batch(x, jnp.arange(4))

    def exact_and_draws():
        params = _params(spec.init, 4, 0.8)
        exact = jax.grad(lambda t: _exact_iw2(spec, t, params[GUIDE], x, hall))(params[MODEL])

        def draws(guide):
            est = rws(spec.model, guide, num_samples=2)
            return jax.vmap(lambda k: est.estimate(params, (), k, batch).grads[MODEL])(keys)

        return jax.tree_util.tree_map(jnp.negative, exact), draws(spec.guide), draws(_wrong_order_guide(spec))

    neg_exact, good, broken = run_fast(exact_and_draws)
    t = assert_unbiased(good, neg_exact, "RWS θ with DARN q vs -∇θ I_2", atol=1e-5)
    assert_power(t, MAX_DETECTABLE, "RWS θ with DARN q")
    assert_detects(broken, neg_exact, "DARN q sampled in reverse order", atol=1e-5)


# --------------------------------------------------------------------------
# Bad input


def test_bad_input_fails_clearly():
    with pytest.raises(ValueError, match="order must be a permutation"):
        made_degrees(3, (4,), order=(1, 1, 2))
    with pytest.raises(ValueError, match="order must be a permutation"):
        made(3, (4,), order=(0, 1, 2))
    with pytest.raises(ValueError, match="mask has shape"):
        MaskedDense(4, np.ones((2, 4))).init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    net = MADE(3, (4,), context_dim=2)
    with pytest.raises(ValueError, match="context is required"):
        net.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="context was given"):
        MADE(3, (4,)).init(jax.random.PRNGKey(0), jnp.ones((1, 3)), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="input_dim=3"):
        net.init(jax.random.PRNGKey(0), jnp.ones((1, 4)), jnp.ones((1, 2)))
    spec = nade(4, 3)
    theta = spec.init(jax.random.PRNGKey(0))[MODEL]
    with pytest.raises(ValueError, match="event shape"):
        spec.model.log_prob(theta, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="binary"):
        spec.model.log_prob(theta, jnp.full((2, 4), 0.5))
    with pytest.raises(ValueError, match="binary"):
        maximum_likelihood(spec.model).init(None, {MODEL: theta}, np.full((3, 4), 0.3))
    with pytest.raises(ValueError, match="no group"):
        maximum_likelihood(spec.model).init(None, {"guide": theta}, np.ones((3, 4)))
    with pytest.raises(TypeError, match="TractableModel"):
        maximum_likelihood(object())
    with pytest.raises(ValueError, match="likelihood must be one of"):
        darn_sbn(4, 2, likelihood="gaussian")
    with pytest.raises(ValueError, match="num_masks"):
        made(4, (5,), num_masks=0)
    with pytest.raises(ValueError, match="height"):
        pixelcnn(0, 3)
