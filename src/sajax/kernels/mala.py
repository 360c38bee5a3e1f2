"""Metropolis-adjusted Langevin algorithm (MALA), a sajax kernel (``init``, ``build_kernel``, ``step``).

The exact (bias-free) version of the Langevin sampler of review Sec. 4
(SML, Algorithm 7; inclusive-NRF learning, Algorithm 8, where Song & Ou 2018
use its unadjusted relative SGLD): the Langevin move of
:mod:`sajax.kernels.langevin` is used as a proposal,

    x' = x + ε ∇ log π(x) + sqrt(2ε) ξ,   q(x'|x) = N(x'; x + ε ∇ log π(x), 2ε I),

and accepted with the Metropolis–Hastings probability (Roberts & Tweedie 1996)

    min{1, π(x') q(x|x') / (π(x) q(x'|x))},

so π is exactly invariant for every step size ε (which only sets how fast the
chain mixes).  The normalizer of π cancels, so an unnormalized log target is
enough — but it must be exact, not a minibatch estimate.

The carried log π and gradient belong to the target they were computed
under: when the target changes (new parameters in an SA iteration), recompute
them with ``init(state.position, log_target)`` before moving, or the
Metropolis–Hastings ratio is wrong.

Chains are batched: leaves of the position are ``[C, D...]``, log π returns
``[C]`` and each chain is tested on its own.  Log π and its gradient at the
current state are carried, so a move costs one gradient evaluation (at x').
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._densities import diag_normal_log_prob
from sajax._numeric import (check_log_target, check_positive, log_density_and_grad, normal_like,
                            select_per_chain)
from sajax.kernels.langevin import LangevinState

__all__ = ["MALAInfo", "init", "build_kernel", "proposal_log_prob"]


class MALAInfo(NamedTuple):
    """What one MALA move did, per chain.

    Attributes:
      acceptance_rate: ``[C]`` the Metropolis–Hastings probability min{1, ·}.
      is_accepted: ``[C]`` bool, whether the proposal x' was taken.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array


def init(position, log_target: Callable) -> LangevinState:
    """Start C chains at ``position`` (leaves ``[C, D...]``); evaluates log π and its gradient.

    The state is :class:`sajax.kernels.LangevinState` (position, log π, ∇ log π),
    so a Langevin chain and a MALA chain can take over from each other.

    Raises ValueError if ``log_target`` does not return shape ``[C]``.
    """
    log_density, grad = log_density_and_grad(check_log_target(log_target), position)
    return LangevinState(position, log_density, grad)


def proposal_log_prob(to, frm, grad_frm, step_size) -> jax.Array:
    """log q(to|frm) = log N(to; frm + ε ∇ log π(frm), 2ε I) per chain: ``[C]``."""
    log_std = 0.5 * jnp.log(2.0 * step_size)

    def leaf(t, f, g):
        c = jnp.shape(t)[0]
        return diag_normal_log_prob(t.reshape(c, -1), (f + step_size * g).reshape(c, -1), log_std)

    return sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf, to, frm, grad_frm)))


def build_kernel(log_target: Callable, step_size) -> Callable:
    """Build one MALA move ``step(key, state) -> (LangevinState, MALAInfo)``.

    Args:
      log_target: x (leaves ``[C, D...]``) -> ``[C]`` unnormalized log π (exact).
      step_size: ε > 0; the proposal is x + ε ∇ log π(x) + sqrt(2ε) N(0, I).

    Example (C = 3 chains on N(0, I) in 2-D)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import mala
        >>> log_target = lambda x: -0.5 * jnp.sum(x ** 2, axis=-1)
        >>> state = mala.init(jnp.zeros((3, 2)), log_target)
        >>> step = mala.build_kernel(log_target, step_size=0.5)
        >>> state, info = jax.jit(step)(jax.random.PRNGKey(0), state)
        >>> info.acceptance_rate.shape, info.is_accepted.dtype
        ((3,), dtype('bool'))
    """
    check_log_target(log_target)
    step_size = check_positive("step_size", step_size)

    def step(key, state: LangevinState):
        k_prop, k_acc = jax.random.split(key)
        noise = normal_like(k_prop, state.position)
        scale = jnp.sqrt(2.0 * step_size)
        proposal = jax.tree_util.tree_map(lambda x, g, e: x + step_size * g + scale * e,
                                          state.position, state.grad, noise)
        log_density, grad = log_density_and_grad(log_target, proposal)
        log_ratio = (log_density - state.log_density
                     + proposal_log_prob(state.position, proposal, grad, step_size)
                     - proposal_log_prob(proposal, state.position, state.grad, step_size))
        # a NaN ratio (inf - inf, a NaN density) is a rejection, never a silent acceptance
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        u = jax.random.uniform(k_acc, log_ratio.shape, dtype=log_ratio.dtype)
        accepted = jnp.log(u) <= log_ratio
        new = LangevinState(select_per_chain(accepted, proposal, state.position),
                            jnp.where(accepted, log_density, state.log_density),
                            select_per_chain(accepted, grad, state.grad))
        return new, MALAInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), accepted)

    return step
