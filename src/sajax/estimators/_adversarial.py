"""Adversarial learning of implicit models (review Sec. 3.2.4): GAN, f-GAN/VDM, WGAN, WGAN-GP, hinge, PacGAN.

A generator x = G_θ(ε) (:class:`sajax.core.ImplicitGenerator`, Eq. 5) plays
against a critic V_ψ(x) (:class:`sajax.core.Critic`).  Every factory here
returns a :class:`sajax.core.Estimator` over ``params = {GENERATOR: θ,
CRITIC: ψ}`` (the groups ``"generator"`` and ``"critic"``):

* :func:`gan`: the minimax game of Eq. 28 (Goodfellow et al. 2014), with the
  generator's minimax loss or the non-saturating "logD trick";
* :func:`fgan`: variational divergence minimization, VDM (Algorithm 6,
  Eq. 33-34; Nowozin et al. 2016) for the f-divergences of :data:`DIVERGENCES`
  (the table, its conventions and the activations live in ``_divergences``),
  with the principled output activation g_f(v) = f'(e^v) of Eq. 36 (under which
  the optimal critic is V* = log p0/pθ for EVERY f) or Nowozin et al.'s Table 2;
* :func:`wgan`: the Wasserstein GAN of Eq. 37 (Arjovsky et al. 2017) with
  weight clipping as the optax projection :func:`clip_critic` (in the
  optimizer; ``wgan(monitor_clip=c)`` only reports whether it is in place);
* :func:`wgan_gp`: the gradient penalty of Gulrajani et al. (2017);
* :func:`hinge_gan`: the hinge loss (Lim & Ye 2017; Miyato et al. 2018).
  SN-GAN is not a loss: it is any of these with a spectral-norm critic, whose
  power-iteration vectors this module threads as its state;
* PacGAN (Lin et al. 2018): ``pack=m`` on every factory; the critic scores m
  samples concatenated along the feature axis (:func:`pack_samples`).

Design.
* One SA iteration computes BOTH players' descent directions from one draw:
  ``grads[CRITIC]`` = ∇_ψ critic_loss, ``grads[GENERATOR]`` = ∇_θ
  generator_loss (one forward pass, two pullbacks), packed in one
  :class:`~sajax.core.Estimate` (simultaneous updates, Algorithm 6).  The
  alternation of players (WGAN's n_critic = 5) is NOT inside the estimator:
  it is the optimizer's ``sajax.sa.per_group({...},
  schedule=sajax.sa.alternate(critic=5, generator=1))``, whose gate keeps an
  idle group's parameters and Adam state bit-identical.
* The estimator's state is the critic's mutable state (spectral-norm vectors;
  ``()`` if none): ``init`` returns ``critic.init_state(key)`` (the training
  set is ignored) and ``estimate`` threads it: the one critic call on the real
  and fake samples concatenated, ``[2B', ...]``, returns the updated state.
* Losses are small pure functions of critic outputs ``v`` ``[B']``
  (:func:`vdm_objective`, :func:`vdm_generator_loss`,
  :func:`wasserstein_objective`, :func:`hinge_critic_loss`, ...), shared with
  the conditional family (``_conditional_gan``).
* metrics (scalars, natural sign): ``objective`` (higher is better for the
  critic: the VDM bound on D_f, Eq. 34; the GAN value of Eq. 28; the critic's
  estimate of W1; for hinge a lower bound on 2·TV), ``critic_loss``,
  ``generator_loss`` (what each player descends), ``d_real`` / ``d_fake``
  (mean critic output V_ψ on real / fake, a logit for the GAN family).

Shapes: ``batch.x`` ``[B, D...]``; the generator draws B fakes; with
``pack=m`` the critic sees ``[B/m, D..., m·D_last]``; v is ``[B/m]`` (or
``[B/m, 1]``).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from sajax.core import Critic, ImplicitGenerator
  >>> gen = ImplicitGenerator(lambda th, key, n: th["mu"] + jax.random.normal(key, (n, 1)))
  >>> crit = Critic(lambda ps, st, x: (ps["w"] * x[:, 0], st), lambda key: ())   # unconditional: no condition
  >>> est = fgan(gen, crit, divergence="kl")
  >>> params = {"generator": {"mu": jnp.zeros(())}, "critic": {"w": jnp.ones(())}}
  >>> out = jax.jit(est.estimate)(params, est.init(None, params, None), jax.random.PRNGKey(0), jnp.ones((4, 1)))
  >>> sorted(out.metrics)
  ['critic_loss', 'd_fake', 'd_real', 'generator_loss', 'objective', 'vdm_bound']
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sajax.core import (
    CRITIC,
    GENERATOR,
    OBJECTIVE,
    Critic,
    Estimate,
    Estimator,
    ImplicitGenerator,
    as_critic,
    batch_data,
    check_positive_int,
    complete_grads,
    require_groups,
)
from sajax.estimators._common import critic_state_init
from sajax.estimators._divergences import (
    DIVERGENCES,
    Activation,
    Divergence,
    check_activation,
    conjugate_of_activation,
)

__all__ = ["gan", "fgan", "wgan", "wgan_gp", "hinge_gan", "clip_critic", "pack_samples",
           "DIVERGENCES", "Divergence", "Activation", "check_activation"]

# --------------------------------------------------------------------------
# Losses: small pure functions of critic outputs v_real [B'], v_fake [B']


class Losses(NamedTuple):
    """One iteration's losses: what each player DESCENDS, and the objective
    (natural sign, higher is better for the critic)."""

    critic: jax.Array
    generator: jax.Array
    objective: jax.Array


def vdm_objective(divergence: str, act: Activation, v_real, v_fake):
    """F_f = mean g_f(v_real) - mean f†(g_f(v_fake)) (Eq. 34; Eq. 36 for the
    principled g_f): a lower bound on D_f[p0 || pθ] (Eq. 31), tight at the
    optimal critic; for ``"gan"`` it is F_GAN of Eq. 28."""
    return jnp.mean(act.g(v_real)) - jnp.mean(conjugate_of_activation(divergence, act, v_fake))


def vdm_generator_loss(divergence: str, act: Activation, v_fake, kind: str):
    """The generator's descent loss.  ``"minimax"``: -mean f†(g_f(v_fake)),
    the θ-part of F_f (Algorithm 6); ``"non-saturating"``: -mean g_f(v_fake)
    (Nowozin et al. 2016, Sec. 3.2; for "gan" it is -E log D(G(ε)), the logD
    trick of Goodfellow et al. 2014)."""
    if kind == "minimax":
        return -jnp.mean(conjugate_of_activation(divergence, act, v_fake))
    return -jnp.mean(act.g(v_fake))


def vdm_losses(divergence: str, act: Activation, kind: str, v_real, v_fake) -> Losses:
    """Losses of VDM / GAN (Algorithm 6): the critic ascends F_f, the generator descends it."""
    value = vdm_objective(divergence, act, v_real, v_fake)
    return Losses(-value, vdm_generator_loss(divergence, act, v_fake, kind), value)


def wasserstein_objective(v_real, v_fake):
    """mean v_real - mean v_fake (Eq. 37): the critic's estimate of W1 when V is 1-Lipschitz."""
    return jnp.mean(v_real) - jnp.mean(v_fake)


def wasserstein_generator_loss(v_fake):
    """-mean v_fake: the θ-part of Eq. 37 (also the hinge GAN's generator loss)."""
    return -jnp.mean(v_fake)


def wasserstein_losses(v_real, v_fake) -> Losses:
    value = wasserstein_objective(v_real, v_fake)
    return Losses(-value, wasserstein_generator_loss(v_fake), value)


def hinge_critic_loss(v_real, v_fake):
    """mean relu(1 - v_real) + mean relu(1 + v_fake) (Lim & Ye 2017; Miyato et al. 2018)."""
    return jnp.mean(jax.nn.relu(1.0 - v_real)) + jnp.mean(jax.nn.relu(1.0 + v_fake))


def hinge_losses(v_real, v_fake) -> Losses:
    """Hinge GAN.  objective = 2 - critic loss, a lower bound on 2·TV(p0, pθ)
    (tight at the optimal critic V = sign(p0 - pθ))."""
    loss = hinge_critic_loss(v_real, v_fake)
    return Losses(loss, wasserstein_generator_loss(v_fake), 2.0 - loss)


def gradient_penalty(score, x_hat):
    """mean_i (||∇_x V(x̂_i)||_2 - 1)² (Gulrajani et al. 2017); ``score``:
    x [B', ...] -> v [B'] with examples scored independently.  Differentiable
    in the critic's parameters (double backpropagation)."""
    grads = jax.grad(lambda x: jnp.sum(score(x)))(x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


# --------------------------------------------------------------------------
# Plumbing shared by every adversarial estimator (also _conditional_gan)


def pack_samples(x, m: int, who: str = "pack"):
    """PacGAN packing (Lin et al. 2018): ``[B, D..., D_last] -> [B/m, D..., m·D_last]``,
    m consecutive samples concatenated along the last (feature/channel) axis.

    ValueError if m does not divide B (shapes are static: raised at trace time).
    """
    b = x.shape[0]
    if m == 1:
        return x
    if b % m:
        raise ValueError(f"{who}: pack={m} must divide the batch size, got a batch of {b}")
    if x.ndim < 2:
        raise ValueError(f"{who}: samples must be [B, D...] to be packed, got shape {x.shape}")
    grouped = jnp.moveaxis(x.reshape((b // m, m) + x.shape[1:]), 1, -2)
    return grouped.reshape(grouped.shape[:-2] + (m * x.shape[-1],))


def score_vector(v, n: int, who: str):
    """Critic output as ``[n]`` (``[n]`` or ``[n, 1]`` accepted), else ValueError."""
    if v.shape == (n, 1):
        return v[:, 0]
    if v.shape != (n,):
        raise ValueError(f"{who}: the critic must return one score per example, shape [{n}] or "
                         f"[{n}, 1]; got {v.shape}")
    return v


def critic_scores(critic: Critic, psi, state, x_real, x_fake, c_real=None, c_fake=None):
    """One critic call on real and fake concatenated (so mutable state, e.g.
    spectral-norm vectors, advances once): ``(v_real, v_fake, state)``,
    v leaves ``[B', ...]``."""
    n = x_real.shape[0]
    x = jnp.concatenate([x_real, x_fake], axis=0)
    c = None if c_real is None else jnp.concatenate([c_real, c_fake], axis=0)
    v, new_state = critic.apply(psi, state, x, c) if c is not None else critic.apply(psi, state, x)
    return v[:n], v[n:], new_state


class Draw(NamedTuple):
    """One iteration's inputs besides the generator's: real x, its conditions,
    the fake conditions (None when unconditional) and the generator's key."""

    x_real: jax.Array
    c_real: Optional[jax.Array]
    c_fake: Optional[jax.Array]
    key: jax.Array


def players_grads(players, theta, psi):
    """``players(θ, ψ) -> ((critic_loss, generator_loss), aux)``; returns
    (∇_θ generator_loss, ∇_ψ critic_loss, aux) from one forward pass."""
    (losses, vjp, aux) = jax.vjp(players, theta, psi, has_aux=True)
    one, zero = jnp.ones_like(losses[0]), jnp.zeros_like(losses[0])
    _, g_psi = vjp((one, zero))
    g_theta, _ = vjp((zero, one))
    return g_theta, g_psi, aux


def adversarial_estimator(who: str, generator: ImplicitGenerator, critic: Critic, loss_fn, *,
                          pack: int = 1, penalty: float = 0.0, draw=None, scores=None,
                          condition_critic: bool = True) -> Estimator:
    """The shared SA iteration of the adversarial family.

    ``loss_fn(v_real, v_fake, draw) -> (Losses, metrics)``; ``draw(key, batch)
    -> Draw`` (default: unconditional, real x = batch.x); ``scores(v, n)``
    normalizes critic outputs (default :func:`score_vector`);
    ``condition_critic=False`` keeps the draw's labels from the critic (AC-GAN:
    the generator and the loss use them, the critic classifies).  ``penalty`` > 0
    adds λ·:func:`gradient_penalty` at random interpolates of the (packed)
    real and fake samples to the critic loss.
    """
    draw = draw or _unconditional_draw
    scores = scores or (lambda v, n: score_vector(v, n, who))
    critic = as_critic(critic, f"{who}: critic")

    def estimate(params, state, key, batch):
        theta, psi = require_groups(params, (GENERATOR, CRITIC), who)
        k_draw, k_pen = jax.random.split(key)
        d = draw(k_draw, batch)
        n = d.x_real.shape[0]
        real = pack_samples(d.x_real, pack, who)

        def players(theta, psi):
            fake_x = _sample(generator, theta, d.key, n, d.c_fake)
            fake = pack_samples(fake_x, pack, who)
            c_r, c_f = (d.c_real, d.c_fake) if condition_critic else (None, None)
            v_r, v_f, new_state = critic_scores(critic, psi, state, real, fake, c_r, c_f)
            losses, metrics = loss_fn(scores(v_r, real.shape[0]), scores(v_f, real.shape[0]), d)
            critic_loss = losses.critic
            if penalty:
                gp = _penalty_at_interpolates(critic, psi, new_state, k_pen, real, fake, scores)
                critic_loss, metrics = critic_loss + penalty * gp, {**metrics, "gradient_penalty": gp}
            return (critic_loss, losses.generator), (losses, metrics, new_state)

        g_theta, g_psi, (losses, metrics, new_state) = players_grads(players, theta, psi)
        grads = complete_grads(params, {GENERATOR: g_theta, CRITIC: g_psi})
        metrics = {**metrics, OBJECTIVE: losses.objective, "generator_loss": losses.generator,
                   "critic_loss": losses.critic + penalty * metrics.get("gradient_penalty", 0.0)}
        return Estimate(grads, new_state, metrics)

    return Estimator(critic_state_init(critic), estimate)


def _unconditional_draw(key, batch) -> Draw:
    return Draw(batch_data(batch), None, None, key)


def _sample(generator, theta, key, n, condition):
    if condition is None:
        return generator.sample(theta, key, n)
    return generator.sample(theta, key, n, condition)


def _penalty_at_interpolates(critic, psi, state, key, real, fake, scores):
    """Gradient penalty at x̂ = u·real + (1-u)·fake, u ~ U(0, 1) per (packed)
    example; the critic's state is read, not advanced (one update per step)."""
    u = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = u * real + (1.0 - u) * fake
    return gradient_penalty(lambda x: scores(critic.apply(psi, state, x)[0], x.shape[0]), x_hat)


def _mean_scores(v_real, v_fake) -> dict:
    return {"d_real": jnp.mean(v_real), "d_fake": jnp.mean(v_fake)}


# --------------------------------------------------------------------------
# Factories (checked at build time)


def check_players(generator, critic, who: str) -> None:
    """TypeError unless ``generator``/``critic`` speak the protocols of :mod:`sajax.core`."""
    if not callable(getattr(generator, "sample", None)):
        raise TypeError(f"{who}: generator must be a sajax.core.ImplicitGenerator with a callable "
                        f"'sample'; got {type(generator).__name__}")
    as_critic(critic, f"{who}: critic")


def _check_unconditional(generator, critic, who: str, pack) -> int:
    check_players(generator, critic, who)
    if getattr(generator, "num_classes", None) is not None or getattr(critic, "num_classes", None) is not None:
        raise ValueError(f"{who} trains an unconditional generator and critic; for num_classes use "
                         f"sajax.estimators.cgan or acgan")
    try:
        return check_positive_int("pack", pack)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{who}: pack (PacGAN's m) must be an integer >= 1; {err}") from None


_GENERATOR_LOSSES = ("minimax", "non-saturating")


def check_generator_loss(kind, who: str, options=_GENERATOR_LOSSES) -> str:
    if kind not in options:
        raise ValueError(f"{who}: generator_loss must be one of {list(options)}, got {kind!r}")
    return kind


def fgan(generator: ImplicitGenerator, critic: Critic, *, divergence: str = "js",
         activation="principled", generator_loss: str = "non-saturating", pack: int = 1) -> Estimator:
    """VDM learning, f-GAN (Algorithm 6, Eq. 33-34; Nowozin et al. 2016).

    The critic's output v = V_ψ(x) enters through T = g_f(v); the critic
    ascends F_f = E_p0[g_f(V)] - E_pθ[f†(g_f(V))] (Eq. 34), the generator
    ascends E_pθ[g_f(V)] (``generator_loss="non-saturating"``, the default,
    as in :func:`gan` and every adversarial estimator here: Nowozin et al.'s
    Sec. 3.2 trick, which keeps the generator's gradient alive when the
    critic wins) or descends F_f itself (``"minimax"``, Algorithm 6 as
    written).  Both have the same fixed points.  With ``activation="principled"``,
    g_f(v) = f'(e^v) (Eq. 36) and the optimal critic is V* = log p0/pθ for
    every f; ``"nowozin"`` is Table 2 of Nowozin et al. (for "kl" V* = 1 +
    log p0/pθ, for "pearson" V* = 2(p0/pθ - 1), for "squared_hellinger" V* =
    ½ log p0/pθ; the others coincide).  An :class:`Activation` may be given;
    its range must lie in dom f† (:func:`check_activation`).

    Args:
      generator: G_θ as an :class:`ImplicitGenerator` (unconditional).
      critic: V_ψ as a :class:`Critic` returning ``[B']`` scores.
      divergence: one of :data:`DIVERGENCES` ("gan" (2·JS - log 4), "js" (D_f = 2·JS),
        "kl", "reverse_kl", "pearson" (χ²), "squared_hellinger" (∫(√p0 - √pθ)², twice
        the ½ convention)); the conventions are stated in ``sajax.estimators._divergences``.
      activation: ``"principled"``, ``"nowozin"``, ``"identity"`` or an :class:`Activation`.
      generator_loss: ``"non-saturating"`` (default) or ``"minimax"``.
      pack: PacGAN's m (the critic scores m samples at once).

    Returns:
      Estimator over ``{GENERATOR: θ, CRITIC: ψ}``; state: the critic's
      mutable state; metrics ``objective`` = ``vdm_bound`` = F_f (estimates
      D_f at the optimal critic), ``critic_loss``, ``generator_loss``,
      ``d_real``, ``d_fake``.
    """
    who = f"fgan(divergence={divergence!r})"
    m = _check_unconditional(generator, critic, who, pack)
    act = check_activation(divergence, activation)
    kind = check_generator_loss(generator_loss, who)

    def loss_fn(v_real, v_fake, draw):
        losses = vdm_losses(divergence, act, kind, v_real, v_fake)
        return losses, {"vdm_bound": losses.objective, **_mean_scores(v_real, v_fake)}

    return adversarial_estimator(who, generator, critic, loss_fn, pack=m)


def gan(generator: ImplicitGenerator, critic: Critic, *, generator_loss: str = "non-saturating",
        pack: int = 1) -> Estimator:
    """GAN training, the minimax game of Eq. 28 (Goodfellow et al. 2014).

    D_ψ(x) = σ(V_ψ(x)); the critic ascends F_GAN = E_p0 log D + E_pθ log(1 - D)
    (Eq. 28, = VDM with the "gan" f-function, Eq. 34); the generator descends
    -E_pθ log D (``generator_loss="non-saturating"``, the default: the logD
    trick of Goodfellow et al., the default of every adversarial estimator
    here, :func:`fgan` included) or E_pθ log(1 - D) (``"minimax"``, Eq. 28 as
    written, whose gradient vanishes when the critic wins).  At the optimal critic F_GAN = 2·JS - log 4 (Eq. 29) and
    V* = log p0/pθ.  Returns an Estimator as :func:`fgan` (``objective`` =
    ``gan_value`` = F_GAN).
    """
    who = "gan"
    m = _check_unconditional(generator, critic, who, pack)
    kind = check_generator_loss(generator_loss, who)
    act = check_activation("gan", "principled")

    def loss_fn(v_real, v_fake, draw):
        losses = vdm_losses("gan", act, kind, v_real, v_fake)
        return losses, {"gan_value": losses.objective, **_mean_scores(v_real, v_fake)}

    return adversarial_estimator(who, generator, critic, loss_fn, pack=m)


def wgan(generator: ImplicitGenerator, critic: Critic, *, monitor_clip: Optional[float] = None,
         pack: int = 1) -> Estimator:
    """Wasserstein GAN (Eq. 37; Arjovsky et al. 2017).

    The critic ascends E_p0 V - E_pθ V, the generator descends -E_pθ V.  The
    Lipschitz constraint by weight clipping is a PROJECTION of ψ after each
    update, so it is an optimizer step, not part of the gradient, and this
    estimator does NOT clip: chain :func:`clip_critic` into the critic group's
    transform, e.g.
    ``sa.per_group({"critic": optax.chain(optax.rmsprop(5e-5), clip_critic(0.01)),
    "generator": optax.rmsprop(5e-5)}, schedule=sa.alternate(critic=5, generator=1))``.
    It then runs inside the jitted loop and the gate of idle phases.

    Args:
      monitor_clip: the c > 0 given to :func:`clip_critic`, to monitor it:
        ``metrics["weight_excess"]`` = max(0, max|ψ| - c) is 0 iff the
        projection is in place (None: no such metric).
      pack: PacGAN's m.
    """
    who = "wgan"
    m = _check_unconditional(generator, critic, who, pack)
    c = None if monitor_clip is None else _check_nonnegative("monitor_clip", monitor_clip, who, strict=True)

    def loss_fn(v_real, v_fake, draw):
        return wasserstein_losses(v_real, v_fake), _mean_scores(v_real, v_fake)

    inner = adversarial_estimator(who, generator, critic, loss_fn, pack=m)
    if c is None:
        return inner

    def estimate(params, state, key, batch):
        out = inner.estimate(params, state, key, batch)
        psi = jax.tree_util.tree_leaves(params[CRITIC])
        top = jnp.max(jnp.stack([jnp.max(jnp.abs(p)) for p in psi])) if psi else jnp.zeros(())
        return out._replace(metrics={**out.metrics, "weight_excess": jnp.maximum(top - c, 0.0)})

    return Estimator(inner.init, estimate)


def wgan_gp(generator: ImplicitGenerator, critic: Critic, *, penalty: float = 10.0, pack: int = 1) -> Estimator:
    """WGAN-GP (Gulrajani et al. 2017): Eq. 37 with the critic loss
    -(E_p0 V - E_pθ V) + λ E_x̂ (||∇_x V(x̂)|| - 1)², x̂ = u x_real + (1 - u) x_fake,
    u ~ U(0, 1).  ``objective`` = E_p0 V - E_pθ V (the estimate of W1, without
    the penalty); ``gradient_penalty`` the penalty's mean; ``critic_loss``
    includes λ times it.  The critic must score examples independently (no
    batch statistics).  With λ finite the optimum slightly over-estimates W1
    (by ∫ (F_θ - F_0)² / (2λρ) in 1-D, ρ the interpolates' density).
    """
    who = "wgan_gp"
    m = _check_unconditional(generator, critic, who, pack)
    lam = _check_nonnegative("penalty", penalty, who)

    def loss_fn(v_real, v_fake, draw):
        return wasserstein_losses(v_real, v_fake), _mean_scores(v_real, v_fake)

    return adversarial_estimator(who, generator, critic, loss_fn, pack=m, penalty=lam)


def hinge_gan(generator: ImplicitGenerator, critic: Critic, *, pack: int = 1) -> Estimator:
    """Hinge GAN (Lim & Ye 2017; Miyato et al. 2018): the critic descends
    E_p0 relu(1 - V) + E_pθ relu(1 + V), the generator -E_pθ V.  Used with a
    spectral-norm critic this is SN-GAN's loss (SN itself lives in the critic).
    ``objective`` = 2 - critic loss, a lower bound on 2·TV(p0, pθ).
    """
    who = "hinge_gan"
    m = _check_unconditional(generator, critic, who, pack)

    def loss_fn(v_real, v_fake, draw):
        return hinge_losses(v_real, v_fake), _mean_scores(v_real, v_fake)

    return adversarial_estimator(who, generator, critic, loss_fn, pack=m)


def _check_nonnegative(name: str, value, who: str, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: {name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{who}: {name} must be finite and {bound}, got {value!r}")
    return v


def clip_critic(c: float) -> optax.GradientTransformation:
    """Weight clipping as an optax projection (WGAN, Arjovsky et al. 2017):
    turns ``updates`` u into clip(ψ + u, -c, c) - ψ, so that
    ``optax.apply_updates`` lands on the clipped parameters (up to one float
    rounding).  Chain it LAST into the critic group's transform; it needs the
    params (``update(updates, state, params)``, as ``sa.per_group`` passes).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.chain(optax.sgd(1.0), clip_critic(0.01))
      >>> p = {"w": jnp.array([0.0, 0.005])}
      >>> u, _ = tx.update({"w": jnp.array([-1.0, 0.002])}, tx.init(p), p)
      >>> [round(float(v), 4) for v in optax.apply_updates(p, u)["w"]]
      [0.01, 0.003]
    """
    c = _check_nonnegative("c", c, "clip_critic", strict=True)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("clip_critic needs the params: call tx.update(updates, state, params)")
        new = jax.tree_util.tree_map(lambda u, p: jnp.clip(p + u, -c, c) - p, updates, params)
        return new, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
