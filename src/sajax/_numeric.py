"""Small numeric helpers shared by the kernels, estimators and evaluation.

A leaf module: it imports only ``math`` and JAX, so :mod:`sajax.kernels`
(which must import nothing from models, estimators or the driver) and the
packages above it can all use one implementation.

* argument checks that name the argument: :func:`check_positive`,
  :func:`check_nonnegative` (real scalars; integers are
  :func:`sajax.core.check_positive_int`), :func:`check_log_target`;
* batched chains, whose leaves carry a leading chain axis ``[C, ...]``:
  :func:`num_chains`, :func:`log_density_and_grad`, :func:`normal_like`,
  :func:`per_chain_sum`, :func:`select_per_chain`.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["check_log_target", "check_positive", "check_nonnegative", "num_chains", "log_density_and_grad",
           "normal_like", "per_chain_sum", "select_per_chain"]


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

    The chains are independent, so the gradient of the sum is every chain's
    own gradient.  The shape check runs on static shapes, so it raises a
    ValueError at trace time (inside ``jit`` too), before any XLA error could.
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


def select_per_chain(mask, new, old):
    """Per-chain choice between two pytrees with leaves ``[C, ...]``: ``new`` where ``mask [C]``.

    The accept step of a Metropolis–Hastings kernel (MIS, MALA).
    """
    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree_util.tree_map(pick, new, old)
