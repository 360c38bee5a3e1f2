"""Exact gradients by enumeration for models with a few binary latents.

DESIGN.md, "How to know an estimator is right": for a tiny sigmoid belief
net (review Eq. 2) every configuration of the d binary latents can be
listed (M = 2^d), so the objectives the estimators follow are exact sums:

* log p_θ(x) = log Σ_h p_θ(x, h)                          (maximum likelihood, Eq. 27's target)
* ELBO L(θ, φ; x) = Σ_h q_φ(h|x) [log p_θ(x, h) - log q_φ(h|x)]      (Eq. 7)
* inclusive  Σ_h p_θ(h|x) log q_φ(h|x), the φ-objective of RWS / JSA  (Eq. 25, 26)

and ``jax.grad`` of them gives the exact gradients that
:func:`sajax.diagnostics.gradient_stats`' means are compared with.
"""
from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import GUIDE, MODEL, log_joint, require_groups

__all__ = ["ExactGradients", "exact_gradients"]


class ExactGradients(NamedTuple):
    """Exact objectives and their DESCENT directions (``-∇``, what estimators return).

    Every gradient is a tree like ``{"model": θ, "guide": φ}`` of the batch
    MEAN of the per-example objective.

    Attributes:
      log_p: ``-∇ mean_b log p_θ(x_b)`` (the guide part is zero).
      elbo: ``-∇ mean_b L(θ, φ; x_b)``.
      inclusive: ``-∇_φ mean_b Σ_h p_θ(h|x_b) log q_φ(h|x_b)`` (posterior held
        fixed; the model part is zero).
      log_marginal: ``[B]`` log p_θ(x).
      elbo_value: ``[B]`` L(θ, φ; x).
    """

    log_p: Any
    elbo: Any
    inclusive: Any
    log_marginal: jax.Array
    elbo_value: jax.Array


def _configurations(sizes, treedef, shapes, batch: int):
    """All 2^d binary configurations as latent trees with leaves ``[M, B, ...]``."""
    flat = np.asarray(list(itertools.product([0.0, 1.0], repeat=int(sum(sizes)))), np.float32)
    leaves = np.split(flat, np.cumsum(sizes)[:-1], axis=1)
    return jax.tree_util.tree_unflatten(treedef, [
        jnp.broadcast_to(jnp.asarray(a).reshape((a.shape[0], 1) + s), (a.shape[0], batch) + s)
        for a, s in zip(leaves, shapes)])


def exact_gradients(model, guide, params, x, *, max_latents: int = 10) -> ExactGradients:
    """Exact log p(x), ELBO and inclusive-KL gradients by enumerating binary latents.

    Args:
      model: :class:`sajax.core.LatentVariableModel` p_θ(x, h) whose latents
        are all Bernoulli (every leaf of h in {0, 1}; not one-hot categorical
        leaves, which would need a different enumeration); guide: q_φ(h|x).
      params: ``{"model": θ, "guide": φ}`` (other groups are ignored).
      x: ``[B, D...]`` data (binary for a Bernoulli likelihood).
      max_latents: refuse more than this many binary latents (2^d configurations
        of a ``[2^d, B, D]`` likelihood are held at once).
    Returns: :class:`ExactGradients`.
    Raises: ValueError when the latents are too many or a sample is not binary.
    """
    theta, phi = require_groups(params, (MODEL, GUIDE), "exact_gradients")
    x = jnp.asarray(x)
    h0, _ = guide.sample_and_log_prob(phi, jax.random.PRNGKey(0), x[:1], 1)  # only its structure is used
    leaves, treedef = jax.tree_util.tree_flatten(h0)
    if not all(bool(jnp.all((a == 0) | (a == 1))) for a in leaves):
        raise ValueError("exact_gradients enumerates binary latents; the guide's samples are not in {0, 1}")
    shapes = tuple(tuple(a.shape[2:]) for a in leaves)
    sizes = tuple(int(np.prod(s)) for s in shapes)
    if sum(sizes) > max_latents:
        raise ValueError(f"exact_gradients: {sum(sizes)} binary latents give 2^{sum(sizes)} configurations; "
                         f"at most max_latents={max_latents}")
    h = _configurations(sizes, treedef, shapes, x.shape[0])
    g_lp, lp, g_elbo, elbo, g_incl = _exact_terms(model, guide, theta, phi, x, h)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, {MODEL: theta, GUIDE: phi})
    return ExactGradients(log_p={**zeros, MODEL: g_lp}, elbo=g_elbo, inclusive={**zeros, GUIDE: g_incl},
                          log_marginal=lp, elbo_value=elbo)


@functools.partial(jax.jit, static_argnums=(0, 1))   # compiled once per (model, guide) and shapes
def _exact_terms(model, guide, theta, phi, x, h):
    """The gradients of -mean log p(x), -mean ELBO and -mean E_post log q (one program):
    ``(∇θ, log p(x) [B], ∇(θ, φ), ELBO [B], ∇φ)``."""
    def terms(th, ph):
        return log_joint(model, th, x, h), guide.log_prob(ph, x, h)          # [M, B] each

    def neg_log_p(th):
        lp = jax.nn.logsumexp(terms(th, phi)[0], axis=0)
        return -jnp.mean(lp), lp

    def neg_elbo(p):
        lj, lq = terms(p[MODEL], p[GUIDE])
        elbo = jnp.sum(jnp.exp(lq) * (lj - lq), axis=0)
        return -jnp.mean(elbo), elbo

    def neg_inclusive(ph):
        lj, lq = terms(theta, ph)
        post = jax.lax.stop_gradient(jax.nn.softmax(lj, axis=0))
        return -jnp.mean(jnp.sum(post * lq, axis=0))

    g_lp, lp = jax.grad(neg_log_p, has_aux=True)(theta)
    g_elbo, elbo = jax.grad(neg_elbo, has_aux=True)({MODEL: theta, GUIDE: phi})
    return g_lp, lp, g_elbo, elbo, jax.grad(neg_inclusive)(phi)
