"""Score-function estimators with variance reduction for discrete latents
(review Sec. 3.2.1, item 2, "Handling of discrete latent variables").

The ELBO L(x; θ, φ) of Eq. 7 (or the IW-LB I_K of Eq. 19) is maximized
jointly over p_θ(x, h) and q_φ(h|x) as in Algorithm 3, but h is discrete, so
the reparameterization trick of Eq. 12-13 does not apply.  These estimators
only need the :class:`sajax.core.ConditionalSampler` protocol and stay
unbiased for any discrete (or continuous) latents:

* :func:`~sajax.estimators.reinforce` (in ``_variational``) - Algorithm 3 as is.
* :func:`nvil` - REINFORCE with centering by a running mean, an
  input-dependent baseline network and variance normalization
  (Mnih & Gregor 2014).  :func:`nvil_baseline` is the default baseline net.
* :func:`rloo` - REINFORCE with the leave-one-out baseline over K samples
  (Kool, van Hoof & Welling 2019).
* :func:`vimco` - the IW-LB I_K of Eq. 19 with leave-one-out baselines built
  from the geometric mean of the other samples (Mnih & Rezende 2016).

Conventions (DESIGN.md): params ``{MODEL: θ, GUIDE: φ}`` (NVIL adds
``BASELINE: ψ``); ``grads`` is a DESCENT direction averaged over the K
samples and the batch; metrics are batch means with their natural sign
(``elbo`` or ``iw_bound``, also under ``objective``; higher is better).
Shapes: ``batch.x`` ``[B, D]``; latent leaves ``[K, B, ...]``; log-densities
``[K, B]``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sajax.core import (
    BASELINE,
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
    require_groups,
)
from sajax.estimators._common import (
    _sg,
    check_loo_samples,
    descent,
    score_function_estimator,
    with_objective,
)

__all__ = ["nvil", "nvil_baseline", "NVILState", "rloo", "vimco"]


# --------------------------------------------------------------------------
# NVIL


def nvil_baseline(x_dim: int, hidden: int = 100):
    """Default input-dependent baseline C_ψ(x) of NVIL: an MLP x -> tanh(hidden) -> scalar.

    Mnih & Gregor (2014) use one hidden layer of 100 tanh units.  The output
    layer starts at zero so that the baseline starts as "no baseline".

    Returns:
      ``(init, apply)``: ``init(key) -> ψ``; ``apply(ψ, x [B, x_dim]) -> [B]``.
      Put ``init(key)`` into ``params[BASELINE]`` (``params["baseline"]``).
    """
    x_dim = check_positive_int("x_dim", x_dim)
    hidden = check_positive_int("hidden", hidden)

    def init(key):
        w1 = jax.random.normal(key, (x_dim, hidden), jnp.float32) / math.sqrt(x_dim)
        return {"w1": w1, "b1": jnp.zeros((hidden,), jnp.float32),
                "w2": jnp.zeros((hidden,), jnp.float32), "b2": jnp.zeros((), jnp.float32)}

    def apply(psi, x):
        x = jnp.reshape(x, x.shape[:1] + (-1,)).astype(psi["w1"].dtype)
        return jnp.tanh(x @ psi["w1"] + psi["b1"]) @ psi["w2"] + psi["b2"]

    return init, apply


class NVILState(NamedTuple):
    """NVIL's running moments of the baseline-corrected learning signal
    r = l(x, h) - C_ψ(x): ``mean`` is the data-independent baseline c,
    ``var`` the running estimate v of Var[r - c] used for normalization."""

    mean: jax.Array
    var: jax.Array


_NVIL_GROUPS = (MODEL, GUIDE, BASELINE)


def _check_nvil_args(baseline_net, alpha):
    if not (isinstance(baseline_net, tuple) and len(baseline_net) == 2
            and all(callable(f) for f in baseline_net)):
        raise TypeError("nvil: baseline_net must be a pair (init, apply) of callables, "
                        f"e.g. nvil_baseline(x_dim); got {type(baseline_net).__name__}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be a float in [0, 1), got {alpha!r}")
    return float(alpha)


def _nvil_ascent(model, guide, apply_baseline, params, state, x, h, scale):
    """Ascent directions over (θ, φ, ψ) and the signals l, l - C_ψ(x), both [K, B]."""
    def surrogate(p):
        log_p = log_joint(model, p[MODEL], x, h)            # [K, B]
        log_q = guide.log_prob(p[GUIDE], x, h)              # [K, B]
        b = apply_baseline(p[BASELINE], x)                  # [B]
        signal = _sg(log_p - log_q)
        residual = signal - _sg(b)                          # l - C_ψ(x)
        a = _sg((residual - state.mean) / scale)
        # θ: ∇log p; φ: A ∇log q; ψ: A ∇C_ψ (descent on ½(l - c - C)² / scale)
        return jnp.mean(log_p + a * log_q) + jnp.mean(a * b), (signal, residual)

    groups = dict(zip(_NVIL_GROUPS, require_groups(params, _NVIL_GROUPS, "nvil")))
    return jax.grad(surrogate, has_aux=True)(groups)


def _nvil_init(model, guide, apply_baseline, warm: int):
    """NVIL's ``init(key, params, data)``: c, v from one draw on the first
    ``warm`` rows of the training set ``data`` [N, ...] (warm = 0: c = 0, v = 1)."""
    @jax.jit
    def warm_moments(params, key, x):
        # Traced x: grayscale training data (dynamic binarization) is accepted
        # here; Bernoulli log-likelihoods are linear in x, so this is the
        # signal averaged over binarizations, a fair starting point for c, v.
        theta, phi, psi = require_groups(params, _NVIL_GROUPS, "nvil init")
        h, log_q = guide.sample_and_log_prob(phi, key, x, 1)
        r = log_joint(model, theta, x, h) - log_q - apply_baseline(psi, x)
        c = jnp.mean(r)
        return NVILState(c, jnp.mean(jnp.square(r - c)))

    def init(key, params, data):
        require_groups(params, _NVIL_GROUPS, "nvil init")
        if warm == 0:
            return NVILState(jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32))
        x = jnp.asarray(batch_data(data))[:warm].astype(jnp.float32)
        return warm_moments(params, key, x)

    return init


def nvil(model: LatentVariableModel, guide: ConditionalSampler, baseline_net, *,
         num_samples: int, alpha: float = 0.8, normalize: bool = True,
         warm_start: int = 256) -> Estimator:
    """Neural variational inference and learning (Mnih & Gregor 2014; review
    Sec. 3.2.1 item 2): REINFORCE (Algorithm 3) with three variance reductions
    of the learning signal l(x, h) = log p_θ(x, h) - log q_φ(h|x):

    1. centering by a running mean c of l - C_ψ(x) (a constant baseline);
    2. an input-dependent baseline C_ψ(x), a network with its own parameter
       group ``BASELINE`` (``"baseline"``) trained to regress l - c;
    3. variance normalization: the centered signal is divided by
       max(1, sqrt(v)), v a running estimate of its variance.

    Ascent directions, with A = (l - c - C_ψ(x)) / max(1, sqrt(v)):

      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k)
      φ: (1/K) Σ_k A_k ∇_φ log q_φ(h_k|x)
      ψ: (1/K) Σ_k A_k ∇_ψ C_ψ(x)     (descent on ½ (l - c - C_ψ(x))² / max(1, sqrt(v)))

    What it is unbiased for: c, v come from ``state`` (earlier iterations only)
    and C_ψ(x) does not depend on h, so the baselines leave the mean unchanged:
    E[θ-part] = ∇_θ L and E[φ-part] = ∇_φ L / max(1, sqrt(v)), the ELBO gradient
    (Eq. 7) times a positive, state-dependent step-size factor.  With
    ``normalize=False`` the φ-part is unbiased for ∇_φ L itself.  (Mnih &
    Gregor update c, v with the current minibatch before using them, which
    adds an O(1/B) bias; here they are updated after.)  The state update is
    c ← α c + (1-α) mean(l - C_ψ(x)),  v ← α v + (1-α) mean((l - C_ψ(x) - c)²).

    Args:
      model: p_θ(x, h).
      guide: q_φ(h|x) (any discrete latents; samples carry no gradient).
      baseline_net: ``(init, apply)`` with ``init(key) -> ψ`` and
        ``apply(ψ, x) -> [B]``, e.g. :func:`nvil_baseline` ``(x_dim)``.
        ``params[BASELINE]`` must hold ``baseline_net[0](key)``.
      alpha: running-average decay in [0, 1) (0.8 in the paper).
      num_samples: K >= 1 samples per example sharing one baseline.
      normalize: divide by max(1, sqrt(v)) (step 3).
      warm_start: ``init(key, params, data)`` sets c, v from one draw on the
        first ``warm_start`` rows of the training set ``data`` (0: c = 0, v = 1).

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ, BASELINE: ψ}`` (other groups get
      zero grads); state :class:`NVILState`; metrics ``elbo`` = ``objective``
      (batch mean of l), ``signal_mean``, ``signal_std`` (c and sqrt(v) after
      the update).

    Raises:
      ValueError (at trace time): params without one of the three groups.

    Example:
      >>> import jax, sajax
      >>> from sajax.core import BASELINE
      >>> spec = sajax.models.sbn(8, (4,))
      >>> net = sajax.estimators.nvil_baseline(8)
      >>> est = sajax.estimators.nvil(spec.model, spec.guide, net, num_samples=1)
      >>> params = dict(spec.init(jax.random.PRNGKey(0)), **{BASELINE: net[0](jax.random.PRNGKey(1))})
      >>> train = jax.numpy.ones((10, 8))              # the whole training set
      >>> state = est.init(jax.random.PRNGKey(2), params, train)
      >>> out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(3), train[:4])
      >>> sorted(out.grads) == sorted(params), sorted(out.metrics)
      (True, ['elbo', 'objective', 'signal_mean', 'signal_std'])
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)
    warm = check_positive_int("warm_start", warm_start, minimum=0)
    alpha = _check_nvil_args(baseline_net, alpha)
    _, apply_baseline = baseline_net
    return Estimator(_nvil_init(model, guide, apply_baseline, warm),
                     _nvil_estimate(model, guide, apply_baseline, k, alpha, normalize))


def _nvil_estimate(model, guide, apply_baseline, k: int, alpha: float, normalize: bool):
    """NVIL's ``estimate``: K draws of q held fixed, the ascent of :func:`_nvil_ascent`,
    then the running moments c, v updated with this batch (after use)."""

    def estimate(params, state, key, batch):
        x = batch_data(batch)
        _, phi, _ = require_groups(params, _NVIL_GROUPS, "nvil")
        h, _ = guide.sample_and_log_prob(phi, key, x, k)
        scale = jnp.maximum(1.0, jnp.sqrt(state.var)) if normalize else 1.0
        ascent, (signal, residual) = _nvil_ascent(model, guide, apply_baseline, params, state,
                                                  x, _sg(h), scale)
        c = alpha * state.mean + (1.0 - alpha) * jnp.mean(residual)
        v = alpha * state.var + (1.0 - alpha) * jnp.mean(jnp.square(residual - c))
        grads = descent(params, ascent)  # other groups of params get zero
        metrics = {"elbo": jnp.mean(signal), "signal_mean": c, "signal_std": jnp.sqrt(v)}
        return Estimate(grads, NVILState(c, v), with_objective(metrics, "elbo"))

    return estimate


# --------------------------------------------------------------------------
# RLOO and VIMCO: leave-one-out baselines over K samples.


def rloo(model: LatentVariableModel, guide: ConditionalSampler, *, num_samples: int) -> Estimator:
    """REINFORCE leave-one-out on the ELBO (Kool, van Hoof & Welling 2019).

    With K samples h_k ~ q_φ(h|x) and l_k = log p_θ(x, h_k) - log q_φ(h_k|x),
    the baseline of sample k is the mean of the other K-1 signals, which does
    not depend on h_k, so the estimator stays unbiased for ∇L (Eq. 7):

      φ: (1/K) Σ_k (l_k - (1/(K-1)) Σ_{j≠k} l_j) ∇_φ log q_φ(h_k|x)
         = (1/(K-1)) Σ_k (l_k - l̄) ∇_φ log q_φ(h_k|x),
      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k)      (Algorithm 3).

    Args:
      model, guide: protocols (any discrete latents).
      num_samples: K >= 2.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective``: batch mean of (1/K) Σ_k l_k.

    Raises:
      ValueError: K < 2.
    """
    check_protocols(model, guide)
    k = check_loo_samples(num_samples, "rloo")
    return score_function_estimator(model, guide, _rloo_surrogate(k), num_samples=k, metric="elbo", name="rloo")


def _rloo_surrogate(k: int):
    """Kool et al.: the baseline of sample k is the mean of the other K-1 signals."""
    def surrogate(log_p, log_q):
        signal = _sg(log_p - log_q)                                        # [K, B]
        advantage = (signal - jnp.mean(signal, axis=0)) * (k / (k - 1.0))  # l_k - mean_{j≠k} l_j
        return jnp.mean(log_p + advantage * log_q), jnp.mean(signal)
    return surrogate


def _vimco_leave_one_out(log_w):
    """L̂_{-k}: log (1/K)(Σ_{j≠k} w_j + ŵ_{-k}), ŵ_{-k} = exp(mean_{j≠k} log w_j)
    (the geometric mean of the other weights); log_w [K, B] -> [K, B]."""
    k = log_w.shape[0]
    others_mean = (jnp.sum(log_w, axis=0, keepdims=True) - log_w) / (k - 1)   # [K, B]
    eye = jnp.eye(k, dtype=bool)[:, :, None]                                   # [K(k), K(j), 1]
    replaced = jnp.where(eye, others_mean[:, None, :], log_w[None, :, :])      # row k: l_k -> mean_{j≠k} l_j
    return log_mean_exp(replaced, axis=1)


def vimco(model: LatentVariableModel, guide: ConditionalSampler, *, num_samples: int) -> Estimator:
    """Variational inference for Monte Carlo objectives (Mnih & Rezende 2016;
    review Sec. 3.2.1 item 2: "NVIL plus using the tighter bound IW-LB Eq. 19").

    The objective is I_K(x; θ, φ) = E[L̂], L̂ = log (1/K) Σ_k w_k,
    w_k = p_θ(x, h_k) / q_φ(h_k|x) (Eq. 19).  With normalized weights w̄_k and
    the leave-one-out estimate L̂_{-k} in which w_k is replaced by the
    geometric mean of the other K-1 weights, the ascent directions are

      θ: Σ_k w̄_k ∇_θ log p_θ(x, h_k),
      φ: Σ_k (L̂ - L̂_{-k}) ∇_φ log q_φ(h_k|x) - Σ_k w̄_k ∇_φ log q_φ(h_k|x).

    L̂_{-k} does not depend on h_k, so the estimator is unbiased for ∇I_K.

    Args:
      model, guide: protocols (any discrete latents).
      num_samples: K >= 2.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``iw_bound`` = ``objective``: batch mean of L̂.

    Raises:
      ValueError: K < 2 (no other sample to build the baseline from).
    """
    check_protocols(model, guide)
    k = check_loo_samples(num_samples, "vimco")
    return score_function_estimator(model, guide, _vimco_surrogate, num_samples=k, metric="iw_bound",
                                    name="vimco")


def _vimco_surrogate(log_p, log_q):
    """Mnih & Rezende: learning signal L̂ - L̂_{-k} on the score, w̄_k on ∇ log w_k."""
    log_w = _sg(log_p - log_q)                                  # [K, B]
    bound = log_mean_exp(log_w)                                 # [B]
    signal = bound - _vimco_leave_one_out(log_w)                # [K, B]
    w_bar = jax.nn.softmax(log_w, axis=0)
    per_example = jnp.sum(signal * log_q + w_bar * (log_p - log_q), axis=0)
    return jnp.mean(per_example), jnp.mean(bound)
