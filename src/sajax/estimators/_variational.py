"""Variational learning: REINFORCE, reparameterized ELBO, STL, IWAE, DReG (review Sec. 3.2.1).

Every estimator here maximizes a lower bound on log p_θ(x) jointly over the
generative model p_θ(x, h) = p_θ(h) p_θ(x|h) and the inference model
q_φ(h|x):

* the variational lower bound (V-LB, ELBO) L(x; θ, φ) of Eq. 7-10, with
  - :func:`reinforce`: the score-function (REINFORCE) update of Algorithm 3 /
    Eq. 11 (Williams 1992), for any latents, discrete or continuous;
  - :func:`reparam_elbo`: the reparameterization trick, Eq. 12-13
    (Kingma & Welling 2014; Rezende et al. 2014), with the KL term of Eq. 8
    either by Monte Carlo or in closed form;
  - :func:`stl_elbo`: the path-derivative ("sticking the landing") estimator
    of Roeder et al. (2017), which drops the zero-mean score-function term;
* the importance-weighted lower bound (IW-LB) I_K(x; θ, φ) of Eq. 19, with
  - :func:`iwae`: the reparameterized IWAE gradient (Burda et al. 2015);
  - :func:`dreg`: the doubly-reparameterized gradient for the inference
    network (Tucker, Lawson, Gu & Maddison 2019).

Each factory returns a :class:`sajax.core.Estimator` over
``params = {MODEL: θ, GUIDE: φ}``.  The state is ``()``: these estimators draw
fresh independent samples every iteration (Algorithm 3); ``init(key, params,
data)`` ignores the training set ``data``.  ``grads`` is a DESCENT direction
(the negated ascent direction of the review), averaged over the batch;
``metrics`` holds the batch mean of the Monte Carlo bound estimate with its
natural sign (higher is better) under its own name (``elbo`` or
``iw_bound``) and under ``OBJECTIVE``.

Shapes: ``batch.x`` is ``[B, D...]``; the guide returns latents with leaves
``[K, B, d]`` and ``log q`` ``[K, B]``; log-weights are ``[K, B]``.  K is
``num_samples``, a required keyword of every factory (the policy of
:mod:`sajax.estimators`).
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
from sajax.estimators._common import (
    _sg,
    descent,
    from_objective,
    model_guide,
    score_function_estimator,
    with_objective,
)

__all__ = ["reinforce", "reparam_elbo", "stl_elbo", "iwae", "dreg"]

_KL_OPTIONS = ("mc", "analytic")
_GROUPS = (MODEL, GUIDE)


def reinforce(model: LatentVariableModel, guide: ConditionalSampler, *,
              num_samples: int) -> Estimator:
    """Variational learning by the score-function estimator (Algorithm 3, Eq. 11).

    With h_k ~ q_φ(h|x), k = 1..K, held fixed (no gradient flows through the
    samples), the ascent directions are

      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k),
      φ: (1/K) Σ_k l(x, h_k) ∇_φ log q_φ(h_k|x),   l = log p_θ(x, h) - log q_φ(h|x),

    (the REINFORCE trick of Williams 1992; footnote 8 of the review shows the
    φ-part is unbiased for ∇_φ L because E_q ∇_φ log q = 0).  Both are
    averaged over the batch and negated into descent directions.  Works for
    any latents, discrete or continuous; no variance reduction (that is what
    :func:`~sajax.estimators.nvil`, :func:`~sajax.estimators.rloo`,
    :func:`~sajax.estimators.muprop`, :func:`~sajax.estimators.disarm` add).

    Args:
      model: p_θ(x, h) as a :class:`LatentVariableModel`.
      guide: q_φ(h|x) as a :class:`ConditionalSampler`.
      num_samples: K >= 1 samples per example.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective``: batch mean of (1/K) Σ_k l(x, h_k).

    Example:
      >>> import jax, sajax
      >>> spec = sajax.models.sbn(8, (4,))
      >>> est = sajax.estimators.reinforce(spec.model, spec.guide, num_samples=2)
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> x = jax.numpy.ones((3, 8))
      >>> out = est.estimate(params, (), jax.random.PRNGKey(1), x)
      >>> sorted(out.metrics)
      ['elbo', 'objective']
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)
    return score_function_estimator(model, guide, _reinforce_surrogate, num_samples=k, metric="elbo",
                                    name="reinforce")


def _reinforce_surrogate(log_p, log_q):
    """Algorithm 3: d/dφ of (signal · log q) is signal × score; d/dθ of log p is the θ-step."""
    signal = _sg(log_p - log_q)                          # [K, B], the learning signal l(x, h)
    return jnp.mean(log_p + signal * log_q), jnp.mean(signal)


def _check_analytic_kl(model, guide) -> None:
    missing = [name for name, fn in (("guide.dist", getattr(guide, "dist", None)),
                                     ("model.prior", getattr(model, "prior", None)))
               if fn is None]
    if missing:
        raise ValueError(
            f"kl='analytic' needs {' and '.join(missing)} (a distrax distribution over h "
            f"for the closed-form KL of Eq. 8); use kl='mc' otherwise")


def reparam_elbo(model: LatentVariableModel, guide: ConditionalSampler, *,
                 num_samples: int, kl: str = "mc") -> Estimator:
    """Variational learning with the reparameterization trick (Eq. 12-13).

    Latents are drawn as h_k = h_φ(x, ε_k), ε_k ~ N(0, I) (Eq. 12), so the
    ELBO estimate is a differentiable function of (θ, φ) and its gradient is
    unbiased for ∇L (Eq. 13; Kingma & Welling 2014, Rezende et al. 2014):

      kl="mc":       L̂ = (1/K) Σ_k [log p_θ(x, h_k) - log q_φ(h_k|x)]        (Eq. 7)
      kl="analytic": L̂ = (1/K) Σ_k log p_θ(x|h_k) - KL[q_φ(h|x) || p_θ(h)]   (Eq. 8)

    The analytic KL comes from ``guide.dist(φ, x).kl_divergence(model.prior(θ))``
    (distrax), so it needs both optional protocol fields.

    Args:
      model: p_θ(x, h); ``model.prior`` required for ``kl="analytic"``.
      guide: reparameterized q_φ(h|x); ``guide.dist`` required for
        ``kl="analytic"``.
      num_samples: K >= 1 samples per example.
      kl: "mc" or "analytic".

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective``: batch mean of L̂.

    Raises:
      ValueError: unknown ``kl``, ``num_samples`` < 1, or ``kl="analytic"``
        without ``guide.dist``/``model.prior``.
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)
    if kl not in _KL_OPTIONS:
        raise ValueError(f"kl must be one of {_KL_OPTIONS}, got {kl!r}")
    if kl == "analytic":
        _check_analytic_kl(model, guide)

    def elbo_mc(p, key, batch):
        x = batch_data(batch)
        h, log_q = guide.sample_and_log_prob(p[GUIDE], key, x, k)
        return jnp.mean(log_joint(model, p[MODEL], x, h) - log_q)

    def elbo_analytic(p, key, batch):
        x = batch_data(batch)
        h, _ = guide.sample_and_log_prob(p[GUIDE], key, x, k)
        rec = jnp.mean(model.log_likelihood(p[MODEL], x, h), axis=0)              # [B]
        kl_term = guide.dist(p[GUIDE], x).kl_divergence(model.prior(p[MODEL]))    # [B]
        return jnp.mean(rec - kl_term)

    return from_objective(elbo_mc if kl == "mc" else elbo_analytic, metric="elbo", groups=_GROUPS,
                          name="reparam_elbo")


def stl_elbo(model: LatentVariableModel, guide: ConditionalSampler, *,
             num_samples: int) -> Estimator:
    """Path-derivative ("sticking the landing") ELBO gradient (Roeder et al. 2017).

    The total derivative of the reparameterized integrand of Eq. 13 splits
    into a path derivative and a score function (Sec. 3.2.1, "Improving
    φ-gradient estimator beyond simple reparameterization"):

      ∇_φ[log p_θ(x, h_φ(ε)) - log q_φ(h_φ(ε)|x)]
        = ∇_h[log p_θ(x, h) - log q_φ(h|x)] ∇_φ h_φ(ε)  -  ∇_φ log q_φ(h|x)|_h .

    The score term has mean zero; dropping it (by evaluating log q at
    stop_gradient(φ)) keeps the estimator unbiased, and its variance
    vanishes when q_φ(h|x) = p_θ(h|x).  The θ-gradient is that of
    :func:`reparam_elbo` with ``kl="mc"``.

    Args:
      model: p_θ(x, h).
      guide: reparameterized q_φ(h|x).
      num_samples: K >= 1 samples per example.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective``: batch mean of (1/K) Σ_k [log p(x,h_k) - log q(h_k|x)].
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)

    def objective(p, key, batch):
        x = batch_data(batch)
        h, _ = guide.sample_and_log_prob(p[GUIDE], key, x, k)
        log_q = guide.log_prob(_sg(p[GUIDE]), x, h)  # path derivative only
        return jnp.mean(log_joint(model, p[MODEL], x, h) - log_q)

    return from_objective(objective, metric="elbo", groups=_GROUPS, name="stl_elbo")


def iwae(model: LatentVariableModel, guide: ConditionalSampler, *,
         num_samples: int) -> Estimator:
    """Importance-weighted autoencoder gradient of the IW-LB (Eq. 19; Burda et al. 2015).

    With reparameterized h_k = h_φ(x, ε_k) and weights
    w_k = p_θ(x, h_k) / q_φ(h_k|x) (Eq. 18), the ascent direction for both
    groups is the gradient of the single-draw bound estimate

      Î_K = log (1/K) Σ_k w_k,   E[Î_K] = I_K(x; θ, φ)  (Eq. 19),

    i.e. Σ_k w̄_k ∇ log w_k with normalized weights w̄_k (Eq. 18).  K = 1 is the
    reparameterized ELBO gradient of :func:`reparam_elbo` with ``kl="mc"``.

    Args:
      model: p_θ(x, h).
      guide: reparameterized q_φ(h|x).
      num_samples: K >= 1 importance samples per example.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``iw_bound`` = ``objective``: batch mean of Î_K.
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)

    def objective(p, key, batch):
        x = batch_data(batch)
        h, log_q = guide.sample_and_log_prob(p[GUIDE], key, x, k)
        return jnp.mean(log_mean_exp(log_joint(model, p[MODEL], x, h) - log_q))

    return from_objective(objective, metric="iw_bound", groups=_GROUPS, name="iwae")


def dreg(model: LatentVariableModel, guide: ConditionalSampler, *,
         num_samples: int) -> Estimator:
    """Doubly-reparameterized IW-LB gradient (Tucker, Lawson, Gu & Maddison 2019).

    For the inference network the IWAE gradient Σ_k w̄_k ∇_φ log w_k contains
    score-function terms whose signal vanishes as K grows (Rainforth et al.
    2018).  Applying the reparameterization trick a second time to them gives
    the unbiased estimator

      ∇_φ I_K ≈ Σ_k w̄_k² ∂log w_k/∂h_k ∂h_k/∂φ,

    where log w_k = log p_θ(x, h_k) - log q_{stop_gradient(φ)}(h_k|x), so only
    the path through the samples is differentiated.  θ gets the ordinary IWAE
    gradient Σ_k w̄_k ∇_θ log w_k (Eq. 19).  K = 1 gives the
    :func:`stl_elbo` gradient.  Both directions come from one forward pass
    and two vector-Jacobian products with cotangents w̄ and w̄².

    Args:
      model: p_θ(x, h).
      guide: reparameterized q_φ(h|x).
      num_samples: K >= 1 importance samples per example.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``iw_bound`` = ``objective``: batch mean of Î_K = log (1/K) Σ_k w_k.
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)

    def estimate(params, state, key, batch):
        theta, phi = model_guide(params, "dreg")
        x = batch_data(batch)

        def log_weights(theta, phi):
            h, _ = guide.sample_and_log_prob(phi, key, x, k)
            return log_joint(model, theta, x, h) - guide.log_prob(_sg(phi), x, h)  # [K, B]

        log_w, vjp = jax.vjp(log_weights, theta, phi)
        w_bar = jax.nn.softmax(log_w, axis=0)   # normalized weights, Eq. 18
        n = log_w.shape[1]                      # batch mean
        grad_theta, _ = vjp(w_bar / n)
        _, grad_phi = vjp(jnp.square(w_bar) / n)
        bound = jnp.mean(log_mean_exp(log_w))
        return Estimate(descent(params, {MODEL: grad_theta, GUIDE: grad_phi}), state,
                        with_objective({"iw_bound": bound}, "iw_bound"))

    return Estimator(no_state, estimate)
