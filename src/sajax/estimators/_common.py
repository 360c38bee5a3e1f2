"""Pieces every estimator module shares (private)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sajax.core import (
    GUIDE,
    MODEL,
    OBJECTIVE,
    Estimate,
    Estimator,
    batch_data,
    check_positive_int,
    log_joint,
    neg,
    no_state,
    require_groups,
)

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


def score_function_estimator(model, guide, num_samples: int, who: str, surrogate, metric: str) -> Estimator:
    """The shared plumbing of the score-function family (Algorithm 3 and its
    baselines): K draws h ~ q_φ(h|x) held fixed as data (no gradient through
    them), then both groups ascend ∇ of ``surrogate(log_p, log_q)`` where
    ``log_p = log p_θ(x, h)`` and ``log_q = log q_φ(h|x)`` are ``[K, B]``.

    ``surrogate`` returns ``(objective whose gradient is the estimate, value
    reported as metrics[metric] and OBJECTIVE)``; it holds the formula that
    tells REINFORCE, RLOO and VIMCO apart.  State ``()``.
    """

    def estimate(params, state, key, batch):
        groups = ascent_groups(params, who)
        x = batch_data(batch)
        h, _ = guide.sample_and_log_prob(groups[GUIDE], key, x, num_samples)
        h = _sg(h)

        def objective(p):
            return surrogate(log_joint(model, p[MODEL], x, h), guide.log_prob(p[GUIDE], x, h))

        ascent, value = jax.grad(objective, has_aux=True)(groups)
        return Estimate(descent(params, ascent), state, with_objective({metric: value}, metric))

    return Estimator(no_state, estimate)


def logistic_value(v_real, v_fake):
    """The value F of Eq. 28 at a discriminator's logits: mean log σ(v_real) + mean log σ(−v_fake).

    One implementation for the discriminators that are logistic regressions of
    "real" against "fake": ALI's joint critic and AVB's adversary (Eq. 15).
    """
    return jnp.mean(jax.nn.log_sigmoid(v_real)) + jnp.mean(jax.nn.log_sigmoid(-v_fake))
