"""Wake-sleep and reweighted wake-sleep (review Sec. 3.2.2, Algorithm 4,
Eq. 23-25) against exact gradients of a tiny SBN, by enumeration.

Unbiased parts pass tests/stats.py's z-test over n independent keys.  The
biased wake-φ update has its bias against the exact inclusive-KL gradient
measured, printed, and checked to shrink with K.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exact import all_binary, broadcast_latents, enumerate_latents
from sajax.core import GUIDE, MODEL, OBJECTIVE, Batch, LatentVariableModel, log_joint
from sajax.estimators import PHI_UPDATES, rws, wake_sleep
from sajax.models import sbn
from stats import assert_detects, assert_power, assert_unbiased, flat, flat_draws

X_DIM, SIZES = 8, (4, 3)
ATOL = 1e-5
N_KEYS = 4000
MAX_DETECTABLE = 0.25  # detectable bias / ||exact gradient|| (tests/stats.py, "Its power")


@pytest.fixture(scope="module")
def problem():
    spec = sbn(X_DIM, SIZES, kind="linear")
    p0 = spec.init(jax.random.PRNGKey(0))
    # a sharper model and a guide that does not match its posterior
    params = {MODEL: jax.tree_util.tree_map(lambda a: 2.0 * a, p0[MODEL]),
              GUIDE: jax.tree_util.tree_map(lambda a: 1.5 * a + 0.2, p0[GUIDE])}
    x = jnp.asarray([[1, 0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 1, 0, 1]], jnp.float32)
    hall = broadcast_latents(enumerate_latents(SIZES), x.shape[0])  # leaves [128, 4, d]
    return spec, params, Batch(x, jnp.arange(4)), hall


def _draws(estimator, params, batch, seed, n=N_KEYS):
    run = jax.jit(jax.vmap(lambda k: estimator.estimate(params, (), k, batch)))
    return run(jax.random.split(jax.random.PRNGKey(seed), n))


def _neg(tree):
    return jax.tree_util.tree_map(jnp.negative, tree)


def _exact_iw2(spec, theta, phi, x, hall):
    """I_2 averaged over the batch: Σ_{h,h'} q(h) q(h') log((w + w')/2) by enumerating pairs."""
    log_q = spec.guide.log_prob(phi, x, hall)                                  # [M, B]
    log_w = log_joint(spec.model, theta, x, hall) - log_q
    pair = jnp.logaddexp(log_w[:, None, :], log_w[None, :, :]) - math.log(2.0)  # [M, M, B]
    q = jnp.exp(log_q)
    return jnp.mean(jnp.sum(q[:, None, :] * q[None, :, :] * pair, axis=(0, 1)))


def test_rws_wake_theta_unbiased_for_grad_iw_bound(problem):
    spec, params, batch, hall = problem
    theta, phi = params[MODEL], params[GUIDE]
    i2, exact = jax.jit(jax.value_and_grad(lambda t: _exact_iw2(spec, t, phi, batch.x, hall)))(theta)
    out = _draws(rws(spec.model, spec.guide, num_samples=2), params, batch, seed=1)
    # grads are descent directions: -∇_θ I_2
    t = assert_unbiased(out.grads[MODEL], _neg(exact), "RWS wake-θ vs -∇θ I_2", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, "RWS wake-θ")
    assert_unbiased(out.metrics["iw_bound"], [i2], "iw_bound vs I_2", atol=ATOL)
    np.testing.assert_array_equal(out.metrics[OBJECTIVE], out.metrics["iw_bound"])


def test_wake_sleep_theta_unbiased_for_grad_elbo(problem):
    spec, params, batch, hall = problem
    theta, phi = params[MODEL], params[GUIDE]
    q = jax.jit(lambda f: jnp.exp(spec.guide.log_prob(f, batch.x, hall)))(phi)
    exact = jax.jit(jax.grad(lambda t: jnp.mean(jnp.sum(q * log_joint(spec.model, t, batch.x, hall), axis=0))))(theta)
    out = _draws(wake_sleep(spec.model, spec.guide), params, batch, seed=2)
    t = assert_unbiased(out.grads[MODEL], _neg(exact), "WS wake-θ vs -∇θ ELBO", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, "WS wake-θ")
    np.testing.assert_array_equal(out.metrics[OBJECTIVE], out.metrics["elbo"])
    # RWS's wake-θ estimates ∇I_K, not the ELBO's ∇_θ: with K = 4 the difference is caught
    rws4 = _draws(rws(spec.model, spec.guide, num_samples=4), params, batch, seed=5)
    assert_detects(rws4.grads[MODEL], _neg(exact), "RWS(K=4) wake-θ vs -∇θ ELBO", atol=ATOL)


@pytest.mark.parametrize("name,factory,seed", [
    ("WS sleep-φ", lambda s: wake_sleep(s.model, s.guide), 3),
    ("RWS sleep-φ", lambda s: rws(s.model, s.guide, num_samples=3, phi_update="sleep"), 4),
])
def test_sleep_phi_unbiased(problem, name, factory, seed):
    """Sleep-φ is unbiased for ∇φ E_{p(x,h)} log q(h|x): 256 x's times 128 h's enumerated."""
    spec, params, batch, _ = problem
    theta, phi = params[MODEL], params[GUIDE]
    xs = all_binary(X_DIM)
    hx = broadcast_latents(enumerate_latents(SIZES), xs.shape[0])
    p_joint = jax.jit(lambda t: jnp.exp(log_joint(spec.model, t, xs, hx)))(theta)          # [128, 256]
    np.testing.assert_allclose(p_joint.sum(), 1.0, atol=1e-5)
    exact = jax.jit(jax.grad(lambda f: jnp.sum(p_joint * spec.guide.log_prob(f, xs, hx))))(phi)
    out = _draws(factory(spec), params, batch, seed=seed)
    t = assert_unbiased(out.grads[GUIDE], _neg(exact), name + " vs -∇φ E_p log q", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, name)


def test_rws_wake_phi_bias_shrinks_with_k(problem):
    """Wake-φ (Eq. 25) is biased; E over keys approaches ∇φ E_x KL[p(h|x)||q(h|x)] as K grows."""
    spec, params, batch, hall = problem
    theta, phi = params[MODEL], params[GUIDE]
    post = jax.jit(lambda t: jax.nn.softmax(log_joint(spec.model, t, batch.x, hall), axis=0))(theta)    # [128, B]
    # ∇φ E_x KL[p||q] = -E_x Σ_h p(h|x) ∇φ log q(h|x): already a descent direction
    exact = flat(jax.jit(jax.grad(lambda f: -jnp.mean(jnp.sum(post * spec.guide.log_prob(f, batch.x, hall),
                                                                axis=0))))(phi))
    bias, noise = {}, {}
    for k in (1, 4, 32):
        g = flat_draws(_draws(rws(spec.model, spec.guide, num_samples=k), params, batch, seed=10 + k)
                       .grads[GUIDE])
        bias[k] = float(np.linalg.norm(g.mean(0) - exact))
        noise[k] = float(np.sqrt(np.sum(g.var(0, ddof=1)) / g.shape[0]))  # std. error of the norm
    print("RWS wake-φ bias ||E[ĝ] - ∇φ KL[p||q]|| by K: "
          + ", ".join(f"K={k}: {bias[k]:.4f} (±{noise[k]:.4f})" for k in bias)
          + f"; ||∇φ KL|| = {float(np.linalg.norm(exact)):.4f}")
    # K = 1: Σ w̄ ∇log q = ∇log q(h|x) has mean 0, so the bias is the whole gradient
    assert abs(bias[1] - float(np.linalg.norm(exact))) < 5 * noise[1] + ATOL
    assert bias[4] + 5 * noise[4] < bias[1]
    assert bias[32] + 5 * noise[32] < bias[4]


def test_wake_plus_sleep_is_the_average(problem):
    spec, params, batch, _ = problem
    key = jax.random.PRNGKey(7)
    g = {u: jax.jit(rws(spec.model, spec.guide, num_samples=3, phi_update=u).estimate)(params, (), key, batch).grads
         for u in PHI_UPDATES}
    avg = jax.tree_util.tree_map(lambda a, b: 0.5 * (a + b), g["wake"][GUIDE], g["sleep"][GUIDE])
    np.testing.assert_allclose(flat(g["wake+sleep"][GUIDE]), flat(avg), rtol=1e-5, atol=1e-6)
    for u in ("sleep", "wake+sleep"):
        np.testing.assert_allclose(flat(g[u][MODEL]), flat(g["wake"][MODEL]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name,factory", [
    ("wake_sleep", lambda s, k: wake_sleep(s.model, s.guide)),
    *[(f"rws {u}", lambda s, k, u=u: rws(s.model, s.guide, num_samples=k, phi_update=u))
      for u in PHI_UPDATES],
])
def test_interface(problem, name, factory):
    """JAX-integer K; grads shaped like params; OBJECTIVE; missing groups named."""
    spec, params, batch, _ = problem
    est = factory(spec, jnp.int32(2))
    out = jax.jit(est.estimate)(params, est.init(None, params, batch.x), jax.random.PRNGKey(0), batch)
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    assert np.isfinite(float(out.metrics[OBJECTIVE]))
    with pytest.raises(ValueError, match="model"):
        est.estimate({GUIDE: params[GUIDE]}, (), jax.random.PRNGKey(0), batch)


def test_bad_arguments(problem):
    spec = problem[0]
    with pytest.raises(ValueError, match="num_samples"):
        rws(spec.model, spec.guide, num_samples=0)
    with pytest.raises(ValueError, match="phi_update"):
        rws(spec.model, spec.guide, num_samples=2, phi_update="dream")
    no_sampler = LatentVariableModel(spec.model.log_prior, spec.model.log_likelihood)
    with pytest.raises(ValueError, match="model.sample"):
        wake_sleep(no_sampler, spec.guide)
    with pytest.raises(ValueError, match="model.sample"):
        rws(no_sampler, spec.guide, num_samples=2, phi_update="wake+sleep")
    rws(no_sampler, spec.guide, num_samples=2, phi_update="wake")  # wake-only RWS needs no sampler
    with pytest.raises(TypeError, match="guide"):
        rws(spec.model, object(), num_samples=2)
    with pytest.raises(TypeError, match="num_samples"):   # K is required and keyword-only
        rws(spec.model, spec.guide)
