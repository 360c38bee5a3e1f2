"""Gradient mean, variance and signal-to-noise ratio over many random keys.

An estimator's ``estimate`` is a random function of its key (DESIGN.md):
holding params, state and batch fixed and varying only the key gives the
sampling distribution of the gradient estimate, whose mean is the mean field
of the SA recursion (review Sec. 2) and whose spread governs how fast SA
converges.  :func:`gradient_stats` measures it by vmapping ``estimate`` over
keys, optionally in chunks so that memory stays bounded for large models.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from sajax.core import Batch, check_key, check_positive_int

__all__ = ["GradStats", "gradient_stats"]


class GradStats(NamedTuple):
    """Sampling statistics of one parameter group's gradient estimate.

    Attributes:
      mean: tree like the group: per-coordinate sample mean over keys.
      variance: tree like the group: per-coordinate unbiased sample variance
        (divisor n - 1) over keys.
      snr: scalar, mean over coordinates of |mean| / std, the signal-to-noise
        ratio of Rainforth et al. (2018), "Tighter variational bounds are not
        necessarily better", SNR = |E[Δ]| / σ[Δ] per parameter, averaged over
        the group's coordinates.  A coordinate with zero mean and zero
        variance (a parameter the estimator never moves) is left out of the
        average; a coordinate with zero variance and nonzero mean counts as
        +inf.  NaN if every coordinate is left out.
      total_variance: scalar, sum of the per-coordinate variances (the trace
        of the gradient covariance).
      norm_of_mean: scalar, Euclidean norm of ``mean`` over all coordinates.
      num_keys: number of keys the statistics were taken over.
      snr_median: scalar, the median over the same coordinates of
        |mean| / std: robust where a few near-constant coordinates (e.g. a
        chain state held fixed) make the mean SNR huge or +inf.
      num_constant: number of coordinates with zero variance over the keys.
    """

    mean: Any
    variance: Any
    snr: jax.Array
    total_variance: jax.Array
    norm_of_mean: jax.Array
    num_keys: int
    snr_median: jax.Array
    num_constant: jax.Array


class _Moments(NamedTuple):
    """Running count, mean and centered sum of squares (Chan et al. 1979)."""

    count: jax.Array
    mean: Any
    m2: Any


def _moments_of(samples) -> _Moments:
    """Two-pass moments of a tree whose leaves have a leading key axis.

    Deviations are taken from the first draw, so a coordinate that never
    changes gets exactly its value as mean and exactly zero spread (no float
    round-off from summing then dividing), and a large mean does not swamp a
    small spread.
    """
    def mean_m2(a):
        dev = a - a[0]
        dev_mean = jnp.mean(dev, axis=0)
        return a[0] + dev_mean, jnp.sum(jnp.square(dev - dev_mean), axis=0)

    leaves, treedef = jax.tree_util.tree_flatten(samples)
    # the merge weights in the gradients' precision (float64 under x64), at least float32
    dtype = jnp.promote_types(jnp.result_type(*leaves), jnp.float32) if leaves else jnp.float32
    count = jnp.asarray(leaves[0].shape[0] if leaves else 0, dtype)
    means, m2s = zip(*(mean_m2(a) for a in leaves)) if leaves else ((), ())
    return _Moments(count, jax.tree_util.tree_unflatten(treedef, means),
                    jax.tree_util.tree_unflatten(treedef, m2s))


def _combine(a: _Moments, b: _Moments) -> _Moments:
    """Merge moments of two disjoint sample sets (Chan, Golub & LeVeque's
    pairwise update, stable where a running sum of squares would cancel)."""
    count = a.count + b.count
    frac = b.count / count
    delta = jax.tree_util.tree_map(jnp.subtract, b.mean, a.mean)
    mean = jax.tree_util.tree_map(lambda m, d: m + d * frac, a.mean, delta)
    m2 = jax.tree_util.tree_map(
        lambda ma, mb, d: ma + mb + jnp.square(d) * a.count * frac, a.m2, b.m2, delta)
    return _Moments(count, mean, m2)


def _flat(tree) -> jax.Array:
    """All coordinates of a tree as one vector (empty for an empty group)."""
    leaves = [jnp.ravel(a) for a in jax.tree_util.tree_leaves(tree)]
    return jnp.concatenate(leaves) if leaves else jnp.zeros((0,), jnp.float32)


def _summarize(mean, variance, num_keys: int) -> GradStats:
    """Scalar summaries of one group's per-coordinate mean and variance."""
    m = _flat(mean)
    v = _flat(variance)
    abs_m, std = jnp.abs(m), jnp.sqrt(v)
    degenerate = (abs_m == 0) & (std == 0)
    ratio = jnp.where(std > 0, abs_m / jnp.where(std > 0, std, 1.0), jnp.inf)
    kept = jnp.sum(~degenerate)
    snr = jnp.where(kept > 0, jnp.sum(jnp.where(degenerate, 0.0, ratio)) / jnp.maximum(kept, 1),
                    jnp.nan)
    snr_median = jnp.nanmedian(jnp.where(degenerate, jnp.nan, ratio)) if m.size else jnp.nan
    return GradStats(mean=mean, variance=variance, snr=snr, total_variance=jnp.sum(v),
                     norm_of_mean=jnp.sqrt(jnp.sum(jnp.square(m))), num_keys=num_keys,
                     snr_median=snr_median, num_constant=jnp.sum(std == 0))


@partial(jax.jit, static_argnums=2)
def _summaries(mean, m2, num_keys: int) -> dict:
    """``{group: GradStats}`` from the moments of ``num_keys`` draws, as one program (not op by op);
    ``num_keys`` comes back as an array: the caller puts the int back."""
    variance = jax.tree_util.tree_map(lambda a: a / (num_keys - 1), m2)
    if isinstance(mean, Mapping):
        return {g: _summarize(mean[g], variance[g], num_keys) for g in mean}
    return {"params": _summarize(mean, variance, num_keys)}


def _as_batch(batch, state, data) -> Batch:
    """``batch`` as a :class:`Batch`: a bare array only when it is the data set too."""
    if hasattr(batch, "x") and hasattr(batch, "index"):
        return batch
    if state is None and data is None:
        x = jnp.asarray(batch)
        return Batch(x, jnp.arange(x.shape[0]))
    raise TypeError(f"gradient_stats: batch must be a sajax.core.Batch(x, index) when state= or data= "
                    f"is given (index: each row's place in the training set), got "
                    f"{type(batch).__name__}; wrap it: Batch(x, index)")


def gradient_stats(estimator, params, batch, key, *, num_keys: int = 1000,
                   state=None, data=None, chunk: Optional[int] = None) -> dict:
    """Mean, variance and SNR of ``estimator``'s gradient over ``num_keys`` keys.

    Holds ``params``, ``state`` and ``batch`` fixed and evaluates
    ``estimator.estimate(params, state, k, batch).grads`` for ``num_keys``
    independent keys k (vmapped), then reduces per parameter group.  Use it
    to compare estimators of the same mean field: unbiasedness (the mean
    against an exact gradient) and efficiency (variance, SNR).

    Args:
      estimator: a :class:`sajax.core.Estimator`.
      params: a dict of parameter groups (``{"model": θ, "guide": φ}``); a
        params tree that is not a dict is treated as one group, "params".
      batch: a :class:`sajax.core.Batch` ``(x [B, ...], index [B])``, held fixed.  A bare
        array ``x`` is accepted only when it is also the data set (``state`` and ``data``
        None): it becomes ``Batch(x, arange(B))``, the rows ``init`` was given.
      key: PRNG key; split into one key for ``estimator.init`` (when
        ``state`` is None) and ``num_keys`` keys for the estimates.
      num_keys: number of gradient draws, >= 2.
      state: estimator state, held fixed over the keys; if None,
        ``estimator.init(k0, params, data)`` with ``k0`` split from ``key``.
      data: the whole training set ``[N, ...]`` that ``estimator.init`` takes
        (:class:`sajax.core.InitFn`: per-example state such as JSA's cache
        covers its N rows, and ``batch.index`` addresses them).  If both
        ``state`` and ``data`` are None, the batch's own data ``batch.x`` is
        used as the data set (right for stateless estimators; a per-example
        cache is then sized by the batch, so ``batch.index`` must be
        ``arange(B)``).
      chunk: if given, evaluate ``chunk`` keys at a time (a ``lax.scan`` over
        chunks with a vmap inside, the last partial chunk vmapped apart) and
        merge the moments as it goes, so memory holds ``chunk`` gradients
        rather than ``num_keys``.  None vmaps over all keys at once.

    Returns:
      ``{group: GradStats}`` for every top-level group of ``grads``.  Variance
      is the unbiased sample variance; SNR is Rainforth et al. (2018)'s
      |mean|/std averaged over coordinates (see :class:`GradStats`).

    Raises:
      TypeError/ValueError: ``num_keys`` not an integer >= 2, ``chunk`` not an
        integer >= 1; ``batch`` a bare array while ``state`` or ``data`` is given.
    """
    batch = _as_batch(batch, state, data)
    n = check_positive_int("num_keys", num_keys, minimum=2)
    if chunk is not None:
        chunk = min(check_positive_int("chunk", chunk), n)
    init_key, draw_key = jax.random.split(check_key(key))
    if state is None:
        state = estimator.init(init_key, params, batch.x if data is None else data)
    keys = jax.random.split(draw_key, n)

    def moments(params, state, batch, keys):
        def grads_of(k):
            return estimator.estimate(params, state, k, batch).grads

        if chunk is None or chunk >= n:
            return _moments_of(jax.vmap(grads_of)(keys))
        num_full = n // chunk
        full = keys[: num_full * chunk].reshape((num_full, chunk) + keys.shape[1:])
        first = _moments_of(jax.vmap(grads_of)(full[0]))

        def step(acc, ks):
            return _combine(acc, _moments_of(jax.vmap(grads_of)(ks))), None

        acc, _ = jax.lax.scan(step, first, full[1:])
        if n % chunk:
            acc = _combine(acc, _moments_of(jax.vmap(grads_of)(keys[num_full * chunk:])))
        return acc

    mom = jax.jit(moments)(params, state, batch, keys)
    return {g: stats._replace(num_keys=n) for g, stats in _summaries(mom.mean, mom.m2, n).items()}
