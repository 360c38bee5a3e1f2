"""Potential networks u_θ(x) of neural random fields (review Sec. 4.1, Eq. 38).

A neural random field p_θ(x) = exp(u_θ(x)) / Z(θ) (Eq. 38) implements the
potential u_θ by a network that maps x to one scalar; its layers are
deterministic transformations, not latent variables (the "second type" of
deep random field of Sec. 4.1: deep energy models, generative ConvNets,
neural random fields of Song & Ou 2018).

* :func:`mlp_potential`: Song & Ou's (2018) toy potential, 2 → 100 → 100 → 1,
  leaky ReLU between layers, weight normalization (Salimans & Kingma 2016) on
  every dense layer;
* :func:`conv_potential`: a small ConvNet for flattened 28×28 images
  (two stride-2 3×3 convolutions, 32 and 64 channels, leaky ReLU, a dense
  read-out);
* :func:`energy_from_module`: any Flax module ``x [B, D] -> [B]`` (or
  ``[B, 1]``) as an :class:`EnergySpec`.

The parameter group is ``"potential"`` (:data:`sajax.core.POTENTIAL`).  The
potential must give one scalar per example: ``u(θ, x [..., B, D]) -> [..., B]``;
any other output shape raises ValueError naming the potential and the shape
(:func:`check_potential_output`), at trace time.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax.core import POTENTIAL, EnergyModel, check_data, check_positive_int

__all__ = ["EnergySpec", "mlp_potential", "conv_potential", "energy_from_module",
           "check_potential_output"]


class EnergySpec(NamedTuple):
    """A potential network as a protocol.

    Attributes:
      model: :class:`sajax.core.EnergyModel`; ``potential(θ, x [..., B, D]) -> [..., B]``;
        ``sample`` is None (draw with a kernel, e.g. :mod:`sajax.kernels.langevin`).
      init: ``key -> {"potential": θ}``.
      x_dim: D.
    """

    model: EnergyModel
    init: Callable
    x_dim: int


def check_potential_output(u, x, name: str = "potential"):
    """``u`` unchanged if it holds one scalar per example of ``x [..., B, D]``
    (shape ``x.shape[:-1]``); else ValueError naming ``name`` and the shape."""
    want = tuple(jnp.shape(x)[:-1])
    if tuple(jnp.shape(u)) != want:
        raise ValueError(f"{name} must return one scalar per example, shape {want} for x of shape "
                         f"{tuple(jnp.shape(x))}; got shape {tuple(jnp.shape(u))}")
    return u


class WNDense(nn.Module):
    """Dense layer with weight normalization: y = x (g ⊙ v / ||v||) + bias, the
    norm taken per output column (Salimans & Kingma 2016).  Params ``v [in, out]``,
    ``g [out]`` (initialized to ||v||, so the initial kernel is v), ``bias [out]``."""

    features: int

    @nn.compact
    def __call__(self, x):
        v = self.param("v", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        g = self.param("g", lambda key, shape: jnp.linalg.norm(v, axis=0), (self.features,))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return x @ (v * (g / jnp.linalg.norm(v, axis=0))) + bias


class MLPPotential(nn.Module):
    """x [..., D] -> u [...]: dense layers of widths ``hidden``, ``activation``
    between them, a scalar read-out; weight-normalized if ``weight_norm``."""

    hidden: Sequence[int] = (100, 100)
    activation: Callable = jax.nn.leaky_relu
    weight_norm: bool = True

    @nn.compact
    def __call__(self, x):
        dense = WNDense if self.weight_norm else nn.Dense
        for width in self.hidden:
            x = self.activation(dense(width)(x))
        return dense(1)(x)[..., 0]


class ConvPotential(nn.Module):
    """x [..., H·W·C] -> u [...]: reshaped to ``image_shape``, two stride-2 3×3
    convolutions (``channels``), leaky ReLU, a dense scalar read-out."""

    image_shape: Sequence[int] = (28, 28, 1)
    channels: Sequence[int] = (32, 64)

    @nn.compact
    def __call__(self, x):
        lead = x.shape[:-1]
        h = x.reshape((-1,) + tuple(self.image_shape))
        for c in self.channels:
            h = jax.nn.leaky_relu(nn.Conv(c, (3, 3), strides=(2, 2))(h))
        u = nn.Dense(1)(h.reshape(h.shape[0], -1))[..., 0]
        return u.reshape(lead)


def energy_from_module(module: nn.Module, x_dim: int, *, name: Optional[str] = None,
                       observation: Optional[str] = None) -> EnergySpec:
    """A Flax module ``x [..., D] -> [...]`` (a trailing axis of size 1 is
    squeezed) as an :class:`EnergySpec`; the output shape is checked
    (:func:`check_potential_output`), concrete x is validated (event shape D,
    finite)."""
    x_dim = check_positive_int("x_dim", x_dim)
    name = name or type(module).__name__

    def potential(theta, x):
        check_data(x, name="x", event_shape=(x_dim,))
        u = module.apply({"params": theta}, x)
        if jnp.ndim(u) == jnp.ndim(x) and jnp.shape(u)[-1] == 1:
            u = u[..., 0]
        return check_potential_output(u, x, f"potential {name}")

    def init(key):
        return {POTENTIAL: module.init(key, jnp.zeros((1, x_dim), jnp.float32))["params"]}

    return EnergySpec(EnergyModel(potential, None, observation), init, x_dim)


def mlp_potential(x_dim: int = 2, hidden: Sequence[int] = (100, 100),
                  activation: Callable = jax.nn.leaky_relu, weight_norm: bool = True) -> EnergySpec:
    """Song & Ou's (2018) toy potential u_θ(x): x_dim → hidden... → 1 (Eq. 38).

    Params ``{"potential": {"WNDense_0": {"v", "g", "bias"}, ...}}`` (``Dense_i``
    with ``weight_norm=False``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> spec = mlp_potential()
      >>> theta = spec.init(jax.random.PRNGKey(0))["potential"]
      >>> spec.model.potential(theta, jnp.zeros((5, 2))).shape
      (5,)
    """
    hidden = tuple(check_positive_int("hidden", w) for w in hidden)
    if not callable(activation):
        raise TypeError(f"activation must be callable, got {type(activation).__name__}")
    return energy_from_module(MLPPotential(hidden, activation, bool(weight_norm)), x_dim,
                              name="mlp_potential")


def conv_potential(image_shape: Sequence[int] = (28, 28, 1),
                   channels: Sequence[int] = (32, 64)) -> EnergySpec:
    """A small ConvNet potential over flattened images ``[B, H·W·C]`` (Eq. 38;
    deep energy models / generative ConvNets of Sec. 4.1)."""
    image_shape = tuple(check_positive_int("image_shape", s) for s in image_shape)
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (height, width, channels), got {image_shape}")
    channels = tuple(check_positive_int("channels", c) for c in channels)
    x_dim = image_shape[0] * image_shape[1] * image_shape[2]
    return energy_from_module(ConvPotential(image_shape, channels), x_dim, name="conv_potential")
