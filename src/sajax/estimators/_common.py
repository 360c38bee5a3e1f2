"""The estimator-building kit and the pieces every estimator module shares.

Public (re-exported by :mod:`sajax.estimators`; optax publishes ``stateless``
for the same purpose):

* :func:`from_objective`: a differentiable stochastic objective -> an
  :class:`~sajax.core.Estimator` (reparameterized bounds, Eq. 12-13 and 19);
* :func:`score_function_estimator`: a score-function surrogate over K draws
  of q held fixed -> an Estimator (REINFORCE, Algorithm 3, Eq. 11, and its
  baselines);
* :func:`~sajax.core.complete_grads`: zero grads for the groups an estimator
  does not move;
* :func:`critic_state_init`: ``Estimator.init`` of the adversarial estimators,
  whose state is the critic's mutable Flax collections.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp

from sajax.core import (
    GUIDE,
    MODEL,
    OBJECTIVE,
    Estimate,
    Estimator,
    batch_data,
    check_positive_int,
    check_protocols,
    complete_grads,
    log_joint,
    neg,
    no_state,
    require_groups,
)

__all__ = ["from_objective", "score_function_estimator", "complete_grads", "critic_state_init"]

_sg = jax.lax.stop_gradient


def model_guide(params, who: str):
    """``(params[MODEL], params[GUIDE])``, or a ValueError naming the missing group."""
    return require_groups(params, (MODEL, GUIDE), who)


def ascent_groups(params, who: str) -> dict:
    """The ``{MODEL: θ, GUIDE: φ}`` sub-tree the estimators differentiate."""
    theta, phi = model_guide(params, who)
    return {MODEL: theta, GUIDE: phi}


def descent(params, ascent: dict) -> dict:
    """-ascent, completed to the tree of ``params`` by :func:`~sajax.core.complete_grads`."""
    return complete_grads(params, neg(ascent))


def with_objective(metrics: dict, name: str) -> dict:
    """``metrics`` plus the common key ``OBJECTIVE`` holding ``metrics[name]``."""
    return {**metrics, OBJECTIVE: metrics[name]}


def check_loo_samples(num_samples, who: str) -> int:
    """K >= 2 (Python, NumPy or concrete JAX integer): a leave-one-out baseline
    needs at least one other sample."""
    try:
        k = check_positive_int("num_samples", num_samples)
    except TypeError:
        raise TypeError(f"{who} needs num_samples (K) to be an integer >= 2, "
                        f"got K={num_samples!r}") from None
    except ValueError:
        k = int(num_samples)
    if k < 2:
        raise ValueError(
            f"{who} needs num_samples (K) >= 2: its leave-one-out baseline for sample k is built "
            f"from the other K-1 samples; got K={k}")
    return k


def _check_groups(groups) -> Optional[tuple]:
    if groups is None:
        return None
    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    if not groups or not all(isinstance(g, str) for g in groups):
        raise TypeError(f"groups must be None or a sequence of parameter-group names, got {groups!r}")
    return groups


def from_objective(objective: Callable, *, metric: str = OBJECTIVE, groups: Optional[Sequence[str]] = None,
                   has_aux: bool = False, name: str = "from_objective") -> Estimator:
    """An :class:`~sajax.core.Estimator` that ascends a differentiable stochastic objective.

    ``objective(params, key, batch) -> scalar`` is a Monte Carlo estimate
    F̂(λ; z) of an objective to MAXIMIZE (higher is better: an ELBO, Eq. 7, by
    reparameterized samples, Eq. 12-13; the IW-LB I_K, Eq. 19; ...), drawn
    with ``key``.  Each iteration returns ``-∇_λ F̂`` as the descent direction
    (the SA step of Algorithm 1 with mean field ∇F when E[F̂] = F), and F̂
    itself as ``metrics[metric]`` and ``metrics["objective"]``.  Stateless:
    ``init`` ignores the training set and returns ``()``.

    Args:
      objective: ``(params, key, batch) -> scalar``; with ``has_aux``,
        ``-> (scalar, metrics dict)`` (the dict's scalars join the metrics and
        may override ``metric``).  ``batch`` is what ``estimate`` received
        (a :class:`~sajax.core.Batch`; :func:`sajax.core.batch_data` gives x).
      metric: the name of the objective in ``metrics`` (e.g. ``"elbo"``).
      groups: None: ``objective`` receives the whole ``params``; a sequence of
        group names: it receives ``{name: params[name]}`` for those only, a
        missing group is a ValueError naming it, and every other group of
        ``params`` gets zero grads (:func:`~sajax.core.complete_grads`).
      has_aux: ``objective`` returns ``(value, metrics)``.
      name: used in error messages.

    Returns: ``Estimator(init, estimate)``, state ``()``.

    Example (the reparameterized ELBO of a one-dimensional Gaussian model)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.core import Batch, batch_data
        >>> def elbo(p, key, batch):
        ...     x = batch_data(batch)                                   # [B, 1]
        ...     h = p["guide"]["m"] + jax.random.normal(key, x.shape)   # h ~ q = N(m, 1), Eq. 12
        ...     return jnp.mean(-0.5 * h ** 2 - 0.5 * (x - h) ** 2 + 0.5 * (h - p["guide"]["m"]) ** 2)
        >>> est = from_objective(elbo, metric="elbo", groups=("guide",))
        >>> params = {"guide": {"m": jnp.zeros(())}, "model": {"w": jnp.ones(2)}}
        >>> out = est.estimate(params, est.init(None, params, None), jax.random.PRNGKey(0),
        ...                    Batch(jnp.ones((4, 1)), jnp.arange(4)))
        >>> sorted(out.metrics), out.grads["model"]["w"].tolist()
        (['elbo', 'objective'], [0.0, 0.0])
    """
    if not callable(objective):
        raise TypeError(f"{name}: objective must be a callable (params, key, batch) -> scalar, "
                        f"got {type(objective).__name__}")
    groups = _check_groups(groups)

    def estimate(params, state, key, batch):
        sub = params if groups is None else dict(zip(groups, require_groups(params, groups, name)))
        value, ascent = jax.value_and_grad(objective, has_aux=has_aux)(sub, key, batch)
        value, aux = value if has_aux else (value, {})
        grads = neg(ascent) if groups is None else complete_grads(params, neg(ascent))
        return Estimate(grads, state, with_objective({metric: value, **aux}, metric))

    return Estimator(no_state, estimate)


def score_function_estimator(model, guide, surrogate: Callable, *, num_samples: int,
                             metric: str = OBJECTIVE, name: str = "score_function_estimator") -> Estimator:
    """An Estimator from a score-function surrogate: the plumbing of REINFORCE
    (Algorithm 3, Eq. 11; Williams 1992) and its baselines (review Sec. 3.2.1).

    Per iteration: K = ``num_samples`` draws h_k ~ q_φ(h|x) held fixed as data
    (no gradient flows through them, so any latents work, discrete ones
    included), then both groups ascend ∇_{θ,φ} of
    ``surrogate(log_p, log_q)``, where ``log_p = log p_θ(x, h)`` and
    ``log_q = log q_φ(h|x)`` are ``[K, B]`` functions of (θ, φ).  The
    surrogate decides the estimator: REINFORCE is
    ``mean(log_p + stop_gradient(log_p - log_q) * log_q)`` (its φ-gradient is
    the learning signal times the score ∇_φ log q, Eq. 11); RLOO and VIMCO
    subtract leave-one-out baselines from the signal.

    Args:
      model: p_θ(x, h) as a :class:`~sajax.core.LatentVariableModel`.
      guide: q_φ(h|x) as a :class:`~sajax.core.ConditionalSampler`.
      surrogate: ``(log_p [K, B], log_q [K, B]) -> (objective, value)``: the
        scalar whose gradient is the ascent direction, and the scalar reported
        as ``metrics[metric]`` and ``metrics["objective"]``.
      num_samples: K >= 1.
      metric: the name of the reported value (e.g. ``"elbo"``).
      name: used in error messages.

    Returns: Estimator over ``{MODEL: θ, GUIDE: φ}`` (other groups get zero
    grads); state ``()``.
    """
    check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)
    if not callable(surrogate):
        raise TypeError(f"{name}: surrogate must be a callable (log_p, log_q) -> (objective, value), "
                        f"got {type(surrogate).__name__}")

    def estimate(params, state, key, batch):
        groups = ascent_groups(params, name)
        x = batch_data(batch)
        h, _ = guide.sample_and_log_prob(groups[GUIDE], key, x, k)
        h = _sg(h)

        def objective(p):
            return surrogate(log_joint(model, p[MODEL], x, h), guide.log_prob(p[GUIDE], x, h))

        ascent, value = jax.grad(objective, has_aux=True)(groups)
        return Estimate(descent(params, ascent), state, with_objective({metric: value}, metric))

    return Estimator(no_state, estimate)


def critic_state_init(critic) -> Callable:
    """``Estimator.init`` of an estimator whose state is the critic's mutable
    state (spectral-norm vectors, ``()`` if none): ``init(key, params, data) ->
    critic.init_state(key)``; the parameters and the training set are ignored.
    Shared by every adversarial estimator (GAN family, cGAN, ALI, AVB)."""

    def init(key, params, data):
        del params, data
        return critic.init_state(key)

    return init


def logistic_value(v_real, v_fake):
    """The value F of Eq. 28 at a discriminator's logits: mean log σ(v_real) + mean log σ(−v_fake).

    One implementation for the discriminators that are logistic regressions of
    "real" against "fake": ALI's joint critic and AVB's adversary (Eq. 15).
    """
    return jnp.mean(jax.nn.log_sigmoid(v_real)) + jnp.mean(jax.nn.log_sigmoid(-v_fake))


def energy_model(model, who: str):
    """``model`` as an EnergyModel: itself, or the ``.model`` of a spec (``rbm(...)``,
    ``mlp_potential(...)``), the same argument :func:`pcd` and :func:`cd` take."""
    inner = getattr(model, "model", None)
    if not callable(getattr(model, "potential", None)) and callable(getattr(inner, "potential", None)):
        model = inner
    if not callable(getattr(model, "potential", None)):
        raise TypeError(f"{who}: model must be a sajax.core.EnergyModel with a callable "
                        f"'potential', or a spec holding one (rbm(...), mlp_potential(...)), "
                        f"got {type(model).__name__}")
    return model
