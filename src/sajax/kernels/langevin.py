"""Unadjusted Langevin dynamics / SGLD, a sajax kernel (``init``, ``build_kernel``, ``step``; :mod:`sajax.kernels`).

The sampler of the random-field learners of review Sec. 4: SML (Algorithm 7)
needs a Monte Carlo minibatch x ~ p_θ(x) ∝ exp(u_θ(x)) (Eq. 38), and learning
NRFs with inclusive auxiliary generators (Algorithm 8; Song & Ou 2018) moves
generator samples toward p_θ with SGLD/SGHMC.  One move is

    x' = x + step_size · ∇_x log π(x) + noise_scale · ξ,   ξ ~ N(0, I),

the unadjusted Langevin algorithm (ULA) when ``noise_scale = sqrt(2 ·
step_size)`` (the Euler–Maruyama step of the Langevin diffusion) and
stochastic-gradient Langevin dynamics (SGLD; Welling & Teh 2011) when log π is
a minibatch estimate.  A ``noise_scale`` set apart from the step size is Song
& Ou's (2018) revision ("gradient coefficient 0.01, noise 0.01"), which no
longer samples π itself but a tempered version of it.

ULA is biased by O(step_size): for a Gaussian target N(μ, Σ) its stationary
law is N(μ, S) with, exactly,

    S = (Σ⁻¹ - (step_size / 2) Σ⁻²)⁻¹      (noise_scale² = 2 · step_size),

and in general S = noise_scale² (2 step_size Σ⁻¹ - step_size² Σ⁻²)⁻¹, which
requires step_size < 2 λ_min(Σ).  Use :mod:`sajax.kernels.mala` when the bias
matters.

Inside an SA iteration (Algorithms 7–8) build the kernel in ``estimate`` with
the current parameters (and, for SGLD, the current minibatch) closed over in
``log_target``: building is a cheap closure, and the carried log density and
gradient refer to the target they were computed under, so recompute them
(``init(state.position, log_target)``) when the target has changed.

Chains are batched: the position is a pytree whose leaves are ``[C, D...]``
(C independent chains), the log target maps it to ``[C]``.  The gradient is
``jax.grad`` of Σ_c log π(x_c) (the chains are independent), computed once per
move and carried in the state, so a move costs one gradient evaluation.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._numeric import (check_log_target, check_nonnegative, check_positive, log_density_and_grad,
                            normal_like, per_chain_sum)
from sajax.kernels._moves import repeat_moves

__all__ = ["LangevinState", "LangevinInfo", "init", "build_kernel", "run_chains"]


class LangevinState(NamedTuple):
    """State of C independent Langevin chains.

    Attributes:
      position: x, a pytree with leaves ``[C, D...]``.
      log_density: ``[C]`` log π(x) (unnormalized).
      grad: ∇_x log π(x), like ``position``.
    """

    position: Any
    log_density: jax.Array
    grad: Any


class LangevinInfo(NamedTuple):
    """What one move did, per chain: the sizes of its two parts.

    Attributes:
      drift_norm: ``[C]`` ||step_size · ∇ log π(x)||.
      noise_norm: ``[C]`` ||noise_scale · ξ||.  Their ratio is what Song &
        Ou's separate noise scale tunes.
    """

    drift_norm: jax.Array
    noise_norm: jax.Array


def _norm(tree) -> jax.Array:
    return jnp.sqrt(per_chain_sum(jax.tree_util.tree_map(jnp.square, tree)))


def init(position, log_target: Callable) -> LangevinState:
    """Start C chains at ``position`` (leaves ``[C, D...]``); evaluates log π and its gradient.

    Raises ValueError if ``log_target`` does not return shape ``[C]``.
    """
    log_density, grad = log_density_and_grad(check_log_target(log_target), position)
    return LangevinState(position, log_density, grad)


def build_kernel(log_target: Callable, step_size, noise_scale=None) -> Callable:
    """Build one ULA/SGLD move ``step(key, state) -> (LangevinState, LangevinInfo)``.

    x' = x + step_size · ∇ log π(x) + noise_scale · N(0, I)  (review Sec. 4,
    Algorithms 7–8; Welling & Teh 2011; Song & Ou 2018).

    Args:
      log_target: x (leaves ``[C, D...]``) -> ``[C]`` unnormalized log π; a
        minibatch estimate makes this SGLD.
      step_size: > 0, the gradient coefficient.
      noise_scale: >= 0, the standard deviation of the injected noise;
        None means sqrt(2 · step_size), the Langevin diffusion's.

    Example (C = 4 chains on N(0, I) in 2-D)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import langevin
        >>> log_target = lambda x: -0.5 * jnp.sum(x ** 2, axis=-1)
        >>> state = langevin.init(jnp.ones((4, 2)), log_target)
        >>> step = langevin.build_kernel(log_target, step_size=0.1)
        >>> state, info = jax.jit(step)(jax.random.PRNGKey(0), state)
        >>> state.position.shape, state.log_density.shape, info.noise_norm.shape
        ((4, 2), (4,), (4,))
    """
    check_log_target(log_target)
    step_size = check_positive("step_size", step_size)
    if noise_scale is None:
        noise_scale = jnp.sqrt(2.0 * step_size)
    else:
        noise_scale = check_nonnegative("noise_scale", noise_scale)

    def step(key, state: LangevinState):
        drift = jax.tree_util.tree_map(lambda g: step_size * g, state.grad)
        noise = jax.tree_util.tree_map(lambda e: noise_scale * e, normal_like(key, state.position))
        position = jax.tree_util.tree_map(lambda x, d, e: x + d + e, state.position, drift, noise)
        log_density, grad = log_density_and_grad(log_target, position)
        return LangevinState(position, log_density, grad), LangevinInfo(_norm(drift), _norm(noise))

    return step


def run_chains(key, position, log_target: Callable, num_moves: int, step_size, noise_scale=None):
    """``num_moves`` Langevin moves of the chains at ``position``; returns the final positions.

    A convenience for drawing approximate samples of p ∝ exp(log_target), e.g.
    from a trained potential (sample pictures, coverage metrics): one jitted
    program, the chains' start (:func:`init`) and a ``lax.scan``
    (:func:`sajax.kernels.repeat_moves`) that keeps no intermediate states.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import langevin
        >>> x = langevin.run_chains(jax.random.PRNGKey(0), jnp.zeros((2000, 1)),
        ...                         lambda x: -0.5 * jnp.sum(x ** 2, -1), 200, 0.05)
        >>> bool(abs(float(x.std()) - 1.0) < 0.1)
        True
    """
    run = repeat_moves(build_kernel(log_target, step_size, noise_scale), num_moves, keep_states=False)
    final, _ = jax.jit(lambda k, x: run(k, init(x, log_target)))(key, position)
    return final.position
