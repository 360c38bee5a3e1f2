"""``fit``: the SA driver as a short composition of named pieces.

validate the run's length (:func:`_plan`) → put the data on the device
(:func:`_place_data`) → build the pure step (:func:`sajax.sa.make_step`) →
the initial carry (:func:`_initial_state`), or the newest readable
checkpoint (:func:`_resume`) → the first step traced on concrete data (:func:`_probe`) → the
host loop with its hooks (:func:`sajax.sa.run_loop`).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sajax.core import Batch, Estimator, check_data, check_key, check_positive_int
from sajax.sa import _distributed as dist
from sajax.sa._checkpoints import list_checkpoints, restore_latest
from sajax.sa._hooks import Checkpointing, Evaluation, FiniteGuard, JsonLog, ProgressBar
from sajax.sa._loop import Hook, run_loop
from sajax.sa._optimizers import _check_optimizer
from sajax.sa._step import TrainState, init_train_state, make_step

__all__ = ["FitResult", "fit"]


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final carry, one record per chunk, and the
    checkpoint the run resumed from (None for a fresh start)."""

    state: TrainState
    history: list
    resumed_from: Any = None


class _Plan(NamedTuple):
    num_examples: int
    steps_per_epoch: int
    total: int
    chunk: int


def _warn_partial_epoch(num_steps: int, n: int, batch_size: int) -> None:
    """A UserWarning when ``num_steps`` ends inside an epoch (only part of its permutation seen)."""
    spe = n // batch_size
    rest = num_steps % spe
    if rest:
        warnings.warn(f"fit: num_steps={num_steps} is not a multiple of the {spe} steps per epoch "
                      f"(N // batch_size = {n} // {batch_size}): the run ends {rest} steps into epoch "
                      f"{num_steps // spe + 1}, which sees {rest * batch_size} of its {spe * batch_size} "
                      f"examples; pass epochs= or a multiple of {spe} to train on whole epochs",
                      UserWarning, stacklevel=4)


def _plan(data, batch_size, epochs, num_steps, chunk_steps) -> _Plan:
    """Validated run length: N, steps per epoch N // B, total steps, chunk length
    (``data``: the training set, or its number of rows N)."""
    n = int(data) if isinstance(data, (int, np.integer)) else int(np.shape(data)[0])
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the number of examples N={n}")
    spe = n // batch_size
    if (epochs is None) == (num_steps is None):
        raise ValueError("give exactly one of epochs or num_steps")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, (int, float, np.number)) \
                or not math.isfinite(epochs) or epochs <= 0:
            raise ValueError(f"epochs must be a finite number > 0, got {epochs!r}")
        total = int(round(epochs * spe))
        if total < 1:
            raise ValueError(f"epochs={epochs} is less than one step ({spe} steps per epoch)")
    else:
        total = check_positive_int("num_steps", num_steps)
        _warn_partial_epoch(total, n, batch_size)
    chunk = spe if chunk_steps is None else check_positive_int("chunk_steps", chunk_steps)
    if spe % chunk:
        raise ValueError(f"chunk_steps={chunk} must divide the steps per epoch ({spe} = N // batch_size)")
    return _Plan(n, spe, total, chunk)


def _place_data(data, mesh, batch_size, replicas=None, local_data=False) -> dist.Placement:
    """The data on the device(s) and the shardings of the minibatch and the carry (sajax.sa._distributed)."""
    if mesh is None:
        return dist.Placement(jnp.asarray(data), None, None, None)
    return dist.place(np.asarray(data), mesh, batch_size=batch_size, replicas=replicas, local_data=local_data)


def _check_processes(mesh, data, *, key, params, settings: dict, local_data: bool, fingerprint) -> None:
    """Across the processes of a job: the same key, parameters, settings, data (its content
    when every process passes the whole set, else its shape) and caller's fingerprint."""
    if not dist.multiprocess(mesh):
        return
    shape = (np.shape(data), str(np.asarray(data).dtype))
    dist.check_same({"key (seed)": key, "initial params": params, **settings,
                     "data shape" if local_data else "data": shape if local_data else (shape, data),
                     "fingerprint": fingerprint})


def _set_replica_hyperparams(state: TrainState, replicas, values: Mapping[str, Any]) -> TrainState:
    """Per-replica values of an ``optax.inject_hyperparams`` optimizer's hyperparameters."""
    if replicas is None or not hasattr(state.opt_state, "hyperparams"):
        raise ValueError("replica_hyperparams needs replicas=R and an optimizer made with "
                         "optax.inject_hyperparams")
    hp = dict(state.opt_state.hyperparams)
    for name, value in values.items():
        if name not in hp:
            raise ValueError(f"unknown hyperparameter {name!r}; the optimizer has {sorted(hp)}")
        value = jnp.asarray(value, hp[name].dtype)
        if value.shape != (replicas,):
            raise ValueError(f"replica_hyperparams[{name!r}] must have shape ({replicas},), got {value.shape}")
        hp[name] = value
    return state._replace(opt_state=state.opt_state._replace(hyperparams=hp))


def _initial_state(estimator, optimizer, key, params, data, replicas, replica_hyperparams) -> TrainState:
    """The carry at step 0; with ``replicas=R``, R carries stacked (replica r: fold_in(key, r))."""
    if replicas is None:
        return init_train_state(estimator, optimizer, key, params, data)
    rkeys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas))
    state = jax.vmap(lambda k, p: init_train_state(estimator, optimizer, k, p, data))(rkeys, params)
    return _set_replica_hyperparams(state, replicas, replica_hyperparams) if replica_hyperparams else state


def _resume(state: TrainState, checkpoint_dir, resume: bool):
    """The newest readable checkpoint in ``checkpoint_dir`` when ``resume``; a fresh
    start into a directory that already holds another run's checkpoints is refused."""
    if checkpoint_dir is None:
        return state, None
    if not resume:
        found = list_checkpoints(checkpoint_dir)
        if found:
            raise ValueError(f"checkpoint_dir {checkpoint_dir} already holds checkpoints (newest "
                             f"{found[-1].name}); pass resume=True to continue that run, or use an "
                             f"empty directory to start afresh")
        return state, None
    restored, path = restore_latest(checkpoint_dir, state)
    return (state, None) if restored is None else (restored, path)


def _probe(estimator, optimizer, preprocess, state: TrainState, data, batch_size: int, replicas) -> None:
    """Trace the first step once on a concrete minibatch; compile nothing.

    The model adapters validate *concrete* data (event shape, binary values for
    Bernoulli likelihoods, after ``preprocess``); in the compiled loop they only see
    tracers.  Here the first ``batch_size`` rows are preprocessed eagerly and closed
    over, so they reach the estimator as a concrete array while the step itself is
    only traced (``jax.eval_shape``): those checks, and shape errors, raise a clear
    error before anything is compiled.  (An eager step did the same at the price of
    compiling every operation of the step one by one: seconds per model on CPU.)
    """
    x, idx = data[:batch_size], jnp.arange(batch_size)
    if preprocess is not None:
        x = preprocess(jax.random.PRNGKey(0), x)
    step = make_step(estimator, optimizer)

    def first_step(carry):
        if replicas is not None:
            carry = jax.tree_util.tree_map(lambda a: a[0], carry)
        return step(carry, Batch(x, idx))

    jax.eval_shape(first_step, state)


def _checked(estimator, optimizer, key, data, batch_size, replicas, require_binary, mesh, local_data, length):
    """The arguments checked (data, B, R) and the run's plan over the whole (global) data set."""
    _check_estimator(estimator)
    _check_optimizer(optimizer)
    check_key(key)
    batch_size = check_positive_int("batch_size", batch_size)
    data = check_data(data, name="data", binary=require_binary)
    if replicas is not None:
        replicas = check_positive_int("replicas", replicas)
    rows = len(data) if mesh is None else dist.check_layout(mesh, num_rows=len(data), batch_size=batch_size,
                                                           replicas=replicas, local_data=local_data)
    return data, batch_size, replicas, _plan(rows, batch_size, *length)


def _check_estimator(estimator) -> Estimator:
    if not (callable(getattr(estimator, "init", None)) and callable(getattr(estimator, "estimate", None))):
        raise TypeError(f"estimator must be a sajax.Estimator(init, estimate), got {type(estimator).__name__}")
    return estimator


def _standard_hooks(plan: _Plan, eval_fn, eval_every, log_path, checkpoint_dir, checkpoint_every,
                    keep_checkpoints, progress) -> list[Hook]:
    """Guard, evaluation, checkpoints, log, progress: in this order (see sajax.sa._hooks).
    In a multi-process job only process 0 writes the log and shows the progress bar."""
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Checkpointing(checkpoint_dir, check_positive_int("checkpoint_every", checkpoint_every),
                             plan.total, check_positive_int("keep_checkpoints", keep_checkpoints))
    hooks: list[Hook] = [FiniteGuard(ckpt)]
    if eval_fn is not None:
        if not callable(eval_fn):
            raise TypeError(f"eval_fn must be a callable (params, step) -> dict, got {type(eval_fn).__name__}")
        hooks.append(Evaluation(eval_fn, check_positive_int("eval_every", eval_every), plan.total))
    hooks += [h for h in (ckpt,) if h is not None]
    if log_path is not None and dist.is_primary():
        hooks.append(JsonLog(log_path))
    if progress and dist.is_primary():
        hooks.append(ProgressBar(plan.total))
    return hooks


def fit(estimator: Estimator, optimizer: optax.GradientTransformation, params, data, *,
        key: jax.Array, batch_size: int = 100, epochs: Optional[float] = None,
        num_steps: Optional[int] = None, chunk_steps: Optional[int] = None,
        preprocess: Optional[Callable] = None, require_binary: bool = False,
        eval_fn: Optional[Callable] = None, eval_every: int = 1,
        log_path=None, checkpoint_dir=None, checkpoint_every: int = 1, keep_checkpoints: int = 2,
        resume: bool = True, progress: bool = True, mesh=None, replicas: Optional[int] = None,
        replica_hyperparams: Optional[Mapping[str, Any]] = None, local_data: bool = False,
        fingerprint: Any = None, state: Optional[TrainState] = None, hooks: Sequence[Hook] = ()) -> FitResult:
    """Train with the SA driver: chunks of ``step`` fused in one jitted ``lax.scan``
    (on CPU, steps with convolutions run as a loop over the jitted step: ``sa.run_loop``).

    Args:
      estimator, optimizer: what to iterate (``Estimator`` and an optax transform;
        :func:`per_group` gives one transform per parameter group, on a phase
        schedule if asked).
      params: initial parameters; with ``replicas=R`` every leaf has a leading
        axis R (e.g. ``jax.vmap(spec.init)(keys)``).
      data: ``[N, ...]`` training set; put on the device once; also what
        ``estimator.init`` receives.
      key: the run's PRNG key (replica r uses ``fold_in(key, r)``).
      batch_size: minibatch size B; an epoch is N // B steps.
      epochs / num_steps: length of the run (exactly one; finite, > 0).  An epoch is a fresh
        permutation of the rows; ``epochs`` rounds to whole steps; a ``num_steps`` that is not a
        multiple of N // B ends inside an epoch (``fit`` warns and goes on).
      chunk_steps: steps per jitted chunk (host round trip); divides the steps per epoch (default: all).
      preprocess: ``(key, x) -> x`` applied to every batch (dynamic binarization).
      require_binary: validate that ``data`` is binary (no binarizing ``preprocess``).
      eval_fn: ``(params, step) -> dict`` run every ``eval_every`` chunks and at the end.
      log_path: JSON-lines metrics log (one record per chunk, after the chunk's checkpoint).
      checkpoint_dir: orbax checkpoints every ``checkpoint_every`` chunks and at the end, the
        newest ``keep_checkpoints`` kept; with ``resume`` the newest readable one is restored
        first, without it a directory holding checkpoints is refused.
      mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis: the batch is sharded over it,
        parameters replicated; with ``replicas``, the replica axis instead.  It may span
        several processes (``sajax.distributed.global_mesh``): every process then calls
        ``fit`` with the same arguments (``sajax.sa._distributed`` says what is shared).
      replicas: train R independent runs of the same shapes in one program (vmap).
      replica_hyperparams: per-replica values ``{name: [R]}`` for an optimizer made
        with ``optax.inject_hyperparams`` (e.g. learning rates).
      local_data: multi-process data parallelism: ``data`` is only this process's rows
        (``data[sajax.distributed.process_rows(N)]``) instead of the whole set.
      fingerprint: a value that must be equal on every process (the run's settings); it is
        compared with the key, initial parameters and data before the first step.
      state: continue from this carry instead of initializing.
      hooks: extra :class:`Hook` objects, called after the standard ones.

    Returns:
      ``FitResult(state, history, resumed_from)``; history holds per chunk the
      mean of every metric, ``step``, ``epoch``, ``seconds`` and evaluations.

    Raises:
      NonFiniteError: a metric or parameter became non-finite; the message names
        the step (``.step``) and the last good checkpoint (``.last_good``), kept.
      CheckpointError: a checkpoint could not be saved (the older ones stay).
    """
    data, batch_size, replicas, plan = _checked(estimator, optimizer, key, data, batch_size, replicas,
                                                require_binary, mesh, local_data, (epochs, num_steps, chunk_steps))
    _check_processes(mesh, data, key=key, params=params if state is None else state, local_data=local_data,
                     settings=dict(batch_size=batch_size, epochs=epochs, num_steps=num_steps, chunk_steps=chunk_steps,
                                   replicas=replicas, replica_hyperparams=replica_hyperparams, resume=resume),
                     fingerprint=fingerprint)
    run_hooks = _standard_hooks(plan, eval_fn, eval_every, log_path, checkpoint_dir, checkpoint_every,
                                keep_checkpoints, progress) + list(hooks)
    placed = _place_data(data, mesh, batch_size, replicas, local_data)
    step = make_step(estimator, optimizer, preprocess)
    resumed_from = None
    if state is None:
        state = _initial_state(estimator, optimizer, key, params, placed.data, replicas, replica_hyperparams)
        state, resumed_from = _resume(state, checkpoint_dir, resume)
    probe_rows = placed.data if placed.probe_rows is None else placed.probe_rows
    _probe(estimator, optimizer, preprocess, state, probe_rows, batch_size, replicas)
    if placed.carry_sharding is not None:
        state = dist.to_global(state, placed.carry_sharding)
    state = jax.tree_util.tree_map(jnp.copy, state)  # the loop donates its carry
    state, history = run_loop(step, state, placed.data, batch_size=batch_size, num_steps=plan.total,
                              chunk_steps=plan.chunk, hooks=run_hooks, sharding=placed.batch_sharding,
                              replicas=replicas is not None, carry_sharding=placed.carry_sharding)
    return FitResult(state, history, resumed_from)
