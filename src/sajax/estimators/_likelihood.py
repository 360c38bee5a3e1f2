"""Maximum likelihood for models with an exact log-likelihood (review Sec. 3.1.3).

Fully visible autoregressive models (NADE, MADE, PixelCNN;
:class:`sajax.core.TractableModel`) are fitted by minimizing KL[p̃ || p_θ],
i.e. by ascending the mean log-likelihood of the data.  As an SA iteration
(review Sec. 2, Algorithm 1) the mean field is F(θ) = E_p̃ ∇_θ log p_θ(x),
estimated on a minibatch without any sampling:

    F̂ = (1/B) Σ_b ∇_θ log p_θ(x_b),        grads[MODEL] = -F̂.

With ``stochastic_log_prob`` the objective is a random one drawn per step
from the iteration's key, e.g. MADE's order/connectivity-agnostic training
(Germain et al. 2015, Sec. 4): log p_m(x) with a mask set m drawn uniformly,
an unbiased estimate of ∇ (1/M) Σ_m log p_m(x).

Example::

    >>> import jax, jax.numpy as jnp
    >>> from sajax.core import Batch, MODEL, TractableModel
    >>> from sajax.estimators._likelihood import maximum_likelihood
    >>> # p_θ(x) = Π_i Bernoulli(x_i; σ(θ_i)): the gradient of the mean log p is mean(x) - σ(θ)
    >>> model = TractableModel(lambda t, x: jnp.sum(x * t["l"] - jax.nn.softplus(t["l"]), -1),
    ...                        observation="bernoulli")
    >>> est = maximum_likelihood(model)
    >>> x = jnp.asarray([[1., 0.], [1., 1.]])
    >>> params = {MODEL: {"l": jnp.zeros(2)}}
    >>> out = est.estimate(params, est.init(None, params, x), jax.random.PRNGKey(0), Batch(x, jnp.arange(2)))
    >>> out.grads[MODEL]["l"].tolist()          # -(mean(x) - 0.5)
    [-0.5, -0.0]
    >>> round(float(out.metrics["objective"]), 4)   # 2 log(1/2)
    -1.3863
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from sajax.core import MODEL, OBJECTIVE, Estimate, Estimator, TractableModel, batch_data, check_data, require_groups
from sajax.estimators._common import descent

__all__ = ["maximum_likelihood"]


def _check_model(model, stochastic_log_prob):
    if not callable(getattr(model, "log_prob", None)):
        raise TypeError("model must be a sajax.core.TractableModel with a callable 'log_prob' "
                        f"(θ, x) -> [B]; got {type(model).__name__}")
    if stochastic_log_prob is not None and not callable(stochastic_log_prob):
        raise TypeError("stochastic_log_prob must be None or a callable (θ, key, x) -> [B], "
                        f"got {type(stochastic_log_prob).__name__}")


def maximum_likelihood(model: TractableModel, *, stochastic_log_prob: Optional[Callable] = None) -> Estimator:
    """Exact maximum likelihood: descend -(1/B) Σ_b ∇_θ log p_θ(x_b) (review Sec. 3.1.3).

    Args:
      model: a :class:`sajax.core.TractableModel`; ``model.observation ==
        "bernoulli"`` makes ``init`` require binary training data.
      stochastic_log_prob: optional ``(θ, key, x) -> [B]``, a random training
        objective used instead of ``model.log_prob`` (e.g.
        ``ARSpec.random_mask_log_prob``: MADE with one random mask set per step).

    Returns:
      Estimator over ``{MODEL: θ}`` (other groups get zero grads); state ``()``;
      metrics ``log_likelihood`` = ``objective``: the batch mean of log p_θ(x)
      (of the random objective when ``stochastic_log_prob`` is given).
    """
    _check_model(model, stochastic_log_prob)
    binary = getattr(model, "observation", None) == "bernoulli"

    def init(key, params, data):
        del key
        require_groups(params, (MODEL,), "maximum_likelihood")
        check_data(data, name="data", binary=binary)
        return ()

    def estimate(params, state, key, batch):
        (theta,) = require_groups(params, (MODEL,), "maximum_likelihood")
        x = batch_data(batch)

        def mean_log_lik(t):
            lp = model.log_prob(t, x) if stochastic_log_prob is None else stochastic_log_prob(t, key, x)
            return jnp.mean(lp)

        value, ascent = jax.value_and_grad(mean_log_lik)(theta)
        metrics = {"log_likelihood": value, OBJECTIVE: value}
        return Estimate(descent(params, {MODEL: ascent}), state, metrics)

    return Estimator(init, estimate)
