"""The stochastic-approximation driver (review Sec. 2, Algorithms 1 and 2).

An estimator gives F(z; λ), the noisy mean field (as a descent direction);
optax turns it into λ^(t) = λ^(t-1) + γ_t F.  This module builds the pure
per-iteration function

    step(carry, batch) -> (carry, metrics)

and runs many of them per host call: ``fit`` jits a ``lax.scan`` over a whole
chunk of steps (default: one epoch) on data that already sits on the device,
shuffled on the device each epoch.  The host only sees chunk boundaries:
progress bar, JSON-lines log, evaluation, checkpoints.

Randomness is a pure function of (run key, step): the key of step t is
``fold_in(k_steps, t)`` and the order of epoch e is
``permutation(fold_in(k_shuffle, e))``, so a resumed run is bit-identical to an
uninterrupted one and a hand-written Python loop over ``step`` reproduces
``fit`` (see :func:`batch_indices`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sajax.core import Batch, Estimate, Estimator, check_data, check_positive_int

__all__ = [
    "TrainState",
    "FitResult",
    "NonFiniteError",
    "init_train_state",
    "make_step",
    "batch_indices",
    "fit",
    "multiple_moves",
    "per_group",
    "robbins_monro",
    "iwae_schedule",
    "save_checkpoint",
    "restore_checkpoint",
    "latest_checkpoint",
]


class TrainState(NamedTuple):
    """The carry of the SA recursion.

    Attributes:
      params: dict of parameter groups (λ).
      opt_state: optax state.
      est_state: the estimator's threaded state (z^(t) of Algorithm 1).
      step: int32 scalar, the number of SA iterations done.
      key: the run's base PRNG key; step t uses ``fold_in(k_steps, t)``.
    """

    params: Any
    opt_state: Any
    est_state: Any
    step: jax.Array
    key: jax.Array


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final carry and one record per chunk."""

    state: TrainState
    history: list


class NonFiniteError(FloatingPointError):
    """A training metric or parameter became NaN/inf; the message names the step."""


# ---------------------------------------------------------------------------
# Optimizers and Robbins-Monro step sizes


def per_group(transforms: Mapping[str, optax.GradientTransformation]) -> optax.GradientTransformation:
    """One optax transform per parameter group (``{"model": ..., "guide": ...}``).

    Groups are the top-level keys of ``params``; every group must be named.
    Useful for TTUR and for different schedules per group.
    """
    names = tuple(transforms)

    def labels(params):
        missing = set(params) - set(names)
        if missing:
            raise ValueError(f"per_group: no transform for parameter group(s) {sorted(missing)}; "
                             f"transforms given for {sorted(names)}")
        return {g: jax.tree_util.tree_map(lambda _, g=g: g, v) for g, v in params.items()}

    return optax.multi_transform(dict(transforms), labels)


def robbins_monro(init_value: float, *, decay_start: int = 0, tau: float = 1000.0,
                  power: float = 1.0, floor: float = 0.0) -> optax.Schedule:
    """Robbins-Monro step sizes γ_t (review Sec. 2, Theorem 1).

    γ_t = init_value for t < decay_start, then
    init_value / (1 + (t - decay_start) / tau) ** power.  With 0.5 < power <= 1
    this satisfies Σγ_t = ∞, Σγ_t² < ∞ ("large early, then 1/t").  ``floor`` > 0
    gives a constant-step tail (then the conditions no longer hold; say so).
    """
    if not 0.5 < power <= 1.0:
        raise ValueError(f"power must be in (0.5, 1] for Robbins-Monro convergence, got {power}")

    def schedule(t):
        t = jnp.asarray(t, jnp.float32)
        decayed = init_value / (1.0 + jnp.maximum(t - decay_start, 0.0) / tau) ** power
        return jnp.maximum(decayed, floor)

    return schedule


def iwae_schedule(steps_per_epoch: int, *, base: float = 1e-3, stages: int = 8,
                  epoch_scale: float = 1.0) -> optax.Schedule:
    """The IWAE paper's schedule (Burda et al. 2015, Sec. 5): stage i = 0..stages-1
    lasts 3**i epochs (times ``epoch_scale``) at learning rate base·10**(-i/7).

    With the defaults that is 3,280 passes, the rate decaying from 1e-3 to 1e-4.
    """
    bounds, values, total = [], [base], 0
    for i in range(stages):
        total += int(round(3 ** i * epoch_scale * steps_per_epoch))
        if i < stages - 1:
            bounds.append(total)
            values.append(base * 10 ** (-(i + 1) / 7))
    return optax.piecewise_constant_schedule(
        base, {b: values[j + 1] / values[j] for j, b in enumerate(bounds)})


# ---------------------------------------------------------------------------
# The pure step


def init_train_state(estimator: Estimator, optimizer: optax.GradientTransformation,
                     key: jax.Array, params, data=None) -> TrainState:
    """Initialize the carry: the estimator's state (e.g. JSA's latent cache over
    ``data``), the optimizer's state, step 0 and the run key."""
    k_init, k_run = jax.random.split(key)
    est_state = estimator.init(k_init, params, data)
    return TrainState(params, optimizer.init(params), est_state, jnp.zeros((), jnp.int32), k_run)


def _run_keys(key):
    k_steps, k_shuffle = jax.random.split(key)
    return k_steps, k_shuffle


def make_step(estimator: Estimator, optimizer: optax.GradientTransformation,
              preprocess: Optional[Callable] = None) -> Callable:
    """Build the pure SA iteration ``step(carry, batch) -> (carry, metrics)``.

    One call is one iteration of Algorithm 1: the estimator draws its samples
    (moving its Markov state) and returns F as a descent direction; optax
    applies γ_t.  ``preprocess(key, x) -> x`` (e.g. dynamic binarization) is
    applied to the batch first with its own key.  Put ``step`` in your own
    ``lax.scan`` or call it from a Python loop; ``fit`` does the former.
    """

    def step(carry: TrainState, batch: Batch):
        k_steps, _ = _run_keys(carry.key)
        k_pre, k_est = jax.random.split(jax.random.fold_in(k_steps, carry.step))
        if preprocess is not None:
            batch = batch._replace(x=preprocess(k_pre, batch.x))
        est: Estimate = estimator.estimate(carry.params, carry.est_state, k_est, batch)
        updates, opt_state = optimizer.update(est.grads, carry.opt_state, carry.params)
        params = optax.apply_updates(carry.params, updates)
        metrics = dict(est.metrics)
        return TrainState(params, opt_state, est.state, carry.step + 1, carry.key), metrics

    return step


def batch_indices(key: jax.Array, num_examples: int, batch_size: int, step) -> jax.Array:
    """Row indices of the minibatch that :func:`fit` uses at ``step``.

    ``key`` is ``TrainState.key``.  Epoch e = step // (N // B) is a fresh
    on-device permutation; the remainder of N mod B examples is dropped each
    epoch (a different remainder every epoch).
    """
    spe = num_examples // batch_size
    _, k_shuffle = _run_keys(key)
    perm = jax.random.permutation(jax.random.fold_in(k_shuffle, step // spe), num_examples)
    return jax.lax.dynamic_slice(perm, ((step % spe) * batch_size,), (batch_size,))


def multiple_moves(estimator: Estimator, num_moves: int) -> Estimator:
    """Algorithm 2 (SA with multiple moves): K moves of the estimator's Markov
    state per iteration, averaging F over the K draws.

    The estimate is run ``num_moves`` times in a ``lax.scan``, each move starting
    from the state the previous one left (z^(t,k) ~ K(·|z^(t,k-1))), all at the
    same λ^(t-1); grads and metrics are averaged.
    """
    num_moves = check_positive_int("num_moves", num_moves)

    def estimate(params, state, key, batch):
        def body(st, k):
            est = estimator.estimate(params, st, k, batch)
            return est.state, (est.grads, est.metrics)

        state, (grads, metrics) = jax.lax.scan(body, state, jax.random.split(key, num_moves))
        mean = lambda t: jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), t)
        return Estimate(mean(grads), state, mean(metrics))

    return Estimator(estimator.init, estimate)


# ---------------------------------------------------------------------------
# Checkpoints (orbax)


def save_checkpoint(directory, state: TrainState, *, keep: int = 1) -> Path:
    """Save ``state`` under ``directory/step_<n>`` with orbax; keep the newest ``keep``."""
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    step = int(jax.device_get(state.step if np.ndim(state.step) == 0 else state.step.reshape(-1)[0]))
    path = directory / f"step_{step:09d}"
    if path.exists():
        return path
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(path, jax.device_get(state))
    ckptr.wait_until_finished()
    for old in sorted(directory.glob("step_*"))[:-keep]:
        import shutil

        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(directory) -> Optional[Path]:
    """The newest ``step_*`` checkpoint in ``directory``, or None."""
    directory = Path(directory)
    found = sorted(directory.glob("step_*")) if directory.exists() else []
    return found[-1].absolute() if found else None


def restore_checkpoint(path, like: TrainState) -> TrainState:
    """Restore a checkpoint written by :func:`save_checkpoint` into the structure of ``like``."""
    import orbax.checkpoint as ocp

    ckptr = ocp.StandardCheckpointer()
    restored = ckptr.restore(Path(path).absolute(), jax.device_get(like))
    return jax.tree_util.tree_map(jnp.asarray, restored)


# ---------------------------------------------------------------------------
# fit


def _chunk_fn(step, batch_size, num_examples, n_steps, sharding):
    def run(carry: TrainState, data):
        spe = num_examples // batch_size
        _, k_shuffle = _run_keys(carry.key)
        start = carry.step
        perm = jax.random.permutation(jax.random.fold_in(k_shuffle, start // spe), num_examples)

        def body(c, j):
            idx = jax.lax.dynamic_slice(perm, ((start % spe + j) * batch_size,), (batch_size,))
            batch = Batch(jnp.take(data, idx, axis=0), idx)
            if sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, sharding)
            return step(c, batch)

        return jax.lax.scan(body, carry, jnp.arange(n_steps))

    return run


def _probe(step, state: TrainState, data, batch_size: int) -> None:
    """Run the first step once without ``jit`` and discard it.

    The model adapters validate *concrete* data (event shape, binary values for
    Bernoulli likelihoods, after ``preprocess``); under ``jit`` they only see
    tracers.  One eager step lets those checks raise a clear ValueError before
    anything is compiled.
    """
    idx = batch_indices(state.key, int(data.shape[0]), batch_size, state.step)
    step(state, Batch(data[idx], idx))


def _first_nonfinite(metrics: dict) -> Optional[tuple]:
    for name, values in metrics.items():
        v = np.asarray(values)
        bad = ~np.isfinite(v)
        if bad.any():
            return name, int(np.argwhere(bad)[0][-1])
    return None


def _finite_tree(tree) -> bool:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)
              if np.issubdtype(np.asarray(x).dtype, np.floating)]
    return all(np.isfinite(x).all() for x in leaves)


def _summarize(metrics: dict) -> dict:
    out = {}
    for name, values in metrics.items():
        v = np.asarray(values, dtype=np.float64)
        # [n_steps] or [R, n_steps]: mean over the chunk's steps, keep replicas apart
        m = v.mean(axis=-1)
        out[name] = m.tolist() if m.ndim else float(m)
    return out


def fit(estimator: Estimator, optimizer: optax.GradientTransformation, params, data, *,
        key: jax.Array, batch_size: int = 100, epochs: Optional[float] = None,
        num_steps: Optional[int] = None, chunk_steps: Optional[int] = None,
        preprocess: Optional[Callable] = None, require_binary: bool = False,
        eval_fn: Optional[Callable] = None, eval_every: int = 1,
        log_path=None, checkpoint_dir=None, checkpoint_every: int = 1, resume: bool = True,
        progress: bool = True, mesh=None, replicas: Optional[int] = None,
        replica_hyperparams: Optional[Mapping[str, Any]] = None,
        state: Optional[TrainState] = None) -> FitResult:
    """Train with the SA driver: chunks of ``step`` fused in one jitted ``lax.scan``.

    Args:
      estimator, optimizer: what to iterate (``Estimator`` and an optax transform;
        see :func:`per_group` for one transform per parameter group).
      params: initial parameters; with ``replicas=R`` every leaf has a leading
        axis R (e.g. ``jax.vmap(spec.init)(keys)``).
      data: ``[N, ...]`` training set; it is put on the device once.
      key: the run's PRNG key (replica r uses ``fold_in(key, r)``).
      batch_size: minibatch size B; an epoch is N // B steps.
      epochs / num_steps: length of the run (exactly one of them).
      chunk_steps: steps per jitted chunk (host round trip); must divide the
        steps per epoch.  Default: one epoch.
      preprocess: ``(key, x) -> x`` applied to every batch (dynamic binarization).
      require_binary: validate that ``data`` is binary (Bernoulli likelihood
        without a binarizing ``preprocess``).
      eval_fn: ``(params, step) -> dict`` run every ``eval_every`` chunks and at the end.
      log_path: JSON-lines metrics log (one record per chunk).
      checkpoint_dir: orbax checkpoints every ``checkpoint_every`` chunks and at
        the end; with ``resume`` an existing checkpoint there is restored first.
      mesh: a ``jax.sharding.Mesh`` with a ``"data"`` axis: the batch is sharded
        over it, parameters replicated (data parallelism).
      replicas: train R independent runs of the same shapes in one program (vmap).
      replica_hyperparams: per-replica values ``{name: [R]}`` for an optimizer made
        with ``optax.inject_hyperparams`` (e.g. learning rates).
      state: continue from this carry instead of initializing.

    Returns:
      ``FitResult(state, history)``; history holds per chunk the mean of every
      metric, ``step``, ``epoch``, ``seconds`` and the evaluation results.

    Raises:
      NonFiniteError: a metric or parameter became non-finite; the message names
        the step, and the last good checkpoint is kept.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    data = check_data(data, name="data", binary=require_binary)
    n = int(np.shape(data)[0])
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the number of examples N={n}")
    spe = n // batch_size
    if (epochs is None) == (num_steps is None):
        raise ValueError("give exactly one of epochs or num_steps")
    total = int(round(epochs * spe)) if epochs is not None else check_positive_int("num_steps", num_steps)
    chunk = spe if chunk_steps is None else check_positive_int("chunk_steps", chunk_steps)
    if spe % chunk:
        raise ValueError(f"chunk_steps={chunk} must divide the steps per epoch ({spe} = N // batch_size)")
    eval_every = check_positive_int("eval_every", eval_every)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)

    sharding = None
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec as P

        if "data" not in mesh.axis_names:
            raise ValueError(f"mesh needs an axis named 'data', has {mesh.axis_names}")
        ndev = mesh.shape["data"]
        if batch_size % ndev:
            raise ValueError(f"batch_size={batch_size} must be divisible by the {ndev} devices of the mesh")
        # auto axes: XLA propagates the batch sharding (make_mesh may default to explicit axes)
        mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names)
        sharding = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        data = jax.device_put(jnp.asarray(data), replicated)
    else:
        data = jnp.asarray(data)

    step = make_step(estimator, optimizer, preprocess)
    if replicas is not None:
        replicas = check_positive_int("replicas", replicas)
        rkeys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(replicas))
        init = lambda: jax.vmap(lambda k, p: init_train_state(estimator, optimizer, k, p, data))(rkeys, params)
    else:
        init = lambda: init_train_state(estimator, optimizer, key, params, data)
    if state is None:
        state = init()
        if replica_hyperparams:
            if replicas is None or not hasattr(state.opt_state, "hyperparams"):
                raise ValueError("replica_hyperparams needs replicas=R and an optimizer made with "
                                 "optax.inject_hyperparams")
            hp = dict(state.opt_state.hyperparams)
            for name, value in replica_hyperparams.items():
                if name not in hp:
                    raise ValueError(f"unknown hyperparameter {name!r}; the optimizer has {sorted(hp)}")
                value = jnp.asarray(value, hp[name].dtype)
                if value.shape != (replicas,):
                    raise ValueError(f"replica_hyperparams[{name!r}] must have shape ({replicas},), got {value.shape}")
                hp[name] = value
            state = state._replace(opt_state=state.opt_state._replace(hyperparams=hp))
    if checkpoint_dir is not None and resume:
        found = latest_checkpoint(checkpoint_dir)
        if found is not None:
            state = restore_checkpoint(found, state)
    _probe(step, state if replicas is None else jax.tree_util.tree_map(lambda a: a[0], state),
           data, batch_size)
    if mesh is not None:
        state = jax.device_put(state, replicated)
    # the chunk donates its carry: copy once so the caller's arrays stay valid
    state = jax.tree_util.tree_map(jnp.copy, state)

    def current_step(s):
        return int(np.asarray(jax.device_get(s.step)).reshape(-1)[0])

    compiled = {}

    def chunk_runner(n_steps):
        if n_steps not in compiled:
            fn = _chunk_fn(step, batch_size, n, n_steps, sharding)
            if replicas is not None:
                fn = jax.vmap(fn, in_axes=(0, None))
            compiled[n_steps] = jax.jit(fn, donate_argnums=0)
        return compiled[n_steps]

    log_file = None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "a")
    bar = None
    t0 = current_step(state)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=min(t0, total), unit="step", dynamic_ncols=True)
    history, last_good, n_chunks = [], None, 0
    try:
        while (s := current_step(state)) < total:
            n_steps = min(chunk - s % chunk, total - s)
            tic = time.perf_counter()
            new_state, metrics = chunk_runner(n_steps)(state, data)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - tic
            bad = _first_nonfinite(metrics)
            if bad is None and not _finite_tree(new_state.params):
                bad = ("params", n_steps - 1)
            if bad is not None:
                where = f"; last good checkpoint: {last_good}" if last_good else ""
                raise NonFiniteError(f"non-finite {bad[0]} at step {s + bad[1] + 1} "
                                     f"(chunk starting at step {s}){where}")
            state, n_chunks = new_state, n_chunks + 1
            s = current_step(state)
            record = {"step": s, "epoch": s / spe, "seconds": seconds, **_summarize(metrics)}
            if eval_fn is not None and (n_chunks % eval_every == 0 or s >= total):
                record.update({f"eval/{k}": v for k, v in eval_fn(state.params, s).items()})
            history.append(record)
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if checkpoint_dir is not None and (n_chunks % checkpoint_every == 0 or s >= total):
                last_good = save_checkpoint(checkpoint_dir, state)
            if bar is not None:
                bar.update(n_steps)
                bar.set_postfix({k: _fmt(v) for k, v in record.items()
                                 if k not in ("step", "epoch", "seconds")}, refresh=False)
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
    return FitResult(state, history)


def _fmt(v):
    if isinstance(v, list):
        return f"{np.mean(v):.4g}±{np.std(v):.2g}"
    return f"{v:.4g}" if isinstance(v, float) else v
