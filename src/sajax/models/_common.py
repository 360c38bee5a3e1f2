"""Pieces shared by the discrete-latent models (:mod:`._sbn`, :mod:`._categorical`)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax.core import check_data


def _bernoulli_sample(key, logits):
    """Float {0, 1} sample of FB[σ(logits)]; no gradient path (discrete)."""
    u = jax.random.uniform(key, logits.shape, dtype=logits.dtype)
    return jax.lax.stop_gradient((u < jax.nn.sigmoid(logits)).astype(logits.dtype))


class _Transform(nn.Module):
    """T_l of Eq. 2: linear (``hidden=()``) or tanh MLP, output logits.

    Parameters: ``Dense_0, ..., Dense_{len(hidden)}`` (the last one gives the
    logits), each ``{"kernel": [in, out], "bias": [out]}`` (Flax's layout:
    ``Dense(h) = h @ kernel + bias``).
    """

    features: int
    hidden: tuple = ()

    @nn.compact
    def __call__(self, h):
        for width in self.hidden:
            h = jnp.tanh(nn.Dense(width)(h))
        return nn.Dense(self.features)(h)


def _check_x(x, x_dim):
    # Traced x passes through (checked where it entered); concrete x is validated.
    return check_data(x, name="x", event_shape=(x_dim,), binary=True)
