"""Noise-contrastive estimation of random fields: NCE and dynamic NCE (review Sec. 4.2.4,
Algorithm 9, Eq. 45-49; Appendix B, Eq. 53-54).

NCE (Gutmann & Hyvärinen 2010) learns an unnormalized model p_θ(x) ∝ exp(u_θ(x))
(Eq. 38) by treating its log normalizer as a parameter c, Eq. 45:

    log p_θ̂(x) = u_θ(x) - c,            θ̂ = (θ, c),

and training the logistic classifier that tells data (C = 0) from ν times as
many noise samples (C = 1) drawn from a known p_n, Eq. 46-47:

    P(C = 0 | x; θ̂) = σ(G(x)),   G(x) = log p_θ̂(x) - log(ν p_n(x)),

by maximizing the conditional log-likelihood, Eq. 48,

    J(θ̂) = E_{p_0}[log σ(G(x))] + ν E_{p_n}[log σ(-G(x))],

whose gradient is Algorithm 9's SA update (Eq. 49).  By Theorem 2 (and
Appendix B: J is the variational lower bound of an f-divergence, Eq. 54) its
maximum is p_θ̂ = p_0, so at the optimum c = log Z(θ).

**How c is stored.**  The POTENTIAL group is a dict holding a scalar leaf
``"log_z"`` (c) next to the potential's own parameters:
``params["potential"] = {"log_z": c, **θ}``; :func:`with_log_z` adds it.  The
potential is called with the group *without* ``"log_z"``, so a Flax module's
``{"params": ...}`` dict works unchanged.  Two meanings of "c" meet here: Eq. 45's c is
the learned log Z, stored under ``"log_z"`` (and reported as the metric ``log_z``); an
RBM's θ has its own ``"c"``, the hidden bias ``[H]`` (:mod:`sajax.models._rbm`), which
NCE trains as any other parameter of u_θ.  ``with_log_z(rbm θ)`` is
``{"W", "b", "c", "log_z"}``; the key is ``"log_z"`` so that the two never clash (and
saved checkpoints keep it).

**Models that carry their own normalizers** (``learn_log_z=False``).  A
trans-dimensional random field over sentences (Wang & Ou 2017, 2018a,b;
:func:`sajax.models.trf`) is p(l, x) = π_l exp(u_θ(x)) / Z_l(θ), one normalizer per
length l; its potential log π_l + u_θ(x) - ζ_l already holds the learned ζ_l ≈ log Z_l
as parameters of θ̂ (Wang & Ou 2018a: NCE with per-length ζ), so a scalar c would be
redundant.  ``nce(..., learn_log_z=False)`` and ``dnce(..., learn_log_z=False)`` take
the potential as log p_θ̂ itself and ``params[POTENTIAL]`` as θ̂ (no ``"log_z"``);
everything else, Eq. 46-49 and J_α, is the same code.  Data and noise draws are then
integer token rows ``int32 [B, T]`` (:mod:`sajax.data.text`), the noise an LM.

Dynamic NCE (:func:`dnce`; Wang & Ou 2018b, "Improved training of neural
trans-dimensional random field language models with dynamic noise-contrastive
estimation", SLT 2018) addresses the two problems the review names after
Theorem 2 (large ν needed, overfitting to the sparse empirical distribution):

1. the noise q_φ is not fixed: it is trained at the same time by maximum
   likelihood on the data (group SAMPLER), ascending E_p̃[∇_φ log q_φ(x)];
2. the data side of the classifier is the interpolation
   p_int(x) = α p̃(x) + (1 - α) q_φ(x), and the class-conditional density of
   C = 0 is modeled by the same interpolation of the model, α p_θ̂(x) + (1 - α) q_φ(x):

       G_α(x) = log(α p_θ̂(x) + (1 - α) q_φ(x)) - log(ν q_φ(x)),
       J_α(θ̂) = α E_p̃[log σ(G_α)] + (1 - α) E_{q_φ}[log σ(G_α)] + ν E_{q_φ}[log σ(-G_α)].

   By Theorem 2 applied to p_int, the optimum is α p_θ̂ + (1 - α) q_φ = p_int,
   i.e. p_θ̂ = p̃: the model still targets the data, while the classifier sees
   noise-smoothed "data".  α = 1 is NCE with the ML-trained noise.
   θ̂ ascends the exact gradient of the Monte Carlo estimate of J_α (autodiff,
   q_φ held fixed in the classifier); the authors' group's public
   implementation (CAT's TRF-LM, ``alpha = 0.25`` by default, whence our
   default) mixes noise samples into the data batch instead of weighting, and
   drops the factor α p_θ̂ / (α p_θ̂ + (1 - α) q_φ) of ∇ log of the mixture.

Shapes: ``batch.x`` ``[B, D...]`` (float, or integer tokens); round(ν B) noise samples
per batch (at least one) of the data's kind and event shape; the potential returns ``[B]``.
"""
from __future__ import annotations

import math
from typing import Callable

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    POTENTIAL,
    SAMPLER,
    EnergyModel,
    NoiseModel,
    Estimate,
    Estimator,
    batch_data,
    no_state,
    require_groups,
)
from sajax.estimators._common import _sg, descent, energy_model, with_objective

__all__ = ["nce", "dnce", "NoiseModel", "with_log_z", "fit_gaussian_noise",
           "gaussian_noise_model", "gaussian_noise_params", "LOG_Z"]

LOG_Z = "log_z"


def with_log_z(theta, log_z=0.0) -> dict:
    """The POTENTIAL group NCE trains: θ (a dict) plus the scalar leaf ``"log_z"`` = c (Eq. 45),
    the learned log normalizer (not an RBM's hidden bias ``θ["c"]``; module docstring)."""
    if not hasattr(theta, "keys"):
        raise TypeError(f"with_log_z: the potential's parameters must be a dict, got "
                        f"{type(theta).__name__}")
    return {**theta, LOG_Z: jnp.asarray(log_z, _float_dtype(jax.tree_util.tree_leaves(theta)))}


def _float_dtype(arrays):
    """The arrays' float dtype, at least float32 (float64 kept under x64)."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32) if arrays else jnp.float32


def split_log_z(group, who: str):
    """``(θ without "log_z", c)`` of a POTENTIAL group, or a clear error (Eq. 45's θ̂ = (θ, c))."""
    if not hasattr(group, "keys") or LOG_Z not in group:
        raise ValueError(
            f"{who}: params['{POTENTIAL}'] must be a dict with a scalar leaf '{LOG_Z}' (c, the "
            f"learned log normalizer of Eq. 45); build it with sajax.estimators.with_log_z(theta)")
    c = group[LOG_Z]
    if jnp.shape(c) != ():
        raise ValueError(f"{who}: params['{POTENTIAL}']['{LOG_Z}'] must be a scalar, got shape "
                         f"{jnp.shape(c)}")
    return {k: v for k, v in group.items() if k != LOG_Z}, c


def check_nu(nu) -> float:
    """ν > 0, the number of noise samples per data sample (the prior ratio 1 : ν of Eq. 46)."""
    if isinstance(nu, bool) or not isinstance(nu, (int, float, np.integer, np.floating)) \
            or not math.isfinite(nu):
        raise TypeError(f"nu must be a finite positive number, got {nu!r}")
    if nu <= 0:
        raise ValueError(f"nu (noise samples per data sample) must be > 0, got {nu}")
    return float(nu)


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha (the data weight of DNCE's interpolation) must be in (0, 1], "
                         f"got {alpha!r}")
    return float(alpha)


def _check_noise_draws(x, y, log_pn_x, who: str) -> None:
    """Noise draws ``y`` of the data's kind and event shape (one potential scores both, Eq. 46),
    and one log p_n per example; else one error naming the fix."""
    if jnp.issubdtype(x.dtype, jnp.floating) and not jnp.issubdtype(y.dtype, jnp.floating):
        raise TypeError(f"{who}: the noise draws {y.dtype} but the data are {x.dtype}; give the noise "
                        f"a float dtype, e.g. distrax.Bernoulli(logits=..., dtype=jnp.float32)")
    if jnp.issubdtype(x.dtype, jnp.integer) and not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"{who}: the noise draws {y.dtype} but the data are integer tokens "
                        f"{x.dtype}; the noise must draw token ids (e.g. an LM's int32 [n, T] rows)")
    if y.shape[1:] != x.shape[1:]:
        raise ValueError(f"{who}: the noise draws examples of shape {y.shape[1:]}, the data "
                         f"{x.shape[1:]}; the noise must be a distribution over one example")
    if log_pn_x is not None and jnp.shape(log_pn_x) != x.shape[:1]:
        raise ValueError(f"{who}: noise.log_prob must return one value per example, shape "
                         f"[{x.shape[0]}] for x of shape {x.shape}, got {jnp.shape(log_pn_x)}; wrap "
                         f"a per-coordinate noise in distrax.Independent(noise, 1)")


def num_noise(nu: float, batch_size: int) -> int:
    """round(ν B), at least 1: the noise minibatch of Algorithm 9 (|N| / |E| = ν)."""
    return max(1, int(round(nu * batch_size)))


def potential_values(model: EnergyModel, theta, x, who: str):
    """u_θ(x) ``[B]`` for ``x`` ``[B, D...]``; ValueError unless one scalar per example."""
    u = model.potential(theta, x)
    if jnp.shape(u) != (x.shape[0],):
        raise ValueError(f"{who}: model.potential must return one scalar per example, shape "
                         f"[{x.shape[0]}] for x of shape {x.shape}; got shape {jnp.shape(u)}")
    return u


def model_log_density(model: EnergyModel, learn_log_z: bool, who: str) -> Callable:
    """log p_θ̂ of Eq. 45 as ``(group, x) -> [B]`` for the POTENTIAL group.

    ``learn_log_z=True``: u_θ(x) - c, with c the group's ``"log_z"`` leaf (:func:`with_log_z`).
    ``learn_log_z=False``: the potential itself, already a normalized log density whose
    normalizers are parameters of θ̂ (a TRF's log π_l + u_θ(x) - ζ_l, Wang & Ou 2018a).
    """
    if not learn_log_z:
        return lambda group, x: potential_values(model, group, x, who)

    def log_density(group, x):
        theta, c = split_log_z(group, who)
        return potential_values(model, theta, x, who) - c

    return log_density


def _check_learn_log_z(learn_log_z) -> bool:
    if not isinstance(learn_log_z, (bool, np.bool_)):
        raise TypeError(f"learn_log_z must be True (a scalar log Z 'log_z' is learned, Eq. 45) or "
                        f"False (the potential is already normalized, e.g. a TRF with ζ_l), "
                        f"got {learn_log_z!r}")
    return bool(learn_log_z)


def _check_potential_group(group, learn_log_z: bool, who: str) -> None:
    """The POTENTIAL group holds c as ``"log_z"`` iff ``learn_log_z`` (clear errors either way)."""
    if learn_log_z:
        split_log_z(group, who)
    elif hasattr(group, "keys") and LOG_Z in group:
        raise ValueError(f"{who}: learn_log_z=False takes the potential as normalized, but "
                         f"params['{POTENTIAL}'] has a '{LOG_Z}' leaf (c of Eq. 45); pass θ̂ without "
                         f"with_log_z, or learn_log_z=True")


def _log_z_metrics(group, learn_log_z: bool) -> dict:
    return {LOG_Z: group[LOG_Z]} if learn_log_z else {}


def nce_logit(log_model, log_noise, nu: float):
    """G(x) = log p_θ̂(x) - log(ν p_n(x)): P(C = 0 | x) = σ(G) (Eq. 46-47)."""
    return log_model - log_noise - math.log(nu)


def nce_objective(g_data, g_noise, nu: float):
    """Monte Carlo J of Eq. 48: mean log σ(G(x̃)) + ν mean log σ(-G(x)), x̃ ~ data, x ~ noise."""
    return jnp.mean(jax.nn.log_sigmoid(g_data)) + nu * jnp.mean(jax.nn.log_sigmoid(-g_noise))


def _draw_noise(noise, key, n: int):
    x = _sg(noise.sample(seed=key, sample_shape=(n,)))
    return x, _sg(noise.log_prob(x))


def nce(model: EnergyModel, noise, *, nu: float = 1.0, learn_log_z: bool = True,
        _logit: Callable = nce_logit) -> Estimator:
    """NCE learning (Algorithm 9, Eq. 45-49; Gutmann & Hyvärinen 2010).

    Args:
      model: the random field as a :class:`sajax.core.EnergyModel`;
        ``potential(θ, x) -> [B]``; or a spec holding one as ``.model`` (``rbm(...)``,
        ``mlp_potential(...)``), as :func:`pcd` and :func:`cd` take.
      noise: the fixed noise p_n: a distrax distribution over one example
        (or any object with ``sample(seed=, sample_shape=)`` and
        ``log_prob(x) -> [n]``), e.g. :func:`fit_gaussian_noise` of the data.
        Its draws must be of the data's kind: for binary float data, distrax's
        Bernoulli (which draws int32 by default) needs ``dtype=jnp.float32``, and a
        per-coordinate noise needs ``distrax.Independent(..., 1)``, e.g.
        ``distrax.Independent(distrax.Bernoulli(probs=data.mean(0), dtype=jnp.float32), 1)``
        (second example).  Other draws raise TypeError/ValueError at the first estimate.
      nu: ν > 0, noise samples per data sample (round(ν B) per batch).
      learn_log_z: True: Eq. 45, c is learned as the ``"log_z"`` leaf.  False: the
        potential is already log p_θ̂(x) and ``params[POTENTIAL]`` is θ̂ itself, e.g. a TRF's
        log π_l + u_θ(x) - ζ_l with one ζ_l per length (module docstring; Wang & Ou 2018a).

    Returns:
      Estimator over ``{POTENTIAL: {"log_z": c, **θ}}`` (:func:`with_log_z`; ``{POTENTIAL: θ̂}``
      with ``learn_log_z=False``), state ``()``.  ``grads`` descend -J (the Monte Carlo Eq. 48
      on the batch and fresh noise), so their mean is exactly -∇J.  Metrics: ``nce_objective``
      = ``objective`` (J, higher is better), ``log_z`` (c; not with ``learn_log_z=False``)
      and ``accuracy`` of the classifier on the batch and the noise.

    Example:
      >>> import jax, jax.numpy as jnp, distrax
      >>> from sajax.core import Batch, EnergyModel
      >>> from sajax.estimators._nce import nce, with_log_z
      >>> model = EnergyModel(lambda t, x: -0.5 * jnp.sum((x - t["m"]) ** 2, -1))
      >>> noise = distrax.MultivariateNormalDiag(jnp.zeros(2), 2 * jnp.ones(2))
      >>> est = nce(model, noise, nu=4)
      >>> params = {"potential": with_log_z({"m": jnp.zeros(2)})}
      >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(0), Batch(jnp.ones((8, 2)), jnp.arange(8)))
      >>> sorted(out.grads["potential"]), out.metrics["objective"].shape
      (['log_z', 'm'], ())

      Binary data and an RBM (the spec, as for ``pcd``): a float product-Bernoulli noise;
      the learned log Z is ``"log_z"``, the RBM's hidden bias stays ``"c"``:

      >>> from sajax.models import rbm
      >>> spec = rbm(6, 3)
      >>> x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (8, 6)).astype(jnp.float32)
      >>> noise = distrax.Independent(distrax.Bernoulli(probs=jnp.full(6, 0.3), dtype=jnp.float32), 1)
      >>> params = {"potential": with_log_z(spec.init(jax.random.PRNGKey(0))["potential"])}
      >>> out = jax.jit(nce(spec, noise, nu=2).estimate)(params, (), jax.random.PRNGKey(2), Batch(x, jnp.arange(8)))
      >>> sorted(out.grads["potential"])
      ['W', 'b', 'c', 'log_z']
    """
    model = energy_model(model, "nce")
    nu, learn_log_z = check_nu(nu), _check_learn_log_z(learn_log_z)
    log_density = model_log_density(model, learn_log_z, "nce")
    for name in ("sample", "log_prob"):
        if not callable(getattr(noise, name, None)):
            raise TypeError(f"nce: noise must be a distrax distribution (with sample and "
                            f"log_prob), got {type(noise).__name__}")

    return Estimator(no_state, _nce_estimate(log_density, noise, nu, learn_log_z, _logit))


def _nce_estimate(log_density: Callable, noise, nu: float, learn_log_z: bool, logit: Callable):
    """``Estimator.estimate`` of NCE: the Monte Carlo J of Eq. 48 on the batch and fresh noise."""

    def estimate(params, state, key, batch):
        (group,) = require_groups(params, (POTENTIAL,), "nce")
        _check_potential_group(group, learn_log_z, "nce")
        x = batch_data(batch)
        y, log_pn_y = _draw_noise(noise, key, num_noise(nu, x.shape[0]))
        log_pn_x = _sg(noise.log_prob(x))
        _check_noise_draws(x, y, log_pn_x, "nce")

        def objective(g):
            g_x = logit(log_density(g, x), log_pn_x, nu)
            g_y = logit(log_density(g, y), log_pn_y, nu)
            return nce_objective(g_x, g_y, nu), (g_x, g_y)

        ascent, (g_x, g_y) = jax.grad(objective, has_aux=True)(group)
        value = nce_objective(g_x, g_y, nu)
        metrics = {"nce_objective": value, **_log_z_metrics(group, learn_log_z),
                   "accuracy": jnp.mean(jnp.concatenate([g_x > 0, g_y < 0]))}
        return Estimate(descent(params, {POTENTIAL: ascent}), state,
                        with_objective(metrics, "nce_objective"))

    return estimate


def dnce_objective(log_pm_x, log_q_x, log_pm_m, log_q_m, log_pm_y, log_q_y, nu: float,
                   alpha: float):
    """Monte Carlo J_α of DNCE (module docstring; Wang & Ou 2018b): data x ~ p̃ (weight α),
    mixture draws m ~ q_φ (weight 1 - α), noise y ~ q_φ (ν per example); each argument
    ``[n]``: log p_θ̂ and log q_φ at those points."""
    def g(log_pm, log_q):
        mix = jnp.logaddexp(math.log(alpha) + log_pm, math.log1p(-alpha) + log_q) \
            if alpha < 1.0 else log_pm
        return nce_logit(mix, log_q, nu)

    data_side = alpha * jnp.mean(jax.nn.log_sigmoid(g(log_pm_x, log_q_x)))
    if alpha < 1.0:
        data_side += (1.0 - alpha) * jnp.mean(jax.nn.log_sigmoid(g(log_pm_m, log_q_m)))
    return data_side + nu * jnp.mean(jax.nn.log_sigmoid(-g(log_pm_y, log_q_y)))


def dnce(model: EnergyModel, noise_model: NoiseModel, *, nu: float = 1.0,
         alpha: float = 0.25, learn_log_z: bool = True) -> Estimator:
    """Dynamic NCE (Sec. 4.2.4, last paragraph; Wang & Ou 2018b): NCE against a noise
    q_φ trained by ML on the data at the same time, with the data side interpolated
    as α p̃ + (1 - α) q_φ (module docstring for the exact objective J_α).

    Args:
      model: :class:`sajax.core.EnergyModel`; ``potential(θ, x) -> [B]``; or a spec
        holding one as ``.model`` (as :func:`nce`).
      noise_model: :class:`NoiseModel` q_φ (e.g. :func:`gaussian_noise_model`); its
        draws must be of the data's kind (float for float data, as :func:`nce`).
      nu: ν > 0, noise samples per data example.
      alpha: α in (0, 1], the data weight of the interpolation (1: NCE with the
        learned noise).
      learn_log_z: as in :func:`nce` (False: a normalized potential such as a TRF's
        log π_l + u_θ(x) - ζ_l, whose ζ_l replace c; the noise an LM over token rows).

    Returns:
      Estimator over ``{POTENTIAL: {"log_z": c, **θ}, SAMPLER: φ}`` (``{POTENTIAL: θ̂,
      SAMPLER: φ}`` with ``learn_log_z=False``), state ``()``.
      Per batch of B: B draws of q_φ for the mixture's noise part and round(ν B)
      noise draws (no gradient through the draws).  θ̂ descends -∇J_α (q_φ fixed
      inside the classifier); φ descends -mean ∇_φ log q_φ(x̃) over the batch.
      Metrics: ``dnce_objective`` = ``objective`` (J_α), ``noise_log_likelihood``
      (mean log q_φ(x̃)), ``log_z`` (not with ``learn_log_z=False``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from sajax.core import Batch, EnergyModel
      >>> from sajax.estimators._nce import dnce, gaussian_noise_model, gaussian_noise_params, with_log_z
      >>> model = EnergyModel(lambda t, x: -0.5 * jnp.sum((x - t["m"]) ** 2, -1))
      >>> data = jax.random.normal(jax.random.PRNGKey(1), (16, 2))
      >>> params = {"potential": with_log_z({"m": jnp.zeros(2)}),
      ...           "sampler": gaussian_noise_params(2 * data)}
      >>> batch = Batch(data, jnp.arange(16))
      >>> out = jax.jit(dnce(model, gaussian_noise_model(), nu=2).estimate)(params, (), jax.random.PRNGKey(0), batch)
      >>> sorted(out.grads["sampler"]), bool(out.metrics["noise_log_likelihood"] < 0)
      (['loc', 'tril'], True)
    """
    model = energy_model(model, "dnce")
    nu, alpha, learn_log_z = check_nu(nu), _check_alpha(alpha), _check_learn_log_z(learn_log_z)
    if not (callable(getattr(noise_model, "sample", None))
            and callable(getattr(noise_model, "log_prob", None))):
        raise TypeError(f"dnce: noise_model must be a NoiseModel(sample, log_prob), got "
                        f"{type(noise_model).__name__}")
    return Estimator(no_state, _dnce_estimate(model, noise_model, nu, alpha, learn_log_z))


def _dnce_estimate(model, noise_model, nu: float, alpha: float, learn_log_z: bool):
    """``Estimator.estimate`` of DNCE: J_α for θ̂, maximum likelihood for φ."""
    log_density = model_log_density(model, learn_log_z, "dnce")

    def estimate(params, state, key, batch):
        group, phi = require_groups(params, (POTENTIAL, SAMPLER), "dnce")
        _check_potential_group(group, learn_log_z, "dnce")
        x = batch_data(batch)
        b, n = x.shape[0], num_noise(nu, x.shape[0])
        draws = _sg(noise_model.sample(phi, key, b + n))
        m, y = draws[:b], draws[b:]
        _check_noise_draws(x, draws, None, "dnce")
        log_q = [_sg(noise_model.log_prob(phi, z)) for z in (x, m, y)]

        def objective(g):
            log_pm = [log_density(g, z) for z in (x, m, y)]
            return dnce_objective(log_pm[0], log_q[0], log_pm[1], log_q[1], log_pm[2],
                                  log_q[2], nu, alpha)

        value, ascent_theta = jax.value_and_grad(objective)(group)
        ll, ascent_phi = jax.value_and_grad(lambda p: jnp.mean(noise_model.log_prob(p, x)))(phi)
        metrics = {"dnce_objective": value, "noise_log_likelihood": ll,
                   **_log_z_metrics(group, learn_log_z)}
        return Estimate(descent(params, {POTENTIAL: ascent_theta, SAMPLER: ascent_phi}), state,
                        with_objective(metrics, "dnce_objective"))

    return estimate


def _gaussian_tril(phi):
    """Cholesky factor L of q_φ: strictly-lower part of φ["tril"], exp of its diagonal."""
    t = phi["tril"]
    return jnp.tril(t, -1) + jnp.diag(jnp.exp(jnp.diag(t)))


def _gaussian_dist(phi):
    return distrax.MultivariateNormalTri(phi["loc"], _gaussian_tril(phi))


def gaussian_noise_model() -> NoiseModel:
    """A full-covariance Gaussian q_φ(x) = N(x; φ["loc"], L Lᵀ) over x ``[D]`` for :func:`dnce`;
    L from φ["tril"] ``[D, D]`` (strictly-lower part as is, diagonal log-parameterized)."""
    return NoiseModel(
        sample=lambda phi, key, n: _gaussian_dist(phi).sample(seed=key, sample_shape=(n,)),
        log_prob=lambda phi, x: _gaussian_dist(phi).log_prob(x),
        dist=_gaussian_dist)


def gaussian_noise_params(data, *, jitter: float = 1e-6) -> dict:
    """φ of :func:`gaussian_noise_model` fitted by maximum likelihood to ``data`` ``[N, D]``:
    the sample mean and the Cholesky factor of the (1/N) sample covariance (+ jitter I)."""
    data = jnp.asarray(data)
    data = data.astype(_float_dtype([data]))
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"data must be [N >= 2, D] to fit a Gaussian noise, got shape {data.shape}")
    loc = jnp.mean(data, axis=0)
    cov = jnp.cov(data, rowvar=False, bias=True).reshape(data.shape[1], data.shape[1])
    chol = jnp.linalg.cholesky(cov + jitter * jnp.eye(data.shape[1]))
    return {"loc": loc, "tril": jnp.tril(chol, -1) + jnp.diag(jnp.log(jnp.diag(chol)))}


def fit_gaussian_noise(data, *, jitter: float = 1e-6) -> distrax.Distribution:
    """The full-covariance Gaussian fitted by ML to ``data`` ``[N, D]`` as a distrax
    distribution: a fixed NCE noise p_n close to the data (Gutmann & Hyvärinen 2010, Sec. 2.3)."""
    return _gaussian_dist(gaussian_noise_params(data, jitter=jitter))
