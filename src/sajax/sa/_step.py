"""The pure SA iteration (review Sec. 2, Algorithms 1 and 2).

An estimator gives F(z; λ), the noisy mean field (as a descent direction);
optax turns it into λ^(t) = λ^(t-1) + γ_t F.  :func:`make_step` builds the
pure per-iteration function ``step(carry, batch) -> (carry, metrics)``; the
loop (:func:`sajax.sa.run_loop`) and :func:`sajax.sa.fit` run many of them
per host call.

Randomness is a pure function of (run key, step): the key of step t is
``fold_in(k_steps, t)`` and the order of epoch e is
``permutation(fold_in(k_shuffle, e))``, so a resumed run is bit-identical to an
uninterrupted one and a hand-written Python loop over ``step`` reproduces
``fit`` (see :func:`batch_indices`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sajax.core import Batch, Estimate, Estimator, check_positive_int
from sajax.kernels import repeat_moves

__all__ = ["TrainState", "init_train_state", "make_step", "batch_indices", "multiple_moves"]


class TrainState(NamedTuple):
    """The carry of the SA recursion.

    Attributes:
      params: dict of parameter groups (λ).
      opt_state: optax state.
      est_state: the estimator's threaded state (z^(t) of Algorithm 1).
      step: int32 scalar, the number of SA iterations done.
      key: the run's base PRNG key; step t uses ``fold_in(k_steps, t)``.
    """

    params: Any
    opt_state: Any
    est_state: Any
    step: jax.Array
    key: jax.Array


def init_train_state(estimator: Estimator, optimizer: optax.GradientTransformation,
                     key: jax.Array, params, data) -> TrainState:
    """Initialize the carry: the estimator's state over the whole training set
    ``data`` (``Estimator.init``'s one meaning, e.g. JSA's latent cache), the
    optimizer's state, step 0 and the run key."""
    k_init, k_run = jax.random.split(key)
    est_state = estimator.init(k_init, params, data)
    return TrainState(params, optimizer.init(params), est_state, jnp.zeros((), jnp.int32), k_run)


def run_keys(key):
    """(k_steps, k_shuffle) of a run key: per-step keys and per-epoch orders."""
    k_steps, k_shuffle = jax.random.split(key)
    return k_steps, k_shuffle


def make_step(estimator: Estimator, optimizer: optax.GradientTransformation,
              preprocess: Optional[Callable] = None) -> Callable:
    """Build the pure SA iteration ``step(carry, batch) -> (carry, metrics)``.

    One call is one iteration of Algorithm 1: the estimator draws its samples
    (moving its Markov state) and returns F as a descent direction; optax
    applies γ_t.  ``preprocess(key, x) -> x`` (e.g. dynamic binarization) is
    applied to the batch first with its own key.  Put ``step`` in your own
    ``lax.scan`` or call it from a Python loop; ``fit`` does the former.
    """

    def step(carry: TrainState, batch: Batch):
        k_steps, _ = run_keys(carry.key)
        k_pre, k_est = jax.random.split(jax.random.fold_in(k_steps, carry.step))
        if preprocess is not None:
            batch = batch._replace(x=preprocess(k_pre, batch.x))
        est: Estimate = estimator.estimate(carry.params, carry.est_state, k_est, batch)
        updates, opt_state = optimizer.update(est.grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        return TrainState(params, opt_state, est.state, carry.step + 1, carry.key), dict(est.metrics)

    return step


def batch_indices(key: jax.Array, num_examples: int, batch_size: int, step) -> jax.Array:
    """Row indices of the minibatch that :func:`fit` uses at ``step``.

    ``key`` is ``TrainState.key``.  Epoch e = step // (N // B) is a fresh
    on-device permutation; the remainder of N mod B examples is dropped each
    epoch (a different remainder every epoch).
    """
    spe = num_examples // batch_size
    _, k_shuffle = run_keys(key)
    perm = jax.random.permutation(jax.random.fold_in(k_shuffle, step // spe), num_examples)
    return jax.lax.dynamic_slice(perm, ((step % spe) * batch_size,), (batch_size,))


def multiple_moves(estimator: Estimator, num_moves: int) -> Estimator:
    """Algorithm 2 (SA with multiple moves): K moves of the estimator's Markov
    state per iteration, averaging F over the K draws.

    The moves are :func:`sajax.kernels.repeat_moves` over the estimator
    (each move starts from the state the previous one left,
    z^(t,k) ~ K(·|z^(t,k-1)), all at the same λ^(t-1)); grads and metrics are
    averaged over the K moves.
    """
    num_moves = check_positive_int("num_moves", num_moves)

    def estimate(params, state, key, batch):
        def move(k, st):
            est = estimator.estimate(params, st, k, batch)
            return est.state, (est.grads, est.metrics)

        state, (_, (grads, metrics)) = repeat_moves(move, num_moves, keep_states=False)(key, state)
        mean = lambda t: jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), t)  # noqa: E731
        return Estimate(mean(grads), state, mean(metrics))

    return Estimator(estimator.init, estimate)
