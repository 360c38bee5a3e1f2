"""Fully visible autoregressive models (review Sec. 3.1.3): NADE, MADE (and mask
ensembles), PixelCNN.

A fully visible autoregressive model factorizes p_θ(x) = Π_i p_θ(x_i | x_<i)
(review Eq. 6 with the chain rule in a fixed order); with Bernoulli
conditionals log p_θ(x) is exact and normalized, so these models are
:class:`sajax.core.TractableModel` s trained by maximum likelihood
(:func:`sajax.estimators._likelihood.maximum_likelihood`):

* :func:`nade` (Larochelle & Murray 2011): shared weights, the O(DH)
  recurrence a_{i+1} = a_i + W[:, i] x_i (one cumsum), h_i = σ(a_i),
  p(x_i = 1 | x_<i) = σ(b_i + V_i·h_i);
* :func:`made` (Germain et al. 2015): a masked MLP (:mod:`._made`); with
  ``num_masks = M > 1`` M (order, connectivity) mask sets share the weights and
  log p(x) = logsumexp_m log p_m(x) - log M (a mixture of the M models);
* :func:`pixelcnn` (van den Oord et al. 2016): a mask-A 7x7 convolution, mask-B
  3x3 residual convolutions and a 1x1 head on binary images in raster order;
The DARN-style latent-variable model, whose autoregressive prior and guide
are MADEs sampled by :func:`ancestral_scan`, is :func:`sajax.models.darn_sbn`
(in ``_sbn``, with the other sigmoid belief nets).

Shapes: ``x`` is ``[B, D]`` (images flattened, like every sajax model).  Ancestral sampling is one
``lax.scan`` over the D dimensions (:func:`ancestral_scan`: D network passes,
exact); NADE's scan carries its O(H) state instead.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from sajax.models._autoregressive import made
    >>> spec = made(4, hidden=(8,), num_masks=3, seed=0)
    >>> theta = spec.init(jax.random.PRNGKey(0))["model"]
    >>> x = jnp.asarray([[0., 1., 1., 0.]])
    >>> lp = spec.model.log_prob(theta, x)
    >>> members = jnp.stack([spec.log_prob_mask(theta, x, m) for m in range(3)])
    >>> bool(jnp.allclose(lp, jax.nn.logsumexp(members, 0) - jnp.log(3.0)))
    True
    >>> spec.model.sample(theta, jax.random.PRNGKey(1), 5).shape
    (5, 4)
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax._densities import bernoulli_log_prob
from sajax.core import MODEL, TractableModel, check_positive_int
from sajax.models._common import _bernoulli_sample, _check_x
from sajax.models._made import MADE, made_mask_sets
from sajax.models._vae import ACTIVATIONS

__all__ = ["ARSpec", "NADE", "MaskedConv2D", "PixelCNN", "ancestral_scan", "nade", "made", "pixelcnn"]


class ARSpec(NamedTuple):
    """A fully visible autoregressive model as sajax protocols.

    Attributes:
      model: :class:`sajax.core.TractableModel` (exact ``log_prob``, ancestral
        ``sample``, ``observation="bernoulli"``).
      init: ``key -> {"model": θ}``.
      x_dim: D.
      logits: ``(θ, x) -> [B, D]`` the conditional logits of p(x_i = 1 | x_<i)
        (mask set 0 for a MADE).
      orders: ``[M, D]`` int, the degree (1-based position in the order) of
        each dimension under each of the M mask sets (M = 1 but for MADE).
      log_prob_mask: ``(θ, x, m) -> [B]`` log p_m(x) of mask set m (MADE; else None).
      random_mask_log_prob: ``(θ, key, x) -> [B]`` log p_m(x) with m drawn
        uniformly from ``key``: MADE's order/connectivity-agnostic training
        objective (pass it to ``maximum_likelihood(..., stochastic_log_prob=)``).
    """

    model: TractableModel
    init: Callable
    x_dim: int
    logits: Callable
    orders: np.ndarray
    log_prob_mask: Optional[Callable] = None
    random_mask_log_prob: Optional[Callable] = None


def ancestral_scan(logits_fn: Callable, positions, key, x0):
    """Ancestral sampling of Π_t p(x_{π_t} | x_{π_<t}) as one ``lax.scan`` over t.

    Args:
      logits_fn: ``x [n, D] -> [n, D]`` conditional logits; entry i may depend
        on the entries filled before i only (autoregressive).
      positions: ``[D]`` or ``[n, D]`` int: ``positions[..., t]`` is the
        dimension filled at step t (the inverse of the order).
      key: PRNG key; x0: ``[n, D]`` starting values (overwritten).
    Returns: ``x [n, D]`` float {0, 1}, no gradient path.
    """
    n, d = x0.shape
    positions = jnp.broadcast_to(jnp.asarray(positions), (n, d))
    rows = jnp.arange(n)

    def step(x, inp):
        k, pos = inp
        logit = logits_fn(x)[rows, pos]
        return x.at[rows, pos].set(_bernoulli_sample(k, logit)), None

    x, _ = jax.lax.scan(step, x0, (jax.random.split(key, d), positions.T))
    return jax.lax.stop_gradient(x)


def _positions(orders) -> np.ndarray:
    """The inverse permutations of 1-based ``orders`` ``[M, D]``: dimension filled at step t."""
    return np.argsort(np.asarray(orders), axis=-1)


def _module_init(module, key, x_dim, context_dim=None):
    x = jnp.zeros((1, x_dim))
    if context_dim is None:
        return module.init(key, x)["params"]
    return module.init(key, x, jnp.zeros((1, context_dim)))["params"]


# --------------------------------------------------------------------------
# NADE


class NADE(nn.Module):
    """NADE logits (Larochelle & Murray 2011, Eq. 2-3): ``x [..., D] -> [..., D]``.

    a_i = c + Σ_{j<i} W[j] x_j, h_i = σ(a_i), logit_i = b_i + V[i]·h_i, computed
    by a ``lax.scan`` over i that carries a_i ``[..., H]`` (the recurrence of
    Larochelle & Murray): O(DH) per example and ``[..., H]`` memory a step.  A
    cumsum over a ``[..., D, H]`` tensor is the same sum, but XLA lowers it to a
    window reduction of O(D²H) on CPU: 7× slower for D = 784, H = 500
    (benchmarks/README.md).  Parameters ``W, V [D, H]``, ``c [H]``, ``b [D]``.
    """

    x_dim: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        d, h = self.x_dim, self.hidden
        w = self.param("W", nn.initializers.normal(1.0 / math.sqrt(d)), (d, h), jnp.float32)
        c = self.param("c", nn.initializers.zeros, (h,), jnp.float32)
        v = self.param("V", nn.initializers.normal(1.0 / math.sqrt(h)), (d, h), jnp.float32)
        b = self.param("b", nn.initializers.zeros, (d,), jnp.float32)
        def step(a, inp):                                                  # a = a_i [..., H]
            xi, wi, vi = inp
            return a + xi[..., None] * wi, jax.nn.sigmoid(a) @ vi

        a0 = jnp.broadcast_to(c, x.shape[:-1] + (h,))
        _, logits = jax.lax.scan(step, a0, (jnp.moveaxis(x, -1, 0), w, v))  # [D, ...]
        return b + jnp.moveaxis(logits, 0, -1)


def _nade_sample(theta, key, n):
    """Ancestral NADE sample ``[n, D]``: a scan over i carrying a_i ``[n, H]`` (O(DH))."""
    w, c, v, b = theta["W"], theta["c"], theta["V"], theta["b"]

    def step(a, inp):
        k, wi, vi, bi = inp
        xi = _bernoulli_sample(k, bi + jax.nn.sigmoid(a) @ vi)            # [n]
        return a + xi[:, None] * wi, xi

    a0 = jnp.broadcast_to(c, (n, c.shape[0]))
    _, xs = jax.lax.scan(step, a0, (jax.random.split(key, w.shape[0]), w, v, b))
    return xs.T


def _tractable(logits, x_dim, sample) -> TractableModel:
    """A Bernoulli :class:`TractableModel` from ``logits(θ, x)``."""

    def log_prob(theta, x):
        x = _check_x(x, x_dim)
        return bernoulli_log_prob(logits(theta, x), x)

    return TractableModel(log_prob=log_prob, sample=sample, observation="bernoulli")


def nade(x_dim: int, hidden: int = 500) -> ARSpec:
    """NADE with ``hidden`` units (review Sec. 3.1.3; Larochelle & Murray 2011).

    Returns: :class:`ARSpec`; θ = ``{"W": [D, H], "c": [H], "V": [D, H], "b": [D]}``.
    """
    x_dim, hidden = check_positive_int("x_dim", x_dim), check_positive_int("hidden", hidden)
    net = NADE(x_dim, hidden)

    def logits(theta, x):
        return net.apply({"params": theta}, x)

    model = _tractable(logits, x_dim, _nade_sample)
    return ARSpec(model, lambda key: {MODEL: _module_init(net, key, x_dim)}, x_dim, logits,
                  np.arange(1, x_dim + 1)[None])


# --------------------------------------------------------------------------
# MADE and its mask ensembles


def _made_log_probs(net, num_masks, x_dim):
    """``(logits(θ, x, m), log_prob_mask(θ, x, m), log_prob(θ, x))`` of a MADE ensemble."""

    def logits(theta, x, m=0):
        return net.apply({"params": theta}, x, mask_index=m)[..., 0]

    def log_prob_mask(theta, x, m):
        x = _check_x(x, x_dim)
        return bernoulli_log_prob(logits(theta, x, m), x)

    def log_prob(theta, x):
        if num_masks == 1:
            return log_prob_mask(theta, x, 0)
        x = _check_x(x, x_dim)
        lps = jax.vmap(lambda m: log_prob_mask(theta, x, m))(jnp.arange(num_masks))   # [M, B]
        return jax.nn.logsumexp(lps, axis=0) - math.log(num_masks)

    return logits, log_prob_mask, log_prob


def _made_sampler(logits, orders):
    """Mixture sampling: each sample picks a mask set m uniformly, then D ancestral passes."""
    positions = jnp.asarray(_positions(orders))
    num_masks, d = orders.shape

    def sample(theta, key, n):
        k_mask, k_x = jax.random.split(key)
        ms = jax.random.randint(k_mask, (n,), 0, num_masks)

        def fn(x):
            if num_masks == 1:
                return logits(theta, x, 0)
            return jax.vmap(lambda row, m: logits(theta, row, m))(x, ms)

        return ancestral_scan(fn, positions[ms], k_x, jnp.zeros((n, d)))

    return sample


def made(x_dim: int, hidden=(500,), num_masks: int = 1, order=None, seed=None,
         activation: str = "relu", resample_order: bool = True) -> ARSpec:
    """MADE over binary x (Germain et al. 2015), optionally an ensemble of M masks.

    Args:
      x_dim: D.  hidden: hidden widths.  activation: a name in ``ACTIVATIONS``.
      num_masks: M mask sets sharing the weights; log p(x) =
        logsumexp_m log p_m(x) - log M (the mixture; MADE Sec. 4, test time).
      order: the order of mask set 0 (a permutation of 1..D; None: identity).
      seed: None: deterministic connectivity and one mask set; else the seed
        of the hidden degrees (and of the orders of sets m >= 1).
      resample_order: sets m >= 1 use random orders (else only connectivity varies).
    Returns: :class:`ARSpec` with ``log_prob_mask`` and ``random_mask_log_prob``
      (training with mask resampling: one uniformly drawn set per call).
    """
    x_dim = check_positive_int("x_dim", x_dim)
    hidden = tuple(check_positive_int("hidden width", w) for w in hidden)
    num_masks = check_positive_int("num_masks", num_masks)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if num_masks > 1 and seed is None:
        seed = 0
    order = None if order is None else tuple(int(o) for o in np.asarray(order).ravel())
    orders, _ = made_mask_sets(x_dim, hidden, num_masks, order, seed, 1, resample_order)  # validates
    net = MADE(x_dim, hidden, 1, order, seed, activation, None, num_masks, resample_order)
    logits, log_prob_mask, log_prob = _made_log_probs(net, num_masks, x_dim)

    def random_mask_log_prob(theta, key, x):
        return log_prob_mask(theta, x, jax.random.randint(key, (), 0, num_masks))

    model = TractableModel(log_prob, _made_sampler(logits, orders), "bernoulli")
    return ARSpec(model, lambda key: {MODEL: _module_init(net, key, x_dim)}, x_dim, logits,
                  orders, log_prob_mask, random_mask_log_prob)


# --------------------------------------------------------------------------
# PixelCNN


def _conv_mask(size: int, mask_type: str, in_ch: int, out_ch: int) -> np.ndarray:
    """PixelCNN mask ``[k, k, in, out]``: rows above the centre, and the centre
    row left of the centre (type A) or up to it (type B) (van den Oord et al. 2016)."""
    m = np.ones((size, size, in_ch, out_ch), np.float32)
    c = size // 2
    m[c, c + (mask_type == "B"):] = 0.0
    m[c + 1:] = 0.0
    return m


class MaskedConv2D(nn.Module):
    """A 'SAME' convolution with a PixelCNN mask: ``[N, H, W, C] -> [N, H, W, features]``."""

    features: int
    size: int
    mask_type: str = "B"

    @nn.compact
    def __call__(self, x):
        if self.mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {self.mask_type!r}")
        shape = (self.size, self.size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        mask = jnp.asarray(_conv_mask(self.size, self.mask_type, x.shape[-1], self.features))
        y = jax.lax.conv_general_dilated(x, kernel * mask, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


class PixelCNN(nn.Module):
    """PixelCNN logits for binary images: ``x [..., H·W] -> [..., H·W]`` (raster order).

    mask-A 7x7 conv, ``num_layers`` residual blocks h + convB_3x3(relu(h)),
    then relu, 1x1 conv (``channels``), relu, 1x1 conv to one logit per pixel.
    """

    height: int
    width: int
    channels: int = 32
    num_layers: int = 4

    @nn.compact
    def __call__(self, x):
        lead = x.shape[:-1]
        h = x.reshape((-1, self.height, self.width, 1))
        h = MaskedConv2D(self.channels, 7, "A")(h)
        for _ in range(self.num_layers):
            h = h + MaskedConv2D(self.channels, 3, "B")(jax.nn.relu(h))
        h = jax.nn.relu(nn.Dense(self.channels)(jax.nn.relu(h)))
        return nn.Dense(1)(h).reshape(lead + (self.height * self.width,))


def pixelcnn(height: int = 28, width: int = 28, channels: int = 32, num_layers: int = 4) -> ARSpec:
    """A small PixelCNN over binary ``height x width`` images, flattened ``[B, H·W]``.

    Exact log p(x) in one pass; sampling is :func:`ancestral_scan` over the H·W
    pixels in raster order (H·W network passes: exact, slow for big images).
    """
    height, width = check_positive_int("height", height), check_positive_int("width", width)
    channels = check_positive_int("channels", channels)
    num_layers = check_positive_int("num_layers", num_layers, minimum=0)
    d = height * width
    net = PixelCNN(height, width, channels, num_layers)

    def logits(theta, x):
        return net.apply({"params": theta}, x)

    def sample(theta, key, n):
        return ancestral_scan(lambda x: logits(theta, x), jnp.arange(d), key, jnp.zeros((n, d)))

    return ARSpec(_tractable(logits, d, sample), lambda key: {MODEL: _module_init(net, key, d)},
                  d, logits, np.arange(1, d + 1)[None])
