"""log Z of a random field by annealed importance sampling (AIS), generic and for RBMs, and the
test log-likelihood built on it (review Sec. 4: p_θ(x) = exp(u_θ(x)) / Z(θ), Eq. 38).

AIS (Neal 2001) moves R independent runs through a path of distributions
π_k ∝ exp(f_{β_k}), 0 = β_0 < ... < β_K = 1, from a tractable base to the
target: x_0 ~ π_0, and for k = 1..K

    log w += f_{β_k}(x_{k-1}) - f_{β_{k-1}}(x_{k-1}),   x_k ~ T_{β_k}(· | x_{k-1}),

with T_β any transition that leaves π_β invariant.  Then E[w] = Z_K / Z_0 and
log Z = log Z_0 + log mean_r w_r (unbiased in Z; in log Z biased low by about
half the squared relative error).  The reported standard error is the delta
method's, se(log Ẑ) = std_r(w) / (√R mean_r(w)), and ESS = (Σ w)² / Σ w².
That se is only as good as the weights: when a few runs carry most of the weight
(a schedule too short for the target) it is far too small and log Ẑ is biased low
(Neal 2001, Sec. 3.3; Grosse et al. 2013).  Called outside ``jit``/``vmap``,
:func:`annealed_importance_sampling` and :func:`rbm_ais` warn (``UserWarning``) when
ESS < 10 % of the R runs; ``AISResult.ess`` always reports it.

Precision: the schedules are in JAX's default float dtype (float32; float64 under
``jax_enable_x64``) and the log-weights in that of the path's log f_β, so float64
parameters under x64 give float64 references; :func:`rbm_ais` runs in the dtype of W.

* :func:`annealed_importance_sampling`: the geometric path
  f_β = (1 - β) log p_0 + β log u between a base density p_0 and the target
  potential log u.
* :func:`rbm_ais`: binary-binary RBMs, p(v, h) ∝ exp(vᵀWh + bᵀv + cᵀh) with
  ``params = {"W": [V, H], "b": [V], "c": [H]}``, with the intermediate
  distributions of Salakhutdinov & Murray (2008): the joint energy is annealed
  from a base-rate model with visible biases b_A (W and c scaled by β),

      p_β(v, h) ∝ exp((1 - β) b_Aᵀv + β (bᵀv + vᵀWh + cᵀh)),
      f_β(v) = (1 - β) b_Aᵀv + β bᵀv + Σ_j softplus(β (c_j + vᵀW_j)),

  alternating Gibbs sampling at β as T_β, and log Z_0 = Σ_i softplus(b_A,i) + H log 2
  analytic.  S&M use about 14,500 β's (:func:`sm_betas`) and 100 runs.
* exact log Z of a small RBM (the reference AIS is checked against) is
  :func:`sajax.models._rbm.rbm_log_partition` (enumeration of the smaller layer).
* :func:`ais_log_likelihood`: mean_x u(x) - log Z, the test log-likelihood of tables.

Schedules: :func:`linear_betas`, :func:`sigmoid_betas` (Grosse, Maddison &
Salakhutdinov 2013), :func:`sm_betas`.

Example (a 1-D Gaussian target, exact transitions, the true log Z = log √(2π)):
  >>> import jax, jax.numpy as jnp, math
  >>> from sajax.evaluate.ais import annealed_importance_sampling, linear_betas
  >>> log_p0 = lambda x: -0.5 * (x / 2) ** 2 - math.log(2 * math.sqrt(2 * math.pi))
  >>> log_u = lambda x: -0.5 * x ** 2
  >>> def exact_draw(key, x, beta):    # π_β = N(0, 1 / ((1 - β) / 4 + β))
  ...     return jax.random.normal(key, x.shape) / jnp.sqrt((1 - beta) / 4 + beta)
  >>> res = annealed_importance_sampling(jax.random.PRNGKey(0), log_p0, log_u,
  ...     lambda k, n: 2 * jax.random.normal(k, (n,)), exact_draw, linear_betas(100), 200)
  >>> bool(abs(res.log_z - 0.5 * math.log(2 * math.pi)) < 4 * res.log_z_se + 1e-3)
  True
"""
from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import check_key, check_positive_int

__all__ = ["AISResult", "annealed_importance_sampling", "rbm_ais", "ais_log_likelihood",
           "linear_betas", "sigmoid_betas", "sm_betas", "base_rate_biases", "rbm_annealing_path"]

_SM_TEMPS = 14501  # Salakhutdinov & Murray (2008)'s number of β (sm_betas)


class AISResult(NamedTuple):
    """Outcome of AIS.

    Attributes:
      log_z: log Z_0 + log mean_r w_r, scalar.
      log_z_se: delta-method standard error of log mean w: std(w) / (√R mean(w)).
      log_weights: ``[R]`` log w_r of every run.
      ess: effective sample size (Σ w)² / Σ w² in [1, R]; far below R (a few runs
        carry the weight) means ``log_z_se`` is unreliable (module docstring).
    """

    log_z: jax.Array
    log_z_se: jax.Array
    log_weights: jax.Array
    ess: jax.Array


# --------------------------------------------------------------------------- schedules


def linear_betas(num_temps: int) -> jax.Array:
    """``num_temps`` (>= 2) equally spaced β from 0 to 1 inclusive (default float dtype)."""
    num_temps = check_positive_int("num_temps", num_temps, minimum=2)
    return jnp.asarray(np.linspace(0.0, 1.0, num_temps))


def sigmoid_betas(num_temps: int, scale: float = 4.0) -> jax.Array:
    """The sigmoid schedule of Grosse et al. (2013): β̃_k = σ(scale (2k/(K-1) - 1)),
    rescaled to [0, 1]; denser near both ends."""
    num_temps = check_positive_int("num_temps", num_temps, minimum=2)
    s = 1.0 / (1.0 + np.exp(-scale * np.linspace(-1.0, 1.0, num_temps)))
    return jnp.asarray((s - s[0]) / (s[-1] - s[0]))


def sm_betas() -> jax.Array:
    """Salakhutdinov & Murray (2008)'s 14,501 β: steps of 1e-3 on [0, 0.5], 1e-4 on
    [0.5, 0.9] and 1e-4 on [0.9, 1] (500 + 4,000 + 10,000 intervals)."""
    return jnp.asarray(np.concatenate([np.linspace(0.0, 0.5, 501)[:-1],
                                       np.linspace(0.5, 0.9, 4001)[:-1],
                                       np.linspace(0.9, 1.0, 10001)]))


def _check_betas(betas) -> jax.Array:
    """``betas`` ``[K + 1]`` as floats (their own float dtype, else the default one);
    values checked when concrete (0 ... 1, increasing)."""
    if isinstance(betas, jax.core.Tracer):
        if betas.ndim != 1 or betas.shape[0] < 2:
            raise ValueError(f"betas must be a 1-D schedule of >= 2 values, got shape {betas.shape}")
        return betas if jnp.issubdtype(betas.dtype, jnp.floating) else betas.astype(float)
    b = np.asarray(betas, np.float64)
    if b.ndim != 1 or b.size < 2 or b[0] != 0.0 or b[-1] != 1.0 or np.any(np.diff(b) <= 0):
        raise ValueError("betas must be a strictly increasing 1-D schedule from 0.0 to 1.0 "
                         f"(e.g. linear_betas(1000)); got shape {b.shape}"
                         + (f", from {b[0]} to {b[-1]}" if b.size else ""))
    given = jnp.asarray(betas).dtype
    return jnp.asarray(b, given if jnp.issubdtype(given, jnp.floating) else None)


# --------------------------------------------------------------------------- AIS core


def anneal(key, log_f: Callable, x0, transition: Callable, betas) -> jax.Array:
    """log w ``[R]`` of R runs started at ``x0`` ``[R, ...]`` along f_β (module docstring).

    ``log_f(x, β) -> [R]``; ``transition(key, x, β) -> x`` leaves exp(f_β) invariant.
    One ``lax.scan`` over the K intervals; log w in the dtype of ``log_f`` (at least float32)."""
    def body(carry, inputs):
        x, log_w = carry
        k, b_prev, b = inputs
        log_w = log_w + log_f(x, b) - log_f(x, b_prev)
        return (transition(k, x, b), log_w), None

    keys = jax.random.split(key, betas.shape[0] - 1)
    dtype = jnp.promote_types(jax.eval_shape(log_f, x0, betas[0]).dtype, jnp.float32)
    log_w0 = jnp.zeros(jax.tree_util.tree_leaves(x0)[0].shape[0], dtype)
    (_, log_w), _ = jax.lax.scan(body, (x0, log_w0), (keys, betas[:-1], betas[1:]))
    return log_w


def summarize(log_w, log_z0=0.0) -> AISResult:
    """AISResult of log-weights ``[R]``: log Z = log Z_0 + log mean w, its delta-method se, ESS."""
    r = log_w.shape[0]
    w = jnp.exp(log_w - jnp.max(log_w))
    mean_w = jnp.mean(w)
    se = jnp.std(w, ddof=1) / (math.sqrt(r) * mean_w) if r > 1 else jnp.asarray(jnp.inf)
    log_z = log_z0 + jnp.max(log_w) + jnp.log(mean_w)
    return AISResult(log_z, se, log_w, jnp.sum(w) ** 2 / jnp.sum(w ** 2))


def _warn_if_degenerate(res: AISResult, who: str, min_fraction: float = 0.1) -> AISResult:
    """``res`` unchanged; a ``UserWarning`` first when its ESS is below ``min_fraction``
    of the runs (then ``log_z_se`` understates the error).  Silent under ``jit``/``vmap``."""
    if isinstance(res.ess, jax.core.Tracer):
        return res
    ess, runs = float(res.ess), int(res.log_weights.shape[0])
    if ess < min_fraction * runs:
        warnings.warn(f"{who}: effective sample size {ess:.1f} of {runs} runs (< {min_fraction:.0%}): "
                      f"a few runs carry the weight, so log_z_se={float(res.log_z_se):.3g} understates "
                      f"the error and log_z is likely too low; use more temperatures (num_temps, "
                      f"betas) or more runs", UserWarning, stacklevel=3)
    return res


def annealed_importance_sampling(key, log_base: Callable, log_target: Callable,
                                 sample_base: Callable, transition: Callable, betas,
                                 num_runs: int, *, log_z_base: float = 0.0) -> AISResult:
    """log Z of ``exp(log_target)`` by AIS on the geometric path (Neal 2001).

    Args:
      key: PRNG key.
      log_base: ``x [R, ...] -> [R]`` log p_0(x) of the base (normalized, or with
        normalizer ``exp(log_z_base)``).
      log_target: ``x [R, ...] -> [R]`` the target's log u(x) (unnormalized).
      sample_base: ``(key, n) -> x [n, ...]`` exact draws from p_0.
      transition: ``(key, x [R, ...], β) -> x`` leaving
        f_β = (1 - β) log p_0 + β log u invariant (e.g. a few Metropolis steps).
      betas: ``[K + 1]`` strictly increasing from 0 to 1 (:func:`linear_betas`, ...).
      num_runs: R independent runs.
      log_z_base: log of p_0's normalizer (0 for a normalized base).

    Returns:
      :class:`AISResult`; ``log_z`` estimates log ∫ u.  Warns when ESS < 10 % of the
      runs (module docstring).
    """
    check_key(key)
    num_runs = check_positive_int("num_runs", num_runs)
    betas = _check_betas(betas)
    for name, fn in (("log_base", log_base), ("log_target", log_target),
                     ("sample_base", sample_base), ("transition", transition)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__}")

    def log_f(x, beta):
        return (1.0 - beta) * log_base(x) + beta * log_target(x)

    k0, k1 = jax.random.split(key)
    x0 = sample_base(k0, num_runs)
    res = summarize(anneal(k1, log_f, x0, transition, betas), log_z_base)
    return _warn_if_degenerate(res, "annealed_importance_sampling")


# --------------------------------------------------------------------------- RBMs


def _rbm_parts(params, who: str):
    """(W [V, H], b [V], c [H]) of a binary-binary RBM, or a clear error."""
    if not hasattr(params, "keys") or any(k not in params for k in ("W", "b", "c")):
        raise ValueError(f"{who}: params must be an RBM dict {{'W': [V, H], 'b': [V], 'c': [H]}}, "
                         f"got {sorted(params) if hasattr(params, 'keys') else type(params).__name__}")
    w, b, c = params["W"], params["b"], params["c"]
    if jnp.ndim(w) != 2 or jnp.shape(b) != jnp.shape(w)[:1] or jnp.shape(c) != jnp.shape(w)[1:]:
        raise ValueError(f"{who}: RBM shapes must be W [V, H], b [V], c [H]; got W "
                         f"{jnp.shape(w)}, b {jnp.shape(b)}, c {jnp.shape(c)}")
    return w, b, c


def _rbm_dtype(w):
    """The float dtype AIS of an RBM runs in: W's, at least float32."""
    return jnp.promote_types(jnp.result_type(w), jnp.float32)


def base_rate_biases(data, *, eps: float = 1e-3) -> jax.Array:
    """Visible biases b_A = logit(p̄) of the base-rate model (S&M 2008): p̄ the data's
    mean of each unit ``data`` ``[N, V]``, clipped to [eps, 1 - eps] (default float dtype)."""
    p = np.clip(np.mean(np.asarray(data, np.float64), axis=0), eps, 1.0 - eps)
    return jnp.asarray(np.log(p) - np.log1p(-p))


def rbm_annealing_path(params, base_biases):
    """S&M (2008)'s path from the base-rate model (visible biases b_A ``[V]``) to the RBM.

    Returns ``(log_f, transition, sample_base, log_z0)``: ``log_f(v, β) -> [R]`` the
    f_β of the module docstring, ``transition(key, v, β)`` one Gibbs sweep h ~ p_β(h|v),
    v ~ p_β(v|h), ``sample_base(key, n) -> v [n, V]`` and log Z_0 = Σ softplus(b_A) + H log 2,
    all in the float dtype of W (at least float32).
    """
    w, b, c = _rbm_parts(params, "rbm_ais")
    b_a = jnp.asarray(base_biases, _rbm_dtype(w))

    def log_f(v, beta):
        return v @ ((1.0 - beta) * b_a + beta * b) + jnp.sum(
            jax.nn.softplus(beta * (v @ w + c)), axis=-1)

    def transition(key, v, beta):
        kh, kv = jax.random.split(key)
        h = jax.random.bernoulli(kh, jax.nn.sigmoid(beta * (v @ w + c))).astype(v.dtype)
        logits = (1.0 - beta) * b_a + beta * (b + h @ w.T)
        return jax.random.bernoulli(kv, jax.nn.sigmoid(logits)).astype(v.dtype)

    def sample_base(key, n):
        return jax.random.bernoulli(key, jax.nn.sigmoid(b_a), (n, b_a.shape[0])).astype(b_a.dtype)

    log_z0 = jnp.sum(jax.nn.softplus(b_a)) + w.shape[1] * math.log(2.0)
    return log_f, transition, sample_base, log_z0


def _rbm_base(base: str, data, w) -> jax.Array:
    """b_A ``[V]`` of the base model named by ``base`` (see :func:`rbm_ais`)."""
    if base == "base_rate":
        if data is None:
            raise ValueError("rbm_ais: base='base_rate' needs the training data [N, V] "
                             "(its unit means); pass data=... or use base='uniform'")
        if np.ndim(data) != 2 or np.shape(data)[1] != w.shape[0]:
            raise ValueError(f"rbm_ais: data must be [N, V={w.shape[0]}], got {np.shape(data)}")
        return base_rate_biases(data)
    if base == "uniform":
        return jnp.zeros(w.shape[0], jnp.float32)
    raise ValueError(f"rbm_ais: base must be 'base_rate' or 'uniform', got {base!r}")


def _rbm_schedule(schedule: str, num_temps) -> jax.Array:
    """The β of ``schedule`` with ``num_temps`` values; 'sm' has its own 14,501."""
    if schedule == "sm":
        if num_temps is not None and num_temps != _SM_TEMPS:
            raise ValueError(f"rbm_ais: schedule='sm' is S&M's fixed {_SM_TEMPS:,} temperatures, "
                             f"which num_temps={num_temps!r} contradicts; drop num_temps, or use "
                             f"schedule='linear' or 'sigmoid' for {num_temps!r} temperatures")
        return sm_betas()
    schedules = {"linear": linear_betas, "sigmoid": sigmoid_betas}
    if schedule not in schedules:
        raise ValueError(f"rbm_ais: schedule must be one of ['linear', 'sigmoid', 'sm'], got {schedule!r}")
    return schedules[schedule](_SM_TEMPS if num_temps is None else num_temps)


def rbm_ais(key, params, *, num_temps: Optional[int] = None, num_runs: int = 100,
            base: str = "base_rate", data=None, schedule: str = "linear") -> AISResult:
    """log Z of a binary-binary RBM by AIS with Salakhutdinov & Murray (2008)'s path.

    Args:
      key: PRNG key.
      params: ``{"W": [V, H], "b": [V], "c": [H]}``, p(v, h) ∝ exp(vᵀWh + bᵀv + cᵀh).
      num_temps: K + 1 β values of the ``"linear"`` / ``"sigmoid"`` schedules
        (default 14,501, S&M's count); ``schedule="sm"`` has its own 14,501 β, and
        any other ``num_temps`` with it is a ValueError.
      num_runs: R independent runs (S&M: 100).
      base: ``"base_rate"`` (visible biases from the data means, needs ``data``
        ``[N, V]``; :func:`base_rate_biases`) or ``"uniform"`` (b_A = 0).
      schedule: ``"linear"``, ``"sigmoid"`` or ``"sm"`` (:func:`sm_betas`).

    Returns:
      :class:`AISResult` for log Z = log Σ_{v,h} exp(vᵀWh + bᵀv + cᵀh), in the float
      dtype of W (float64 for float64 parameters under x64).  Warns (``UserWarning``)
      when called outside ``jit`` and the ESS of the final weights is below 10 % of
      the runs: the schedule is too short for this RBM and ``log_z_se`` is too small.
    """
    check_key(key)
    w, _, _ = _rbm_parts(params, "rbm_ais")
    b_a = _rbm_base(base, data, w)
    betas = _rbm_schedule(schedule, num_temps).astype(_rbm_dtype(w))
    num_runs = check_positive_int("num_runs", num_runs)
    return _warn_if_degenerate(_rbm_ais_jit(key, params, b_a, betas, num_runs), "rbm_ais")


@partial(jax.jit, static_argnums=4)
def _rbm_ais_jit(key, params, b_a, betas, num_runs: int) -> AISResult:
    """The whole RBM AIS run as one compiled program (one compile per shape)."""
    log_f, transition, sample_base, log_z0 = rbm_annealing_path(params, b_a)
    k0, k1 = jax.random.split(key)
    return summarize(anneal(k1, log_f, sample_base(k0, num_runs), transition, betas), log_z0)


def ais_log_likelihood(potential: Callable, params, data, log_z) -> jax.Array:
    """Mean test log-likelihood mean_x u_θ(x) - log Z (review Eq. 38) with an AIS (or exact)
    log Z: ``potential(params, x [N, ...]) -> [N]``; ``log_z`` a scalar or an
    :class:`AISResult` (its ``log_z_se`` is the se of this value too).
    For an RBM pass ``sajax.models.rbm(V, H).model.potential``."""
    log_z = getattr(log_z, "log_z", log_z)
    u = potential(params, jnp.asarray(data))
    if jnp.ndim(u) != 1 or u.shape[0] != np.shape(data)[0]:
        raise ValueError(f"ais_log_likelihood: potential must return [N={np.shape(data)[0]}], "
                         f"got shape {jnp.shape(u)}")
    return jnp.mean(u) - log_z
