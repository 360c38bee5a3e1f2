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
  in for p_θ in the θ-update;
* :func:`trf_sa` (Eq. 44; Wang & Ou 2017; Wang, Ou & Tan 2018): a trans-dimensional
  random field over sentences, p(l, x) = π_l exp(u_θ(x)) / Z_l(θ), with an
  autoregressive generator q_φ (an LSTM LM) as the *proposal* of a Metropolis
  independence sampler (MIS, appropriate for discrete x) whose persistent chains
  are the estimator's state; θ by the data-minus-sample gradient, the per-length
  ζ_l ≈ log Z_l by Wang, Ou & Tan's SA update, φ by the inclusive KL on the chains.

The first two take ``params = {POTENTIAL: θ, SAMPLER: φ}`` and the protocol
:class:`sajax.core.EnergyModel` (``potential(θ, x [B, D]) -> [B]``).  They draw
afresh every iteration (state ``()``); :func:`trf_sa` takes a TRF spec, keeps its
chains in :class:`TRFSAState` and documents its own metrics.  ``grads`` is a descent direction;
``metrics["objective"]`` is a *proxy*, mean u_θ(data) - mean u_θ(samples)
(the contrast whose θ-gradient is the update; it is not the log-likelihood,
whose log Z is unknown).  Shapes: ``batch.x`` ``[B, D]``; the generator draws
``num_model_samples`` (default B) samples ``[n, D]`` per iteration (the Monte
Carlo minibatch of Algorithm 8; not a per-example K, hence not ``num_samples``).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    OBJECTIVE,
    EnergyModel,
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
from sajax.estimators._common import energy_model, with_objective
from sajax.kernels import langevin, mis, repeat_moves, sghmc
from sajax.models._energy import check_potential_output

__all__ = ["inclusive_nrf", "inclusive_nrf_samples", "inclusive_nrf_update", "exclusive_nrf",
           "trf_sa", "trf_sa_update", "TRFSAState", "KERNELS", "ENTROPIES"]

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
    gradient path; one compiled program per ``n`` (not op by op).
    """
    model = energy_model(model, "inclusive_nrf_samples")
    _check_callables(sampler, ("sample", "log_joint"), "sampler", "an AuxiliaryGenerator")
    num_moves = _check_revision(num_moves, step_size, noise_scale, kernel, friction,
                                latent_step_size)
    revise = _reviser(model, sampler, num_moves, step_size, noise_scale, kernel, friction, latent_step_size)

    @partial(jax.jit, static_argnums=3)
    def raw_and_revised(theta, phi, key, n):
        (x, _), (x_rev, _) = revise(theta, phi, key, n)
        return x, x_rev

    def draw(params, key, n):
        theta, phi = require_groups(params, (POTENTIAL, SAMPLER), "inclusive_nrf_samples")
        return raw_and_revised(theta, phi, key, check_positive_int("n", n))

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
      >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), jnp.ones((4, 2)))
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
      >>> out = jax.jit(exclusive_nrf(model, gen).estimate)(params, (), jax.random.PRNGKey(1), jnp.ones((4, 2)))
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


# --------------------------------------------------------------------------
# Trans-dimensional random fields by SA with MIS (Sec. 4.2.3, Eq. 44; Wang & Ou 2017;
# Wang, Ou & Tan 2018)

_ZETA = "zeta"
_INITS = ("data", "generator")


class TRFSAState(NamedTuple):
    """The persistent state of :func:`trf_sa` (a pytree of arrays; checkpointed with the carry).

    Attributes:
      chains: ``int32 [C, T]`` token rows, the Monte Carlo minibatch of each SA
        iteration (Algorithm 1's z): persistent across iterations, as PCD's chains.
    """

    chains: jax.Array


class _TRFParts(NamedTuple):
    model: EnergyModel        # potential(θ̂, x) = log π_l + u_θ(x) - ζ_l
    energy: Callable          # (θ̂, x) -> u_θ(x)
    lengths: Callable         # x -> [B], 1..L
    log_prior: np.ndarray     # [L] log π_l
    max_len: Optional[int]


def _trf_parts(spec, who: str) -> _TRFParts:
    """The pieces of a TRF spec (:func:`sajax.models.trf`) the SA estimator reads, checked."""
    model = energy_model(spec, who)
    for name in ("energy", "lengths"):
        if not callable(getattr(spec, name, None)):
            raise TypeError(f"{who}: spec must be a TRF spec (sajax.models.trf(...)) with a callable "
                            f"{name!r}, got {type(spec).__name__}")
    raw = getattr(spec, "log_length_prior", None)
    log_prior = None if raw is None else np.asarray(raw, np.float64)
    if log_prior is None or log_prior.ndim != 1 or log_prior.size == 0 or np.any(np.isnan(log_prior)) \
            or np.any(log_prior == np.inf) or abs(np.exp(log_prior).sum() - 1.0) > 1e-3:
        raise ValueError(f"{who}: spec.log_length_prior must be log π_l [L] of a distribution over "
                         f"the lengths 1..L (exp sums to 1; -inf, or a floor such as -1000 whose exp is 0, "
                         f"for a length never seen), got {raw!r}")
    return _TRFParts(model, spec.energy, spec.lengths, log_prior, getattr(spec, "max_len", None))


def _zeta(theta_hat, num_lengths: int, who: str):
    """θ̂["zeta"] ``[L]``, or a ValueError naming what the TRF's parameters must hold."""
    if not hasattr(theta_hat, "keys") or _ZETA not in theta_hat:
        keys = sorted(theta_hat) if hasattr(theta_hat, "keys") else type(theta_hat).__name__
        raise ValueError(f"{who}: params['{POTENTIAL}'] must be a dict holding '{_ZETA}' [L = "
                         f"{num_lengths}], the per-length log normalizers ζ_l (sajax.models.trf's "
                         f"init makes it); got {keys}")
    zeta = theta_hat[_ZETA]
    if jnp.shape(zeta) != (num_lengths,):
        raise ValueError(f"{who}: params['{POTENTIAL}']['{_ZETA}'] must have shape [L] = "
                         f"[{num_lengths}] (one ζ_l per length of log_length_prior), got {jnp.shape(zeta)}")
    return zeta


def _check_sentences(x, n: int, t: int, what: str, who: str):
    """``x`` as integer token rows ``[n, T]``, or a TypeError/ValueError naming ``what``."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"{who}: {what} must be integer token rows int32 [n, T]; got dtype {x.dtype}")
    if tuple(x.shape) != (n, t):
        raise ValueError(f"{who}: {what} must have shape [n, T] = [{n}, {t}], got {tuple(x.shape)}")
    return x


def _generator_log_prob(generator, phi, x, who: str):
    """log q_φ(x) ``[n]`` for token rows ``[n, T]``; ValueError for any other shape."""
    log_q = generator.log_prob(phi, x)
    if jnp.shape(log_q) != x.shape[:1]:
        raise ValueError(f"{who}: generator.log_prob must return one value per sentence, shape "
                         f"[{x.shape[0]}], got {jnp.shape(log_q)}")
    return log_q


def _log_weights(parts: _TRFParts, generator, theta_hat, phi, x, who: str):
    """log w(x) = log π_l + u_θ(x) - ζ_l - log q_φ(x) ``[n]`` (the MIS weight; no gradient)."""
    target = check_potential_output(parts.model.potential(theta_hat, x), x, f"{who}: spec.model.potential")
    return _sg(target - _generator_log_prob(generator, phi, x, who))


def _mis_sentences(parts: _TRFParts, generator, theta_hat, phi, key, chains, num_moves: int, who: str):
    """``num_moves`` MIS moves of every chain (:mod:`sajax.kernels.mis`): ``num_moves · C``
    proposals drawn and weighted in one batched call, the tests run in a ``lax.scan``.
    Returns ``(chains', mean acceptance probability)``."""
    theta_hat, phi = _sg(theta_hat), _sg(phi)
    c, t = chains.shape
    k_prop, k_acc = jax.random.split(key)
    proposals = _check_sentences(generator.sample(phi, k_prop, num_moves * c), num_moves * c, t,
                                 "generator.sample(φ, key, n)", who)
    proposals = _sg(proposals).astype(chains.dtype)
    w_prop = _log_weights(parts, generator, theta_hat, phi, proposals, who).reshape(num_moves, c)
    state = mis.init(chains, _log_weights(parts, generator, theta_hat, phi, chains, who))

    def body(state, inputs):
        k, x, w = inputs
        state, info = mis.accept_reject(k, state, x, w)
        return state, info.acceptance_rate

    state, rates = jax.lax.scan(body, state, (jax.random.split(k_acc, num_moves),
                                              proposals.reshape(num_moves, c, t), w_prop))
    return state.position, jnp.mean(rates)


def _zeta_ascent(chain_lengths, log_prior: np.ndarray, dtype):
    """``(n_l / (C π_l) - 1 [L], n_l / C [L])``; 0 where π_l = 0 (no division by zero)."""
    frac = jnp.mean(jax.nn.one_hot(chain_lengths - 1, log_prior.size, dtype=dtype), axis=0)
    pi = np.exp(log_prior)
    inv_pi = np.where(pi > 0, 1.0 / np.where(pi > 0, pi, 1.0), 0.0)
    return jnp.where(pi > 0, frac * inv_pi.astype(dtype) - 1, 0).astype(dtype), frac


class _LogProbAsJoint(NamedTuple):
    """A NoiseModel seen as an AuxiliaryGenerator without latents (for :func:`inclusive_nrf_update`)."""

    generator: Any

    def log_joint(self, phi, x, h):
        del h
        return _generator_log_prob(self.generator, phi, x, "trf_sa")


def trf_sa_update(spec, generator) -> Callable:
    """The SA update of :func:`trf_sa` at given chain samples:
    ``update(params, x_data [B, T], chains [C, T]) -> (grads, metrics)``.

    The ascent directions (Eq. 44 with ζ; Wang, Ou & Tan 2018) are

      θ: mean_B ∇_θ u_θ(x̃) - mean_C ∇_θ u_θ(x)                (Eq. 39, the data-minus-sample gradient),
      ζ_l: n_l / (C π_l) - 1 for π_l > 0, 0 for π_l = 0        (n_l chains of length l),
      φ: mean_C ∇_φ log q_φ(x)                                  (inclusive KL[p || q_φ], Eq. 43-44),

    the θ and φ parts by :func:`inclusive_nrf_update` (u_θ = ``spec.energy``, log q_φ =
    ``generator.log_prob``).  ``grads`` is their negation; metrics ``u_data``,
    ``u_chains``, ``log_q`` (mean log q_φ of the chains) and ``length_tv``
    (½ Σ_l |n_l / C - π_l|).
    """
    who = "trf_sa"
    parts = _trf_parts(spec, who)
    _check_callables(generator, ("sample", "log_prob"), "generator", "a NoiseModel (an LM's .noise)")
    inner = inclusive_nrf_update(EnergyModel(parts.energy), _LogProbAsJoint(generator))
    pi = np.exp(parts.log_prior)

    def update(params, x_data, chains):
        theta_hat, _ = require_groups(params, (POTENTIAL, SAMPLER), who)
        zeta = _zeta(theta_hat, parts.log_prior.size, who)
        grads, m = inner(params, x_data, chains, ())
        ascent, frac = _zeta_ascent(parts.lengths(chains), parts.log_prior, jnp.result_type(zeta))
        grads = {**grads, POTENTIAL: {**grads[POTENTIAL], _ZETA: -ascent}}
        metrics = {"u_data": m["potential_data"], "u_chains": m["potential_revised"],
                   "log_q": m["log_q"], "length_tv": 0.5 * jnp.sum(jnp.abs(frac - pi.astype(frac.dtype)))}
        return grads, metrics

    return update


def _check_token_data(data, parts: _TRFParts, who: str):
    """The training set as integer token rows ``[N, T]`` whose lengths have π_l > 0."""
    if not isinstance(data, jax.core.Tracer):
        data = jnp.asarray(data)
    if data.ndim != 2 or not jnp.issubdtype(data.dtype, jnp.integer):
        raise TypeError(f"{who}: data must be integer token rows [N, T] (sajax.data.text.encode), got "
                        f"{data.dtype} of shape {tuple(data.shape)}")
    if parts.max_len is not None and data.shape[1] != parts.max_len:
        raise ValueError(f"{who}: data rows have T = {data.shape[1]} tokens, the TRF's max_len is "
                         f"{parts.max_len}")
    if isinstance(data, jax.core.Tracer):      # values unknown (init traced): shapes only
        return data
    with jax.ensure_compile_time_eval():
        seen = np.unique(np.asarray(parts.lengths(data)))
    pi = np.exp(parts.log_prior)
    bad = [int(v) for v in seen if not 1 <= v <= pi.size or pi[v - 1] == 0.0]
    if bad:
        raise ValueError(f"{who}: data has sentences of length(s) {bad} outside 1..L = "
                         f"1..{parts.log_prior.size} or with π_l = 0 in spec.log_length_prior: the "
                         f"TRF gives them probability 0 (build the prior from this data)")
    return data


def _trf_sa_init(parts: _TRFParts, generator, num_chains: int, init, who: str) -> Callable:
    """``Estimator.init`` of :func:`trf_sa`: C chains from the data, the generator, or given."""

    def init_fn(key, params, data):
        theta_hat, phi = require_groups(params, (POTENTIAL, SAMPLER), who)
        _zeta(theta_hat, parts.log_prior.size, who)
        data = _check_token_data(data, parts, who)
        n, t = data.shape
        if isinstance(init, str) and init == "data":
            rows = (jax.random.permutation(key, n)[:num_chains] if num_chains <= n
                    else jax.random.randint(key, (num_chains,), 0, n))
            chains = data[rows]
        elif isinstance(init, str):
            chains = generator.sample(phi, key, num_chains)
            chains = _check_sentences(chains, num_chains, t, "generator.sample(φ, key, n)", who)
        else:
            chains = _check_sentences(jnp.asarray(init), num_chains, t, "init chains", who)
        return TRFSAState(jnp.asarray(chains, data.dtype))

    return init_fn


def trf_sa(spec, generator, *, num_chains: int = 100, num_moves: int = 1, init: Any = "data") -> Estimator:
    """Trans-dimensional random fields by SA with MIS (Sec. 4.2.3, Eq. 44 and Algorithm 8 with
    an autoregressive generator; Wang & Ou 2017; Wang, Ou & Tan 2018, TPAMI).

    The TRF is p(l, x) = π_l exp(u_θ(x)) / Z_l(θ) over sentences x of length l; ζ_l are
    learned estimates of log Z_l, and the chains sample the jointly normalized

      p(l, x; θ, ζ) ∝ π_l exp(u_θ(x) - ζ_l)            (``spec.model.potential`` = its log).

    Per iteration: the generator q_φ (an LM) proposes ``num_moves · C`` whole sentences;
    each of the C persistent chains makes ``num_moves`` Metropolis independence moves
    (:mod:`sajax.kernels.mis`) with log w = log π_l + u_θ(x) - ζ_l - log q_φ(x)
    (Z cancels in the ratio; lengths with π_l = 0 have w = 0 and are never accepted);
    then, at the final chains, :func:`trf_sa_update` moves

    * θ along mean_B ∇u_θ(x̃) - mean_C ∇u_θ(x) (Eq. 39/44),
    * ζ_l along n_l / (C π_l) - 1 (Wang, Ou & Tan's SA update ζ_l += γ (n_l/(C π_l) - 1);
      ``grads`` holds -(n_l/(C π_l) - 1), zero where π_l = 0),
    * φ along mean_C ∇_φ log q_φ(x) (inclusive KL[p || q_φ], Eq. 43-44).

    The ζ direction is a preconditioned log-likelihood gradient: for the jointly normalized
    model ∇_{ζ_l} mean log p(l̃, x̃; θ, ζ) = p(l; θ, ζ) - π̃_l (π̃: the data's length
    fractions) and E[n_l / C] = p(l; θ, ζ), so the mean ζ direction (p(l; θ, ζ) - π_l) / π_l
    is that gradient times 1/π_l when π = π̃ (the TRF's π is the training set's length
    distribution); the θ direction is that model's exact log-likelihood gradient.  At the
    root p(l; θ, ζ) = π_l: ζ_l - log Z_l(θ) is one constant and the θ-equation is the TRF's
    ML equation.  The update keeps Σ_l π_l ζ_l fixed, so ζ is learned up to that common
    offset (scoring re-estimates log Z_l: :mod:`sajax.evaluate.trf`).  Plain SGD on ζ is the
    SA step as written; Adam rescales it but keeps the root.

    Args:
      spec: a TRF spec (:func:`sajax.models.trf`): ``model`` (EnergyModel, potential
        log π_l + u_θ(x) - ζ_l), ``energy`` (u_θ), ``lengths`` (x -> [B], 1..L),
        ``log_length_prior`` (log π_l [L]), ``max_len``.
      generator: the proposal q_φ, a :class:`~sajax.core.NoiseModel` over token
        rows (``sample(φ, key, n) -> int32 [n, T]``, ``log_prob(φ, x) -> [n]``), e.g. an
        LSTM LM's ``.noise`` (:func:`sajax.models.lstm_lm`).
      num_chains: C >= 1 persistent chains (the Monte Carlo minibatch; not the batch size).
      num_moves: MIS moves per chain and iteration (k of Algorithm 2), >= 1.
      init: ``"data"`` (C rows of the training set, with replacement if C > N),
        ``"generator"`` (C draws of q_φ) or token rows ``[C, T]``.

    Returns: Estimator over ``{POTENTIAL: θ̂ (with "zeta" [L]), SAMPLER: φ}``; state
    :class:`TRFSAState`.  Metrics: ``zeta_log_likelihood`` = ``objective`` (mean
    log π_l + u_θ(x̃) - ζ_l over the batch: the log-likelihood with ζ_l for log Z_l, off by
    ζ's common offset), ``acceptance_rate`` (mean MIS acceptance probability; 1 when
    q_φ = p), ``log_q`` (mean log q_φ of the chains, φ's objective), ``data_log_q`` (mean
    log q_φ(x̃), the generator as an LM), ``u_data``, ``u_chains``, ``length_tv``
    (½ Σ_l |n_l / C - π_l|; → 0 as ζ converges).

    Example (a two-word vocabulary, sentences of 1-2 words; u_θ a table over positions):
      >>> import jax, jax.numpy as jnp, numpy as np
      >>> from types import SimpleNamespace
      >>> from sajax.core import Batch, EnergyModel
      >>> from sajax.estimators import NoiseModel
      >>> lengths = lambda x: jnp.argmax(x == 2, axis=1).astype(jnp.int32)
      >>> u = lambda th, x: jnp.sum(jnp.where(x >= 3, th["w"][x - 3], 0.0), axis=1)
      >>> prior = jnp.log(jnp.array([0.5, 0.5]))
      >>> spec = SimpleNamespace(energy=u, lengths=lengths, log_length_prior=prior, max_len=3,
      ...     model=EnergyModel(lambda th, x: prior[lengths(x) - 1] + u(th, x) - th["zeta"][lengths(x) - 1]))
      >>> sents = jnp.array([[3, 2, 0], [4, 2, 0], [3, 3, 2], [3, 4, 2], [4, 3, 2], [4, 4, 2]], jnp.int32)
      >>> q = NoiseModel(lambda phi, key, n: sents[jax.random.categorical(key, phi, shape=(n,))],
      ...                lambda phi, x: jax.nn.log_softmax(phi)[jnp.argmax(jnp.all(x[:, None] == sents, -1), 1)])
      >>> params = {"potential": {"w": jnp.zeros(2), "zeta": jnp.zeros(2)}, "sampler": jnp.zeros(6)}
      >>> est = trf_sa(spec, q, num_chains=8, num_moves=2)
      >>> state = est.init(jax.random.PRNGKey(0), params, sents)
      >>> out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(1), Batch(sents[:4], jnp.arange(4)))
      >>> out.state.chains.shape, sorted(out.grads["potential"]), out.grads["sampler"].shape
      ((8, 3), ['w', 'zeta'], (6,))
    """
    who = "trf_sa"
    parts = _trf_parts(spec, who)
    _check_callables(generator, ("sample", "log_prob"), "generator", "a NoiseModel (an LM's .noise)")
    num_chains = check_positive_int("num_chains", num_chains)
    num_moves = check_positive_int("num_moves", num_moves)
    if isinstance(init, str) and init not in _INITS:
        raise ValueError(f"{who}: init must be one of {_INITS} or token rows [num_chains, T], got {init!r}")
    return Estimator(_trf_sa_init(parts, generator, num_chains, init, who),
                     _trf_sa_estimate(parts, generator, trf_sa_update(spec, generator), num_moves, who))


def _trf_sa_estimate(parts: _TRFParts, generator, update: Callable, num_moves: int, who: str):
    """``Estimator.estimate`` of :func:`trf_sa`: MIS moves of the chains, then the SA update."""

    def estimate(params, state: TRFSAState, key, batch):
        theta_hat, phi = require_groups(params, (POTENTIAL, SAMPLER), who)
        _zeta(theta_hat, parts.log_prior.size, who)
        x = batch_data(batch)
        chains, acceptance = _mis_sentences(parts, generator, theta_hat, phi, key, state.chains, num_moves, who)
        grads, metrics = update(params, x, chains)
        log_p = check_potential_output(parts.model.potential(theta_hat, x), x, f"{who}: spec.model.potential")
        metrics = {**metrics, "zeta_log_likelihood": jnp.mean(log_p), "acceptance_rate": acceptance,
                   "data_log_q": jnp.mean(_generator_log_prob(generator, phi, x, who))}
        return Estimate(grads, TRFSAState(chains), with_objective(metrics, "zeta_log_likelihood"))

    return estimate
