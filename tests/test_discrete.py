"""Estimators for discrete latents (review Sec. 3.2.1, item 2) against exact
gradients by enumeration on a tiny SBN (Eq. 2) and a tiny categorical model.

Tiny SBN: 8 binary pixels, two stochastic layers of 4 and 3 Bernoulli units
(2^7 = 128 latent configurations), B = 3.  Exact:
  ELBO  L   = mean_B Σ_h q(h|x) [log p(x,h) - log q(h|x)]              (Eq. 7)
  IW-LB I_2 = mean_B Σ_{h,h'} q(h|x) q(h'|x) log ½(w(h) + w(h'))        (Eq. 19)
differentiated with jax.grad.  Unbiased estimators: per coordinate
|mean - exact| <= 5 std / sqrt(n) + atol over n keys.  Biased relaxations
(straight-through, Gumbel-softmax): the bias is measured and printed.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exact import broadcast_latents, enumerate_latents
from sajax.core import Batch, log_joint
from sajax.estimators.discrete import (
    DiscreteLayers,
    NVILState,
    discrete_layers,
    disarm,
    gumbel_softmax,
    muprop,
    nvil,
    nvil_baseline,
    reinforce,
    rloo,
    straight_through,
    vimco,
)
from sajax.models.sbn import categorical_vae, sbn

ATOL = 2e-4  # float32 round-off of O(1)-O(10) gradients averaged over many keys
SIZES = (4, 3)
X_DIM, BATCH = 8, 3


def _perturbed(params, key, scale):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [a + scale * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def tiny():
    spec = sbn(X_DIM, latent_sizes=SIZES, kind="linear")
    # random, far-from-default parameters: a posterior with structure, q != p(h|x)
    params = _perturbed(spec.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.7)
    x = jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (BATCH, X_DIM)).astype(jnp.float32)
    h_all = broadcast_latents(enumerate_latents(SIZES), BATCH)          # leaves [M, B, d]

    def log_w_all(p):
        log_p = log_joint(spec.model, p["model"], x, h_all)
        log_q = spec.guide.log_prob(p["guide"], x, h_all)
        return log_p, log_q                                             # [M, B]

    def elbo(p):
        log_p, log_q = log_w_all(p)
        return jnp.mean(jnp.sum(jnp.exp(log_q) * (log_p - log_q), axis=0))

    def iw2(p):
        log_p, log_q = log_w_all(p)
        lw, q = log_p - log_q, jnp.exp(log_q)
        pair = jnp.logaddexp(lw[:, None, :], lw[None, :, :]) - math.log(2.0)
        return jnp.mean(jnp.sum(q[:, None, :] * q[None, :, :] * pair, axis=(0, 1)))

    def elbo_per_example(p):
        log_p, log_q = log_w_all(p)
        return jnp.sum(jnp.exp(log_q) * (log_p - log_q), axis=0)        # [B]

    return dict(spec=spec, params=params, x=x, batch=Batch(x, jnp.arange(BATCH)),
                elbo=elbo, iw2=iw2, elbo_per_example=elbo_per_example,
                exact_elbo=jax.grad(elbo)(params), exact_iw2=jax.grad(iw2)(params))


def _draws(estimator, params, batch, n, seed=0, state=()):
    """Estimates over n keys (jit + vmap)."""
    run = jax.jit(jax.vmap(lambda k: estimator.estimate(params, state, k, batch)))
    return run(jax.random.split(jax.random.PRNGKey(seed), n))


def _flat(tree):
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in jax.tree_util.tree_leaves(tree)])


def _flat_draws(tree):
    return np.concatenate([np.asarray(a, np.float64).reshape(a.shape[0], -1)
                           for a in jax.tree_util.tree_leaves(tree)], 1)


def _assert_unbiased(draws, exact, what, atol=ATOL):
    """Per coordinate |mean(draws) - exact| <= 5 std/sqrt(n) + atol; returns the
    standard errors so the caller can check the test had power."""
    d, e = _flat_draws(draws), _flat(exact)
    n = d.shape[0]
    err = np.abs(d.mean(0) - e)
    se = d.std(0, ddof=1) / math.sqrt(n)
    tol = 5.0 * se + atol
    assert np.all(np.isfinite(d)), f"{what}: non-finite draws"
    assert np.all(err <= tol), f"{what}: worst |mean - exact| / tol = {np.max(err / tol):.3f}"
    return se


def _descent(exact):
    return jax.tree_util.tree_map(jnp.negative, exact)


def _sub(tree, *names):
    return {k: tree[k] for k in names}


def _check_power(se, exact, what, ratio=0.35):
    """The test must be able to tell a wrong estimator: the spread of the mean
    is small next to the gradient itself."""
    assert np.linalg.norm(se) <= ratio * np.linalg.norm(_flat(exact)), \
        f"{what}: too few draws, ||se|| = {np.linalg.norm(se):.3g} vs ||grad|| = {np.linalg.norm(_flat(exact)):.3g}"


# --------------------------------------------------------------------------
# Unbiased estimators on the tiny two-layer SBN.


@pytest.mark.parametrize("name,factory,n", [
    ("reinforce", lambda s: reinforce(s.model, s.guide), 100_000),
    ("rloo K=2", lambda s: rloo(s.model, s.guide, num_samples=2), 50_000),
    ("muprop", lambda s: muprop(s.model, s), 30_000),
    ("disarm", lambda s: disarm(s.model, s), 30_000),
])
def test_unbiased_for_elbo_gradient(tiny, name, factory, n):
    out = _draws(factory(tiny["spec"]), tiny["params"], tiny["batch"], n)
    exact = _descent(tiny["exact_elbo"])
    se = _assert_unbiased(out.grads, exact, name)
    _check_power(se, exact, name)
    # the reported ELBO is an unbiased sample of the exact ELBO too
    elbo = np.asarray(out.metrics["elbo"], np.float64)
    assert abs(elbo.mean() - float(tiny["elbo"](tiny["params"]))) <= 5 * elbo.std() / math.sqrt(n) + 1e-4


def test_vimco_unbiased_for_iw_bound_gradient(tiny):
    n = 50_000
    out = _draws(vimco(tiny["spec"].model, tiny["spec"].guide, num_samples=2),
                 tiny["params"], tiny["batch"], n)
    exact = _descent(tiny["exact_iw2"])
    se = _assert_unbiased(out.grads, exact, "vimco K=2")
    _check_power(se, exact, "vimco K=2")
    bound = np.asarray(out.metrics["iw_bound"], np.float64)
    assert abs(bound.mean() - float(tiny["iw2"](tiny["params"]))) <= 5 * bound.std() / math.sqrt(n) + 1e-4
    # I_2 differs from the ELBO here, so matching it is not an accident
    assert np.linalg.norm(_flat(tiny["exact_iw2"]) - _flat(tiny["exact_elbo"])) > 10 * np.linalg.norm(se)


def test_nvil_unbiased_up_to_the_known_normalization(tiny):
    """θ: ∇L; φ: ∇L / max(1, sqrt(v)); ψ: the exact regression gradient
    mean_B (L_x - c - C_ψ(x)) ∇C_ψ(x) / max(1, sqrt(v)); state update in expectation."""
    spec, x = tiny["spec"], tiny["x"]
    b_init, b_apply = nvil_baseline(X_DIM, hidden=5)
    psi = _perturbed(b_init(jax.random.PRNGKey(3)), jax.random.PRNGKey(4), 0.5)
    params = dict(tiny["params"], baseline=psi)
    est = nvil(spec.model, spec.guide, (b_init, b_apply), alpha=0.8)
    state = NVILState(jnp.asarray(-9.0), jnp.asarray(16.0))   # normalization factor 1/4
    n = 50_000
    out = _draws(est, params, tiny["batch"], n, state=state)
    scale = 4.0
    exact = tiny["exact_elbo"]
    gap = tiny["elbo_per_example"](tiny["params"]) - state.mean - b_apply(psi, x)      # [B]
    _, vjp = jax.vjp(lambda p: b_apply(p, x), psi)
    (psi_ascent,) = vjp(gap / (scale * BATCH))
    expected = {"model": _descent(exact["model"]),
                "guide": jax.tree_util.tree_map(lambda g: -g / scale, exact["guide"]),
                "baseline": _descent(psi_ascent)}
    se = _assert_unbiased(out.grads, expected, "nvil")
    _check_power(se, expected, "nvil")
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    # c <- α c + (1-α) mean(l - C_ψ(x)) in expectation
    c_new = np.asarray(out.state.mean, np.float64)
    c_exact = 0.8 * -9.0 + 0.2 * float(jnp.mean(gap + state.mean))
    assert abs(c_new.mean() - c_exact) <= 5 * c_new.std() / math.sqrt(n) + 1e-4
    # without normalization the φ-part is ∇L itself
    plain = nvil(spec.model, spec.guide, (b_init, b_apply), normalize=False)
    out = _draws(plain, params, tiny["batch"], n, seed=1, state=state)
    _assert_unbiased(_sub(out.grads, "model", "guide"), _descent(exact), "nvil, normalize=False")


def test_nvil_init_and_training_state(tiny):
    spec = tiny["spec"]
    b_init, _ = nvil_baseline(X_DIM)
    params = dict(tiny["params"], baseline=b_init(jax.random.PRNGKey(5)))
    est = nvil(spec.model, spec.guide, x_dim=X_DIM)
    state = est.init(jax.random.PRNGKey(6), params, tiny["x"])
    assert isinstance(state, NVILState) and np.isfinite(state.mean) and state.var >= 0
    cold = nvil(spec.model, spec.guide, x_dim=X_DIM, warm_start=0).init(None, params, tiny["x"])
    assert float(cold.mean) == 0.0 and float(cold.var) == 1.0
    out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(7), tiny["batch"])
    assert set(out.metrics) == {"elbo", "signal_mean", "signal_std"}
    assert all(np.ndim(v) == 0 and np.isfinite(v) for v in out.metrics.values())
    with pytest.raises(ValueError, match="baseline"):
        est.estimate(tiny["params"], state, jax.random.PRNGKey(7), tiny["batch"])


# --------------------------------------------------------------------------
# Biased relaxations: bias measured and reported, not asserted away.


def _bias(estimator, tiny, n, seed=0):
    """Relative bias ||mean - exact|| / ||exact|| per group and its noise floor."""
    out = _draws(estimator, tiny["params"], tiny["batch"], n, seed=seed)
    exact = _descent(tiny["exact_elbo"])
    row = {}
    for g in ("model", "guide"):
        d, e = _flat_draws(out.grads[g]), _flat(exact[g])
        row[g] = (np.linalg.norm(d.mean(0) - e) / np.linalg.norm(e),
                  np.linalg.norm(d.std(0, ddof=1) / math.sqrt(n)) / np.linalg.norm(e))
    return row


def test_relaxation_bias_is_measured_and_reported(tiny):
    spec, n = tiny["spec"], 50_000
    rows = {"straight-through": _bias(straight_through(spec.model, spec), tiny, n)}
    for tau in (1.0, 0.5, 0.1):
        rows[f"gumbel tau={tau}"] = _bias(gumbel_softmax(spec.model, spec, temperature=tau), tiny, n)
        rows[f"gumbel-ST tau={tau}"] = _bias(
            gumbel_softmax(spec.model, spec, temperature=tau, hard=True), tiny, n)
    print(f"\nbias of relaxed gradients on the tiny SBN (n={n} keys), ||mean - exact|| / ||exact||"
          " (noise floor ||se|| / ||exact||):")
    for name, row in rows.items():
        print(f"  {name:20s} theta {row['model'][0]:.4f} ({row['model'][1]:.4f})"
              f"   phi {row['guide'][0]:.4f} ({row['guide'][1]:.4f})")
    for row in rows.values():
        assert all(np.isfinite(v) for pair in row.values() for v in pair)
    # straight-through: the forward sample is exact, so its θ-part is Algorithm 3 (unbiased)
    st = rows["straight-through"]
    assert st["model"][0] <= 5 * st["model"][1] + 1e-3
    # the φ-bias of the relaxations is real: far above the noise floor
    assert st["guide"][0] > 5 * st["guide"][1]
    assert rows["gumbel tau=1.0"]["guide"][0] > 5 * rows["gumbel tau=1.0"]["guide"][1]
    # the binary Concrete objective tends to the ELBO as τ -> 0: the bias shrinks
    assert rows["gumbel tau=0.1"]["guide"][0] < rows["gumbel tau=1.0"]["guide"][0]
    assert rows["gumbel tau=0.1"]["model"][0] < rows["gumbel tau=1.0"]["model"][0]


# --------------------------------------------------------------------------
# Categorical latents.


def _one_hot_configs(n, c):
    """All c**n one-hot configurations, [c**n, n, c]."""
    idx = np.array(list(itertools.product(range(c), repeat=n)))
    return jax.nn.one_hot(idx, c, dtype=jnp.float32)


def test_categorical_latents(tiny):
    spec = categorical_vae(6, num_latents=2, num_classes=3, hidden=8)
    params = _perturbed(spec.init(jax.random.PRNGKey(10)), jax.random.PRNGKey(11), 0.5)
    x = jax.random.bernoulli(jax.random.PRNGKey(12), 0.5, (BATCH, 6)).astype(jnp.float32)
    batch = Batch(x, jnp.arange(BATCH))
    h_all = jnp.broadcast_to(_one_hot_configs(2, 3)[:, None], (9, BATCH, 2, 3))

    def elbo(p):
        log_p = log_joint(spec.model, p["model"], x, h_all)
        log_q = spec.guide.log_prob(p["guide"], x, h_all)
        return jnp.mean(jnp.sum(jnp.exp(log_q) * (log_p - log_q), axis=0))

    exact = _descent(jax.grad(elbo)(params))
    lay = discrete_layers(spec)
    assert lay.kind == "categorical" and lay.num_layers == 1
    for name, est, n in [("reinforce", reinforce(spec.model, spec.guide), 50_000),
                         ("rloo K=3", rloo(spec.model, spec.guide, num_samples=3), 30_000),
                         ("muprop", muprop(spec.model, spec), 30_000)]:
        out = _draws(est, params, batch, n)
        se = _assert_unbiased(out.grads, exact, f"categorical {name}")
        _check_power(se, exact, f"categorical {name}", ratio=0.5)
    out = _draws(gumbel_softmax(spec.model, spec, temperature=0.5), params, batch, 20_000)
    d = _flat_draws(out.grads["guide"])
    rel = np.linalg.norm(d.mean(0) - _flat(exact["guide"])) / np.linalg.norm(_flat(exact["guide"]))
    print(f"\ncategorical Gumbel-softmax tau=0.5: relative φ-bias {rel:.4f}")
    assert np.isfinite(rel)
    with pytest.raises(ValueError, match="Bernoulli"):
        disarm(spec.model, spec)


# --------------------------------------------------------------------------
# Build-time checks.


def test_bad_arguments(tiny):
    spec = tiny["spec"]
    for factory in (vimco, rloo):
        for k in (0, 1):
            with pytest.raises(ValueError, match=f"K={k}"):
                factory(spec.model, spec.guide, num_samples=k)
    with pytest.raises(TypeError, match="layer"):
        muprop(spec.model, spec.guide)        # a bare ConditionalSampler has no layer access
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(spec.model, spec, temperature=0.0)
    with pytest.raises(ValueError, match="x_dim"):
        nvil(spec.model, spec.guide)
    with pytest.raises(ValueError, match="alpha"):
        nvil(spec.model, spec.guide, x_dim=X_DIM, alpha=1.0)
    with pytest.raises(ValueError, match="num_samples"):
        reinforce(spec.model, spec.guide, num_samples=0)
    with pytest.raises(ValueError, match="kind"):
        muprop(spec.model, spec.guide, layers=DiscreteLayers(spec.guide_layer_logits, 2, "gaussian"))
    # an explicit layers= works with the bare sampler
    est = disarm(spec.model, spec.guide, layers=DiscreteLayers(spec.guide_layer_logits, 2))
    out = jax.jit(est.estimate)(tiny["params"], (), jax.random.PRNGKey(0), tiny["batch"])
    assert np.isfinite(float(out.metrics["elbo"]))
