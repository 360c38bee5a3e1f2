"""Implicit (sample-only) conditionals as :class:`sajax.core.ImplicitSampler`.

* :func:`implicit_encoder`: AVB's black-box inference model (review Sec. 3.2.1
  item 4; Mescheder et al. 2017): h = f_φ([x, ε]), ε ~ N(0, I), an MLP on x and
  noise concatenated, so q_φ(h|x) has no density; only samples, differentiable
  in φ.
* :func:`gaussian_encoder`: ALI's stochastic encoder z = μ_φ(x) + σ_φ(x) ⊙ ε
  (Dumoulin et al. 2017) or, with ``deterministic=True``, BiGAN's z = E_φ(x)
  (Donahue et al. 2016) (Sec. 3.2.4 item 4).
* :func:`mlp_decoder`: the generator G_θ(z) of ALI/BiGAN as a conditional
  sampler of x given z (deterministic).

Each factory returns an :class:`ImplicitSpec` (``sampler``, ``init``, sizes).
Shapes: ``sampler.sample(params, key, x, n)`` takes ``x`` ``[B, in_dim]`` and
returns ``[n, B, out_dim]``; the MLP runs on the flattened ``[n·B, ...]`` rows.
Built from :class:`sajax.models.MLP` (``_vae``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax.core import ImplicitSampler, check_positive_int
from sajax.models._vae import MLP, DiagGaussianHead, _activation

__all__ = ["ImplicitSpec", "implicit_encoder", "gaussian_encoder", "mlp_decoder", "OUTPUTS"]

OUTPUTS = {"identity": lambda a: a, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


class ImplicitSpec(NamedTuple):
    """An implicit conditional and its parameters.

    Attributes:
      sampler: :class:`sajax.core.ImplicitSampler`, ``(params, key, x, n) -> [n, B, out_dim]``.
      init: ``key -> params`` (a Flax ``params`` tree).
      in_dim, out_dim: sizes of the conditioning input and of the output.
      noise_dim: width of the injected noise ε (0 for a deterministic map).
    """

    sampler: ImplicitSampler
    init: Callable
    in_dim: int
    out_dim: int
    noise_dim: int


class _MLPMap(nn.Module):
    """``MLP(hidden)`` then ``Dense(features)``: ``[M, d_in] -> [M, features]``."""

    hidden: tuple
    features: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, u):
        return nn.Dense(self.features)(MLP(self.hidden, self.activation)(u))


class _GaussianMap(nn.Module):
    """``MLP(hidden)`` then a diagonal Gaussian head: ``[M, d_in] -> (mean, log_std)``."""

    hidden: tuple
    features: int
    activation: str = "relu"

    @nn.compact
    def __call__(self, u):
        return DiagGaussianHead(self.features)(MLP(self.hidden, self.activation)(u))


def _check_sizes(in_dim, out_dim, hidden, activation, names=("x_dim", "latent_dim")):
    in_dim = check_positive_int(names[0], in_dim)
    out_dim = check_positive_int(names[1], out_dim)
    hidden = tuple(check_positive_int("hidden width", w) for w in hidden)
    _activation(activation)
    return in_dim, out_dim, hidden


def _rows(x, n):
    """x ``[B, D]`` broadcast to ``[n, B, D]`` and flattened to ``[n·B, D]``."""
    return jnp.broadcast_to(x, (n,) + x.shape).reshape(-1, x.shape[-1])


def implicit_encoder(x_dim: int, latent_dim: int, hidden: Sequence[int] = (64, 64),
                     noise_dim: Optional[int] = None, activation: str = "relu") -> ImplicitSpec:
    """AVB's black-box q_φ(h|x): h = f_φ([x, ε]), ε ~ N(0, I_noise_dim) (Sec. 3.2.1 item 4).

    Args:
      x_dim, latent_dim: D and d.
      hidden: MLP widths.
      noise_dim: width of ε; None: ``latent_dim``.
      activation: name in :data:`sajax.models.ACTIVATIONS`.

    Example:
      >>> import jax
      >>> spec = implicit_encoder(5, 2, hidden=(8,))
      >>> phi = spec.init(jax.random.PRNGKey(0))
      >>> spec.sampler.sample(phi, jax.random.PRNGKey(1), jax.numpy.ones((3, 5)), 4).shape
      (4, 3, 2)
    """
    x_dim, latent_dim, hidden = _check_sizes(x_dim, latent_dim, hidden, activation)
    noise_dim = latent_dim if noise_dim is None else check_positive_int("noise_dim", noise_dim)
    net = _MLPMap(hidden, latent_dim, activation)

    def init(key):
        return net.init(key, jnp.zeros((1, x_dim + noise_dim)))["params"]

    def sample(phi, key, x, n):
        eps = jax.random.normal(key, (n * x.shape[0], noise_dim), x.dtype)
        h = net.apply({"params": phi}, jnp.concatenate([_rows(x, n), eps], axis=-1))
        return h.reshape(n, x.shape[0], latent_dim)

    return ImplicitSpec(ImplicitSampler(sample), init, x_dim, latent_dim, noise_dim)


def gaussian_encoder(x_dim: int, latent_dim: int, hidden: Sequence[int] = (64, 64), *,
                     deterministic: bool = False, activation: str = "relu") -> ImplicitSpec:
    """ALI's z = μ_φ(x) + σ_φ(x) ⊙ ε (Dumoulin et al. 2017), or BiGAN's z = E_φ(x)
    with ``deterministic=True`` (Donahue et al. 2016); Sec. 3.2.4 item 4.

    Example:
      >>> import jax
      >>> spec = gaussian_encoder(5, 2, hidden=(8,), deterministic=True)
      >>> phi = spec.init(jax.random.PRNGKey(0))
      >>> spec.sampler.sample(phi, jax.random.PRNGKey(1), jax.numpy.ones((3, 5)), 1).shape
      (1, 3, 2)
    """
    x_dim, latent_dim, hidden = _check_sizes(x_dim, latent_dim, hidden, activation)
    net = (_MLPMap if deterministic else _GaussianMap)(hidden, latent_dim, activation)

    def init(key):
        return net.init(key, jnp.zeros((1, x_dim)))["params"]

    def sample(phi, key, x, n):
        out = net.apply({"params": phi}, x)                       # computed once, broadcast over n
        if deterministic:
            return jnp.broadcast_to(out, (n,) + out.shape)
        mean, log_std = out
        return mean + jnp.exp(log_std) * jax.random.normal(key, (n,) + mean.shape, mean.dtype)

    return ImplicitSpec(ImplicitSampler(sample), init, x_dim, latent_dim, 0 if deterministic else latent_dim)


def mlp_decoder(latent_dim: int, x_dim: int, hidden: Sequence[int] = (64, 64), *,
                output: str = "identity", activation: str = "relu") -> ImplicitSpec:
    """ALI/BiGAN's generator x = G_θ(z), deterministic, as a sampler of x given z.

    Args:
      output: ``"identity"``, ``"sigmoid"`` (pixels in [0, 1]) or ``"tanh"``.

    Example:
      >>> import jax
      >>> spec = mlp_decoder(2, 5, hidden=(8,), output="sigmoid")
      >>> theta = spec.init(jax.random.PRNGKey(0))
      >>> spec.sampler.sample(theta, jax.random.PRNGKey(1), jax.numpy.ones((3, 2)), 1).shape
      (1, 3, 5)
    """
    latent_dim, x_dim, hidden = _check_sizes(latent_dim, x_dim, hidden, activation,
                                             ("latent_dim", "x_dim"))
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {output!r}")
    net, squash = _MLPMap(hidden, x_dim, activation), OUTPUTS[output]

    def init(key):
        return net.init(key, jnp.zeros((1, latent_dim)))["params"]

    def sample(theta, key, z, n):
        del key
        out = squash(net.apply({"params": theta}, z))
        return jnp.broadcast_to(out, (n,) + out.shape)

    return ImplicitSpec(ImplicitSampler(sample), init, latent_dim, x_dim, 0)
