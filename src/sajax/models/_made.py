"""MADE building blocks: masked autoencoders for distribution estimation
(review Sec. 3.1.3; Germain, Gregor, Murray & Larochelle 2015, "MADE").

A MADE is an MLP whose weight matrices are multiplied by binary masks so that
output i depends only on the inputs that precede dimension i in an ordering:

* every input dimension i has a degree ``order[i]`` ∈ {1..D} (its position in
  the autoregressive order; the identity order is ``order[i] = i + 1``);
* every hidden unit k of layer l has a degree m_l(k) ∈ [min m_{l-1}, D-1];
* hidden masks connect unit j of layer l-1 to unit k of layer l iff
  m_l(k) >= m_{l-1}(j) (MADE Eq. 12); the output mask connects hidden unit j to
  the outputs of dimension i iff ``order[i] > m_L(j)`` (strictly, Eq. 13).

Hence ∂ out[..., i, :] / ∂ x_j = 0 unless order[j] < order[i], and
p(x) = Π_i p(x_i | out[..., i, :]) is a normalized autoregressive density.

Masks are NumPy constants built once (never traced).  A :class:`MADE` may hold
M mask sets sharing one set of weights (order- and connectivity-agnostic
training, MADE Sec. 4); the mask set is picked per call by ``mask_index``
(an int, possibly traced).  Flax kernel layout ``[in, out]``; outputs are
ordered so that ``out[..., i, j]`` is parameter j of dimension i.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from sajax.models._made import MADE, made_degrees, made_masks
    >>> degs = made_degrees(3, (4,), order=(3, 1, 2))
    >>> [d.tolist() for d in degs]
    [[3, 1, 2], [1, 2, 1, 2]]
    >>> made_masks(degs)[1].astype(int).tolist()     # output mask [hidden, D]
    [[1, 0, 1], [1, 0, 0], [1, 0, 1], [1, 0, 0]]
    >>> net = MADE(input_dim=3, hidden=(8,), num_outputs_per_dim=2, order=(3, 1, 2))
    >>> x = jnp.ones((5, 3))
    >>> params = net.init(jax.random.PRNGKey(0), x)
    >>> net.apply(params, x).shape
    (5, 3, 2)
"""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax.models._vae import ACTIVATIONS

__all__ = ["made_degrees", "made_masks", "made_mask_sets", "check_order", "MaskedDense", "MADE"]


def check_order(order, input_dim: int) -> np.ndarray:
    """``order`` as an int array [D], or ValueError unless it is a permutation of 1..D."""
    arr = np.asarray(order)
    if arr.shape != (input_dim,) or not np.issubdtype(arr.dtype, np.integer) \
            or sorted(arr.tolist()) != list(range(1, input_dim + 1)):
        raise ValueError(f"order must be a permutation of 1..{input_dim} (the degree of each "
                         f"input dimension), got {np.asarray(order).tolist()}")
    return arr.astype(np.int64)


def _rng(key) -> np.random.Generator:
    """A NumPy generator from an int seed, a NumPy generator or a concrete JAX key."""
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return np.random.default_rng(int(key))
    data = key
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        data = jax.random.key_data(key)
    try:
        return np.random.default_rng(np.asarray(data).astype(np.uint64).ravel().tolist())
    except Exception:  # a tracer or anything else
        raise TypeError("key must be an int seed, a numpy Generator or a concrete PRNG key "
                        f"(masks are built outside jit); got {type(key).__name__}") from None


def made_degrees(input_dim: int, hidden: Sequence[int], order=None, key=None) -> list:
    """Degrees of the input and of each hidden layer (MADE Sec. 4).

    Args:
      input_dim: D.
      hidden: widths of the hidden layers.
      order: a permutation of 1..D, the degree of each input dimension;
        None: the identity ``(1, ..., D)``.
      key: None for deterministic cycling of the hidden degrees through
        [min prev degree, D-1]; else an int seed / NumPy generator / concrete
        PRNG key from which they are sampled uniformly in that range
        (connectivity-agnostic training).
    Returns: ``[order [D], m_1 [H_1], ..., m_L [H_L]]`` int arrays.
    """
    if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
        raise ValueError(f"input_dim must be an integer >= 1, got {input_dim!r}")
    for width in hidden:
        if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
            raise ValueError(f"hidden must hold integer widths >= 1, got {tuple(hidden)!r}")
    d = int(input_dim)
    degrees = [check_order(np.arange(1, d + 1) if order is None else order, d)]
    rng = None if key is None else _rng(key)
    for width in hidden:
        low = min(int(degrees[-1].min()), d - 1)
        if d == 1:  # nothing may be seen: hidden units connect to nothing
            deg = np.zeros(width, np.int64)
        elif rng is None:
            deg = low + np.arange(width) % (d - low)
        else:
            deg = rng.integers(low, d, size=width)
        degrees.append(deg.astype(np.int64))
    return degrees


def made_masks(degrees, num_outputs_per_dim: int = 1) -> list:
    """Binary masks ``[in, out]`` (Flax kernel layout) from :func:`made_degrees`.

    Hidden layers: ``mask[j, k] = m_l(k) >= m_{l-1}(j)``; output layer
    (strict): ``mask[j, i·P + p] = order[i] > m_L(j)``, so output unit
    ``i·P + p`` is parameter p of dimension i.  With no hidden layer the
    single mask is ``order[i] > order[j]`` from input j.
    Returns: L + 1 float32 arrays.
    """
    if num_outputs_per_dim < 1:
        raise ValueError(f"num_outputs_per_dim must be >= 1, got {num_outputs_per_dim}")
    masks = [(out[None, :] >= inp[:, None]) for inp, out in zip(degrees[:-1], degrees[1:])]
    last = degrees[-1]
    out_mask = degrees[0][None, :] > last[:, None]
    masks.append(np.repeat(out_mask, num_outputs_per_dim, axis=1))
    return [m.astype(np.float32) for m in masks]


def made_mask_sets(input_dim: int, hidden: Sequence[int], num_masks: int = 1, order=None,
                   seed=None, num_outputs_per_dim: int = 1, resample_order: bool = True):
    """M mask sets for one MADE (order/connectivity-agnostic training, MADE Sec. 4).

    Set 0 uses ``order`` (identity if None) and hidden degrees from ``seed``
    (deterministic cycling if None).  Sets m >= 1 draw their hidden degrees,
    and with ``resample_order`` a random order, from ``seed`` (0 if None).
    Returns: ``(orders [M, D] int, masks)``, masks a list of ``[M, in, out]``.
    """
    if isinstance(num_masks, bool) or not isinstance(num_masks, (int, np.integer)) or num_masks < 1:
        raise ValueError(f"num_masks must be an integer >= 1, got {num_masks!r}")
    rng = np.random.default_rng(0 if seed is None else seed)
    sets = [made_degrees(input_dim, hidden, order, None if seed is None else rng)]
    for _ in range(1, num_masks):
        o = rng.permutation(input_dim) + 1 if resample_order else sets[0][0]
        sets.append(made_degrees(input_dim, hidden, o, rng))
    masks = [made_masks(degs, num_outputs_per_dim) for degs in sets]
    stacked = [np.stack([m[layer] for m in masks]) for layer in range(len(masks[0]))]
    return np.stack([degs[0] for degs in sets]), stacked


class MaskedDense(nn.Module):
    """``y = x @ (W ⊙ mask) + b`` (MADE Eq. 10-11).

    Attributes:
      features: output width.
      mask: static NumPy ``[in, features]`` or ``[M, in, features]`` (M mask
        sets; ``mask_index`` picks one at call time).
      use_bias: add a bias.
    Shapes: ``[..., in] -> [..., features]``.
    """

    features: int
    mask: np.ndarray
    use_bias: bool = True

    @nn.compact
    def __call__(self, x, mask_index=0):
        mask = np.asarray(self.mask)
        if mask.shape[-2:] != (x.shape[-1], self.features) or mask.ndim not in (2, 3):
            raise ValueError(f"mask has shape {mask.shape}, expected [in, features] = "
                             f"[{x.shape[-1]}, {self.features}] (or [M, in, features])")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), mask.shape[-2:], jnp.float32)
        # boolean constants: a 32-mask MADE on MNIST embeds 4x fewer bytes in the program
        m = jnp.asarray(mask > 0)
        m = m if mask.ndim == 2 else m[mask_index]
        y = x @ jnp.where(m, kernel, 0.0)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


def _check_context(context, context_dim, x):
    if context_dim is None and context is not None:
        raise ValueError("context was given but the MADE has context_dim=None")
    if context_dim is not None:
        if context is None:
            raise ValueError(f"context is required (the MADE has context_dim={context_dim})")
        if context.shape[-1] != context_dim:
            raise ValueError(f"context has last axis {context.shape[-1]}, expected context_dim={context_dim}")
        if context.shape[:-1] != x.shape[:-1]:
            context = jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:])
    return context


class MADE(nn.Module):
    """A MADE: ``x [..., D] (, context [..., C]) -> out [..., D, P]`` (Germain et al. 2015).

    out[..., i, :] depends only on x_j with ``order[j] < order[i]`` and on the
    whole context (unmasked ``Dense`` layers from the context into the first
    hidden layer and into the output: the first dimension in the order sees
    the context only).

    Attributes:
      input_dim: D.  hidden: hidden widths.  num_outputs_per_dim: P.
      order: permutation of 1..D (None: identity).
      mask_seed: None: deterministic hidden degrees; int: sampled ones.
      activation: a name in :data:`sajax.models._vae.ACTIVATIONS`.
      context_dim: C, or None for no context.
      num_masks: M mask sets sharing the weights (:func:`made_mask_sets`);
        ``mask_index`` in ``__call__`` picks one.
      resample_order: mask sets m >= 1 get random orders too.
    """

    input_dim: int
    hidden: tuple = ()
    num_outputs_per_dim: int = 1
    order: Optional[tuple] = None
    mask_seed: Optional[int] = None
    activation: str = "relu"
    context_dim: Optional[int] = None
    num_masks: int = 1
    resample_order: bool = True

    def mask_sets(self):
        """``(orders [M, D], masks)`` of :func:`made_mask_sets` for these attributes."""
        return made_mask_sets(self.input_dim, tuple(self.hidden), self.num_masks, self.order,
                              self.mask_seed, self.num_outputs_per_dim, self.resample_order)

    @nn.compact
    def __call__(self, x, context=None, mask_index=0):
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"x has last axis {x.shape[-1]}, expected input_dim={self.input_dim}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        context = _check_context(context, self.context_dim, x)
        act = ACTIVATIONS[self.activation]
        _, masks = self.mask_sets()
        masks = [m[0] if self.num_masks == 1 else m for m in masks]
        h = x
        for layer, mask in enumerate(masks):
            h = MaskedDense(mask.shape[-1], mask, name=f"masked_{layer}")(h, mask_index)
            if context is not None and layer in (0, len(masks) - 1):
                # into the first hidden layer, and into the output, so that the first
                # dimension in the order (no masked input) still depends on the context
                name = "context" if layer == 0 else "context_out"
                h = h + nn.Dense(mask.shape[-1], use_bias=False, name=name)(context)
            if layer < len(masks) - 1:
                h = act(h)
        return h.reshape(h.shape[:-1] + (self.input_dim, self.num_outputs_per_dim))
