"""The stochastic-approximation driver (review Sec. 2, Algorithms 1 and 2).

Pieces, each usable on its own:

* the pure SA iteration: :class:`TrainState`, :func:`init_train_state`,
  :func:`make_step` (``step(carry, batch) -> (carry, metrics)``),
  :func:`batch_indices`, :func:`multiple_moves` (Algorithm 2);
* the host loop over jitted chunks of any such step, with hooks:
  :func:`run_loop`, :class:`Hook` and the standard hooks
  (:class:`FiniteGuard`, :class:`Evaluation`, :class:`Checkpointing`,
  :class:`JsonLog`, :class:`ProgressBar`), and :class:`EarlyStopping`;
* optimizers and step sizes: :func:`per_group` (one optax transform per
  parameter group, optionally on a phase schedule such as :func:`alternate`),
  :func:`robbins_monro`, :func:`iwae_schedule`; :func:`sweep` (one optimizer per replica);
* checkpoints: :func:`save_checkpoint`, :func:`restore_checkpoint`,
  :func:`restore_latest`, :func:`latest_checkpoint`, :func:`list_checkpoints`;
* :func:`fit`, the composition of all of the above.

Example (a noisy mean field whose root is the data mean)::

    >>> import jax, jax.numpy as jnp, numpy as np, optax
    >>> from sajax import Estimate, Estimator, sa
    >>> def estimate(params, state, key, batch):
    ...     f = jnp.mean(batch.x, axis=0) - params["model"]["mu"]
    ...     return Estimate({"model": {"mu": -f}}, state, {"objective": -jnp.sum(f ** 2)})
    >>> est = Estimator(lambda key, params, data: (), estimate)
    >>> data = np.full((64, 2), 3.0, np.float32)
    >>> res = sa.fit(est, optax.sgd(0.5), {"model": {"mu": jnp.zeros(2)}}, data,
    ...              key=jax.random.PRNGKey(0), batch_size=16, epochs=10, progress=False)
    >>> np.round(np.asarray(res.state.params["model"]["mu"]), 3).tolist()
    [3.0, 3.0]
"""
from sajax.sa._checkpoints import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    restore_checkpoint,
    restore_latest,
    save_checkpoint,
)
from sajax.sa._driver import FitResult, fit
from sajax.sa._hooks import (Checkpointing, EarlyStopping, Evaluation, FiniteGuard, JsonLog, NonFiniteError,
                             ProgressBar)
from sajax.sa._loop import Hook, chunk_fn, run_loop
from sajax.sa._optimizers import GatedState, SweepState, alternate, iwae_schedule, per_group, robbins_monro, sweep
from sajax.sa._step import TrainState, batch_indices, init_train_state, make_step, multiple_moves

__all__ = [
    "CheckpointError",
    "Checkpointing",
    "EarlyStopping",
    "Evaluation",
    "FiniteGuard",
    "FitResult",
    "GatedState",
    "Hook",
    "JsonLog",
    "NonFiniteError",
    "ProgressBar",
    "TrainState",
    "alternate",
    "batch_indices",
    "chunk_fn",
    "fit",
    "init_train_state",
    "iwae_schedule",
    "latest_checkpoint",
    "list_checkpoints",
    "make_step",
    "multiple_moves",
    "per_group",
    "restore_checkpoint",
    "restore_latest",
    "robbins_monro",
    "run_loop",
    "save_checkpoint",
    "SweepState",
    "sweep",
]
