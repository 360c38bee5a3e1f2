"""Wake-sleep learning and reweighted wake-sleep (review Sec. 3.2.2).

Wake-sleep (WS; Hinton et al. 1995) solves Eq. 21 by the SA root finder of
Algorithm 4 (Eq. 22): the wake phase ascends the ELBO in θ on data with
latents from the inference model, the sleep phase ascends
E_{p_θ(x,h)} log q_φ(h|x) in φ on "dreams" (x', h') drawn from the model,
i.e. descends the inclusive KL[p_θ(h|x) || q_φ(h|x)] averaged over p_θ(x).

Reweighted wake-sleep (RWS; Bornschein & Bengio 2015) replaces the single
wake sample by K importance-weighted ones, with normalized weights
w̄_k = w_k / Σ_k' w_k', w_k = p_θ(x, h_k) / q_φ(h_k|x), h_k ~ q_φ(h|x):

* wake-θ (Eq. 23): Σ_k w̄_k ∇_θ log p_θ(x, h_k), an unbiased estimate of
  ∇_θ I_K (Eq. 24), the gradient of the IW-LB of Eq. 19;
* wake-φ (Eq. 25): Σ_k w̄_k ∇_φ log q_φ(h_k|x), a biased (self-normalized)
  estimate of -∇_φ KL[p_θ(h|x) || q_φ(h|x)] on data, consistent as K → ∞;
* sleep-φ: as in WS, unbiased for ∇_φ E_{p_θ(x,h)} log q_φ(h|x);
* wake+sleep: the average of the two φ directions (reported best by
  Bornschein & Bengio 2015).

Samples are treated as data: no gradient flows through them (they may be
discrete).  Each factory returns a :class:`sajax.core.Estimator` over
``params = {MODEL: θ, GUIDE: φ}`` with state ``()`` (``init`` ignores the
training set); ``grads`` is a descent direction, batch-averaged.  The sleep
phase draws B dreams for a batch of B examples, from ``model.sample``
(required).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sajax.core import (
    GUIDE,
    MODEL,
    ConditionalSampler,
    Estimate,
    Estimator,
    LatentVariableModel,
    batch_data,
    check_positive_int,
    check_protocols,
    log_joint,
    log_mean_exp,
    no_state,
)
from sajax.estimators._common import _sg, descent, ascent_groups, with_objective

__all__ = ["wake_sleep", "rws", "PHI_UPDATES"]

PHI_UPDATES = ("wake", "sleep", "wake+sleep")


def _check_ws_protocols(model, guide, *, needs_sample: bool) -> None:
    check_protocols(model, guide)
    if needs_sample and not callable(getattr(model, "sample", None)):
        raise ValueError("the sleep phase draws (x', h') ~ p_θ(x, h): model.sample must be given "
                         "(LatentVariableModel.sample = (θ, key, n) -> (x, h))")


def _dreams(model, theta, key, n):
    """(x', h') ~ p_θ(x, h) held fixed: n ancestral samples, h' leaves [n, d]."""
    x_s, h_s = model.sample(theta, key, n)
    return _sg(x_s), _sg(h_s)


def wake_sleep(model: LatentVariableModel, guide: ConditionalSampler) -> Estimator:
    """Wake-sleep learning (Algorithm 4, Eq. 21-22; Hinton et al. 1995).

    Per iteration, for a batch x [B, D]:
      wake:  h ~ q_φ(h|x); θ ascends (1/B) Σ ∇_θ log p_θ(x, h);
      sleep: (x', h') ~ p_θ, B draws; φ ascends (1/B) Σ ∇_φ log q_φ(h'|x').

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; metrics ``elbo`` = ``objective``
      (batch mean of log p(x,h) - log q(h|x) for the wake sample, higher is
      better) and ``sleep_log_q`` (mean log q(h'|x')).
    """
    _check_ws_protocols(model, guide, needs_sample=True)

    def estimate(params, state, key, batch):
        groups = ascent_groups(params, "wake_sleep")
        x = batch_data(batch)
        k_wake, k_sleep = jax.random.split(key)
        h, log_q = guide.sample_and_log_prob(groups[GUIDE], k_wake, x, 1)
        h, log_q = _sg(h), _sg(log_q)
        x_s, h_s = _dreams(model, groups[MODEL], k_sleep, x.shape[0])

        def surrogate(p):
            log_p = log_joint(model, p[MODEL], x, h)              # [1, B]
            sleep_lq = guide.log_prob(p[GUIDE], x_s, h_s)         # [B]
            return jnp.mean(log_p) + jnp.mean(sleep_lq), (log_p, sleep_lq)

        ascent, (log_p, sleep_lq) = jax.grad(surrogate, has_aux=True)(groups)
        metrics = {"elbo": jnp.mean(log_p - log_q), "sleep_log_q": jnp.mean(sleep_lq)}
        return Estimate(descent(params, ascent), state, with_objective(metrics, "elbo"))

    return Estimator(no_state, estimate)


def _rws_surrogate(model, guide, x, h, log_q, dreams, use_wake: bool, phi_scale: float):
    """The RWS surrogate whose gradient is Eq. 23 (θ) plus the chosen φ-update."""
    def surrogate(p):
        log_p = log_joint(model, p[MODEL], x, h)                    # [K, B]
        log_w = _sg(log_p) - log_q
        w_bar = jax.nn.softmax(log_w, axis=0)                        # [K, B]
        obj = jnp.mean(jnp.sum(w_bar * log_p, axis=0))               # Eq. 23
        aux = {"log_w": log_w, "w_bar": w_bar}
        if use_wake:
            lq = guide.log_prob(p[GUIDE], x, h)
            obj = obj + phi_scale * jnp.mean(jnp.sum(w_bar * lq, axis=0))  # Eq. 25
        if dreams is not None:
            sleep_lq = guide.log_prob(p[GUIDE], *dreams)             # [B]
            obj = obj + phi_scale * jnp.mean(sleep_lq)
            aux["sleep_log_q"] = jnp.mean(sleep_lq)
        return obj, aux

    return surrogate


def rws(model: LatentVariableModel, guide: ConditionalSampler, *, num_samples: int,
        phi_update: str = "wake") -> Estimator:
    """Reweighted wake-sleep (Bornschein & Bengio 2015; review Eq. 23-25).

    Args:
      model: p_θ(x, h); ``model.sample`` is needed when ``phi_update`` uses sleep.
      guide: q_φ(h|x).
      num_samples: K >= 1 importance samples per example.
      phi_update: ``"wake"`` (Eq. 25), ``"sleep"`` (Algorithm 4's sleep phase) or
        ``"wake+sleep"`` (their average).

    θ always ascends Σ_k w̄_k ∇_θ log p_θ(x, h_k) (Eq. 23), unbiased for
    ∇_θ I_K (Eq. 24).  For a fixed key the wake samples use the first half of
    ``split(key)`` and the dreams the second, in every variant, so the
    ``"wake+sleep"`` direction is exactly the mean of the other two.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; metrics ``iw_bound`` =
      ``objective`` (batch mean of the Eq. 19 estimate log (1/K) Σ_k w_k,
      higher is better) and ``ess`` (mean effective sample size
      1 / Σ_k w̄_k² of the wake weights), plus ``sleep_log_q`` with sleep.

    Example:
      >>> import jax, sajax
      >>> spec = sajax.models.sbn(8, (4,))
      >>> est = sajax.estimators.rws(spec.model, spec.guide, num_samples=5, phi_update="wake+sleep")
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), jax.numpy.ones((3, 8)))
      >>> sorted(out.metrics)
      ['ess', 'iw_bound', 'objective', 'sleep_log_q']
    """
    k = check_positive_int("num_samples", num_samples)
    if phi_update not in PHI_UPDATES:
        raise ValueError(f"phi_update must be one of {PHI_UPDATES}, got {phi_update!r}")
    use_wake = phi_update in ("wake", "wake+sleep")
    use_sleep = phi_update in ("sleep", "wake+sleep")
    _check_ws_protocols(model, guide, needs_sample=use_sleep)
    phi_scale = 0.5 if phi_update == "wake+sleep" else 1.0

    def estimate(params, state, key, batch):
        groups = ascent_groups(params, "rws")
        x = batch_data(batch)
        k_wake, k_sleep = jax.random.split(key)
        h, log_q = guide.sample_and_log_prob(groups[GUIDE], k_wake, x, k)
        dreams = _dreams(model, groups[MODEL], k_sleep, x.shape[0]) if use_sleep else None
        surrogate = _rws_surrogate(model, guide, x, _sg(h), _sg(log_q), dreams, use_wake, phi_scale)
        ascent, aux = jax.grad(surrogate, has_aux=True)(groups)
        metrics = {"iw_bound": jnp.mean(log_mean_exp(aux["log_w"])),
                   "ess": jnp.mean(1.0 / jnp.sum(aux["w_bar"] ** 2, axis=0))}
        if use_sleep:
            metrics["sleep_log_q"] = aux["sleep_log_q"]
        return Estimate(descent(params, ascent), state, with_objective(metrics, "iw_bound"))

    return Estimator(no_state, estimate)
