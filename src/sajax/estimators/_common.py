"""Pieces every estimator module shares (private)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sajax.core import GUIDE, MODEL, OBJECTIVE, check_positive_int, neg, require_groups

_sg = jax.lax.stop_gradient


def model_guide(params, who: str):
    """``(params[MODEL], params[GUIDE])``, or a ValueError naming the missing group."""
    return require_groups(params, (MODEL, GUIDE), who)


def ascent_groups(params, who: str) -> dict:
    """The ``{MODEL: θ, GUIDE: φ}`` sub-tree the estimators differentiate."""
    theta, phi = model_guide(params, who)
    return {MODEL: theta, GUIDE: phi}


def descent(params, ascent: dict) -> dict:
    """-ascent, completed to the tree of ``params``: groups the estimator does
    not move (e.g. a baseline kept by the caller) get zero grads."""
    grads = dict(neg(ascent))
    for name in params:
        if name not in grads:
            grads[name] = jax.tree_util.tree_map(jnp.zeros_like, params[name])
    return grads


def with_objective(metrics: dict, name: str) -> dict:
    """``metrics`` plus the common key ``OBJECTIVE`` holding ``metrics[name]``."""
    return {**metrics, OBJECTIVE: metrics[name]}


def check_loo_samples(num_samples, who: str) -> int:
    """K >= 2 (Python, NumPy or concrete JAX integer): a leave-one-out baseline
    needs at least one other sample."""
    try:
        k = check_positive_int("num_samples", num_samples)
    except TypeError:
        raise TypeError(f"{who} needs num_samples (K) to be an integer >= 2, "
                        f"got K={num_samples!r}") from None
    except ValueError:
        k = int(num_samples)
    if k < 2:
        raise ValueError(
            f"{who} needs num_samples (K) >= 2: its leave-one-out baseline for sample k is built "
            f"from the other K-1 samples; got K={k}")
    return k
