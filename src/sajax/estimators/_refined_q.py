"""Refining the amortized posterior: semi-amortized VI and Hamiltonian VI
(review Sec. 3.2.1, item 4 "more expressive inference model" and item 5
"reducing the amortization gap").

* :func:`semi_amortized` — SA-VAE (Kim, Wiseman, Miller, Sontag & Rush 2018).
  The encoder gives the local variational parameters λ0 = (μ, log σ) of a
  diagonal Gaussian q(h|x) per example (amortized inference); K steps of
  stochastic gradient ascent on that example's ELBO L(x; θ, λ) (Eq. 7 / 9,
  reparameterized as Eq. 12-13) refine them to λ_K (stochastic variational
  inference); θ ascends ∇_θ L(x; θ, λ_K) and φ either backpropagates through
  the unrolled refinement (SA-VAE) or takes the plain ELBO gradient at λ0.
  It attacks the amortization gap of item 5 (Cremer, Li & Duvenaud 2018;
  measured by :func:`sajax.evaluate.amortization.amortization_gap`).
* :func:`hvi` — Hamiltonian variational inference (Salimans, Kingma & Welling
  2015), one of item 4's auxiliary-variable posteriors: z0 ~ q_φ(z|x),
  v0 ~ N(0, I), T deterministic leapfrog steps (:func:`leapfrog`) on
  log p_θ(x, z) give (z_T, v_T) with unit Jacobian, and an auxiliary reverse
  model r_ψ(v_T | x, z_T) gives the lower bound (:func:`auxiliary_bound`)

      E[log p_θ(x, z_T) + log r_ψ(v_T|x, z_T) - log q_φ(z0|x) - log N(v0; 0, I)] <= log p_θ(x).

Shapes: ``x`` ``[B, D...]``; local parameters μ, log σ ``[B, d]``; samples
``[S, B, d]`` (S samples per example on the leading axis); per-example
values ``[B]``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from sajax.models import vae
  >>> from sajax.estimators._refined_q import semi_amortized
  >>> spec = vae(6, latent_dims=(2,), hidden=(5,))
  >>> est = semi_amortized(spec.model, spec, num_samples=1, num_steps=3, step_size=0.05)
  >>> params = spec.init(jax.random.PRNGKey(0))
  >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), jnp.ones((4, 6)))
  >>> sorted(out.metrics)
  ['elbo', 'elbo_initial', 'objective', 'refinement_gain']
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax._densities import diag_normal_log_prob, std_normal_log_prob
from sajax._numeric import check_positive
from sajax.core import (
    GUIDE,
    MODEL,
    REVERSE,
    ConditionalSampler,
    Estimator,
    LatentVariableModel,
    batch_data,
    check_positive_int,
    check_protocols,
    log_joint,
)
from sajax.estimators._common import _sg, from_objective
from sajax.models._vae import MLP, DiagGaussianHead

__all__ = [
    "REVERSE",
    "as_encoder",
    "gaussian_elbo",
    "refine_gaussian",
    "semi_amortized",
    "leapfrog",
    "ReverseModel",
    "mlp_reverse_model",
    "auxiliary_bound",
    "hvi",
]



# --------------------------------------------------------------------------
# Local Gaussian variational parameters λ = (μ, log σ) and their ELBO.


def _num_positional(fn) -> Optional[int]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
               for p in params)


def _per_example(mean, log_std):
    """(μ [B, d], log σ [B, d]): a shared log σ ``[d]`` is broadcast to every example."""
    return mean, jnp.broadcast_to(log_std, jnp.shape(mean))


def as_encoder(encoder) -> Callable:
    """The amortized encoder as ``(φ, x [B, D...]) -> (μ [B, d], log σ [B, d])``.

    Accepts a model spec with one Gaussian stochastic layer
    (:class:`sajax.models.VAESpec`: its ``guide_layer`` at layer 0), a
    ``guide_layer``-shaped callable ``(φ, l, parent)`` (layer 0 is used), or an
    encoder ``(φ, x)``.  A log σ of shape ``[d]`` is broadcast per example.
    """
    layer = getattr(encoder, "guide_layer", None)
    if layer is not None:
        dims = tuple(getattr(encoder, "latent_dims", (None,)))
        if len(dims) != 1:
            raise ValueError(f"encoder: a spec with one Gaussian stochastic layer is needed "
                             f"(local parameters λ = (μ, log σ) of q(h|x)); got latent_dims={dims}")
        return lambda phi, x: _per_example(*layer(phi, 0, x))
    if not callable(encoder):
        raise TypeError(f"encoder must be a VAESpec, a guide_layer (φ, l, parent) -> (μ, log σ) "
                        f"or a callable (φ, x) -> (μ, log σ); got {type(encoder).__name__}")
    if _num_positional(encoder) == 3:
        return lambda phi, x: _per_example(*encoder(phi, 0, x))
    return lambda phi, x: _per_example(*encoder(phi, x))


def gaussian_elbo(model: LatentVariableModel, theta, x, mean, log_std, eps, *, stl: bool = False):
    """Monte Carlo ELBO of q = N(μ, diag σ²) per example (Eq. 7 with Eq. 12), ``[B]``.

    h_s = μ + σ ⊙ ε_s for the given noise ``eps`` ``[S, B, d]``; returns
    (1/S) Σ_s [log p_θ(x, h_s) - log q(h_s)], differentiable in θ, μ, log σ.
    ``stl=True`` evaluates log q at stop_gradient(μ, log σ): the same value,
    and the path-derivative gradient of Roeder et al. (2017), unbiased with
    less variance near the optimum (Sec. 3.2.1, "sticking the landing").
    """
    h = mean + jnp.exp(log_std) * eps
    q_mean, q_log_std = (_sg(mean), _sg(log_std)) if stl else (mean, log_std)
    return jnp.mean(log_joint(model, theta, x, h) - diag_normal_log_prob(h, q_mean, q_log_std), axis=0)


def _clip_per_example(grads, max_norm):
    """Rescale each example's gradient (μ and log σ together) to norm <= ``max_norm``."""
    sq = sum(jnp.sum(jnp.square(g), axis=-1) for g in grads)          # [B]
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(jnp.sqrt(sq), 1e-12))[:, None]
    return tuple(g * scale for g in grads)


def refine_gaussian(key, model: LatentVariableModel, theta, x, mean, log_std, *, num_steps: int,
                    step_size, num_samples: int = 1, elbo: Optional[Callable] = None,
                    max_grad_norm: Optional[float] = None):
    """K steps of gradient ascent on each example's ELBO in λ = (μ, log σ) (SA-VAE's SVI).

    λ_{k+1} = λ_k + α ∇_λ L̂(x; θ, λ_k) (Kim et al. 2018, Algorithm 1), where
    L̂ is :func:`gaussian_elbo` with ``num_samples`` FRESH noise draws per
    step (step k uses ``fold_in(key, k)``), or the closed-form ``elbo(θ, μ,
    log σ, x) -> [B]`` if given (deterministic refinement).  λ_b only enters
    example b's ELBO, so the gradient of the batch sum is per example.
    ``max_grad_norm`` optionally clips each example's λ-gradient (a guard against large steps).
    Differentiable in θ, μ0, log σ0 (reverse mode through the unrolled
    ``lax.scan``).  Shapes: μ, log σ ``[B, d]``; returns (μ_K, log σ_K).
    """
    def total(lam, step_key):
        if elbo is not None:
            return jnp.sum(elbo(theta, lam[0], lam[1], x))
        eps = jax.random.normal(step_key, (num_samples,) + jnp.shape(lam[0]), jnp.result_type(lam[0]))
        return jnp.sum(gaussian_elbo(model, theta, x, lam[0], lam[1], eps))

    def step(lam, k):
        grads = jax.grad(total)(lam, jax.random.fold_in(key, k))
        if max_grad_norm is not None:
            grads = _clip_per_example(grads, max_grad_norm)
        return tuple(a + step_size * g for a, g in zip(lam, grads)), None

    lam, _ = jax.lax.scan(step, _per_example(mean, log_std), jnp.arange(num_steps))
    return lam


def _check_refine_args(num_steps, step_size, num_samples, refine_elbo, max_grad_norm):
    check_positive_int("num_steps", num_steps, minimum=0)
    check_positive("step_size", step_size)
    check_positive_int("num_samples", num_samples)
    if refine_elbo is not None and not callable(refine_elbo):
        raise TypeError(f"refine_elbo must be None or a callable (θ, μ, log σ, x) -> [B], "
                        f"got {type(refine_elbo).__name__}")
    if max_grad_norm is not None:
        check_positive("max_grad_norm", max_grad_norm)


def semi_amortized(model: LatentVariableModel, encoder, *, num_samples: int, num_steps: int = 5,
                   step_size=0.1, differentiate: bool = True,
                   refine_elbo: Optional[Callable] = None,
                   max_grad_norm: Optional[float] = None) -> Estimator:
    """Semi-amortized variational learning, SA-VAE (Kim et al. 2018; review Sec. 3.2.1 item 5).

    Per example: λ0 = (μ, log σ) = enc_φ(x); λ_K by :func:`refine_gaussian`
    (K = ``num_steps`` gradient-ascent steps of size α = ``step_size`` on the
    reparameterized ELBO, Eq. 12-13, fresh noise each step); then, with
    fresh noise ε for the final estimate L̂_K = L̂(x; θ, λ_K) (Eq. 7), the
    ascent directions are

      θ: ∂L̂_K/∂θ at fixed λ_K (the refinement is not backpropagated into θ);
      φ: dL̂_K/dφ through the unrolled steps, dλ_K/dλ0 · dλ0/dφ (Hessian-vector
         products by reverse mode; ``differentiate=True``, SA-VAE), or the
         reparameterized ELBO gradient ∇_φ L̂(x; θ, λ0) at λ0 with the same ε
         (``differentiate=False``: "stopped", λ_K serves θ only).

    Given K = 0 this is :func:`~sajax.estimators.reparam_elbo` with ``kl="mc"``.

    Args:
      model: p_θ(x, h) with a single-array latent h ``[..., B, d]``.
      encoder: a :class:`~sajax.models.VAESpec` (one stochastic layer), its
        ``guide_layer``, or ``(φ, x) -> (μ, log σ)`` (see :func:`as_encoder`).
      num_steps: K >= 0 refinement steps; step_size: α > 0.
      differentiate: φ through the refinement (True) or at λ0 (False).
      num_samples: S noise draws per refinement step and for L̂_K.
      refine_elbo: optional closed-form ``(θ, μ, log σ, x) -> [B]`` used in
        the refinement steps instead of the Monte Carlo ELBO.
      max_grad_norm: optional per-example clipping of the λ-gradient.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``.  Metrics (batch
      means): ``elbo`` = ``objective`` (L̂ at λ_K), ``elbo_initial`` (L̂ at λ0,
      same ε) and ``refinement_gain`` = their difference.
    """
    check_protocols(model, None, need_sampler=False)
    enc = as_encoder(encoder)
    _check_refine_args(num_steps, step_size, num_samples, refine_elbo, max_grad_norm)
    k, s = int(num_steps), int(num_samples)

    def objective(groups, key, batch):
        theta, phi, x = groups[MODEL], groups[GUIDE], batch_data(batch)
        k_ref, k_eps = jax.random.split(key)
        mean0, log_std0 = enc(phi, x)
        lam = refine_gaussian(k_ref, model, _sg(theta), x, mean0, log_std0, num_steps=k,
                              step_size=step_size, num_samples=s, elbo=refine_elbo,
                              max_grad_norm=max_grad_norm)
        if not differentiate:
            lam = _sg(lam)
        eps = jax.random.normal(k_eps, (s,) + jnp.shape(mean0), jnp.result_type(mean0))
        elbo_k = jnp.mean(gaussian_elbo(model, theta, x, *lam, eps))
        elbo_0 = jnp.mean(gaussian_elbo(model, _sg(theta), x, mean0, log_std0, eps))
        # value L̂_K; with differentiate=False the φ-gradient comes from L̂ at λ0
        value = elbo_k if differentiate else elbo_k + elbo_0 - _sg(elbo_0)
        elbo_k, elbo_0 = _sg(elbo_k), _sg(elbo_0)
        return value, {"elbo": elbo_k, "elbo_initial": elbo_0, "refinement_gain": elbo_k - elbo_0}

    return from_objective(objective, metric="elbo", groups=(MODEL, GUIDE), has_aux=True, name="semi_amortized")


# --------------------------------------------------------------------------
# Hamiltonian variational inference.


def leapfrog(grad_log_target: Callable, position, momentum, step_size, num_steps: int):
    """T leapfrog steps of H(z, v) = -log π(z) + ½||v||² (unit mass; Neal 2011, "MCMC using Hamiltonian dynamics", Sec. 2.3).

    v ← v + (ε/2) ∇log π(z);  z ← z + ε v;  v ← v + (ε/2) ∇log π(z),  T times,
    with the gradient at the end of one step reused at the start of the next
    (T + 1 gradient evaluations).  Deterministic, volume preserving and
    reversible (negate v, step again, negate v: back to the start).  Shapes:
    any array ``z``, ``v`` of one shape; ``grad_log_target(z)`` has that
    shape.  Returns ``(z_T, v_T)``; T = 0 returns the inputs.
    """
    def step(carry, _):
        z, v, g = carry
        v = v + 0.5 * step_size * g
        z = z + step_size * v
        g = grad_log_target(z)
        return (z, v + 0.5 * step_size * g, g), None

    (z, v, _), _ = jax.lax.scan(step, (position, momentum, grad_log_target(position)), None,
                                length=num_steps)
    return z, v


class ReverseModel(NamedTuple):
    """HVI's auxiliary reverse model r_ψ(v | x, z), a diagonal Gaussian.

    Attributes:
      init: ``key -> ψ``.
      apply: ``(ψ, x [B, D...], z [S, B, d]) -> (mean, log_std)`` each ``[S, B, d]``.
    """

    init: Callable
    apply: Callable


class _ReverseNet(nn.Module):
    hidden: tuple
    latent_dim: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, inputs):
        return DiagGaussianHead(self.latent_dim)(MLP(self.hidden, self.activation)(inputs))


def mlp_reverse_model(x_dim: int, latent_dim: int, hidden: Sequence[int] = (64,),
                      activation: str = "tanh") -> ReverseModel:
    """r_ψ(v | x, z) = N(v; m_ψ([x, z]), diag exp(2 s_ψ([x, z]))), an MLP on the concatenation.

    ``x`` is flattened to ``x_dim`` features and broadcast over the sample axis of z.
    """
    x_dim, latent_dim = check_positive_int("x_dim", x_dim), check_positive_int("latent_dim", latent_dim)
    net = _ReverseNet(tuple(check_positive_int("hidden width", w) for w in hidden), latent_dim, activation)

    def init(key):
        return net.init(key, jnp.zeros((1, x_dim + latent_dim)))["params"]

    def apply(psi, x, z):
        xf = jnp.reshape(x, (x.shape[0], -1))
        xf = jnp.broadcast_to(xf, z.shape[:-1] + xf.shape[-1:])
        return net.apply({"params": psi}, jnp.concatenate([xf, z], axis=-1))

    return ReverseModel(init, apply)


def auxiliary_bound(model: LatentVariableModel, reverse: Optional[Callable], theta, psi, x, z0,
                    log_q0, v0, *, step_size, num_leapfrog: int):
    """HVI's integrand (Salimans et al. 2015), ``[S, B]``, whose mean over (z0, v0) is the bound.

    (z_T, v_T) = :func:`leapfrog` of log p_θ(x, ·) from (z0, v0) (unit
    Jacobian), then log p_θ(x, z_T) + log r_ψ(v_T|x, z_T) - log q(z0|x) -
    log N(v0; 0, I), where ``log_q0`` = log q(z0|x) ``[S, B]`` and
    ``reverse(ψ, x, z) -> (mean, log_std)``; ``reverse=None`` takes
    r = N(0, I) (then T = 0 gives the ELBO integrand exactly).
    """
    def grad_log_p(z):
        return jax.grad(lambda h: jnp.sum(log_joint(model, theta, x, h)))(z)

    z, v = leapfrog(grad_log_p, z0, v0, step_size, num_leapfrog)
    log_r = std_normal_log_prob(v) if reverse is None else diag_normal_log_prob(v, *reverse(psi, x, z))
    return log_joint(model, theta, x, z) + log_r - log_q0 - std_normal_log_prob(v0)


def hvi(model: LatentVariableModel, guide: ConditionalSampler, *, num_samples: int, num_leapfrog: int = 5,
        step_size=0.05, reverse: Optional[Callable] = None) -> Estimator:
    """Hamiltonian variational inference (Salimans, Kingma & Welling 2015; review Sec. 3.2.1 item 4).

    z0 = h_φ(x, ε) ~ q_φ(z|x) (reparameterized, Eq. 12) and v0 ~ N(0, I), drawn
    with ``split(key)`` (z0 from the first key, as ``guide.sample_and_log_prob``
    would draw it); T = ``num_leapfrog`` leapfrog steps of size ``step_size``
    on log p_θ(x, z); the single-draw bound :func:`auxiliary_bound`, averaged
    over S = ``num_samples`` draws, is ascended in every group by reverse mode
    through the leapfrog trajectory (unbiased for the gradient of the bound).

    The reverse model r_ψ(v_T | x, z_T): ``reverse=None`` uses N(0, I) and the
    estimator is over ``{MODEL: θ, GUIDE: φ}``; a callable ``reverse(ψ, x, z)
    -> (mean, log_std)`` (e.g. ``mlp_reverse_model(...).apply``) reads ψ from
    its own group ``params[REVERSE]`` (``"reverse"``), trained jointly.  The
    step size is fixed (not learned).

    Returns:
      Estimator; state ``()``; metrics ``hvi_bound`` = ``objective`` (batch
      mean of the bound estimate).
    """
    check_protocols(model, guide)
    t = check_positive_int("num_leapfrog", num_leapfrog, minimum=0)
    s = check_positive_int("num_samples", num_samples)
    check_positive("step_size", step_size)
    if reverse is not None and not callable(reverse):
        raise TypeError(f"reverse must be None or a callable (ψ, x, z) -> (mean, log_std), e.g. "
                        f"mlp_reverse_model(...).apply; got {type(reverse).__name__}")
    names = (MODEL, GUIDE) if reverse is None else (MODEL, GUIDE, REVERSE)

    def objective(groups, key, batch):
        x = batch_data(batch)
        k_z, k_v = jax.random.split(key)
        z0, log_q0 = guide.sample_and_log_prob(groups[GUIDE], k_z, x, s)
        if not isinstance(z0, jax.Array):
            raise TypeError("hvi needs a single-array latent z [S, B, d] from the guide")
        v0 = jax.random.normal(k_v, z0.shape, z0.dtype)
        return jnp.mean(auxiliary_bound(model, reverse, groups[MODEL], groups.get(REVERSE), x, z0,
                                        log_q0, v0, step_size=step_size, num_leapfrog=t))

    return from_objective(objective, metric="hvi_bound", groups=names, name="hvi")
