"""ALI / BiGAN (review Sec. 3.2.4 item 4, Eq. 28 on the joint) against exact answers.

A 1-D analytic case: data x ~ N(m0, s0²), a Gaussian encoder z = a x + c + s_e ε
and a Gaussian decoder x = w z + b + s_d ε, z ~ N(0, 1), so both joints q(x, z)
and p(x, z) are known Gaussians and log q/p is quadratic in (x, z).

* the critic trained alone reaches the optimal discriminator's logit
  V* = log q(x, z) − log p(x, z);
* for a fixed quadratic critic, the estimator's descent directions for
  (θ, φ) (minimax and non-saturating) and ψ average to the exact gradients of
  the expected losses, computed by 2-D Gauss-Hermite quadrature (z-test,
  tests/stats.py); the non-saturating draws fail against the minimax gradient.
"""
from __future__ import annotations

import math

import jax
from fast_jit import fast_jit
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sajax._densities import diag_normal_log_prob
from sajax.core import CRITIC, ENCODER, GENERATOR, OBJECTIVE, Critic, ImplicitSampler
from sajax.estimators._ali import ali, ali_reconstruction
from sajax.estimators._avb import pair_features
from sajax.models._implicit import gaussian_encoder, implicit_encoder, mlp_decoder
from stats import assert_detects, assert_power, assert_unbiased




M0, S0 = 0.5, 1.0
ATOL = 1e-4
N_DRAWS = 4_000
STEPS = 1500
THETA = {"w": jnp.asarray(0.9), "b": jnp.asarray(0.3), "log_s": jnp.asarray(math.log(0.6))}
PHI = {"a": jnp.asarray(0.6), "c": jnp.asarray(-0.2), "log_s": jnp.asarray(math.log(0.7))}
PSI = {"w": jnp.asarray([0.3, -0.2, -0.1, 0.15, 0.05]), "b": jnp.asarray(0.1)}

ENC = ImplicitSampler(lambda p, k, x, n: p["a"] * x + p["c"] + jnp.exp(p["log_s"])
                      * jax.random.normal(k, (n,) + x.shape))
DEC = ImplicitSampler(lambda t, k, z, n: t["w"] * z + t["b"] + jnp.exp(t["log_s"])
                      * jax.random.normal(k, (n,) + z.shape))


def _quadratic(psi, u):
    """V_ψ(x, z) = ψ.w · [x, z, x², x z, z²] + ψ.b for u = [x, z] ``[M, 2]``."""
    x, z = u[..., 0], u[..., 1]
    return jnp.stack([x, z, x * x, x * z, z * z], axis=-1) @ psi["w"] + psi["b"]


CRITIC_Q = Critic(lambda psi, s, u, condition=None: (_quadratic(psi, u), s), lambda key: ())


def _log_ratio(x, z):
    """log q(x, z) − log p(x, z) of the two Gaussian joints, x and z ``[M, 1]``."""
    log_q = (diag_normal_log_prob(x, M0, jnp.log(S0))
             + diag_normal_log_prob(z, PHI["a"] * x + PHI["c"], PHI["log_s"]))
    log_p = diag_normal_log_prob(z, 0.0, 0.0) + diag_normal_log_prob(x, THETA["w"] * z + THETA["b"], THETA["log_s"])
    return log_q - log_p


def _data(key, n):
    return M0 + S0 * jax.random.normal(key, (n, 1))


def _params(psi=PSI):
    return {GENERATOR: THETA, ENCODER: PHI, CRITIC: psi}


# --------------------------------------------------------------------------
# The optimal discriminator


@fast_jit
def _train_critic():
    """ψ after STEPS Adam steps on the estimator's critic direction only (θ, φ frozen)."""
    est = ali(DEC, ENC, CRITIC_Q, 1)
    opt = optax.adam(optax.cosine_decay_schedule(0.05, STEPS, alpha=0.01))
    psi0 = jax.tree_util.tree_map(jnp.zeros_like, PSI)

    def step(carry, key):
        psi, opt_state = carry
        kx, ke = jax.random.split(key)
        g = est.estimate(_params(psi), (), ke, _data(kx, 256)).grads[CRITIC]
        upd, opt_state = opt.update(g, opt_state)
        return (optax.apply_updates(psi, upd), opt_state), None

    (psi, _), _ = jax.lax.scan(step, (psi0, opt.init(psi0)), jax.random.split(jax.random.PRNGKey(0), STEPS))
    kx, ke, kz, kd = jax.random.split(jax.random.PRNGKey(1), 4)
    x = _data(kx, 2000)
    z_p = jax.random.normal(kz, (2000, 1))
    xs = jnp.concatenate([x, DEC.sample(THETA, kd, z_p, 1)[0]])
    zs = jnp.concatenate([ENC.sample(PHI, ke, x, 1)[0], z_p])
    return jnp.abs(_quadratic(psi, pair_features(xs, zs, 1)) - _log_ratio(xs, zs))


def test_critic_trained_alone_is_the_optimal_discriminator():
    """D* = q/(q + p) on the joint, i.e. V* = log q(x, z) − log p(x, z), on real and fake pairs."""
    err = np.asarray(_train_critic())
    print(f"|V - V*|: median {np.median(err):.3f}, 95% {np.quantile(err, 0.95):.3f}, max {err.max():.3f}")
    assert np.quantile(err, 0.95) < 0.1 and np.median(err) < 0.05


# --------------------------------------------------------------------------
# Gradients against quadrature


def _expected_logits(players, psi, order=40):
    """V on the Gauss-Hermite nodes of q(x, z) and p(x, z): (weights [M], v_real [M], v_fake [M])."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(order)
    n1, n2 = (jnp.asarray(a, jnp.float32) for a in np.meshgrid(nodes, nodes, indexing="ij"))
    w = jnp.asarray(np.outer(weights, weights).ravel() / (2 * math.pi), jnp.float32)
    theta, phi = players[GENERATOR], players[ENCODER]
    x_q = M0 + S0 * n1.ravel()
    z_q = phi["a"] * x_q + phi["c"] + jnp.exp(phi["log_s"]) * n2.ravel()
    z_p = n1.ravel()
    x_p = theta["w"] * z_p + theta["b"] + jnp.exp(theta["log_s"]) * n2.ravel()
    return w, _quadratic(psi, jnp.stack([x_q, z_q], -1)), _quadratic(psi, jnp.stack([x_p, z_p], -1))


def _exact_losses(players, psi):
    """(F, minimax player loss F, non-saturating player loss) as exact expectations."""
    w, v_q, v_p = _expected_logits(players, psi)
    f = w @ jax.nn.log_sigmoid(v_q) + w @ jax.nn.log_sigmoid(-v_p)
    return f, f, -(w @ jax.nn.log_sigmoid(v_p) + w @ jax.nn.log_sigmoid(-v_q))


@fast_jit
def _gradient_draws():
    players = {GENERATOR: THETA, ENCODER: PHI}
    exact = {"critic": jax.grad(lambda p: -_exact_losses(players, p)[0])(PSI),
             "minimax": jax.grad(lambda q: _exact_losses(q, PSI)[1])(players),
             "non-saturating": jax.grad(lambda q: _exact_losses(q, PSI)[2])(players)}
    keys = jax.random.split(jax.random.PRNGKey(3), N_DRAWS)
    x = _data(jax.random.PRNGKey(4), 32 * N_DRAWS).reshape(N_DRAWS, 32, 1)
    draws = {}
    for loss in ("minimax", "non-saturating"):
        est = ali(DEC, ENC, CRITIC_Q, 1, generator_loss=loss)
        draws[loss] = jax.vmap(lambda k, xb: est.estimate(_params(), (), k, xb))(keys, x).grads
    return exact, draws


def test_gradients_match_the_exact_expected_losses():
    """ψ: −∇F; (θ, φ): ∇F (minimax) or ∇ of the swapped-label loss (non-saturating);
    z-tests with stated power, and the NS draws must fail against the minimax gradient."""
    exact, draws = _gradient_draws()
    players = lambda g: {GENERATOR: g[GENERATOR], ENCODER: g[ENCODER]}  # noqa: E731
    t = assert_unbiased(draws["minimax"][CRITIC], exact["critic"], "ali critic", atol=ATOL)
    assert_power(t, 0.1, "ali critic")
    for loss in ("minimax", "non-saturating"):
        t = assert_unbiased(players(draws[loss]), exact[loss], f"ali players ({loss})", atol=ATOL)
        assert_power(t, 0.1, f"ali players ({loss})")
    assert_detects(players(draws["non-saturating"]), exact["minimax"], "NS vs minimax", atol=ATOL)


# --------------------------------------------------------------------------
# Interface


def _linear_critic():
    """V_ψ(u) = u·ψ.w + ψ.b (cheap to compile; the Flax pieces under test are elsewhere)."""
    return Critic(lambda psi, s, u, condition=None: (u @ psi["w"] + psi["b"], s), lambda key: ())


def test_shapes_groups_metrics_and_reconstruction():
    """BiGAN with the Flax encoder and decoder: same-shaped finite grads for every group (zeros for
    groups it does not use), scalar metrics, and G(E(x)) shaped like x."""
    enc, dec = gaussian_encoder(6, 2, (8,), deterministic=True), mlp_decoder(2, 6, (8,), output="sigmoid")
    critic = _linear_critic()
    est = ali(dec.sampler, enc.sampler, critic, latent_dim=2)

    @fast_jit
    def run(key):
        k = jax.random.split(key, 5)
        params = {GENERATOR: dec.init(k[0]), ENCODER: enc.init(k[1]), "other": jnp.ones(2),
                  CRITIC: {"w": jnp.ones(8), "b": jnp.zeros(())}}
        x = jax.random.uniform(k[3], (5, 6))
        out = est.estimate(params, est.init(k[4], params, x), k[4], x)
        return params, out, ali_reconstruction(dec.sampler, enc.sampler, params, k[4], x)

    params, out, rec = run(jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    for g, p in zip(jax.tree_util.tree_leaves(out.grads), jax.tree_util.tree_leaves(params)):
        assert g.shape == p.shape and bool(jnp.all(jnp.isfinite(g)))
    assert not np.any(np.asarray(out.grads["other"]))
    assert {OBJECTIVE, "critic_loss", "generator_loss", "d_real", "d_fake"} <= set(out.metrics)
    assert all(np.shape(v) == () for v in out.metrics.values())
    assert float(out.metrics[OBJECTIVE]) == pytest.approx(-float(out.metrics["critic_loss"]))
    assert rec.shape == (5, 6) and bool(jnp.all((rec >= 0) & (rec <= 1)))


def test_errors():
    x = jnp.ones((4, 1))
    with pytest.raises(ValueError, match="generator_loss"):
        ali(DEC, ENC, CRITIC_Q, 1, generator_loss="wasserstein")
    with pytest.raises(ValueError, match="latent_dim"):
        ali(DEC, ENC, CRITIC_Q, 0)
    with pytest.raises(TypeError, match="encoder"):
        ali(DEC, object(), CRITIC_Q, 1)
    with pytest.raises(TypeError, match="critic"):
        ali(DEC, ENC, object(), 1)
    with pytest.raises(ValueError, match="latent_dim=3"):          # encoder gives width 1
        ali(DEC, ENC, CRITIC_Q, 3).estimate(_params(), (), jax.random.PRNGKey(0), x)
    wide = ImplicitSampler(lambda t, k, z, n: jnp.zeros((n, z.shape[0], 2)))
    with pytest.raises(ValueError, match="decoder"):
        ali(wide, ENC, CRITIC_Q, 1).estimate(_params(), (), jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="encoder"):
        ali(DEC, ENC, CRITIC_Q, 1).estimate({GENERATOR: THETA, CRITIC: PSI}, (), jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="GENERATOR|generator"):
        ali_reconstruction(DEC, ENC, {ENCODER: PHI}, jax.random.PRNGKey(0), x)


def test_adapter_arguments_and_stochastic_encoder():
    """The Flax adapters check their sizes and names at build time; ALI's Gaussian
    encoder draws distinct z per sample, the deterministic one broadcasts."""
    with pytest.raises(ValueError, match="x_dim"):
        implicit_encoder(0, 2)
    with pytest.raises(ValueError, match="noise_dim"):
        implicit_encoder(3, 2, noise_dim=0)
    with pytest.raises(ValueError, match="output"):
        mlp_decoder(2, 3, output="relu")
    with pytest.raises(ValueError, match="activation"):
        gaussian_encoder(3, 2, activation="nope")
    enc = gaussian_encoder(3, 2, (4,))
    z = fast_jit(lambda k: enc.sampler.sample(enc.init(k), k, jnp.ones((5, 3)), 2))(jax.random.PRNGKey(0))
    assert z.shape == (2, 5, 2) and not np.allclose(z[0], z[1])


def test_a_plain_function_critic_gives_the_same_numbers():
    """ALI's critic may be a plain (ψ, u) -> v function (stateless, no condition):
    the same grads and metrics as the Critic built from it."""
    x, key = _data(jax.random.PRNGKey(8), 16), jax.random.PRNGKey(9)
    ref = ali(DEC, ENC, CRITIC_Q, 1).estimate(_params(), (), key, x)
    est = ali(DEC, ENC, _quadratic, 1)
    out = est.estimate(_params(), est.init(key, _params(), x), key, x)
    for a, b in zip(jax.tree_util.tree_leaves((out.grads, out.metrics)), jax.tree_util.tree_leaves((ref.grads, ref.metrics))):
        np.testing.assert_array_equal(a, b)
