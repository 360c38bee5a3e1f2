"""Stochastic-gradient Hamiltonian Monte Carlo (SGHMC), a sajax kernel (``init``, ``build_kernel``, ``step``).

The second sampler Song & Ou (2018) use to move generator samples toward the
random field p_θ(x) ∝ exp(u_θ(x)) (review Sec. 4.2.3, Algorithm 8; also a
sampler for SML, Algorithm 7).  The discretization is Chen, Fox & Guestrin
(2014), Eq. (15), "SGHMC in the form of SGD with momentum", with unit mass and
no gradient-noise estimate (β̂ = 0):

    v' = (1 - α) v + η ∇ log π(x) + s ξ,   ξ ~ N(0, I),
    x' = x + v',

where η = ``step_size`` (the learning rate, ε² in their notation), α =
``friction`` ∈ (0, 1] (the momentum decay, εC) and s = ``noise_scale``
(default sqrt(2 α η), i.e. 2(α - β̂)η with β̂ = 0; pass a smaller one to
subtract a known minibatch-gradient noise).  With α = 1 the move is exactly the
unadjusted Langevin step of :mod:`sajax.kernels.langevin` with step η.

Discretization bias (no Metropolis correction).  For a Gaussian target
N(μ, Σ) and the default noise, the stationary law of x is N(μ, S) with,
exactly (solve the 2×2 Lyapunov equation per eigen-direction of Σ),

    S = (Σ⁻¹ - η / (2 (2 - α)) · Σ⁻²)⁻¹,

an O(η) relative bias η / (2 (2 - α) σ²) per eigenvalue σ² (requires
η < 2 (2 - α) λ_min(Σ)); α = 1 recovers ULA's (Σ⁻¹ - η/2 Σ⁻²)⁻¹.

Chains are batched: leaves of position and momentum are ``[C, D...]``, log π
returns ``[C]``; the gradient at the current x is carried in the state, so a
move costs one gradient evaluation.  ``build_kernel`` binds the target and the
settings; the carried log π and gradient belong to the target they were computed
under, so after the target changes recompute them with
``init(state.position, log_target, state.momentum)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._numeric import (check_log_target, check_nonnegative, check_positive, log_density_and_grad,
                            normal_like, per_chain_sum)

__all__ = ["SGHMCState", "SGHMCInfo", "init", "build_kernel", "check_friction"]


class SGHMCState(NamedTuple):
    """State of C independent SGHMC chains.

    Attributes:
      position: x, a pytree with leaves ``[C, D...]``.
      momentum: v, like ``position`` (already scaled by the step: x' = x + v').
      log_density: ``[C]`` log π(x) (unnormalized).
      grad: ∇_x log π(x), like ``position``.
    """

    position: Any
    momentum: Any
    log_density: jax.Array
    grad: Any


class SGHMCInfo(NamedTuple):
    """What one move did, per chain.

    Attributes:
      kinetic_energy: ``[C]`` ½ ||v'||² after the move (a mixing / stability gauge).
    """

    kinetic_energy: jax.Array


def init(position, log_target: Callable, momentum=None) -> SGHMCState:
    """Start C chains at ``position`` (leaves ``[C, D...]``), momentum zeros unless given.

    Raises ValueError if ``log_target`` does not return shape ``[C]`` or the
    momentum's structure or shapes differ from the position's.
    """
    log_density, grad = log_density_and_grad(check_log_target(log_target), position)
    if momentum is None:
        momentum = jax.tree_util.tree_map(jnp.zeros_like, position)
    elif (jax.tree_util.tree_structure(momentum) != jax.tree_util.tree_structure(position)
          or any(jnp.shape(m) != jnp.shape(p) for m, p in
                 zip(jax.tree_util.tree_leaves(momentum), jax.tree_util.tree_leaves(position)))):
        raise ValueError("momentum must have the structure and shapes of position")
    return SGHMCState(position, momentum, log_density, grad)


def check_friction(friction):
    """α ∈ (0, 1], or ValueError naming ``friction`` (tracers pass unchecked)."""
    friction = check_positive("friction", friction)
    if not isinstance(friction, jax.core.Tracer) and float(friction) > 1.0:
        raise ValueError(f"friction must be in (0, 1] (the momentum decay per move), got {float(friction)}")
    return friction


def build_kernel(log_target: Callable, step_size, friction=0.1, noise_scale=None) -> Callable:
    """Build one SGHMC move ``step(key, state) -> (SGHMCState, SGHMCInfo)``.

    Chen et al. (2014) Eq. (15): v' = (1-α) v + η ∇ log π(x) + s N(0, I), x' = x + v'.

    Args:
      log_target: x (leaves ``[C, D...]``) -> ``[C]`` unnormalized log π; may be
        a minibatch (stochastic) estimate.
      step_size: η > 0, the learning rate.
      friction: α ∈ (0, 1], the momentum decay per move.
      noise_scale: s >= 0; None means sqrt(2 α η).

    Example (C = 3 chains on N(0, I) in 2-D)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import sghmc
        >>> log_target = lambda x: -0.5 * jnp.sum(x ** 2, axis=-1)
        >>> state = sghmc.init(jnp.ones((3, 2)), log_target)
        >>> step = sghmc.build_kernel(log_target, step_size=0.01, friction=0.1)
        >>> state, info = jax.jit(step)(jax.random.PRNGKey(0), state)
        >>> state.momentum.shape, info.kinetic_energy.shape
        ((3, 2), (3,))
    """
    check_log_target(log_target)
    step_size = check_positive("step_size", step_size)
    friction = check_friction(friction)
    if noise_scale is None:
        noise_scale = jnp.sqrt(2.0 * friction * step_size)
    else:
        noise_scale = check_nonnegative("noise_scale", noise_scale)

    def step(key, state: SGHMCState):
        noise = normal_like(key, state.position)
        momentum = jax.tree_util.tree_map(
            lambda v, g, e: (1.0 - friction) * v + step_size * g + noise_scale * e,
            state.momentum, state.grad, noise)
        position = jax.tree_util.tree_map(jnp.add, state.position, momentum)
        log_density, grad = log_density_and_grad(log_target, position)
        kinetic = 0.5 * per_chain_sum(jax.tree_util.tree_map(jnp.square, momentum))
        return SGHMCState(position, momentum, log_density, grad), SGHMCInfo(kinetic)

    return step
