"""Scoring a trans-dimensional random field (TRF) over sentences (review Sec. 4.1,
Eq. 38; Wang & Ou 2017, 2018a,b; Wang, Ou & Tan 2018).

A TRF is p(l, x) = π_l exp(u_θ(x)) / Z_l(θ) over sentences x of length l, with
Z_l(θ) = Σ_{|x| = l} exp(u_θ(x)).  Training learns ζ_l as an estimate of log Z_l
(:func:`sajax.models.trf`); to score held-out sentences independently of how ζ was
learned, log Z_l is estimated again here by importance sampling from a language
model q (the NCE noise, DNCE's noise model or the SA generator):

    Z_l = E_q[ 1{|x| = l} exp(u_θ(x)) / q(x) ],
    Ẑ_l = (1/N) Σ_i 1{|x_i| = l} exp(u_θ(x_i)) / q(x_i),     x_1..x_N ~ q,

unbiased for Z_l whenever q gives every sentence of length l positive mass (an
LSTM LM does).  log Ẑ_l is biased low (Jensen), which makes the perplexity
optimistic by up to E[log Z_l - log Ẑ_l]; the effective sample size of each
length (Σw)² / Σw² over the draws of that length is reported to judge it.

* :func:`trf_log_normalizers`: log Ẑ_l, ESS and counts per length from N draws;
* :func:`trf_log_prob`: log p(l, x) = log π_l + u_θ(x) - log Z_l of sentences given
  any log Z (estimated, exact, or the model's own ζ);
* :func:`trf_resample`: approximate samples of the TRF by sampling-importance-
  resampling from the same draws (decoded sentences for a run's report).

Shapes: token rows ``[N, T]`` as :mod:`sajax.data.text` encodes them; L = T - 1.

Example (a tiny TRF whose log Z_l is also exact by enumeration):
  >>> import jax, numpy as np
  >>> from sajax.models import lstm_lm, trf, trf_log_partition
  >>> spec = trf(5, 4, length_prior=[0.2, 0.3, 0.5], potential="bigram")
  >>> theta = spec.init(jax.random.PRNGKey(0))["potential"]
  >>> lm = lstm_lm(5, 4, embed=4, hidden=8)
  >>> est = trf_log_normalizers(spec, theta, lm.noise, lm.init(jax.random.PRNGKey(1)),
  ...                           jax.random.PRNGKey(2), num_samples=20000)
  >>> bool(np.allclose(est.log_z, trf_log_partition(spec, theta), atol=0.1)), int(est.counts.sum())
  (True, 20000)
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import check_key, check_positive_int

__all__ = ["LogNormalizers", "trf_log_normalizers", "trf_log_prob", "trf_resample"]


class LogNormalizers(NamedTuple):
    """Importance-sampling estimates per length l = 1..L (index l - 1).

    Attributes:
      log_z: ``[L]`` log Ẑ_l (-inf where no draw had length l).
      ess: ``[L]`` effective sample size of the draws of length l (0 where none).
      counts: ``[L]`` number of draws of length l.
      num_samples: N, the number of draws.
    """

    log_z: np.ndarray
    ess: np.ndarray
    counts: np.ndarray
    num_samples: int


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _chunk_stats(energy, lengths, sample, log_prob, num_lengths: int, n: int, theta, phi, key):
    """Per length: logsumexp of the weights w = exp(u_θ(x)) / q(x), of w², and the count, over
    one chunk of n draws of q (compiled once per model, proposal and n)."""
    x = sample(phi, key, n)
    lw = energy(theta, x) - log_prob(phi, x)
    mask = jax.nn.one_hot(lengths(x) - 1, num_lengths, dtype=bool)          # [n, L]
    masked = lambda v: jnp.where(mask, v[:, None], -jnp.inf)                 # noqa: E731
    return (jax.nn.logsumexp(masked(lw), axis=0), jax.nn.logsumexp(masked(2.0 * lw), axis=0),
            jnp.sum(mask, axis=0))


def trf_log_normalizers(spec, theta, proposal, phi, key, *, num_samples: int,
                        chunk: int = 4096) -> LogNormalizers:
    """log Ẑ_l for every length by importance sampling from ``proposal`` (module docstring).

    Args:
      spec: a :class:`sajax.models.TRFSpec` (uses ``energy``, ``lengths``, ``max_len``).
      theta: the potential's parameters θ̂ (``params["potential"]``; ζ is not used).
      proposal: a :class:`sajax.core.NoiseModel` q (``sample``, ``log_prob``),
        e.g. ``lstm_lm(...).noise``; ``phi`` its parameters.
      key: PRNG key.
      num_samples: N draws of q (required); drawn in jitted chunks of ``chunk`` (and one
        chunk of the remainder).

    Returns: :class:`LogNormalizers` (numpy, float64 log Z).
    """
    check_key(key)
    num_samples = check_positive_int("num_samples", num_samples)
    n = min(check_positive_int("chunk", chunk), num_samples)
    sizes = [n] * (num_samples // n) + ([num_samples % n] if num_samples % n else [])
    fns = (spec.energy, spec.lengths, proposal.sample, proposal.log_prob, spec.max_len - 1)
    lse = lse2 = None
    counts = 0
    for size, k in zip(sizes, jax.random.split(key, len(sizes))):
        a, b, c = (np.asarray(v, np.float64) for v in _chunk_stats(*fns, size, theta, phi, k))
        lse, lse2 = (a, b) if lse is None else (np.logaddexp(lse, a), np.logaddexp(lse2, b))
        counts = counts + c
    with np.errstate(invalid="ignore"):
        ess = np.where(counts > 0, np.exp(2.0 * lse - lse2), 0.0)
    return LogNormalizers(lse - math.log(num_samples), ess, counts.astype(np.int64), num_samples)


def trf_log_prob(spec, theta, x, log_z) -> np.ndarray:
    """log p(l, x) = log π_l + u_θ(x) - log Z_l ``[N]`` (float64) of token rows ``x``
    ``[N, T]`` given ``log_z`` ``[L]`` (an estimate, the exact values, or ζ itself).

    Raises ValueError when a sentence has a length whose log Z is not finite (no
    proposal draw of that length: raise ``num_samples``)."""
    x = jnp.asarray(x)
    lengths = np.asarray(spec.lengths(x))
    log_z = np.asarray(log_z, np.float64)
    missing = sorted(set(int(v) for v in lengths[~np.isfinite(log_z[lengths - 1])]))
    if missing:
        raise ValueError(f"no finite log Z for sentence lengths {missing}: the proposal drew no sentence of "
                         f"those lengths; raise num_samples")
    u = np.asarray(spec.energy(theta, x), np.float64)
    return np.asarray(spec.log_length_prior, np.float64)[lengths - 1] + u - log_z[lengths - 1]


def trf_resample(spec, theta, proposal, phi, key, num: int, *, num_proposals: int = 4096):
    """``num`` approximate TRF samples ``int32 [num, T]``: ``num_proposals`` draws of q
    resampled with probabilities ∝ π_l exp(u_θ(x) - ζ_l) / q(x) (sampling-importance-
    resampling; exact as ``num_proposals`` → ∞).  Uses the model's own ζ."""
    check_key(key)
    num = check_positive_int("num", num)
    k_draw, k_pick = jax.random.split(key)
    x = proposal.sample(phi, k_draw, check_positive_int("num_proposals", num_proposals))
    log_w = spec.model.potential(theta, x) - proposal.log_prob(phi, x)
    pick = jax.random.categorical(k_pick, log_w, shape=(num,))
    return x[pick]
