"""Exact answers by enumeration for tiny binary-latent models (DESIGN.md,
"How to know an estimator is right").

Every configuration of a few binary latents is listed, so log p(x), the
posterior p(h|x) and expectations under q(h|x) are exact sums.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def all_binary(n: int) -> jnp.ndarray:
    """All 2**n binary vectors of length n, shape [2**n, n], float32."""
    return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=n)), dtype=jnp.float32)


def enumerate_latents(sizes):
    """Every joint configuration of binary layers of the given sizes.

    Returns a tuple of arrays, layer l of shape [M, sizes[l]] with
    M = 2**sum(sizes); row m of every layer belongs to configuration m.
    """
    flat = all_binary(int(sum(sizes)))
    cuts = np.cumsum(sizes)[:-1]
    return tuple(jnp.split(flat, cuts, axis=1))


def broadcast_latents(h, batch: int):
    """[M, d] leaves -> [M, B, d] (the [K, B, d] sample layout with K = M)."""
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:, None, :], (a.shape[0], batch, a.shape[1])), h)


def exact_log_marginal(log_joint_fn, x, sizes):
    """log p(x) = logsumexp_h log p(x, h), shape [B].

    Args:
      log_joint_fn: h -> [M, B] log p(x, h) for latents with leaves [M, B, d].
      x: [B, D] data (only its batch size is used here).
      sizes: binary layer sizes.
    """
    h = broadcast_latents(enumerate_latents(sizes), x.shape[0])
    return jax.nn.logsumexp(log_joint_fn(h), axis=0)


def exact_posterior(log_joint_fn, x, sizes):
    """p(h|x) over all configurations, shape [M, B] (columns sum to one)."""
    h = broadcast_latents(enumerate_latents(sizes), x.shape[0])
    lj = log_joint_fn(h)
    return jnp.exp(lj - jax.nn.logsumexp(lj, axis=0, keepdims=True))


def exact_expectation(log_q_fn, f_fn, x, sizes):
    """E_{q(h|x)}[f(h)] by enumeration, shape [B].

    log_q_fn: h -> [M, B] log q(h|x); f_fn: h -> [M, B].
    """
    h = broadcast_latents(enumerate_latents(sizes), x.shape[0])
    return jnp.sum(jnp.exp(log_q_fn(h)) * f_fn(h), axis=0)
