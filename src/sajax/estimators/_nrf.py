"""Neural random fields with auxiliary generators (review Sec. 4.2.2-4.2.3).

A random field p_θ(x) = exp(u_θ(x)) / Z(θ) (Eq. 38) is learned by maximum
likelihood, whose gradient E_p̃[∇_θ u_θ(x̃)] - E_{p_θ}[∇_θ u_θ(x)] (Eq. 39)
needs samples of p_θ.  An auxiliary generator q_φ supplies them:

* :func:`inclusive_nrf` (Algorithm 8, Eq. 42-43; Song & Ou 2018): q_φ(x, h)
  is a prescribed density (:func:`sajax.models._auxiliary.prescribed_generator`)
  trained by the *inclusive* KL[p_θ || q_φ]; its samples are revised toward
  p_θ by SGLD/SGHMC (:mod:`sajax.kernels.langevin`, :mod:`sajax.kernels.sghmc`)
  and the revised samples serve both updates;
* :func:`exclusive_nrf` (Eq. 40-41; Kim & Bengio 2016): an implicit
  generator x = g_φ(h) trained by the *exclusive* KL[q_φ || p_θ], whose
  intractable entropy is replaced by the batch-normalization approximation
  (:func:`sajax.models._auxiliary.batchnorm_entropy`); its raw samples stand
  in for p_θ in the θ-update.

Both estimators take ``params = {POTENTIAL: θ, SAMPLER: φ}`` and the protocol
:class:`sajax.core.EnergyModel` (``potential(θ, x [B, D]) -> [B]``).  They draw
afresh every iteration (state ``()``).  ``grads`` is a descent direction;
``metrics["objective"]`` is a *proxy*, mean u_θ(data) - mean u_θ(samples)
(the contrast whose θ-gradient is the update; it is not the log-likelihood,
whose log Z is unknown).  Shapes: ``batch.x`` ``[B, D]``; the generator draws
``num_model_samples`` (default B) samples ``[n, D]`` per iteration (the Monte
Carlo minibatch of Algorithm 8; not a per-example K, hence not ``num_samples``).
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from sajax.core import (
    OBJECTIVE,
    POTENTIAL,
    SAMPLER,
    Estimate,
    Estimator,
    batch_data,
    check_positive_int,
    complete_grads,
    neg,
    no_state,
    require_groups,
)
from sajax._numeric import check_nonnegative, check_positive
from sajax.estimators._common import energy_model
from sajax.kernels import langevin, repeat_moves, sghmc
from sajax.models._energy import check_potential_output

__all__ = ["inclusive_nrf", "inclusive_nrf_samples", "inclusive_nrf_update", "exclusive_nrf",
           "KERNELS", "ENTROPIES"]

KERNELS = ("sgld", "sghmc")
ENTROPIES = ("batchnorm", "none")
_sg = jax.lax.stop_gradient


# --------------------------------------------------------------------------
# Argument checks (build time)


def _check_callables(obj, names, what: str, kind: str):
    for name in names:
        if not callable(getattr(obj, name, None)):
            raise TypeError(f"{what} must be {kind} with a callable {name!r}, got {type(obj).__name__}")


def _check_num_model_samples(num_model_samples):
    return None if num_model_samples is None else check_positive_int("num_model_samples", num_model_samples)


def _check_revision(num_moves, step_size, noise_scale, kernel, friction, latent_step_size):
    num_moves = check_positive_int("num_moves", num_moves)
    check_positive("step_size", step_size)
    if latent_step_size is not None:
        check_positive("latent_step_size", latent_step_size)
    if noise_scale is not None:
        check_nonnegative("noise_scale", noise_scale)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "sghmc":
        sghmc.check_friction(friction)
    return num_moves


def _potential(model, theta, x):
    """u_θ(x) ``[B]`` for x ``[B, D]``; ValueError at trace time for any other shape."""
    return check_potential_output(model.potential(theta, x), x, "model.potential")


def _moments(prefix: str, x) -> dict:
    """Scalar sample moments of x ``[n, D]``: mean of the coordinates' means and stds."""
    return {f"{prefix}_mean": jnp.mean(x), f"{prefix}_std": jnp.mean(jnp.std(x, axis=0))}


# --------------------------------------------------------------------------
# Sample revision (Algorithm 8's "Monte Carlo sampling" step)


def _run_kernel(kernel, num_moves, step_size, noise_scale, friction, log_target, key, position):
    """``num_moves`` SGLD or SGHMC moves on ``log_target`` from ``position``; the final position."""
    if kernel == "sgld":
        state = langevin.init(position, log_target)
        step = langevin.build_kernel(log_target, step_size, noise_scale)
    else:
        state = sghmc.init(position, log_target)
        step = sghmc.build_kernel(log_target, step_size, friction, noise_scale)
    final, _ = repeat_moves(step, num_moves, keep_states=False)(key, state)
    return final.position


def _reviser(model, sampler, num_moves, step_size, noise_scale, kernel, friction, latent_step_size):
    """``revise(θ, φ, key, n) -> ((x, h), (x̃, h̃))``: draw from q_φ, then revise toward p_θ.

    x̃: ``num_moves`` kernel moves on log π(x) = u_θ(x) (θ held fixed), started
    at x ~ q_φ(x).  h̃: ``num_moves`` moves on
    log q_φ(x̃, h) in h, i.e. toward q_φ(h | x̃) (∇_h log q_φ(h|x̃) =
    ∇_h log q_φ(x̃, h)), started at the h that drew x, with step
    ``latent_step_size`` and the Langevin noise sqrt(2 · latent_step_size)
    (a proper sampler of q_φ(h|x̃) whatever ``noise_scale`` is); with
    ``latent_step_size=None``, h̃ = h.  The pair then approximates
    p_θ(x) q_φ(h|x), the distribution of Eq. 43.
    """
    def move(target, key, pos, step, noise):
        return _run_kernel(kernel, num_moves, step, noise, friction, target, key, pos)

    def revise(theta, phi, key, n):
        theta, phi = _sg(theta), _sg(phi)
        k_q, k_x, k_h = jax.random.split(key, 3)
        x, h = sampler.sample(phi, k_q, n)
        x, h = _sg(x), _sg(h)
        x_rev = move(lambda z: _potential(model, theta, z), k_x, x, step_size, noise_scale)
        h_rev = h if latent_step_size is None else move(
            lambda z: sampler.log_joint(phi, x_rev, z), k_h, h, latent_step_size, None)
        return (x, h), (x_rev, h_rev)

    return revise


# --------------------------------------------------------------------------
# Inclusive-NRF (Algorithm 8, Eq. 42-43)


def inclusive_nrf_update(model, sampler, *, potential_control: float = 0.0) -> Callable:
    """Algorithm 8's SA update at given samples: ``update(params, x_data, x_rev, h_rev) -> (grads, metrics)``.

    The ascent directions (Eq. 43, Song & Ou 2018) are

      θ: mean_B ∇_θ u_θ(x_data) - mean_n ∇_θ u_θ(x̃) - c ∇_θ mean(u_θ(x)²),
      φ: mean_n ∇_φ log q_φ(x̃, h̃),

    where c = ``potential_control`` and the penalty's mean runs over the data
    and the revised samples together (keeps u near 0; c = 0 is Eq. 43).
    ``grads`` is their negation (descent), zeros for other groups.  Shapes:
    x_data ``[B, D]``, x_rev ``[n, D]``, h_rev ``[n, d]``.
    """
    check_nonnegative("potential_control", potential_control)

    def ascent(groups, x_data, x_rev, h_rev):
        u_data = _potential(model, groups[POTENTIAL], x_data)
        u_rev = _potential(model, groups[POTENTIAL], x_rev)
        log_q = sampler.log_joint(groups[SAMPLER], x_rev, h_rev)
        penalty = jnp.mean(jnp.square(jnp.concatenate([u_data, u_rev])))
        value = jnp.mean(u_data) - jnp.mean(u_rev) - potential_control * penalty + jnp.mean(log_q)
        return value, {"potential_data": jnp.mean(u_data), "potential_revised": jnp.mean(u_rev),
                       "log_q": jnp.mean(log_q), "potential_penalty": penalty}

    def update(params, x_data, x_rev, h_rev):
        theta, phi = require_groups(params, (POTENTIAL, SAMPLER), "inclusive_nrf")
        grads, metrics = jax.grad(ascent, has_aux=True)({POTENTIAL: theta, SAMPLER: phi},
                                                        x_data, _sg(x_rev), _sg(h_rev))
        return complete_grads(params, neg(grads)), metrics

    return update


def inclusive_nrf_samples(model, sampler, *, num_moves: int = 10, step_size: float = 0.01,
                          noise_scale: Optional[float] = 0.01, kernel: str = "sgld",
                          friction: float = 0.1, latent_step_size: Optional[float] = 0.01) -> Callable:
    """``draw(params, key, n) -> (raw x [n, D], revised x̃ [n, D])``, for plots and checks.

    The same revision :func:`inclusive_nrf` uses (same arguments), with no
    gradient path.
    """
    model = energy_model(model, "inclusive_nrf_samples")
    _check_callables(sampler, ("sample", "log_joint"), "sampler", "an AuxiliaryGenerator")
    num_moves = _check_revision(num_moves, step_size, noise_scale, kernel, friction,
                                latent_step_size)
    revise = _reviser(model, sampler, num_moves, step_size, noise_scale, kernel, friction, latent_step_size)

    def draw(params, key, n):
        theta, phi = require_groups(params, (POTENTIAL, SAMPLER), "inclusive_nrf_samples")
        (x, _), (x_rev, _) = revise(theta, phi, key, check_positive_int("n", n))
        return x, x_rev

    return draw


def inclusive_nrf(model, sampler, *, num_moves: int = 10, step_size: float = 0.01,
                  noise_scale: Optional[float] = 0.01, kernel: str = "sgld", friction: float = 0.1,
                  potential_control: float = 0.0, latent_step_size: Optional[float] = 0.01,
                  num_model_samples: Optional[int] = None) -> Estimator:
    """Learning an NRF with an inclusive auxiliary generator (Algorithm 8, Eq. 42-43; Song & Ou 2018).

    Per iteration: draw (x, h) ~ q_φ(x, h); revise x by ``num_moves``
    SGLD (``kernel="sgld"``: x' = x + step_size ∇u_θ(x) + noise_scale ξ) or
    SGHMC moves on u_θ (θ fixed), then h by as many moves on log q_φ(x̃, h)
    (toward q_φ(h|x̃), step ``latent_step_size``, Langevin noise; None:
    h̃ = h, no latent revision), so that (x̃, h̃)
    approximates p_θ(x) q_φ(h|x); then move θ and φ by
    :func:`inclusive_nrf_update` at (x_data, x̃, h̃).  ``noise_scale=None``
    is the Langevin diffusion's sqrt(2 step_size) (an exact sampler as the
    step shrinks); the default 0.01 is Song & Ou's tempered setting.

    Args:
      model: :class:`sajax.core.EnergyModel`.
      sampler: an :class:`~sajax.models._auxiliary.AuxiliaryGenerator`
        (``sample``, ``log_joint``) with continuous x.
      num_moves: >= 1.  step_size: > 0.  noise_scale: >= 0 or None.
      kernel: ``"sgld"`` or ``"sghmc"`` (``friction`` ∈ (0, 1] its momentum decay).
      potential_control: c >= 0 of the penalty c · mean u².
      num_model_samples: generator samples per iteration (the Monte Carlo minibatch);
        None: the batch size.

    Returns: Estimator over ``{POTENTIAL: θ, SAMPLER: φ}``, state ``()``;
    metrics ``objective`` (proxy mean u(data) - mean u(x̃)), ``log_q``,
    ``potential_*``, moments ``raw_mean/raw_std``, ``revised_mean/revised_std``,
    ``data_mean/data_std``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sajax.core import EnergyModel
      >>> from sajax.models._auxiliary import prescribed_generator
      >>> model = EnergyModel(lambda th, x: -0.5 * jnp.sum((x - th) ** 2, -1))
      >>> gen = prescribed_generator(2, 2, (), batch_norm=False)
      >>> params = {"potential": jnp.zeros(2), "sampler": gen.init(jax.random.PRNGKey(0))}
      >>> est = inclusive_nrf(model, gen, num_moves=3)
      >>> out = est.estimate(params, (), jax.random.PRNGKey(1), jnp.ones((4, 2)))
      >>> out.grads["potential"].shape, float(out.metrics["objective"]) == float(out.metrics["objective"])
      ((2,), True)
    """
    model = energy_model(model, "inclusive_nrf")
    _check_callables(sampler, ("sample", "log_joint"), "sampler", "an AuxiliaryGenerator")
    if getattr(sampler, "observation", "gaussian") == "bernoulli":
        raise ValueError("inclusive_nrf revises samples by SGLD/SGHMC, which needs continuous x; "
                         "got a sampler with observation='bernoulli'")
    num_moves = _check_revision(num_moves, step_size, noise_scale, kernel, friction,
                                latent_step_size)
    num_model_samples = _check_num_model_samples(num_model_samples)
    revise = _reviser(model, sampler, num_moves, step_size, noise_scale, kernel, friction, latent_step_size)
    update = inclusive_nrf_update(model, sampler, potential_control=potential_control)

    def estimate(params, state, key, batch):
        theta, phi = require_groups(params, (POTENTIAL, SAMPLER), "inclusive_nrf")
        x_data = batch_data(batch)
        (x, _), (x_rev, h_rev) = revise(theta, phi, key, num_model_samples or x_data.shape[0])
        grads, metrics = update(params, x_data, x_rev, h_rev)
        metrics = {**metrics, OBJECTIVE: metrics["potential_data"] - metrics["potential_revised"],
                   "move_distance": jnp.mean(jnp.linalg.norm(x_rev - x, axis=-1)),
                   **_moments("raw", x), **_moments("revised", x_rev), **_moments("data", x_data)}
        return Estimate(grads, state, metrics)

    return Estimator(no_state, estimate)


# --------------------------------------------------------------------------
# Exclusive-NRF (Eq. 40-41)


def exclusive_nrf(model, generator, *, entropy: str = "batchnorm",
                  num_model_samples: Optional[int] = None) -> Estimator:
    """Learning an NRF with an exclusive auxiliary generator (Eq. 40-41; Kim & Bengio 2016).

    With x_j = g_φ(h_j), h_j ~ N(0, I), the ascent directions are

      θ: mean_B ∇_θ u_θ(x_data) - mean_n ∇_θ u_θ(x_j)      (E_{p_θ} replaced by E_{q_φ}),
      φ: ∇_φ [mean_n u_θ(g_φ(h_j)) + H(q_φ)]                (reparameterized; -Eq. 41's φ-line),

    with H(q_φ) ≈ ``generator.entropy(φ)``, the batch-normalization
    approximation of Sec. 4.2.2 (``entropy="batchnorm"``) or 0
    (``entropy="none"``: no entropy term, which lets q_φ collapse onto the
    modes of u_θ, for comparison).

    Args:
      model: :class:`sajax.core.EnergyModel`.
      generator: an :class:`~sajax.models._auxiliary.EntropyGenerator`
        (``sample(φ, key, n)`` differentiable in φ; ``entropy(φ)``).
      num_model_samples: generator samples per iteration (the Monte Carlo minibatch);
        None: the batch size.

    Returns: Estimator over ``{POTENTIAL: θ, SAMPLER: φ}``, state ``()``;
    metrics ``objective`` (proxy mean u(data) - mean u(samples)),
    ``entropy``, ``potential_data``, ``potential_samples``, moments
    ``sample_mean/sample_std``, ``data_mean/data_std``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sajax.core import EnergyModel
      >>> from sajax.models._auxiliary import batchnorm_generator
      >>> model = EnergyModel(lambda th, x: -0.5 * jnp.sum((x - th) ** 2, -1))
      >>> gen = batchnorm_generator(2, 2, (8,))
      >>> params = {"potential": jnp.zeros(2), "sampler": gen.init(jax.random.PRNGKey(0))}
      >>> out = exclusive_nrf(model, gen).estimate(params, (), jax.random.PRNGKey(1), jnp.ones((4, 2)))
      >>> sorted(out.grads), "entropy" in out.metrics
      (['potential', 'sampler'], True)
    """
    model = energy_model(model, "exclusive_nrf")
    if entropy not in ENTROPIES:
        raise ValueError(f"entropy must be one of {ENTROPIES}, got {entropy!r}")
    needs = ("sample", "entropy") if entropy == "batchnorm" else ("sample",)
    _check_callables(generator, needs, "generator", "an EntropyGenerator")
    num_model_samples = _check_num_model_samples(num_model_samples)
    entropy_of = generator.entropy if entropy == "batchnorm" else (lambda phi: jnp.zeros(()))

    def ascent(groups, key, x_data, n):
        theta, phi = groups[POTENTIAL], groups[SAMPLER]
        x = generator.sample(phi, key, n)
        u_data = _potential(model, theta, x_data)
        u_q = _potential(model, theta, _sg(x))
        u_g = _potential(model, _sg(theta), x)      # the φ-path (reparameterized)
        h = entropy_of(phi)
        value = jnp.mean(u_data) - jnp.mean(u_q) + jnp.mean(u_g) + h
        return value, {"potential_data": jnp.mean(u_data), "potential_samples": jnp.mean(u_q),
                       "entropy": h, **_moments("sample", x), **_moments("data", x_data)}

    def estimate(params, state, key, batch):
        theta, phi = require_groups(params, (POTENTIAL, SAMPLER), "exclusive_nrf")
        x_data = batch_data(batch)
        grads, metrics = jax.grad(ascent, has_aux=True)({POTENTIAL: theta, SAMPLER: phi}, key,
                                                        x_data, num_model_samples or x_data.shape[0])
        metrics = {**metrics, OBJECTIVE: metrics["potential_data"] - metrics["potential_samples"]}
        return Estimate(complete_grads(params, neg(grads)), state, metrics)

    return Estimator(no_state, estimate)
