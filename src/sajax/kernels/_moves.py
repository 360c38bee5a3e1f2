"""Repeated moves of a Markov kernel: the inner loop of review Sec. 2, Algorithm 2.

The one implementation of "k moves per SA iteration" in sajax: a kernel
step is run ``num_moves`` times in a ``lax.scan``, each move starting from
the state the previous one left, z^(t,k) ~ K(·|z^(t,k-1)), and every visited
state is kept (the set B^(t) of Algorithm 2).  The MIS kernel, JSA (whose
proposals are drawn in one batched call and fed in as per-move inputs), the
random-field estimators and :func:`sajax.sa.multiple_moves` (Algorithm 2
itself: k moves of an estimator's own state, F averaged) all run through it.
It is :func:`repeat_moves`, not ``multiple_moves``, so that the two public
names say which one takes a kernel step and which one an estimator.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from sajax.core import check_positive_int

__all__ = ["repeat_moves"]


def repeat_moves(step: Callable, num_moves: int, *, keep_states: bool = True,
                   unroll: int | bool = 1) -> Callable:
    """``num_moves`` transitions of ``step`` as one ``lax.scan`` (Algorithm 2).

    Args:
      step: ``(key, state, *inputs) -> (state, info)``, one Markov transition.
        ``inputs`` (optional) are per-move values, e.g. proposals drawn
        beforehand in one batched call.
      num_moves: k >= 1.
      keep_states: stack every visited state (Algorithm 2's B^(t)); False
        returns ``None`` in its place, for states too large to copy k times
        (a whole-training-set cache).
      unroll: passed to ``lax.scan``: ``True`` unrolls all k moves into one
        straight-line program (worth it for cheap elementwise steps on an
        accelerator, where each loop iteration costs kernel launches).

    Returns:
      ``run(key, state, *inputs, num_active=None) -> (final_state, (states, infos))``:
      every visited state and info stacked on a leading axis ``[k, ...]``; each
      ``inputs`` leaf must carry that leading axis ``[k, ...]`` too.  Move j
      uses ``jax.random.split(key, k)[j]``.  ``num_active`` (a traced int in
      [1, k], e.g. a schedule of the iteration) runs only moves j < num_active:
      the others keep the state and report zero infos, so the first moves are
      exactly those of a full run with the same key.

    Example (a random walk; the inputs are per-move offsets)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import repeat_moves
        >>> step = lambda key, x, offset: (x + offset, {"moved": offset})
        >>> final, (states, infos) = repeat_moves(step, 3)(jax.random.PRNGKey(0), 0.0, jnp.arange(3.0))
        >>> float(final), states.tolist()
        (3.0, [0.0, 1.0, 3.0])
    """
    num_moves = check_positive_int("num_moves", num_moves)
    if not callable(step):
        raise TypeError(f"step must be a callable (key, state, *inputs) -> (state, info), "
                        f"got {type(step).__name__}")

    def run(key, state, *inputs, num_active=None):
        def body(s, args):
            j, k, xs = args
            if num_active is None:
                s, info = step(k, s, *xs)
            else:
                s, info = _step_if(j < num_active, step, k, s, xs)
            return s, (s if keep_states else None, info)

        args = (jnp.arange(num_moves), jax.random.split(key, num_moves), inputs)
        return jax.lax.scan(body, state, args, unroll=unroll)

    return run


def _step_if(active, step: Callable, key, state, inputs):
    """``step(key, state, *inputs)`` when ``active``, else the state unchanged and zero infos."""
    out_shape = jax.eval_shape(step, key, state, *inputs)

    def skip():
        return state, jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), out_shape[1])

    return jax.lax.cond(active, lambda: step(key, state, *inputs), skip)
