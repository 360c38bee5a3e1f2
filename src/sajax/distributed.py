"""Running sajax on several processes (one per host) with ``jax.distributed``.

The environment-variable contract (what ``sajax launch``, a SLURM script or
``mpirun`` sets for every process, before it starts)::

    SAJAX_COORDINATOR_ADDRESS  host:port of process 0 (the coordinator)
    SAJAX_NUM_PROCESSES        how many processes the job has
    SAJAX_PROCESS_ID           this process's rank, 0 .. SAJAX_NUM_PROCESSES - 1
    SAJAX_LOCAL_DEVICES        optional: CPU devices of this process (virtual CPU devices)

Without them, :func:`initialize` falls back to what ``jax.distributed`` detects
by itself under SLURM (``srun`` with more than one task) or Open MPI
(``mpirun -n`` > 1); with none of these it is a no-op and everything runs in one
process, as before.

* :func:`initialize`: start ``jax.distributed`` (explicit arguments or the
  environment); on CPU with JAX's gloo collectives (``jax_cpu_collectives_implementation``).
* :func:`global_mesh`: a ``Mesh`` with one ``"data"`` axis over every device of
  every process (what ``sa.fit(mesh=...)`` takes).
* :func:`process_rows`: the rows of a data set that this process feeds.
* :func:`launch`: start N local processes with the contract filled in (``sajax launch``).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

__all__ = ["ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID", "ENV_LOCAL_DEVICES", "initialize",
           "is_initialized", "global_mesh", "process_rows", "free_port", "launch"]

ENV_COORDINATOR = "SAJAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "SAJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "SAJAX_PROCESS_ID"
ENV_LOCAL_DEVICES = "SAJAX_LOCAL_DEVICES"

_STATE = {"initialized": False}


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {value!r}") from None


def _cluster_detected() -> bool:
    """A SLURM step or an Open MPI job of more than one task (jax.distributed fills in the rest)."""
    for name in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        n = os.environ.get(name, "").strip()
        if n.isdigit() and int(n) > 1 and (not name.startswith("SLURM") or "SLURM_STEP_ID" in os.environ):
            return True
    return False


def _contract(coordinator_address, num_processes, process_id):
    """The explicit arguments, else the ``SAJAX_*`` variables; ValueError when incomplete."""
    address = coordinator_address or os.environ.get(ENV_COORDINATOR, "").strip() or None
    num = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    given = {"coordinator_address": address, "num_processes": num, "process_id": pid}
    if any(v is not None for v in given.values()) and any(v is None for v in given.values()):
        missing = [f"{k} (${e})" for (k, v), e in zip(given.items(), (ENV_COORDINATOR, ENV_NUM_PROCESSES,
                                                                       ENV_PROCESS_ID)) if v is None]
        raise ValueError(f"distributed run: {', '.join(missing)} not given; set all three of "
                         f"${ENV_COORDINATOR}, ${ENV_NUM_PROCESSES}, ${ENV_PROCESS_ID} or none")
    if num is not None and (num < 1 or not 0 <= pid < num):
        raise ValueError(f"distributed run: process_id must be in 0..{num - 1} and num_processes >= 1, "
                         f"got process_id={pid}, num_processes={num}")
    return given if address is not None else None


def is_initialized() -> bool:
    """Whether :func:`initialize` started ``jax.distributed`` in this process."""
    return _STATE["initialized"]


def initialize(*, coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, local_devices: Optional[int] = None,
               cpu_collectives: str = "gloo", timeout_s: int = 120) -> bool:
    """Start ``jax.distributed`` for a multi-process run; call it before any JAX computation.

    The three settings come from the arguments, else from ``$SAJAX_COORDINATOR_ADDRESS``,
    ``$SAJAX_NUM_PROCESSES`` and ``$SAJAX_PROCESS_ID``, else from SLURM / Open MPI
    (``jax.distributed``'s own detection, used only when the job has more than one task).
    ``local_devices`` (or ``$SAJAX_LOCAL_DEVICES``) sets this process's number of CPU
    devices (``jax_num_cpu_devices``; virtual devices for testing).  On CPU, processes
    talk through ``cpu_collectives`` (``"gloo"``, JAX's built-in TCP collectives; ``"mpi"``
    needs an MPI library): JAX's default, ``"none"``, cannot run a program over several processes.

    Returns: True when this process is part of a multi-process job (``jax.distributed``
    started, now or earlier), False for a plain single-process run (nothing is done).
    """
    import jax

    if _STATE["initialized"]:
        return True
    given = _contract(coordinator_address, num_processes, process_id)
    devices = local_devices if local_devices is not None else _env_int(ENV_LOCAL_DEVICES)
    if devices is not None:
        if devices < 1:
            raise ValueError(f"local_devices must be >= 1, got {devices}")
        jax.config.update("jax_num_cpu_devices", int(devices))
    if given is None and not _cluster_detected():
        return False
    if cpu_collectives not in ("gloo", "mpi"):
        raise ValueError(f"cpu_collectives must be 'gloo' or 'mpi', got {cpu_collectives!r}")
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(**(given or {}), initialization_timeout=int(timeout_s))
    _STATE["initialized"] = True
    return True


def global_mesh(axis_name: str = "data"):
    """A ``jax.sharding.Mesh`` with one axis over every device of every process (in
    process order, so process p's devices hold the p-th block of a sharded axis)."""
    import jax
    import numpy as np

    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return jax.sharding.Mesh(np.array(devices), (axis_name,))


def process_rows(num_examples: int, *, process_index: Optional[int] = None,
                 process_count: Optional[int] = None) -> slice:
    """The rows ``[p·N/P, (p+1)·N/P)`` that process p feeds in a data-parallel run
    (``sa.fit(..., local_data=True)`` takes ``data[process_rows(N)]``).

    Raises: ValueError when N does not split evenly over the P processes.
    """
    import jax

    p = jax.process_index() if process_index is None else int(process_index)
    count = jax.process_count() if process_count is None else int(process_count)
    if num_examples % count:
        raise ValueError(f"the data set's {num_examples} rows do not split over {count} processes "
                         f"({num_examples} % {count} = {num_examples % count}); use a multiple of {count} rows")
    n = num_examples // count
    return slice(p * n, (p + 1) * n)


def free_port() -> int:
    """A TCP port free on this host now (the OS picks it; bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(rank: int, processes: int, port: int, devices_per_process: Optional[int]) -> dict:
    env = dict(os.environ, **{ENV_COORDINATOR: f"127.0.0.1:{port}", ENV_NUM_PROCESSES: str(processes),
                              ENV_PROCESS_ID: str(rank), "PYTHONUNBUFFERED": "1"})
    if devices_per_process is not None:
        env[ENV_LOCAL_DEVICES] = str(devices_per_process)
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices_per_process}"])
    return env


def _forward(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()
    stream.close()


def _stop(procs, grace_s: float) -> None:
    """SIGTERM every live process, then SIGKILL what is still alive after ``grace_s``."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _supervise(procs, grace_s: float) -> int:
    """Wait for all; the first nonzero exit stops the others and is returned."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            rank, code = failed[0]
            print(f"[launch] process {rank} exited with status {code}; stopping the others", file=sys.stderr,
                  flush=True)
            _stop(procs, grace_s)
            return code if code > 0 else 128 - code
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.05)


def _terminated(signum, frame):
    raise KeyboardInterrupt


def launch(command: Sequence[str], *, processes: int, devices_per_process: Optional[int] = None,
           port: Optional[int] = None, grace_s: float = 3.0) -> int:
    """Run ``command`` as ``processes`` local processes of one ``jax.distributed`` job.

    Each gets the ``SAJAX_*`` variables (coordinator ``127.0.0.1:port``, a free port
    by default) and, with ``devices_per_process``, that many virtual CPU devices
    (``XLA_FLAGS=--xla_force_host_platform_device_count``).  Their output is forwarded
    line by line with a ``[pN]`` prefix.  When one exits with a nonzero status (or is
    killed), the others are terminated (SIGTERM, SIGKILL after ``grace_s``) and that
    status is returned; SIGTERM or Ctrl-C to the launcher stops them all.

    Returns: 0 when every process exited with 0, else the failing process's status
    (128 + N for a process killed by signal N).
    """
    if not command:
        raise ValueError("launch needs a command to run, e.g. ['python', 'train.py']")
    if not (isinstance(processes, int) and processes >= 1):
        raise ValueError(f"processes must be an int >= 1, got {processes!r}")
    if devices_per_process is not None and not (isinstance(devices_per_process, int) and devices_per_process >= 1):
        raise ValueError(f"devices_per_process must be an int >= 1, got {devices_per_process!r}")
    port = free_port() if port is None else int(port)
    procs, threads = [], []
    previous = signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        for rank in range(processes):
            p = subprocess.Popen(list(command), env=_child_env(rank, processes, port, devices_per_process),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            procs.append(p)
            print(f"[launch] process {rank}: pid {p.pid}", file=sys.stderr, flush=True)
            t = threading.Thread(target=_forward, args=(p.stdout, f"[p{rank}] ", sys.stdout), daemon=True)
            t.start()
            threads.append(t)
        code = _supervise(procs, grace_s)
    except KeyboardInterrupt:
        _stop(procs, grace_s)
        code = 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for t in threads:
        t.join(timeout=2.0)
    return code
