"""Posterior-collapse metrics of the text-VAE literature (review Sec. 3.2.1
item 3: "the LSTM decoder in textual VAE does not make effective use of the
latent code").

For a model p_θ(x, h) with an inference model q_φ(h|x), over data x_1..x_N:

* **KL** (Bowman et al. 2016): (1/N) Σ_n KL[q_φ(h|x_n) || p_θ(h)], the rate
  term of Eq. 8; analytic when ``guide.dist`` and ``model.prior`` exist
  (distrax), else a Monte Carlo mean of log q_φ(h|x) - log p_θ(h) over
  ``num_samples`` draws per example (``mc_samples`` in :func:`collapse_metrics`,
  whose ``num_samples`` is the K of the NLL below).  KL ≈ 0 is the collapse.
* **Active units** (Burda et al. 2016, Sec. 5.2; used for text VAEs by He et
  al. 2019): AU = #{i : Cov_x(E_{q(h|x)}[h_i]) > δ}, δ = 0.01, the variance
  over the data (ddof = 1) of each latent's posterior mean.  E_q[h] is
  ``guide.dist(φ, x).mean()`` when available, else a Monte Carlo mean.
* **Reconstruction**: (1/N) Σ_n E_{q(h|x_n)} log p_θ(x_n|h) (Monte Carlo);
  ELBO = reconstruction - KL (Eq. 8).
* **NLL per token and perplexity**: from the importance-weighted estimate
  log p̂_K(x) of Eq. 19 (:func:`sajax.evaluate.iw_log_likelihood`):
  NLL/token = -Σ_n log p̂_K(x_n) / Σ_n |x_n|, where |x_n| counts the words and
  the <eos> (the non-pad ids, :func:`sajax.data.text.num_tokens`), and
  perplexity = exp(NLL/token).  Since E log p̂_K <= log p(x), these are
  (stochastic) upper bounds.

Example (an encoder that ignores x: no active unit, KL in closed form):
  >>> import jax, jax.numpy as jnp, numpy as np
  >>> from sajax.models._sequence import text_vae
  >>> spec = text_vae(vocab_size=8, max_len=5, latent_dim=3, embed=4, hidden=8)
  >>> params = spec.init(jax.random.PRNGKey(0))
  >>> params["guide"]["head"]["Dense_0"]["kernel"] *= 0.0      # q(h|x) = q(h)
  >>> x = np.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [7, 7, 7, 2, 0]], np.int32)
  >>> active_units(spec.guide, params, x).count
  0
  >>> m, log_std = np.split(np.asarray(params["guide"]["head"]["Dense_0"]["bias"]), 2)
  >>> closed = 0.5 * np.sum(np.exp(2 * log_std) + m ** 2 - 1 - 2 * log_std)
  >>> bool(np.isclose(mean_kl(spec.model, spec.guide, params, x), closed, rtol=1e-5))
  True
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import GUIDE, MODEL, check_key, check_positive_int, require_groups
from sajax.data.text import num_tokens
from sajax.evaluate.nll import iw_log_likelihood

__all__ = ["ActiveUnits", "TokenNLL", "token_perplexity", "AU_THRESHOLD", "mean_kl", "posterior_means", "active_units",
           "reconstruction", "token_nll", "collapse_metrics"]

AU_THRESHOLD = 0.01


class ActiveUnits(NamedTuple):
    """Active units: ``count`` = #{i : ``variances[i]`` > ``threshold``};
    ``variances`` ``[d]`` = Cov_x(E_q[h_i|x]) (ddof = 1)."""

    count: int
    variances: np.ndarray
    threshold: float


class TokenNLL(NamedTuple):
    """IW negative log-likelihoods (nats): ``nll`` per sentence (mean),
    ``nll_per_token``, ``perplexity`` = exp(nll_per_token), ``tokens`` counted."""

    nll: float
    nll_per_token: float
    perplexity: float
    tokens: int


def _map_batches(fn, x, batch_size: int, *args) -> np.ndarray:
    """``fn(*args, xb, rows)`` over batches of ``x``, the last one padded to one compiled shape."""
    x = np.asarray(x)
    n = x.shape[0]
    b = min(batch_size, n)
    out = []
    for s in range(0, n, b):
        xb = x[s:s + b]
        m = xb.shape[0]
        if m < b:
            xb = np.concatenate([xb, np.repeat(xb[-1:], b - m, axis=0)])
        out.append(np.asarray(fn(*args, jnp.asarray(xb), jnp.arange(s, s + b)))[:m])
    return np.concatenate(out)


def _keys(key, rows):
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, rows)


def _per_example_draws(guide, phi, keys, x, n):
    """``n`` draws of q(h|x) per example, example i from ``keys[i]``: (h [n, B, d], log q [n, B])."""
    def one(k, xi):
        h, lq = guide.sample_and_log_prob(phi, k, xi[None], n)
        return h[:, 0], lq[:, 0]

    h, lq = jax.vmap(one, out_axes=1)(keys, x)
    return h, lq


@functools.lru_cache(maxsize=32)
def _kl_fn(model, guide, num_samples: Optional[int]):
    """Jitted per-example KL[q(h|x) || p(h)]: analytic (``num_samples=None``) or Monte Carlo."""
    def kl(params, key, x, rows):
        theta, phi = params[MODEL], params[GUIDE]
        if num_samples is None:
            return guide.dist(phi, x).kl_divergence(model.prior(theta))
        h, lq = _per_example_draws(guide, phi, _keys(key, rows), x, num_samples)
        return jnp.mean(lq - model.log_prior(theta, h), axis=0)

    return jax.jit(kl)


def _analytic(model, guide) -> bool:
    return getattr(guide, "dist", None) is not None and getattr(model, "prior", None) is not None


def _check_args(params, x, batch_size, who):
    require_groups(params, (MODEL, GUIDE), who)
    if np.ndim(x) < 2 or np.shape(x)[0] < 1:
        raise ValueError(f"{who}: x must be data [N, ...] with N >= 1, got shape {np.shape(x)}")
    return check_positive_int("batch_size", batch_size)


def mean_kl(model, guide, params, x, *, key=None, num_samples: int = 64, batch_size: int = 256,
            analytic: Optional[bool] = None) -> float:
    """(1/N) Σ_n KL[q_φ(h|x_n) || p_θ(h)] (module docstring), nats.

    ``analytic=None`` uses the closed form when ``guide.dist`` and
    ``model.prior`` exist; the Monte Carlo mean over ``num_samples`` draws
    per example (``key`` required) otherwise or when ``analytic=False``.
    """
    batch_size = _check_args(params, x, batch_size, "mean_kl")
    use = _analytic(model, guide) if analytic is None else bool(analytic)
    if use and not _analytic(model, guide):
        raise ValueError("analytic=True needs guide.dist and model.prior (distrax distributions over h)")
    if not use:
        check_key(key)
        num_samples = check_positive_int("num_samples", num_samples)
    fn = _kl_fn(model, guide, None if use else num_samples)
    return float(np.mean(_map_batches(fn, x, batch_size, params, key), dtype=np.float64))


@functools.lru_cache(maxsize=32)
def _mean_fn(guide, num_samples: Optional[int]):
    def means(phi, key, x, rows):
        if num_samples is None:
            return guide.dist(phi, x).mean()
        h, _ = _per_example_draws(guide, phi, _keys(key, rows), x, num_samples)
        return jnp.mean(h, axis=0)

    return jax.jit(means)


def posterior_means(guide, params, x, *, key=None, num_samples: int = 64, batch_size: int = 256) -> np.ndarray:
    """E_{q_φ(h|x_n)}[h] ``[N, d]``: ``guide.dist(φ, x).mean()`` if the guide has
    ``dist``, else the mean of ``num_samples`` draws (``key`` required)."""
    batch_size = _check_args(params, x, batch_size, "posterior_means")
    analytic = getattr(guide, "dist", None) is not None
    if not analytic:
        check_key(key)
        num_samples = check_positive_int("num_samples", num_samples)
    fn = _mean_fn(guide, None if analytic else num_samples)
    return _map_batches(fn, x, batch_size, params[GUIDE], key)


def active_units(guide, params, x, *, threshold: float = AU_THRESHOLD, key=None, num_samples: int = 64,
                 batch_size: int = 256) -> ActiveUnits:
    """Active units AU = #{i : Cov_x(E_q[h_i|x]) > threshold} (Burda et al. 2016), N >= 2."""
    if np.shape(x)[0] < 2:
        raise ValueError(f"active_units needs N >= 2 examples for a variance, got {np.shape(x)[0]}")
    if not (isinstance(threshold, (int, float)) and threshold >= 0):
        raise ValueError(f"threshold must be a non-negative number, got {threshold!r}")
    mu = posterior_means(guide, params, x, key=key, num_samples=num_samples, batch_size=batch_size)
    var = np.var(mu.reshape(mu.shape[0], -1).astype(np.float64), axis=0, ddof=1)
    return ActiveUnits(int(np.sum(var > threshold)), var, float(threshold))


@functools.lru_cache(maxsize=32)
def _rec_fn(model, guide, num_samples: int):
    def rec(params, key, x, rows):
        h, _ = _per_example_draws(guide, params[GUIDE], _keys(key, rows), x, num_samples)
        return jnp.mean(model.log_likelihood(params[MODEL], x, h), axis=0)

    return jax.jit(rec)


def reconstruction(model, guide, params, key, x, *, num_samples: int = 8, batch_size: int = 256) -> float:
    """(1/N) Σ_n E_{q(h|x_n)} log p_θ(x_n|h), Monte Carlo over ``num_samples`` draws, nats."""
    batch_size = _check_args(params, x, batch_size, "reconstruction")
    check_key(key)
    num_samples = check_positive_int("num_samples", num_samples)
    return float(np.mean(_map_batches(_rec_fn(model, guide, num_samples), x, batch_size, params, key),
                         dtype=np.float64))


def token_nll(model, guide, params, key, x, *, num_samples: int, **iw_kwargs) -> TokenNLL:
    """Per-sentence and per-token IW NLL and perplexity (module docstring) of token ids
    ``x`` ``[N, T]`` with K = ``num_samples`` importance samples (required);
    ``iw_kwargs`` go to :func:`sajax.evaluate.iw_log_likelihood`."""
    return token_perplexity(iw_log_likelihood(model, guide, params, key, x, num_samples=num_samples, **iw_kwargs), x)


def token_perplexity(log_p, x) -> TokenNLL:
    """:class:`TokenNLL` of sentence log-likelihoods ``log_p`` ``[N]`` (nats) of token rows
    ``x`` ``[N, T]``: tokens are the words and the ``<eos>`` of each row, so perplexity is
    exp(-Σ log p / #tokens), comparable across the text VAE, an LSTM LM and a TRF."""
    log_p = np.asarray(log_p, np.float64)
    tokens = int(np.sum(num_tokens(x)))
    if tokens < 1:
        raise ValueError("x has no tokens (every id is <pad>)")
    if log_p.shape != (np.shape(x)[0],):
        raise ValueError(f"log_p must hold one value per sentence, shape ({np.shape(x)[0]},), got {log_p.shape}")
    per_token = float(-np.sum(log_p) / tokens)
    return TokenNLL(float(-np.mean(log_p)), per_token, math.exp(per_token), tokens)


def collapse_metrics(model, guide, params, key, x, *, num_samples: int, mc_samples: int = 8,
                     threshold: float = AU_THRESHOLD, batch_size: int = 256) -> dict:
    """All metrics of the module docstring as floats: ``kl``, ``active_units``,
    ``reconstruction``, ``elbo``, ``nll``, ``nll_per_token``, ``perplexity``.

    Args:
      num_samples: K of the importance-weighted NLL (:func:`token_nll`), required.
      mc_samples: Monte Carlo draws per example for the KL (when it has no closed
        form), the posterior means of the active units and the reconstruction term.
    """
    check_key(key)
    k_kl, k_au, k_rec, k_nll = jax.random.split(key, 4)
    kl = mean_kl(model, guide, params, x, key=k_kl, num_samples=mc_samples, batch_size=batch_size)
    au = active_units(guide, params, x, threshold=threshold, key=k_au, num_samples=mc_samples,
                      batch_size=batch_size)
    rec = reconstruction(model, guide, params, k_rec, x, num_samples=mc_samples, batch_size=batch_size)
    nll = token_nll(model, guide, params, k_nll, x, num_samples=num_samples, batch_size=min(batch_size, 100))
    return {"kl": kl, "active_units": float(au.count), "reconstruction": rec, "elbo": rec - kl,
            "nll": nll.nll, "nll_per_token": nll.nll_per_token, "perplexity": nll.perplexity}
