"""Adversarial variational Bayes, AVB (review Sec. 3.2.1 item 4, Eq. 14-16;
the plugging trick of Appendix A; Mescheder, Nowozin & Geiger 2017).

The inference model q_φ(h|x) is implicit (an :class:`sajax.core.ImplicitSampler`,
h = f_φ(x, ε)), so the ELBO of Eq. 14,

    L(θ, φ) = E_{p̃(x) q_φ(h|x)} [log p(h) - log q_φ(h|x) + log p_θ(x|h)],

cannot be evaluated.  AVB represents log q_φ(h|x) - log p(h) by an adversary
T_ψ(x, h) trained by logistic regression between pairs (x, h ~ q_φ(h|x)) and
(x, h ~ p(h)) (Eq. 15), whose optimum is T* = log q_φ(h|x) - log p(h), and
plugs it in (Eq. 16):

    θ, φ ascend  L^AVB_ψ(θ, φ) = E_{p̃(x) q_φ(h|x)} [-T_ψ(x, h) + log p_θ(x|h)],
    ψ ascends    E_{p̃(x) q_φ(h|x)} log σ(T_ψ(x, h)) + E_{p̃(x) p(h)} log(1 - σ(T_ψ(x, h))).

The φ-gradient holds ψ fixed (Appendix A): it is valid because
E_q[∇_φ T_{ψ*_φ}(x, h)] = 0 (Proposition 2 of Mescheder et al.; footnote 10),
and at ψ = ψ*_φ with reparameterized h it is the path-derivative ELBO
gradient, unbiased for ∇_φ L.  p(h) is a fixed prior (footnote 9): the
prior samples carry no θ-gradient.

A critic on pairs is any :class:`sajax.core.Critic` applied to the
feature-wise concatenation [x, h] (:func:`pair_features`): x flattened to
``[D]``, every latent leaf flattened after its leading axes, so an MLP critic
over ``D + d`` inputs is one.

One :class:`~sajax.core.Estimate` holds the descent directions of all three
groups ``{MODEL: θ, GUIDE: φ, CRITIC: ψ}`` (simultaneous updates).  To
alternate players use ``sajax.sa.per_group({...}, schedule=sajax.sa.alternate(
critic=k, model=1, guide=1))``; a group that does not move stays bit-identical.
The estimator state is the critic's mutable state (``critic.init_state``).

Example:
  >>> import distrax, jax, jax.numpy as jnp
  >>> from sajax.core import Critic, ImplicitSampler, LatentVariableModel
  >>> lik = lambda th, x, h: -jnp.sum((x - h @ th) ** 2, -1)
  >>> model = LatentVariableModel(lambda th, h: -jnp.sum(h ** 2, -1), lik,
  ...                             prior=lambda th: distrax.Normal(jnp.zeros(2), 1.0))
  >>> q = ImplicitSampler(lambda ph, k, x, n: x[..., :2] * ph + jax.random.normal(k, (n,) + x[..., :2].shape))
  >>> critic = Critic(lambda ps, s, u: (u @ ps, s), lambda k: ())
  >>> est = avb(model, q, critic, num_samples=1)
  >>> params = {"model": jnp.eye(2, 3), "guide": jnp.ones(()), "critic": jnp.zeros(5)}
  >>> x = jnp.ones((4, 3))
  >>> out = jax.jit(est.estimate)(params, est.init(jax.random.PRNGKey(0), params, x), jax.random.PRNGKey(1), x)
  >>> sorted(out.grads), round(float(out.metrics["critic_loss"]), 4)
  (['critic', 'guide', 'model'], 1.3863)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sajax.core import (
    CRITIC,
    GUIDE,
    MODEL,
    OBJECTIVE,
    Critic,
    Estimate,
    Estimator,
    ImplicitSampler,
    LatentVariableModel,
    as_critic,
    batch_data,
    check_positive_int,
    complete_grads,
    neg,
    require_groups,
)
from sajax.estimators._common import _sg, critic_state_init, logistic_value

__all__ = ["avb", "pair_features", "as_implicit", "check_critic"]


def pair_features(x, h, num_lead: int):
    """[x, h] feature-wise, one row per pair: ``[M, D + d]`` with M the product
    of the first ``num_lead`` axes, which ``x`` and every leaf of ``h`` share
    (broadcast ``x`` first); trailing axes are flattened."""
    leaves = [x] + jax.tree_util.tree_leaves(h)
    lead = leaves[1].shape[:num_lead] if len(leaves) > 1 else x.shape[:num_lead]
    rows = math.prod(lead)
    return jnp.concatenate([a.reshape(rows, -1) for a in leaves], axis=-1)


def pair_scores(critic, psi, state, x, h, num_lead: int):
    """Critic scores of pairs (x, h): ``(v [lead], new state)`` (x already broadcast)."""
    lead = jax.tree_util.tree_leaves(h)[0].shape[:num_lead]
    v, state = critic.apply(psi, state, pair_features(x, h, num_lead))
    if v.size != math.prod(lead):
        raise ValueError(f"a critic on pairs (x, h) must return one score per pair, "
                         f"got shape {v.shape} for {math.prod(lead)} pairs")
    return v.reshape(lead), state


def as_implicit(sampler, name: str = "guide") -> ImplicitSampler:
    """An :class:`ImplicitSampler` from itself or from a
    :class:`sajax.core.ConditionalSampler` (whose log q is then ignored)."""
    if callable(getattr(sampler, "sample_and_log_prob", None)):
        return ImplicitSampler(lambda p, key, x, n: sampler.sample_and_log_prob(p, key, x, n)[0])
    if callable(getattr(sampler, "sample", None)):
        return ImplicitSampler(sampler.sample)
    raise TypeError(f"{name} must be a sajax.core.ImplicitSampler (sample(params, key, x, n)) "
                    f"or a ConditionalSampler; got {type(sampler).__name__}")


def check_critic(critic) -> Critic:
    """``critic`` as an unconditional :class:`sajax.core.Critic` (:func:`~sajax.core.as_critic`:
    a function ``(ψ, u) -> v`` is accepted), else TypeError/ValueError."""
    critic = as_critic(critic)
    if getattr(critic, "num_classes", None) is not None:
        raise ValueError("critic must be unconditional (num_classes=None): it scores pairs (x, h)")
    return critic


def _prior_sampler(model, prior_sample):
    """``(θ, key, n, B) -> h`` leaves ``[n, B, d]`` from p(h), no θ-gradient (footnote 9)."""
    if prior_sample is not None:
        if not callable(prior_sample):
            raise TypeError(f"prior_sample must be callable (key, shape) -> h, got {prior_sample!r}")
        return lambda theta, key, n, b: prior_sample(key, (n, b))
    if callable(getattr(model, "prior", None)):
        return lambda theta, key, n, b: model.prior(_sg(theta)).sample(seed=key, sample_shape=(n, b))
    if callable(getattr(model, "sample", None)):
        def from_joint(theta, key, n, b):
            _, h = model.sample(_sg(theta), key, n * b)
            return jax.tree_util.tree_map(lambda a: a.reshape((n, b) + a.shape[1:]), h)
        return from_joint
    raise ValueError("avb needs samples of p(h): give prior_sample=(key, shape) -> h, "
                     "or a model with prior (distrax) or sample")


def critic_logistic_loss(v_q, v_p):
    """−(Eq. 15): −E_q log σ(T) − E_p log(1 − σ(T)), T's logits on q- and p-pairs."""
    return -logistic_value(v_q, v_p)


def _model_objective(model, sampler, critic, k):
    """``(groups {MODEL, GUIDE}, ψ, state, key, x) -> (L̂^AVB, aux)``: the first line of
    Eq. 16, mean over K reparameterized h ~ q_φ(h|x) and the batch, ψ held fixed
    (plugging, Appendix A).  aux = (h [K, B, d], mean log p(x|h), mean T(x, h))."""

    def objective(groups, psi, state, key, x):
        h = sampler.sample(groups[GUIDE], key, x, k)
        t, _ = pair_scores(critic, _sg(psi), state, jnp.broadcast_to(x, (k,) + x.shape), h, 2)
        log_lik = model.log_likelihood(groups[MODEL], x, h)             # [K, B]
        return jnp.mean(log_lik - t), (h, jnp.mean(log_lik), jnp.mean(t))

    return objective


def _critic_objective(critic, k):
    """``(ψ, state, x, h_q, h_p) -> (critic loss, (state, v))``: −(Eq. 15) on K q-pairs
    and K p-pairs per example, scored in one critic call (one state update)."""

    def objective(psi, state, x, h_q, h_p):
        h = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b], axis=0), h_q, h_p)
        v, state = pair_scores(critic, psi, state, jnp.broadcast_to(x, (2 * k,) + x.shape), h, 2)
        return critic_logistic_loss(v[:k], v[k:]), (state, v)

    return objective


def avb(model: LatentVariableModel, guide, critic, *, num_samples: int,
        prior_sample=None) -> Estimator:
    """Adversarial variational Bayes (Eq. 15-16; Mescheder et al. 2017).

    Per example, K draws h_k = f_φ(x, ε_k) ~ q_φ(h|x) and K draws h'_k ~ p(h);
    the descent directions are

      θ, φ: −∇_{θ,φ} (1/K) Σ_k [log p_θ(x|h_k) − T_ψ(x, h_k)]   (ψ fixed; Eq. 16, line 1)
      ψ:     ∇_ψ  −(1/K) Σ_k [log σ(T_ψ(x, h_k)) + log σ(−T_ψ(x, h'_k))]   (Eq. 15, h fixed)

    averaged over the batch.  At T = log q_φ − log p(h) the (θ, φ) part is an
    unbiased estimate of −∇ L(θ, φ) (Appendix A; tests/test_avb.py checks it).

    Args:
      model: p_θ(x, h) (:class:`~sajax.core.LatentVariableModel`); ``log_likelihood``
        is used, and p(h) is sampled from ``prior_sample``, else ``model.prior``,
        else ``model.sample``.
      guide: q_φ(h|x) as an :class:`~sajax.core.ImplicitSampler` (reparameterized),
        or a :class:`~sajax.core.ConditionalSampler` (its log q is not used).
      critic: T_ψ on pairs, a :class:`~sajax.core.Critic` applied to [x, h]
        (:func:`pair_features`), returning one logit per pair.
      num_samples: K >= 1.
      prior_sample: optional ``(key, (K, B)) -> h`` drawing p(h).

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ, CRITIC: ψ}``; state: the critic's
      mutable state.  Metrics: ``avb_elbo`` = ``objective`` (batch mean of
      log p(x|h) − T(x, h), the ELBO when T is optimal), ``critic_loss``
      (−Eq. 15, log 4 at chance), ``log_likelihood``, ``kl_estimate`` (mean T on
      q-pairs, KL(q‖p) at the optimum).
    """
    if not callable(getattr(model, "log_likelihood", None)):
        raise TypeError(f"model must be a sajax.core.LatentVariableModel with a callable "
                        f"'log_likelihood'; got {type(model).__name__}")
    sampler, k = as_implicit(guide), check_positive_int("num_samples", num_samples)
    critic = check_critic(critic)
    draw_prior = _prior_sampler(model, prior_sample)
    model_objective, critic_objective = _model_objective(model, sampler, critic, k), _critic_objective(critic, k)

    def estimate(params, state, key, batch):
        theta, phi, psi = require_groups(params, (MODEL, GUIDE, CRITIC), "avb")
        x = batch_data(batch)
        k_q, k_p = jax.random.split(key)
        (value, (h_q, log_lik, t_q)), g = jax.value_and_grad(model_objective, has_aux=True)(
            {MODEL: theta, GUIDE: phi}, psi, state, k_q, x)
        h_p = draw_prior(theta, k_p, k, x.shape[0])
        (loss, (state, _)), g_psi = jax.value_and_grad(critic_objective, has_aux=True)(
            psi, state, x, _sg(h_q), h_p)
        grads = complete_grads(params, {**neg(g), CRITIC: g_psi})
        metrics = {"avb_elbo": value, OBJECTIVE: value, "critic_loss": loss,
                   "log_likelihood": log_lik, "kl_estimate": t_q}
        return Estimate(grads, state, metrics)

    return Estimator(critic_state_init(critic), estimate)
