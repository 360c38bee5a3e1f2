"""Importance-weighted estimates of log p_θ(x) (review Sec. 3.2.1, Eq. 17 / 19).

For each example x, with h_1, ..., h_K ~ q_φ(h|x) independently,

    log p̂_K(x) = log (1/K) Σ_k p_θ(x, h_k) / q_φ(h_k|x),

a stochastic lower bound whose expectation is the IW bound I_K of Eq. 19;
it increases with K and tends to log p_θ(x) (Burda, Grosse & Salakhutdinov
2015, Theorem 1).  The IWAE paper reports test NLL = -mean log p̂_K with
K = 5000.

Memory.  K = 5000 samples of a batch of 100 MNIST images through a 784-wide
decoder would need ~1.5 GB per live float32 activation, so the K samples are
split into chunks of ``k_chunk`` and reduced by a running log-sum-exp inside
one jitted ``lax.scan``; examples are processed ``batch_size`` at a time.
The peak memory of one scan step is estimated as

    peak_bytes ≈ LIVE_ACTIVATIONS · k_chunk · batch_size · W · itemsize,

where W is the widest layer, taken as the largest dimension of any parameter
array or of the data (784 for MNIST), itemsize = 4 (float32) and
``LIVE_ACTIVATIONS`` = 6 bounds how many [k_chunk, B, W] arrays XLA keeps
alive at once (measured on CPU for the IWAE models with
``compiled.memory_analysis()``: 3.0-3.5).  ``k_chunk`` is the largest value
whose estimate fits ``memory_budget_mb`` (at least 1, at most K).

Randomness.  Sample k of example n uses the key
``fold_in(fold_in(key, n), k)``, with n the example's row in ``x``.  The
estimate of each example therefore depends on ``key``, its row and K only,
not on ``batch_size``, ``k_chunk`` or the memory budget (up to float
round-off in the running log-sum-exp).
"""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    GUIDE,
    MODEL,
    ConditionalSampler,
    LatentVariableModel,
    check_data,
    check_key,
    check_positive_int,
    log_joint,
    require_groups,
)

__all__ = ["iw_log_likelihood", "iw_nll", "k_chunk_for_budget", "LIVE_ACTIVATIONS", "supports_iw_nll"]

LIVE_ACTIVATIONS = 6


def k_chunk_for_budget(num_samples: int, batch_size: int, width: int, memory_budget_mb: float,
                       itemsize: int = 4) -> int:
    """Largest K-chunk whose estimated peak memory fits the budget (module docstring).

    k_chunk = floor(budget_bytes / (LIVE_ACTIVATIONS · batch_size · width · itemsize)),
    clipped to [1, K], K = ``num_samples``.
    """
    k = check_positive_int("num_samples", num_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    width = check_positive_int("width", width)
    if not memory_budget_mb > 0:
        raise ValueError(f"memory_budget_mb must be > 0, got {memory_budget_mb}")
    per_sample = LIVE_ACTIVATIONS * batch_size * width * itemsize
    return int(min(k, max(1, math.floor(memory_budget_mb * 2 ** 20 / per_sample))))


def _max_width(params, x_event_size: int) -> int:
    dims = [max(np.shape(a)) for a in jax.tree_util.tree_leaves(params) if np.ndim(a) >= 1]
    return int(max(dims + [x_event_size]))


@functools.lru_cache(maxsize=32)
def _batch_estimator(model: LatentVariableModel, guide: ConditionalSampler, k: int, k_chunk: int):
    """Jitted ``(params, key, x [B, D], rows [B]) -> log p̂_K(x) [B]``."""
    num_chunks = -(-k // k_chunk)
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))   # keys [B], one sample id

    def estimate(params, key, x, rows):
        theta, phi = params[MODEL], params[GUIDE]
        example_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, rows)   # [B]

        def draw(sample_key, x_row):
            # One sample for one example; vmapped over (samples, examples).  The
            # encoder of x does not depend on the key, so vmap leaves it unbatched
            # over samples.
            h, log_q = guide.sample_and_log_prob(phi, sample_key, x_row[None], 1)
            return jax.tree_util.tree_map(lambda a: a[0, 0], h), log_q[0, 0]

        draw_chunk = jax.vmap(jax.vmap(draw, in_axes=(0, 0)), in_axes=(0, None))

        def log_weights(chunk):
            ids = chunk * k_chunk + jnp.arange(k_chunk)
            keys = jax.vmap(lambda i: fold(example_keys, i))(ids)                # [k_chunk, B]
            h, log_q = draw_chunk(keys, x)                                       # h [k_chunk, B, d]
            log_w = log_joint(model, theta, x, h) - log_q                        # [k_chunk, B]
            return jnp.where((ids < k)[:, None], log_w, -jnp.inf)              # padding of the last chunk

        def step(carry, chunk):
            run_max, run_sum = carry
            log_w = log_weights(chunk)
            new_max = jnp.maximum(run_max, jnp.max(log_w, axis=0))
            safe = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
            run_sum = run_sum * jnp.exp(run_max - safe) + jnp.sum(jnp.exp(log_w - safe), axis=0)
            return (new_max, run_sum), None

        # the carry takes the weights' own dtype (float64 under jax_enable_x64)
        dtype = jax.eval_shape(log_weights, jnp.int32(0)).dtype
        b = x.shape[0]
        init = (jnp.full((b,), -jnp.inf, dtype), jnp.zeros((b,), dtype))
        (run_max, run_sum), _ = jax.lax.scan(step, init, jnp.arange(num_chunks))
        return run_max + jnp.log(run_sum) - math.log(k)

    return jax.jit(estimate)


def iw_log_likelihood(model: LatentVariableModel, guide: ConditionalSampler, params, key, x, *,
                      num_samples: int, batch_size: int = 100, memory_budget_mb: float = 512,
                      k_chunk: Optional[int] = None, binary: Optional[bool] = None,
                      progress: bool = False) -> np.ndarray:
    """Per-example importance-weighted estimate log p̂_K(x) (Eq. 17 / 19), shape [N].

    Args:
      model: p_θ(x, h) protocol; guide: q_φ(h|x) protocol (the proposal).
      params: ``{"model": θ, "guide": φ}``.
      key: PRNG key (``jax.random.PRNGKey(seed)``, not an int); example n,
        sample k uses ``fold_in(fold_in(key, n), k)``.
      x: data ``[N, D...]`` (concrete array).  float32 and float64 are kept
        (float64 needs ``jax_enable_x64``); other dtypes (bfloat16, float16,
        integers, bool) are evaluated in float32.
      num_samples: K, importance samples per example (K >= 1; the IWAE paper
        uses 5000).  Required: the estimate is the bound I_K, so K is part of
        what is reported (the policy of :mod:`sajax.estimators`).
      batch_size: examples per jitted call.
      memory_budget_mb: bound on the estimated peak memory of one K-chunk
        (module docstring); sets ``k_chunk`` unless given.
      k_chunk: samples per scan step, overriding the budget.
      binary: require binary data; ``None`` asks the model
        (``model.observation == "bernoulli"``).
      progress: show a tqdm bar over example batches.

    Returns: numpy array ``[N]`` in the weights' dtype (float32; float64 for
    float64 data under x64).  Raises ValueError for K < 1, NaN / non-binary /
    mis-shaped data, params without the ``"model"``/``"guide"`` groups;
    TypeError for a key that is not a PRNG key.
    """
    k = check_positive_int("num_samples", num_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    key = check_key(key)
    require_groups(params, (MODEL, GUIDE), "iw_log_likelihood")
    if binary is None:
        binary = _observation(model) == "bernoulli"
    x = check_data(x, name="x", binary=bool(binary))
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64) or not jax.config.jax_enable_x64:
        x = x.astype(np.float32)
    n = x.shape[0]
    batch_size = min(batch_size, n)
    if k_chunk is None:
        k_chunk = k_chunk_for_budget(k, batch_size, _max_width(params, int(np.prod(x.shape[1:]))),
                                     memory_budget_mb)
    else:
        k_chunk = min(check_positive_int("k_chunk", k_chunk), k)
    _probe(model, guide, params, key, x[:batch_size])
    fn = _batch_estimator(model, guide, k, k_chunk)

    starts = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"IW log-likelihood (K={k}, chunk {k_chunk})", unit="batch")
    out = []
    for s in starts:
        xb = x[s:s + batch_size]
        m = xb.shape[0]
        if m < batch_size:   # pad to one compiled shape; padded rows are dropped
            xb = np.concatenate([xb, np.repeat(xb[-1:], batch_size - m, axis=0)])
        res = fn(params, key, jnp.asarray(xb), jnp.arange(s, s + batch_size))[:m]
        if progress:
            res.block_until_ready()
        out.append(res)
    return np.asarray(jnp.concatenate(out))


def iw_nll(model: LatentVariableModel, guide: ConditionalSampler, params, key, x, **kwargs) -> float:
    """Test NLL in nats: -mean_n log p̂_K(x_n) (IWAE paper's metric, Eq. 19 with K = 5000).

    Same arguments as :func:`iw_log_likelihood` (K is ``num_samples=``, required).
    """
    return float(-np.mean(iw_log_likelihood(model, guide, params, key, x, **kwargs), dtype=np.float64))


def supports_iw_nll(model, guide) -> bool:
    """Whether :func:`iw_log_likelihood` applies: a prescribed model
    p_θ(x, h) (:class:`LatentVariableModel`) with a guide q_φ(h|x) to propose
    from (:class:`ConditionalSampler`).  Energy models and implicit generators
    need other estimates (AIS for log Z, sample-based metrics)."""
    return (callable(getattr(model, "log_prior", None)) and callable(getattr(model, "log_likelihood", None))
            and callable(getattr(guide, "sample_and_log_prob", None)))


def _observation(model):
    """The model's observation kind, ``model.observation`` (None if unknown)."""
    return getattr(model, "observation", None)


def _probe(model, guide, params, key, x):
    """A K=1 pass on the first batch, traced (``jax.eval_shape``, nothing compiled) with
    ``x`` concrete: the model's own data checks (shape, binary) fire here as clear
    errors, not inside jit."""
    def first_pass(p, k):
        h, log_q = guide.sample_and_log_prob(p[GUIDE], k, x, 1)
        return log_joint(model, p[MODEL], x, h) - log_q

    log_w = jax.eval_shape(first_pass, params, key)
    if tuple(np.shape(log_w)) != (1, x.shape[0]):
        raise ValueError(f"log p(x, h) - log q(h|x) must have shape [K, B] = (1, {x.shape[0]}) "
                         f"for x of shape {x.shape}; got {tuple(np.shape(log_w))}. Check x's event shape.")
