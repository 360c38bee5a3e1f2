"""Unadjusted Langevin dynamics / SGLD, in BlackJAX's kernel shape.

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

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LangevinState", "LangevinInfo", "init", "build_kernel", "run_chains", "log_density_and_grad",
           "check_log_target", "check_positive", "check_nonnegative", "num_chains", "normal_like",
           "per_chain_sum"]


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


# --------------------------------------------------------------------------
# Shared by the gradient-based kernels (langevin, mala, sghmc).

def check_log_target(log_target) -> Callable:
    """``log_target`` must be a callable x (leaves ``[C, D...]``) -> ``[C]``; else TypeError."""
    if not callable(log_target):
        raise TypeError(f"log_target must be a callable x -> [C] log density, "
                        f"got {type(log_target).__name__}")
    return log_target


def check_positive(name: str, value, *, allow_zero: bool = False):
    """A finite real scalar > 0 (>= 0 with ``allow_zero``), or ValueError/TypeError naming it.

    A traced value (a step size vmapped or tuned under ``jit``) cannot be
    inspected and is passed through unchecked.
    """
    if isinstance(value, jax.core.Tracer):
        return value
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or kind in ("i", "u", "f")) \
            or jnp.ndim(value) != 0:
        raise TypeError(f"{name} must be a real scalar, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {v}")
    return value


def check_nonnegative(name: str, value):
    """A finite real scalar >= 0, or ValueError naming it (tracers pass unchecked)."""
    return check_positive(name, value, allow_zero=True)


def num_chains(position) -> int:
    """C, the shared leading axis of every leaf of ``position`` (ValueError if they differ)."""
    leaves = jax.tree_util.tree_leaves(position)
    if not leaves or any(jnp.ndim(a) < 1 for a in leaves):
        raise ValueError("position must be a pytree of arrays with a leading chain axis [C, ...]")
    sizes = {jnp.shape(a)[0] for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"every leaf of position needs the same chain axis C, got sizes {sorted(sizes)}")
    return sizes.pop()


def log_density_and_grad(log_target: Callable, position):
    """``(log π(x) [C], ∇_x Σ_c log π(x_c))``, checking that log π returns ``[C]``.

    The shape check runs on static shapes, so it raises a ValueError at trace
    time (inside ``jit`` too), before any XLA error could.
    """
    c = num_chains(position)

    def total(x):
        values = log_target(x)
        if jnp.shape(values) != (c,):
            raise ValueError(f"log_target must return one value per chain, shape ({c},), "
                             f"got shape {jnp.shape(values)}")
        return jnp.sum(values), values

    grad, values = jax.grad(total, has_aux=True)(position)
    return values, grad


def normal_like(key, tree):
    """Independent N(0, 1) draws shaped like every leaf of ``tree``."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, jnp.shape(a), jnp.result_type(a, jnp.float32))
                              for k, a in zip(keys, leaves)])


def per_chain_sum(tree) -> jax.Array:
    """Σ over every non-chain axis of every leaf: leaves ``[C, ...]`` -> ``[C]``."""
    return sum(jnp.sum(jnp.reshape(a, (jnp.shape(a)[0], -1)), axis=1)
               for a in jax.tree_util.tree_leaves(tree))


def _norm(tree) -> jax.Array:
    return jnp.sqrt(per_chain_sum(jax.tree_util.tree_map(jnp.square, tree)))


# --------------------------------------------------------------------------

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
    ``lax.scan`` (:func:`sajax.kernels.multiple_moves`) that keeps no
    intermediate states.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import langevin
        >>> x = langevin.run_chains(jax.random.PRNGKey(0), jnp.zeros((2000, 1)),
        ...                         lambda x: -0.5 * jnp.sum(x ** 2, -1), 200, 0.05)
        >>> bool(abs(float(x.std()) - 1.0) < 0.1)
        True
    """
    from sajax.kernels._moves import multiple_moves

    run = multiple_moves(build_kernel(log_target, step_size, noise_scale), num_moves, keep_states=False)
    final, _ = jax.jit(run)(key, init(position, log_target))
    return final.position
