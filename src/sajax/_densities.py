"""Log-densities shared by models and estimators: one formula, one implementation.

Pure ``jnp`` expressions (no distribution objects on the hot path); the event
is the last axis and is summed; leading axes broadcast.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["bernoulli_log_prob", "diag_normal_log_prob", "std_normal_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)


def bernoulli_log_prob(logits, value):
    """Σ_i log B[value_i | σ(logits_i)] = Σ_i value_i·l_i - softplus(l_i) over the last axis.

    Linear in ``value``, so it is also defined at relaxed (continuous) values.
    """
    return jnp.sum(value * logits - jax.nn.softplus(logits), axis=-1)


def diag_normal_log_prob(x, mean, log_std):
    """Σ_i log N(x_i; mean_i, exp(log_std_i)²) over the last axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std, axis=-1) - 0.5 * x.shape[-1] * _LOG_2PI


def std_normal_log_prob(h):
    """Σ_i log N(h_i; 0, 1) over the last axis."""
    return -0.5 * jnp.sum(jnp.square(h), axis=-1) - 0.5 * h.shape[-1] * _LOG_2PI
