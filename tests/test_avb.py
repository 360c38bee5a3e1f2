"""AVB (review Sec. 3.2.1 item 4, Eq. 15-16, Appendix A) against exact answers
on the linear-Gaussian model (tests/linear_gaussian.py).

The inference model is the Gaussian guide written as an implicit sampler
(h = A x + c + e^s ε; the estimator never sees log q).  The plugging check:
with the critic at its exact optimum T*(x, h) = log q_φ(h|x) − log p(h) (a
Critic built from that closed form whose ψ is a frozen copy of φ), AVB's
(θ, φ) descent directions average to −∇ of the closed-form ELBO (z-test,
tests/stats.py, with stated power); a critic term dropped, or a stale critic
(ψ from another φ), fails the same test.  Moving the φ-gradient through T's
φ-dependence is NOT a broken variant: E_q[∇_φ T*_φ] = 0 (Proposition 2 of
Mescheder et al. 2017, footnote 10), checked as a paired z-test.
"""
from __future__ import annotations

from functools import partial

import jax
from fast_jit import fast_jit
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linear_gaussian as lg
from sajax.core import CRITIC, GUIDE, MODEL, OBJECTIVE, Batch, Critic, ImplicitSampler
from sajax.estimators._avb import avb, pair_features
from sajax.models._implicit import implicit_encoder
from stats import assert_detects, assert_power, assert_same_mean, assert_unbiased

ATOL = 1e-4
STEPS = 1500
N_DRAWS = 8_000
D = lg.DATA_DIM




def _gaussian_implicit():
    """lg.guide() as a sample-only ImplicitSampler."""
    guide = lg.guide()
    return ImplicitSampler(lambda phi, key, x, n: guide.sample_and_log_prob(phi, key, x, n)[0])


def _log_ratio(psi, x, h):
    """T*(x, h) = log q_ψ(h|x) − log p(h) of the linear-Gaussian guide and prior."""
    return lg.guide().log_prob(psi, x, h) - lg.model().log_prior(None, h)


def _optimal_critic():
    """A pair critic T = ψ.scale · (log q_ψ.phi(h|x) − log p(h)): ψ = {"phi": a frozen
    copy of φ, "scale": 1} is the optimum; scale 0 drops the term."""
    def apply(psi, state, u, condition=None):
        return psi["scale"] * _log_ratio(psi["phi"], u[:, :D], u[:, D:]), state
    return Critic(apply, lambda key: ())


def _frozen(phi, scale=1.0):
    return {"phi": phi, "scale": jnp.asarray(scale)}


@fast_jit
def _setup(phi_star):
    """θ, data, a wrong φ (φ* perturbed) and the exact ELBO gradient there (one compile)."""
    theta = lg.make_theta(jax.random.PRNGKey(0))
    x = lg.make_data(theta, jax.random.PRNGKey(1))
    phi = lg.perturb(phi_star, jax.random.PRNGKey(2), 0.3)
    return theta, phi, x, lg.elbo_grad({MODEL: theta, GUIDE: phi}, x)


@pytest.fixture(scope="module")
def problem():
    phi_star = lg.exact_posterior_params(jax.jit(lg.make_theta)(jax.random.PRNGKey(0)))
    theta, phi, x, exact = _setup(phi_star)
    return {"theta": theta, "phi": phi, "x": x, "batch": Batch(x, jnp.arange(x.shape[0])),
            "exact": exact, "elbo": float(lg.mean_elbo({MODEL: theta, GUIDE: phi}, x))}


@fast_jit
def _plugged_draws(params, batch):
    """AVB with the closed-form critic over N_DRAWS keys (one compile for every ψ)."""
    est = avb(lg.model(), _gaussian_implicit(), _optimal_critic(), num_samples=1)
    keys = jax.random.split(jax.random.PRNGKey(11), N_DRAWS)
    return jax.vmap(lambda k: est.estimate(params, (), k, batch))(keys)


def _ascent(grads):
    return jax.tree_util.tree_map(jnp.negative, {MODEL: grads[MODEL], GUIDE: grads[GUIDE]})


def test_plugging_gives_the_exact_elbo_gradient(problem):
    """Appendix A: at ψ = ψ*_φ, −grads(θ, φ) is unbiased for ∇(θ, φ) L; the critic's
    value equals the ELBO on average too; broken critics fail."""
    theta, phi, batch, exact = problem["theta"], problem["phi"], problem["batch"], problem["exact"]
    params = {MODEL: theta, GUIDE: phi, CRITIC: _frozen(phi)}
    out = _plugged_draws(params, batch)
    t = assert_unbiased(_ascent(out.grads), exact, "avb at T*", atol=ATOL)
    assert_power(t, 0.05, "avb at T*")
    assert_unbiased(out.metrics[OBJECTIVE][:, None], np.array([problem["elbo"]]),
                    "avb objective = ELBO", atol=ATOL)

    dropped = _plugged_draws({**params, CRITIC: _frozen(phi, 0.0)}, batch)
    assert_detects(_ascent(dropped.grads), exact, "critic term dropped", atol=ATOL)
    stale = {**params, CRITIC: _frozen(lg.perturb(phi, jax.random.PRNGKey(3), 0.3))}
    wrong = _plugged_draws(stale, batch)
    assert_detects(_ascent(wrong.grads), exact, "stale critic ψ ≠ ψ*_φ", atol=ATOL)


def test_gradient_through_the_optimal_critic_has_mean_zero(problem):
    """Proposition 2 (footnote 10): E_q[∇_φ T*_φ(x, h)] = 0, so letting φ's gradient
    flow through T* changes no mean: paired z-test against AVB's φ-direction."""
    theta, phi, x = problem["theta"], problem["phi"], problem["x"]
    sampler = _gaussian_implicit()

    def through(key):  # ascent on E[log p(x|h) − T*_φ(x, h)], φ live in T as well
        def f(p):
            h = sampler.sample(p, key, x, 1)
            return jnp.mean(lg.model().log_likelihood(theta, x, h) - _log_ratio(p, x, h))
        return jax.grad(f)(phi)

    keys = jax.random.split(jax.random.PRNGKey(11), N_DRAWS)
    flowing = fast_jit(jax.vmap(through))(keys)
    out = _plugged_draws({MODEL: theta, GUIDE: phi, CRITIC: _frozen(phi)}, problem["batch"])
    assert_same_mean(flowing, _ascent(out.grads)[GUIDE], "E_q ∇_φ T* = 0", atol=ATOL)


def _quadratic_critic():
    """T_ψ(u) = w·[u, u_i u_j (i <= j)] + b: contains log q(h|x) − log p(h) exactly."""
    iu = np.triu_indices(D + lg.LATENT_DIM)

    def apply(psi, state, u, condition=None):
        feats = jnp.concatenate([u, (u[:, :, None] * u[:, None, :])[:, iu[0], iu[1]]], axis=-1)
        return feats @ psi["w"] + psi["b"], state

    size = (D + lg.LATENT_DIM) + len(iu[0])
    return Critic(apply, lambda key: ()), {"w": jnp.zeros(size), "b": jnp.zeros(())}


def _critic_error(critic, psi, theta, phi):
    """|T_ψ − T*| on 2000 fresh q-pairs and 2000 p-pairs, x ~ p_θ(x)."""
    kx, kq, kp = jax.random.split(jax.random.PRNGKey(6), 3)
    x = lg.make_data(theta, kx, 2000)
    h = jnp.concatenate([_gaussian_implicit().sample(phi, kq, x, 1)[0],
                         jax.random.normal(kp, x.shape[:1] + (lg.LATENT_DIM,))])
    xx = jnp.concatenate([x, x])
    return jnp.abs(critic.apply(psi, (), pair_features(xx, h, 1))[0] - _log_ratio(phi, xx, h))


def test_critic_trained_alone_reaches_the_log_ratio(problem):
    """Eq. 15's optimum: a quadratic critic trained on the critic loss only (θ, φ
    frozen, fresh x ~ p_θ(x) each step) gives T ≈ log q_φ(h|x) − log p(h)."""
    theta, phi = problem["theta"], problem["phi"]
    critic, psi0 = _quadratic_critic()
    est = avb(lg.model(), _gaussian_implicit(), critic, num_samples=4)
    opt = optax.adam(optax.cosine_decay_schedule(0.05, STEPS, alpha=0.01))

    def step(carry, key):
        psi, opt_state = carry
        kx, ke = jax.random.split(key)
        x = lg.make_data(theta, kx, 128)
        g = est.estimate({MODEL: theta, GUIDE: phi, CRITIC: psi}, (), ke, x).grads[CRITIC]
        upd, opt_state = opt.update(g, opt_state)
        return (optax.apply_updates(psi, upd), opt_state), None

    (psi, _), _ = fast_jit(lambda c, ks: jax.lax.scan(step, c, ks))(
        (psi0, opt.init(psi0)), jax.random.split(jax.random.PRNGKey(5), STEPS))
    err = np.asarray(fast_jit(partial(_critic_error, critic))(psi, theta, phi))
    print(f"critic |T - T*|: median {np.median(err):.3f}, 95% {np.quantile(err, 0.95):.3f}, max {err.max():.3f}")
    assert np.quantile(err, 0.95) < 0.15 and np.median(err) < 0.05


# --------------------------------------------------------------------------
# Interface


def _linear_critic():
    """V_ψ(u) = u·ψ.w + ψ.b (cheap to compile; the Flax pieces under test are elsewhere)."""
    return Critic(lambda psi, s, u, condition=None: (u @ psi["w"] + psi["b"], s), lambda key: ())


def test_shapes_groups_and_metrics_with_flax_models(problem):
    """The Flax implicit encoder and a critic on [x, h]: every group gets a
    same-shaped finite descent direction; metrics are scalars; extra groups get zeros."""
    enc = implicit_encoder(D, lg.LATENT_DIM, hidden=(8,))
    critic = _linear_critic()
    est = avb(lg.model(), enc.sampler, critic, num_samples=3)

    @fast_jit
    def run(theta, key):
        k = jax.random.split(key, 4)
        params = {MODEL: theta, GUIDE: enc.init(k[0]), "other": jnp.ones(3),
                  CRITIC: {"w": jnp.ones(D + lg.LATENT_DIM), "b": jnp.zeros(())}}
        x = lg.make_data(theta, k[2], 5)
        return params, est.estimate(params, est.init(k[3], params, x), k[3], x)

    params, out = run(problem["theta"], jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    for g, p in zip(jax.tree_util.tree_leaves(out.grads), jax.tree_util.tree_leaves(params)):
        assert g.shape == p.shape and bool(jnp.all(jnp.isfinite(g)))
    assert not np.any(np.asarray(out.grads["other"]))
    assert {"objective", "avb_elbo", "critic_loss", "log_likelihood", "kl_estimate"} <= set(out.metrics)
    assert all(np.shape(v) == () for v in out.metrics.values())
    assert float(out.metrics["critic_loss"]) > 0.0


def test_bad_arguments_raise(problem):
    m, q, c = lg.model(), _gaussian_implicit(), _quadratic_critic()[0]
    with pytest.raises(ValueError, match="num_samples"):
        avb(m, q, c, num_samples=0)
    with pytest.raises(TypeError, match="num_samples"):   # K is required
        avb(m, q, c)
    with pytest.raises(TypeError, match="guide"):
        avb(m, object(), c, num_samples=1)
    with pytest.raises(TypeError, match="critic"):
        avb(m, q, object(), num_samples=1)
    with pytest.raises(ValueError, match="unconditional"):
        avb(m, q, c._replace(num_classes=3), num_samples=1)
    with pytest.raises(TypeError, match="model"):
        avb(object(), q, c, num_samples=1)
    with pytest.raises(ValueError, match="prior_sample"):
        avb(m._replace(prior=None, sample=None), q, c, num_samples=1)
    est = avb(m, q, c, num_samples=1)
    with pytest.raises(ValueError, match="critic"):
        est.estimate({MODEL: problem["theta"], GUIDE: problem["phi"]}, (), jax.random.PRNGKey(2), problem["x"])
