"""Auxiliary generators for neural random fields (review Sec. 4.2.2-4.2.3).

Two kinds of directed sampler are paired with a potential u_θ(x) (Eq. 38):

* :func:`prescribed_generator`, the *inclusive* auxiliary generator of
  Song & Ou (2018): a prescribed density q_φ(x, h) = q(h) q_φ(x|h) with
  h ~ N(0, I) and q_φ(x|h) = N(x; g_φ(h), σ²I) (σ learned or fixed) or
  Bernoulli(sigmoid(g_φ(h))) for binary x.  It offers samples (x, h) and the
  joint log-density log q_φ(x, h) that Eq. 43 / Algorithm 8 differentiate.
  :func:`song_ou_toy_generator` is their toy network h ∈ R² → 50 → 50 → D
  with batch normalization and ReLU on the hidden layers.
* :func:`batchnorm_generator`, the *exclusive* (implicit) generator of
  Kim & Bengio (2016): x = g_φ(h), h ~ N(0, I), no output noise, with the
  batch-normalization entropy approximation of Sec. 4.2.2,

      H[q_φ(x)] ≈ Σ_{a_i} H[N(μ_{a_i}, σ²_{a_i})] = Σ_{a_i} ½ log(2πe σ²_{a_i}),

  the sum over every batch-normalized activation a_i of the network, where
  σ_{a_i} is the BN layer's trainable scale γ_i (the "variance-related scale
  parameter" of the review).  This is the one version implemented.  It is
  exact for a generator whose only BN layer is its (linear) output layer and
  whose outputs are uncorrelated (x = BN(W h) with W Wᵀ diagonal: then
  x ~ N(β, diag γ²) in the population limit); in general it misses
  ½ log det R (R the correlation matrix of the normalized outputs) and counts
  hidden-layer entropies that do not bound H[q_φ(x)].

Batch normalization runs in *batch-statistics mode* only: each call normalizes
with the mean and variance of the batch it is given (over all leading axes),
and no running averages are kept (there is no mutable state).  Samples of one
batch are therefore not independent, and log q_φ(x, h) of a batch depends on
the whole batch of h, as in Song & Ou's training-mode implementation.

Shapes: h ``[n, d]``, x ``[n, D]``; ``log_joint`` returns ``[n]`` (leading
axes of x and h broadcast).  Parameters φ are a dict ``{"net": flax params}``
plus ``"log_std"`` ``[D]`` when σ is learned.

Example:
  >>> import jax
  >>> from sajax.models._auxiliary import song_ou_toy_generator
  >>> gen = song_ou_toy_generator()
  >>> phi = gen.init(jax.random.PRNGKey(0))
  >>> x, h = gen.sample(phi, jax.random.PRNGKey(1), 5)
  >>> x.shape, h.shape, gen.log_joint(phi, x, h).shape
  ((5, 2), (5, 2), (5,))
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax._densities import bernoulli_log_prob, diag_normal_log_prob, std_normal_log_prob
from sajax.core import check_positive_int

__all__ = [
    "AuxiliaryGenerator",
    "EntropyGenerator",
    "prescribed_generator",
    "song_ou_toy_generator",
    "batchnorm_generator",
    "batchnorm_entropy",
    "OBSERVATIONS",
]

OBSERVATIONS = ("gaussian", "bernoulli")
_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


class _BatchNorm(nn.Module):
    """Batch normalization in batch-statistics mode (no running averages).

    ``(a - mean) / sqrt(var + eps) * scale + bias`` with mean and (biased)
    variance over all leading axes of ``a`` ``[..., w]``; ``scale`` (γ) and
    ``bias`` (β) are ``[w]`` parameters.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, a):
        axes = tuple(range(a.ndim - 1))
        mean = jnp.mean(a, axes, keepdims=True)
        var = jnp.var(a, axes, keepdims=True)
        scale = self.param("scale", nn.initializers.ones, (a.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (a.shape[-1],), jnp.float32)
        return (a - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


class _GeneratorNet(nn.Module):
    """g_φ(h): ``Dense -> [BN] -> ReLU`` per hidden width, then ``Dense(features) -> [BN]``.

    BN layers are named ``bn_<i>`` (hidden) and ``bn_out`` (output), which is
    how :func:`batchnorm_entropy` finds their scales.
    """

    features: int
    hidden: Sequence[int] = (50, 50)
    batch_norm: bool = True
    output_batch_norm: bool = False

    @nn.compact
    def __call__(self, h):
        for i, width in enumerate(self.hidden):
            a = nn.Dense(width)(h)
            if self.batch_norm:
                a = _BatchNorm(name=f"bn_{i}")(a)
            h = jax.nn.relu(a)
        out = nn.Dense(self.features)(h)
        if self.output_batch_norm:
            out = _BatchNorm(name="bn_out")(out)
        return out


class AuxiliaryGenerator(NamedTuple):
    """A prescribed auxiliary generator q_φ(x, h) = q(h) q_φ(x|h) (Song & Ou 2018).

    Attributes:
      init: ``key -> φ``.
      sample: ``(φ, key, n) -> (x [n, D], h [n, d])`` ancestral sample.
      log_joint: ``(φ, x, h) -> [..., n]`` log q(h) + log q_φ(x|h).
      mean: ``(φ, h) -> [..., n, D]`` g_φ(h) (the mean, or the logits for
        Bernoulli x).
      x_dim, latent_dim: D and d.
      observation: ``"gaussian"`` or ``"bernoulli"``.
    """

    init: Callable
    sample: Callable
    log_joint: Callable
    mean: Callable
    x_dim: int
    latent_dim: int
    observation: str


class EntropyGenerator(NamedTuple):
    """An implicit generator x = g_φ(h) with an entropy approximation (Kim & Bengio 2016).

    Attributes:
      init: ``key -> φ``.
      sample: ``(φ, key, n) -> x [n, D]``, differentiable in φ (the shape of
        :class:`sajax.core.ImplicitGenerator`'s ``sample``).
      entropy: ``φ -> scalar`` approximation of H[q_φ(x)] (Sec. 4.2.2).
      x_dim, latent_dim: D and d.
    """

    init: Callable
    sample: Callable
    entropy: Callable
    x_dim: int
    latent_dim: int


def _check_net_args(x_dim, latent_dim, hidden):
    x_dim = check_positive_int("x_dim", x_dim)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    hidden = tuple(check_positive_int("hidden width", w) for w in hidden)
    return x_dim, latent_dim, hidden


def _gaussian_parts(std, learn_std, x_dim):
    """(initial extra params, φ -> log σ [D]) for the Gaussian q_φ(x|h)."""
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be a positive number (σ of q_φ(x|h)), got {std!r}")
    log_std0 = jnp.full((x_dim,), math.log(std), jnp.float32)
    if learn_std:
        return {"log_std": log_std0}, lambda phi: phi["log_std"]
    return {}, lambda phi: log_std0


def prescribed_generator(x_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (50, 50), *,
                         batch_norm: bool = True, observation: str = "gaussian",
                         std: float = 1.0, learn_std: bool = True) -> AuxiliaryGenerator:
    """The inclusive auxiliary generator q_φ(x, h) = q(h) q_φ(x|h) (Sec. 4.2.3, Song & Ou 2018).

    h ~ N(0, I_d); g_φ is :class:`_GeneratorNet` (ReLU hidden layers, BN in
    batch-statistics mode if ``batch_norm``); q_φ(x|h) = N(x; g_φ(h), σ²I)
    for ``observation="gaussian"`` (σ initialized to ``std``, learned per
    coordinate if ``learn_std``), or Π_i Bernoulli(x_i; sigmoid(g_φ(h)_i))
    for ``"bernoulli"``.

    Args:
      x_dim: D.  latent_dim: d.  hidden: widths of the hidden layers
      (``()``: linear g_φ(h) = W h + b).
    Returns: an :class:`AuxiliaryGenerator`.
    """
    x_dim, latent_dim, hidden = _check_net_args(x_dim, latent_dim, hidden)
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation must be one of {OBSERVATIONS}, got {observation!r}")
    net = _GeneratorNet(x_dim, hidden, batch_norm=batch_norm)
    gaussian = observation == "gaussian"
    extra, log_std = _gaussian_parts(std, learn_std, x_dim) if gaussian else ({}, None)

    def init(key):
        return {"net": net.init(key, jnp.zeros((2, latent_dim))), **extra}

    def mean(phi, h):
        return net.apply(phi["net"], h)

    def log_joint(phi, x, h):
        g = mean(phi, h)
        log_lik = (diag_normal_log_prob(x, g, log_std(phi)) if gaussian
                   else bernoulli_log_prob(g, x))
        return std_normal_log_prob(h) + log_lik

    def sample(phi, key, n):
        k_h, k_x = jax.random.split(key)
        h = jax.random.normal(k_h, (n, latent_dim))
        g = mean(phi, h)
        if gaussian:
            x = g + jnp.exp(log_std(phi)) * jax.random.normal(k_x, g.shape)
        else:
            x = (jax.random.uniform(k_x, g.shape) < jax.nn.sigmoid(g)).astype(g.dtype)
        return x, h

    return AuxiliaryGenerator(init, sample, log_joint, mean, x_dim, latent_dim, observation)


def song_ou_toy_generator(x_dim: int = 2, *, std: float = 1.0, learn_std: bool = True) -> AuxiliaryGenerator:
    """Song & Ou's (2018) toy generator: h ∈ R² → 50 → 50 (BN + ReLU) → x ∈ R^D, Gaussian q_φ(x|h).

    BN runs in batch-statistics mode (no running state; see the module docstring).
    """
    return prescribed_generator(x_dim, 2, (50, 50), batch_norm=True, observation="gaussian",
                                std=std, learn_std=learn_std)


def batchnorm_entropy(phi) -> jax.Array:
    """Kim & Bengio's entropy approximation Σ_{a_i} ½ log(2πe γ_i²) (Sec. 4.2.2).

    Sums over the scales γ of every BN layer (``bn_*``) of a
    :class:`_GeneratorNet`'s parameters ``phi["net"]``; a scalar.
    """
    layers = phi["net"]["params"]
    scales = [layers[name]["scale"] for name in sorted(layers) if name.startswith("bn_")]
    if not scales:
        return jnp.zeros(())
    return sum(jnp.sum(0.5 * (_LOG_2PI_E + jnp.log(jnp.square(s)))) for s in scales)


def batchnorm_generator(x_dim: int, latent_dim: int = 2, hidden: Sequence[int] = (50, 50), *,
                        output_batch_norm: bool = False) -> EntropyGenerator:
    """The exclusive (implicit) generator of Kim & Bengio (2016): x = g_φ(h), h ~ N(0, I_d).

    Every hidden layer is ``Dense -> BN -> ReLU`` (BN in batch-statistics
    mode); ``output_batch_norm`` adds a BN layer on the output.  ``entropy``
    is :func:`batchnorm_entropy` (review Sec. 4.2.2): exact for
    ``hidden=()`` with ``output_batch_norm=True`` and uncorrelated outputs,
    an ad hoc surrogate otherwise (module docstring).
    """
    x_dim, latent_dim, hidden = _check_net_args(x_dim, latent_dim, hidden)
    if not hidden and not output_batch_norm:
        raise ValueError("batchnorm_generator needs a BN layer for its entropy approximation: "
                         "give hidden layers or output_batch_norm=True")
    net = _GeneratorNet(x_dim, hidden, batch_norm=True, output_batch_norm=output_batch_norm)

    def init(key):
        return {"net": net.init(key, jnp.zeros((2, latent_dim)))}

    def sample(phi, key, n):
        return net.apply(phi["net"], jax.random.normal(key, (n, latent_dim)))

    return EntropyGenerator(init, sample, batchnorm_entropy, x_dim, latent_dim)
