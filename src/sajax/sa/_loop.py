"""The host loop: any pure ``step(carry, batch) -> (carry, metrics)`` run over
chunks of steps, each chunk one jitted ``lax.scan`` (on CPU, for steps with
convolutions, a Python loop over the jitted step: :func:`prefers_step_loop`), with
host-side events as hooks.

This is the driver's loop with nothing of SA in it (flax's
``examples/mnist/train.py`` keeps step, epoch and loop apart the same way;
BlackJAX keeps ``build_kernel`` apart from its inference loop): the carry is
any pytree with a ``step`` (int32 scalar, the number of steps done) and a
``key`` (the run key that orders the data) field, e.g.
:class:`sajax.sa.TrainState`.  Minibatches are drawn on the device: epoch e
is the permutation ``permutation(fold_in(k_shuffle, e))`` of the rows of
``data`` (:func:`sajax.sa.batch_indices`).  The host sees only chunk
boundaries, where it calls each hook's ``on_chunk`` in order: a hook may add
entries to the chunk's record (evaluation), save (checkpoints), write (logs),
show (progress) or stop the run by raising (non-finite guard).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import Batch
from sajax.sa._step import run_keys

__all__ = ["Hook", "run_loop", "chunk_fn", "current_step"]


class Hook:
    """A host-side event handler of :func:`run_loop`; override what you need.

    ``on_start(carry)`` once before the first chunk; ``on_chunk(carry, record,
    metrics)`` after every chunk (``record``: a dict with ``step``, ``epoch``,
    ``seconds`` and the chunk mean of every metric, which the hook may extend;
    ``metrics``: the chunk's per-step metrics ``[n_steps]``, or
    ``[R, n_steps]`` with replicas); ``on_end(carry, error)`` once at the end,
    ``error`` the exception that stopped the loop or None.  ``should_stop()``,
    asked after every chunk, ends the run early and cleanly when a hook says so
    (:class:`sajax.sa.EarlyStopping`).
    """

    def on_start(self, carry) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_chunk(self, carry, record: dict, metrics: dict) -> None:
        pass

    def on_end(self, carry, error: Optional[BaseException]) -> None:
        pass


def current_step(carry) -> int:
    """The carry's step count as a Python int (first replica's with replicas; this
    process's first shard when the replicas are sharded over processes)."""
    step = carry.step
    if isinstance(step, jax.Array) and not step.is_fully_addressable:
        step = step.addressable_data(0)
    return int(np.asarray(jax.device_get(step)).reshape(-1)[0])


def _out_shardings(carry_sharding) -> dict:
    """``jit`` keywords that keep the carry where it is and gather the metrics on every device
    (needed when they span processes: the host reads them), or nothing without a mesh."""
    if carry_sharding is None:
        return {}
    from jax.sharding import NamedSharding, PartitionSpec

    return {"out_shardings": (carry_sharding, NamedSharding(carry_sharding.mesh, PartitionSpec()))}


def _chunk_parts(step: Callable, batch_size: int, num_examples: int, sharding=None):
    """``(order, one)``: ``order(carry) -> (perm, start)``, the chunk's permutation of the
    data and its first step; ``one(carry, data, perm, start, j)``, its step ``j`` on the
    minibatch drawn on the device.  A chunk never crosses an epoch boundary when its length
    divides the steps per epoch (``fit`` guarantees it); the permutation of the chunk's first
    epoch is used for all its steps."""
    spe = num_examples // batch_size

    def order(carry):
        _, k_shuffle = run_keys(carry.key)
        start = carry.step
        return jax.random.permutation(jax.random.fold_in(k_shuffle, start // spe), num_examples), start

    def one(carry, data, perm, start, j):
        idx = jax.lax.dynamic_slice(perm, ((start % spe + j) * batch_size,), (batch_size,))
        batch = Batch(jnp.take(data, idx, axis=0), idx)
        if sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, sharding)
        return step(carry, batch)

    return order, one


def chunk_fn(step: Callable, batch_size: int, num_examples: int, n_steps: int,
             sharding=None) -> Callable:
    """``run(carry, data) -> (carry, metrics)``: ``n_steps`` of ``step`` as one
    ``lax.scan`` on minibatches drawn on the device from ``data`` ``[N, ...]``."""
    order, one = _chunk_parts(step, batch_size, num_examples, sharding)

    def run(carry, data):
        perm, start = order(carry)
        return jax.lax.scan(lambda c, j: one(c, data, perm, start, j), carry, jnp.arange(n_steps))

    return run


def _step_loop(step: Callable, batch_size: int, num_examples: int, n_steps: int, sharding=None,
               replicas: bool = False, carry_sharding=None) -> Callable:
    """The chunk of :func:`chunk_fn` as a Python loop over one jitted step: the same steps on
    the same minibatches, for programs that XLA runs slower inside a while loop."""
    order, one = _chunk_parts(step, batch_size, num_examples, sharding)
    if replicas:
        order, one = jax.vmap(order), jax.vmap(one, in_axes=(0, None, 0, 0, None))
    placed = _out_shardings(carry_sharding)
    order = jax.jit(order, **({"out_shardings": carry_sharding} if placed else {}))
    one = jax.jit(one, donate_argnums=0, **placed)

    def run(carry, data):
        perm, start = order(carry)
        metrics = []
        for j in range(n_steps):
            carry, m = one(carry, data, perm, start, jnp.int32(j))
            metrics.append(m)
        return carry, jax.tree_util.tree_map(lambda *a: jnp.stack(a, axis=-1), *metrics)

    return run


def prefers_step_loop(lowered) -> bool:
    """Whether a chunk runs faster as a Python loop over its jitted step: on XLA:CPU, when the
    step has convolutions.  Their gradients inside a while loop stay in forms that XLA:CPU
    does not hand to its convolution library (the kernel gradient keeps the layout
    ``f01b_i01o->01bf``, which the step compiled alone canonicalizes), and the recipes' steps
    run 4-36x slower (benchmarks/results/compile_time_cpu.md)."""
    return jax.default_backend() == "cpu" and "stablehlo.convolution" in lowered.as_text()


def _chunk_means(metrics: dict) -> dict:
    out = {}
    for name, values in metrics.items():
        m = np.asarray(values, dtype=np.float64).mean(axis=-1)  # keep replicas apart
        out[name] = m.tolist() if m.ndim else float(m)
    return out


def _chunk_runner(step, carry, data, batch_size: int, n: int, sharding, replicas: bool, form: str,
                  carry_sharding=None):
    """A chunk of ``n`` steps: one jitted ``lax.scan`` or, where that is slower
    (:func:`prefers_step_loop`, or ``form="loop"``), a loop over the jitted step.  The
    scan is lowered once to decide; its call reuses that lowering."""
    if form not in ("auto", "scan", "loop"):
        raise ValueError(f"form must be 'auto', 'scan' or 'loop', got {form!r}")
    num_examples = int(data.shape[0])
    if form != "loop":
        fn = chunk_fn(step, batch_size, num_examples, n, sharding)
        scan = jax.jit(jax.vmap(fn, in_axes=(0, None)) if replicas else fn, donate_argnums=0,
                       **_out_shardings(carry_sharding))
        if form == "scan" or jax.default_backend() != "cpu" or not prefers_step_loop(scan.lower(carry, data)):
            return scan
    return _step_loop(step, batch_size, num_examples, n, sharding, replicas, carry_sharding)


def run_loop(step: Callable, carry, data, *, batch_size: int, num_steps: int, chunk_steps: int,
             hooks: Sequence[Hook] = (), sharding=None, replicas: bool = False,
             form: str = "auto", carry_sharding=None) -> tuple[Any, list]:
    """Run ``step`` until ``carry.step == num_steps``, ``chunk_steps`` at a time.

    Args:
      step: pure ``(carry, Batch) -> (carry, metrics)``; metrics a dict of scalars.
      carry: initial carry with ``step`` and ``key`` fields (donated: pass a copy
        if you need the arrays afterwards).
      data: ``[N, ...]`` on the device.
      batch_size, num_steps, chunk_steps: B, the total number of steps, the
        steps per jitted chunk (chunks are cut at multiples of ``chunk_steps``).
      hooks: :class:`Hook` objects, called in order.
      sharding: optional ``NamedSharding`` for the batch (data parallelism).
      replicas: the carry has a leading replica axis; the chunk is vmapped.
      form: ``"scan"`` (a chunk is one jitted ``lax.scan``), ``"loop"`` (a Python loop over
        the jitted step, same steps and minibatches) or ``"auto"``: the loop on CPU for steps
        with convolutions (:func:`prefers_step_loop`), else the scan.
      carry_sharding: optional ``NamedSharding`` the carry keeps from chunk to chunk (the
        metrics are then gathered on every device); ``fit`` passes it for a mesh.

    Returns: ``(carry, history)``, history one record per chunk (fewer when a hook stops the run early).
    """
    compiled = {}

    def runner(n):
        if n not in compiled:
            compiled[n] = _chunk_runner(step, carry, data, batch_size, n, sharding, replicas, form, carry_sharding)
        return compiled[n]

    spe = int(data.shape[0]) // batch_size
    history, error = [], None
    for h in hooks:
        h.on_start(carry)
    try:
        while (s := current_step(carry)) < num_steps:
            n = min(chunk_steps - s % chunk_steps, num_steps - s)
            tic = time.perf_counter()
            new_carry, metrics = runner(n)(carry, data)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - tic
            carry = new_carry  # the old carry was donated to the chunk
            record = {"step": s + n, "epoch": (s + n) / spe, "seconds": seconds, **_chunk_means(metrics)}
            for h in hooks:
                h.on_chunk(carry, record, metrics)
            history.append(record)
            if any(h.should_stop() for h in hooks):
                break
    except BaseException as err:
        error = err
        raise
    finally:
        for h in hooks:
            h.on_end(carry, error)
    return carry, history
