"""``fit`` over a mesh, in one process or across the processes of a ``jax.distributed`` job.

Where things live (D devices in the mesh's ``"data"`` axis, P processes):

* data parallelism (``mesh=``, no replicas): the training set is one global
  ``[N, ...]`` array sharded by rows over the D devices (process p holds the p-th
  block, fed with ``jax.make_array_from_process_local_data``), or, in one process,
  replicated on every device as before; every minibatch is drawn with the same
  global permutation as in one process and sharded over the D devices; the carry
  (parameters, optimizer and estimator state) is replicated: one identical state;
* replicas (``mesh=`` and ``replicas=R``): the replica axis of the carry is
  sharded over the D devices (R/D replicas each), the data replicated.

Before the first step the processes compare a fingerprint of their settings
(:func:`check_same`) so that a job whose processes disagree (another seed, batch
size, data set, recipe setting) stops with one error on every process instead of
training on garbage or hanging.
"""
from __future__ import annotations

import hashlib
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

__all__ = ["Placement", "multiprocess", "is_primary", "check_layout", "check_same", "place", "to_global",
           "host_local", "barrier", "first_value"]


class Placement(NamedTuple):
    """Where ``fit`` runs: the data on the device(s), the minibatch's sharding (None:
    none), the carry's sharding (None: wherever it is) and concrete rows for the probe."""

    data: Any
    batch_sharding: Any
    carry_sharding: Any
    probe_rows: Any


def multiprocess(mesh) -> bool:
    """Whether ``mesh`` spans devices of more than one process."""
    return mesh is not None and len({d.process_index for d in np.asarray(mesh.devices).flat}) > 1


def is_primary() -> bool:
    """Process 0 (the one that logs and shows progress); True in a single-process run."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (a no-op in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _data_axis(mesh) -> int:
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh needs an axis named 'data', has {mesh.axis_names}")
    return int(mesh.shape["data"])


def check_layout(mesh, *, num_rows: int, batch_size: int, replicas: Optional[int], local_data: bool) -> int:
    """Check that the run splits over ``mesh``; return the global number of rows N.

    ``num_rows`` is this process's ``data`` length: the whole set, or with
    ``local_data`` this process's block (then N = P × num_rows).
    """
    ndev, procs = _data_axis(mesh), jax.process_count() if multiprocess(mesh) else 1
    if local_data and not multiprocess(mesh):
        raise ValueError("local_data=True needs a mesh over the devices of several processes "
                         "(sajax.distributed.initialize, then global_mesh())")
    if replicas is not None:
        if local_data:
            raise ValueError("replicas over a mesh need every process to pass the whole data set "
                             "(local_data=False): each replica trains on all of it")
        if replicas % ndev:
            raise ValueError(f"replicas={replicas} must be divisible by the {ndev} devices of the mesh "
                             f"({procs} process(es)), so that each device trains the same number of replicas")
        return num_rows
    if batch_size % ndev:
        raise ValueError(f"batch_size={batch_size} must be divisible by the {ndev} devices of the mesh")
    n = num_rows * procs if local_data else num_rows
    if procs > 1 and n % ndev:
        raise ValueError(f"the data set's {n} rows do not split over the {ndev} devices of the {procs} processes "
                         f"(N % {ndev} = {n % ndev}): each device holds an equal block of rows; use a multiple "
                         f"of {ndev} rows")
    return n


def place(data: np.ndarray, mesh, *, batch_size: int, replicas: Optional[int], local_data: bool) -> Placement:
    """The data on the mesh and the shardings of the minibatch and the carry (see the module)."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.sharding.Mesh(mesh.devices, mesh.axis_names)   # auto axes: XLA propagates the shardings
    replicated, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    probe = np.resize(data, (max(batch_size, 1),) + data.shape[1:]) if len(data) < batch_size else data
    if replicas is not None:
        return Placement(_global(data, replicated, local=False), None, rows, probe)
    if not multiprocess(mesh):
        return Placement(jax.device_put(jax.numpy.asarray(data), replicated), rows, replicated, None)
    return Placement(_global(data, rows, local=local_data), rows, replicated, probe)


def _global(data: np.ndarray, sharding, *, local: bool):
    """A global array of ``data``: this process's block (``local``) or cut from the whole set."""
    if local:
        return jax.make_array_from_process_local_data(sharding, data)
    return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_to_global(x, sharding):
    if _is_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_leaf_to_global(jax.random.key_data(x), sharding), impl=impl)
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_global(tree, sharding):
    """Every leaf of ``tree`` (process-local values, equal on every process) as a global
    array with ``sharding``."""
    return jax.tree_util.tree_map(lambda x: _leaf_to_global(x, sharding), tree)


def _leaf_to_host(x):
    if _is_key(x):
        return jax.random.wrap_key_data(_leaf_to_host(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return x
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_local(tree):
    """``tree`` with every global (multi-process) array as a host copy of its whole value;
    local arrays are left as they are.  Collective when some leaf is sharded over processes:
    every process must call it at the same point."""
    return jax.tree_util.tree_map(_leaf_to_host, tree)


def first_value(x) -> np.ndarray:
    """The first addressable shard of an array as numpy (the step counter of a carry whose
    replica axis is sharded over processes: every replica has the same step)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(jax.device_get(x))


def _feed(h, value) -> None:
    leaves, treedef = jax.tree_util.tree_flatten(value)
    h.update(str(treedef).encode())
    for leaf in leaves:
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            h.update(f"{leaf.dtype}{leaf.shape}".encode())
        elif isinstance(leaf, (np.ndarray, np.generic, jax.Array)):
            arr = np.ascontiguousarray(np.asarray(leaf))
            h.update(f"{arr.dtype}{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            h.update(repr(leaf).encode())


def _digest(value) -> np.ndarray:
    h = hashlib.blake2b(digest_size=8)
    _feed(h, value)
    return np.frombuffer(h.digest(), np.uint8)


def check_same(components: dict) -> None:
    """Compare ``{name: value}`` across the processes of the job (8-byte hashes, one
    all-gather); ValueError on every process, naming what differs, if they disagree."""
    from jax.experimental import multihost_utils

    names = list(components)
    mine = np.concatenate([_digest(components[k]) for k in names]).reshape(len(names), 8)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(names), 8)
    differ = [(name, [p for p in range(len(every)) if not np.array_equal(every[p, i], every[0, i])])
              for i, name in enumerate(names)]
    differ = [(name, procs) for name, procs in differ if procs]
    if differ:
        what = "; ".join(f"{name} (process{'es' if len(p) > 1 else ''} {', '.join(map(str, p))} differ"
                         f"{'s' if len(p) == 1 else ''} from process 0)" for name, p in differ)
        raise ValueError(f"settings differ across the {len(every)} processes of this job, so no step was run: "
                         f"{what}. Start every process with the same arguments (seed, data, settings)")
