"""ALI / BiGAN: adversarial learning with an inference mechanism (review
Sec. 3.2.4 item 4; Dumoulin et al. 2017, Donahue et al. 2016).

A GAN has no encoder.  ALI/BiGAN learn a generator G_θ (decoder, x given z)
and an encoder E_φ (z given x) together, by a discriminator D_ψ(x, z) =
σ(V_ψ(x, z)) on *joint* pairs: the encoder's joint q(x, z) = p̃(x) q_φ(z|x)
(real) against the decoder's p(x, z) = p(z) p_θ(x|z) (fake), p(z) = N(0, I).
Eq. 28 on the joint:

    min_{θ,φ} max_ψ F(θ, φ, ψ) = E_{p̃(x) q_φ(z|x)} log D_ψ(x, z) + E_{p(z) p_θ(x|z)} log(1 − D_ψ(x, z)).

For fixed (θ, φ) the optimal critic is V* = log q(x, z) − log p(x, z) (as for
Eq. 28), and at the saddle point q(x, z) = p(x, z), so E_φ inverts G_θ.
``generator_loss="non-saturating"`` (default, as in the ALI/BiGAN papers
and the logD trick of Sec. 3.2.4) lets (θ, φ) maximize
E_p log D(G(z), z) + E_q log(1 − D(x, E(x))) instead (labels swapped).
BiGAN is ALI with a deterministic encoder z = E_φ(x) and decoder x = G_θ(z)
(``sajax.models._implicit.gaussian_encoder(..., deterministic=True)``, ``mlp_decoder``).

Encoder and decoder are :class:`sajax.core.ImplicitSampler` s (reparameterized
or deterministic): ``encoder.sample(φ, key, x, 1) -> z [1, B, latent_dim]``,
``decoder.sample(θ, key, z, 1) -> x [1, B, D...]``.  The critic is any
:class:`sajax.core.Critic` applied to the feature-wise concatenation [x, z]
(:func:`sajax.estimators._avb.pair_features`), one logit per pair.

One :class:`~sajax.core.Estimate` holds the descent directions of
``{GENERATOR: θ, ENCODER: φ, CRITIC: ψ}`` from one critic call on the 2B
pairs (simultaneous updates); alternate players with ``sajax.sa.per_group(...,
schedule=sajax.sa.alternate(critic=k, generator=1, encoder=1))``.  State: the
critic's mutable state.  :func:`ali_reconstruction` gives G(E(x)).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from sajax.core import Critic, ImplicitSampler
  >>> enc = ImplicitSampler(lambda ph, k, x, n: jnp.broadcast_to(x @ ph, (n, x.shape[0], 2)))
  >>> dec = ImplicitSampler(lambda th, k, z, n: jnp.broadcast_to(z @ th, (n, z.shape[0], 3)))
  >>> critic = Critic(lambda ps, s, u: (u @ ps, s), lambda k: ())
  >>> est = ali(dec, enc, critic, latent_dim=2)
  >>> params = {"generator": jnp.ones((2, 3)), "encoder": jnp.ones((3, 2)), "critic": jnp.zeros(5)}
  >>> x = jnp.ones((4, 3))
  >>> out = jax.jit(est.estimate)(params, est.init(jax.random.PRNGKey(0), params, x), jax.random.PRNGKey(1), x)
  >>> sorted(out.grads), round(float(out.metrics["objective"]), 4)
  (['critic', 'encoder', 'generator'], -1.3863)
  >>> ali_reconstruction(dec, enc, params, jax.random.PRNGKey(2), x).shape
  (4, 3)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sajax.core import (
    CRITIC,
    ENCODER,
    GENERATOR,
    OBJECTIVE,
    Estimate,
    Estimator,
    batch_data,
    check_positive_int,
    complete_grads,
    require_groups,
)
from sajax.estimators._adversarial import players_grads
from sajax.estimators._avb import as_implicit, check_critic, pair_scores
from sajax.estimators._common import critic_state_init, logistic_value

__all__ = ["ali", "ali_reconstruction", "GENERATOR_LOSSES"]

GENERATOR_LOSSES = ("non-saturating", "minimax")


def joint_value(v_real, v_fake):
    """F of Eq. 28 on the joint: mean log σ(V(real)) + mean log σ(−V(fake))."""
    return logistic_value(v_real, v_fake)


def player_loss(v_real, v_fake, kind: str):
    """What (θ, φ) descend: F itself ("minimax"), or −F with the labels swapped
    ("non-saturating": −E_p log D(G(z), z) − E_q log(1 − D(x, E(x))))."""
    if kind == "minimax":
        return joint_value(v_real, v_fake)
    return -joint_value(v_fake, v_real)


def _encode(encoder, phi, key, x, latent_dim: int):
    """z = E_φ(x) ``[B, latent_dim]``; ValueError if the encoder's width is not ``latent_dim``."""
    z = encoder.sample(phi, key, x, 1)
    if not isinstance(z, jax.Array) or z.ndim != 3 or z.shape[-1] != latent_dim:
        raise ValueError(f"encoder must return one latent array [1, B, latent_dim={latent_dim}], "
                         f"got {jax.tree_util.tree_map(jnp.shape, z)}; check latent_dim")
    return z[0]


def _decode(decoder, theta, key, z, x_shape):
    """x = G_θ(z) ``[B, D...]``; ValueError unless shaped like the data batch ``x_shape``."""
    x = decoder.sample(theta, key, z, 1)
    if not isinstance(x, jax.Array) or tuple(x.shape[1:]) != tuple(x_shape):
        raise ValueError(f"decoder must return x shaped like the data [1, {', '.join(map(str, x_shape))}], "
                         f"got {jax.tree_util.tree_map(jnp.shape, x)}; check latent_dim and the decoder")
    return x[0]


def ali_reconstruction(decoder, encoder, params, key, x):
    """G_θ(E_φ(x)) ``[B, D...]``: the reconstructions that show what ALI/BiGAN infer.

    ``params`` holds the groups GENERATOR and ENCODER (extra groups are ignored).
    """
    theta, phi = require_groups(params, (GENERATOR, ENCODER), "ali_reconstruction")
    k_e, k_g = jax.random.split(key)
    z = as_implicit(encoder, "encoder").sample(phi, k_e, x, 1)[0]
    return as_implicit(decoder, "decoder").sample(theta, k_g, z, 1)[0]


def _joint_scores(encoder, decoder, critic, latent_dim, keys, x, state):
    """``(players {GENERATOR, ENCODER}, ψ) -> (v [2B], new state)``: V_ψ on the B real
    pairs (x, E_φ(x)) then the B fake pairs (G_θ(z), z), z ~ N(0, I), in one call."""
    k_e, k_z, k_g = keys

    def scores(players, psi):
        z_e = _encode(encoder, players[ENCODER], k_e, x, latent_dim)
        z_p = jax.random.normal(k_z, (x.shape[0], latent_dim), z_e.dtype)
        x_g = _decode(decoder, players[GENERATOR], k_g, z_p, x.shape)
        return pair_scores(critic, psi, state, jnp.concatenate([x, x_g]), jnp.concatenate([z_e, z_p]), 1)

    return scores


def ali(decoder, encoder, critic, latent_dim: int, *,
        generator_loss: str = "non-saturating") -> Estimator:
    """ALI / BiGAN (Sec. 3.2.4 item 4; Dumoulin et al. 2017, Donahue et al. 2016).

    Per example, a real pair (x, z = E_φ(x)) and a fake pair (x = G_θ(z), z ~ N(0, I));
    with v = V_ψ on them and F = mean log σ(v_real) + mean log σ(−v_fake) (Eq. 28 on
    the joint), the descent directions are

      ψ:     −∇_ψ F                          (the critic ascends F; samples held fixed)
      θ, φ:  ∇_{θ,φ} F          ("minimax")  or
             −∇_{θ,φ} [mean log σ(v_fake) + mean log σ(−v_real)]   ("non-saturating"),

    backpropagated through the reparameterized samples into the generator and
    the encoder (ψ held fixed).

    Args:
      decoder: G_θ, an :class:`~sajax.core.ImplicitSampler` of x given z
        (``sample(θ, key, z [B, latent_dim], 1) -> [1, B, D...]``).
      encoder: E_φ, an :class:`~sajax.core.ImplicitSampler` (or a
        ConditionalSampler) of z given x, returning ``[1, B, latent_dim]``.
      critic: V_ψ on [x, z] (:class:`~sajax.core.Critic`, one logit per pair).
      latent_dim: width of z ~ p(z) = N(0, I).
      generator_loss: "non-saturating" or "minimax".

    Returns:
      Estimator over ``{GENERATOR: θ, ENCODER: φ, CRITIC: ψ}``; state: the critic's
      mutable state.  Metrics: ``objective`` = F (the critic's value, higher is
      better for the critic; −log 4 + 2 JS(q(x,z) ‖ p(x,z)) at the optimal critic),
      ``critic_loss`` = −F, ``generator_loss``, ``d_real``, ``d_fake`` (mean D).

    Raises:
      ValueError: unknown ``generator_loss``, ``latent_dim`` < 1; at trace time an
        encoder width ≠ ``latent_dim`` or a decoder output not shaped like the data,
        and missing parameter groups.
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    if generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"generator_loss must be one of {GENERATOR_LOSSES}, got {generator_loss!r}")
    decoder, encoder = as_implicit(decoder, "decoder"), as_implicit(encoder, "encoder")
    critic = check_critic(critic)

    def estimate(params, state, key, batch):
        theta, phi, psi = require_groups(params, (GENERATOR, ENCODER, CRITIC), "ali")
        x = batch_data(batch)
        scores = _joint_scores(encoder, decoder, critic, latent_dim, jax.random.split(key, 3), x, state)
        players = _players(scores, x.shape[0], generator_loss)
        g_players, g_psi, ((value, g_loss), v, state) = players_grads(
            players, {GENERATOR: theta, ENCODER: phi}, psi)
        grads = complete_grads(params, {**g_players, CRITIC: g_psi})
        d, b = jax.nn.sigmoid(v), x.shape[0]
        metrics = {OBJECTIVE: -value, "critic_loss": value, "generator_loss": g_loss,
                   "d_real": jnp.mean(d[:b]), "d_fake": jnp.mean(d[b:])}
        return Estimate(grads, state, metrics)

    return Estimator(critic_state_init(critic), estimate)


def _players(scores, b: int, generator_loss: str):
    """The two-player game of ALI for :func:`~sajax.estimators._adversarial.players_grads`:
    ``(θφ, ψ) -> ((critic loss −F, (θ, φ)'s loss), (losses, v, new state))`` from one
    critic call on the 2B pairs (B real, then B fake)."""

    def players(generators, psi):
        v, new_state = scores(generators, psi)
        losses = (-joint_value(v[:b], v[b:]), player_loss(v[:b], v[b:], generator_loss))
        return losses, (losses, v, new_state)

    return players
