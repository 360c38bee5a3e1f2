"""Across processes on one machine (jax.distributed, gloo CPU collectives): two processes
with two virtual CPU devices each, started by ``sajax launch``.

One worker script (``WORKER``) runs every case, a few per process start (starting a
process and importing JAX costs seconds on two cores):

* ``killed`` (2 processes x 2 devices): five kinds of bad input, each one clear error on
  every process before any step; then 50 data-parallel steps, paused at step 20 (after
  its checkpoint), where the test kills process 1 with SIGKILL: the launcher stops
  process 0 and exits nonzero;
* ``resumed`` (both restarted): the run resumes from step 20 to 50; an uninterrupted run
  of 50 steps; a replica sweep of 8 learning rates (2 per device);
* ``reference`` in one process with four devices, as a one-process gloo job (the same
  all-reduce) and as a plain process (JAX's in-process CPU collectives).

Equality: with the same collectives the 2 x 2 run equals the 1 x 4 run bit for bit (the
data set's rows are split over the processes, but a minibatch gathers the same rows
exactly, and gloo reduces the four devices' gradients in the same order).  Against the
plain process, the all-reduce adds the four partial gradients in another order (float
addition is not associative), so the parameters agree to within 5e-5 absolute, not bit for
bit: a last-bit difference per step, grown over 50 Adam steps on parameters up to about 4
(50 x 4 x float32's 1.2e-7 = 2.4e-5; 3e-6 observed).  Replicas never communicate: the sweep
over 2 x 2 devices equals the sweep in one process bit for bit, and each replica equals its
single run within the same 5e-5 (vmapped vs. unbatched float32 matmuls differ in the last
bit; 9e-6 observed at lr 0.2).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_mnist import fake_mnist_dir

WORKER = r'''
"""Worker of tests/test_distributed.py: one process of a job (or a single-process reference)."""
import json, os, sys, time
from sajax import distributed
distributed.initialize()
import jax, jax.numpy as jnp, numpy as np, optax
from sajax import sa
from sajax.core import Estimate, Estimator, neg

MODE, OUT = sys.argv[1], sys.argv[2]
RANK = jax.process_index()
D, H = 6, 3
DATA = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (160, D)), np.float32)
PARAMS = {"model": {"W": 0.1 * jnp.ones((H, D)), "b": jnp.zeros(D)}, "guide": {"V": 0.1 * jnp.ones((D, H))}}
KW = dict(key=jax.random.PRNGKey(5), batch_size=16, num_steps=50, chunk_steps=5, progress=False)


def estimator():
    """A tiny noisy autoencoder (two parameter groups, matrices, keys, per-example state)."""
    def loss(params, key, x):
        h = jnp.tanh(x @ params["guide"]["V"] + 0.1 * jax.random.normal(key, (x.shape[0], H)))
        xr = jax.nn.sigmoid(h @ params["model"]["W"] + params["model"]["b"])
        return jnp.mean(jnp.sum((x - xr) ** 2, axis=1))

    def estimate(params, state, key, batch):
        value, grads = jax.value_and_grad(loss)(params, key, batch.x)
        return Estimate(grads, {"seen": state["seen"].at[batch.index].add(1)}, {"loss": value})

    return Estimator(lambda key, params, data: {"seen": jnp.zeros((data.shape[0],), jnp.int32)}, estimate)


T0 = time.perf_counter()


def save(name, res):
    print(f"[{time.perf_counter() - T0:.1f}s] {name}", flush=True)
    host = sa._distributed.host_local((res.state.params, res.state.est_state))
    if RANK == 0:
        np.savez(f"{OUT}/{name}.npz", *[np.asarray(a) for a in jax.tree_util.tree_leaves(host)])


class Pause(sa.Hook):
    """Marks step 20 (its checkpoint is saved) and waits there to be killed."""
    def on_chunk(self, carry, record, metrics):
        if record["step"] == 20:
            open(f"{OUT}/at20_p{RANK}", "w").write(str(os.getpid()))
            time.sleep(300)


class Started(sa.Hook):
    def on_start(self, carry):
        raise AssertionError("a step started")


def bad_inputs(mesh):
    errors = {}
    cases = {
        "rows": lambda: sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA[:158], mesh=mesh, **KW),
        "local_rows": lambda: sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA[:80 + 4 * RANK], mesh=mesh,
                                     local_data=True, **KW),
        "replicas": lambda: sa.fit(estimator(), optax.adam(0.05), jax.tree_util.tree_map(lambda a: jnp.stack([a] * 6), PARAMS),
                                   DATA, mesh=mesh, replicas=6, **KW),
        "seed": lambda: sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh,
                               **{**KW, "key": jax.random.PRNGKey(5 + RANK)}),
        "setting": lambda: sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh, fingerprint={"lr": 0.05 + RANK}, **KW),
    }
    for name, case in cases.items():
        try:
            case()
        except ValueError as err:
            errors[name] = str(err)
    if RANK == 0:
        json.dump(errors, open(f"{OUT}/errors.json", "w"))


def sweep(mesh):
    lrs = jnp.array([0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005])
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a] * 8), PARAMS)
    return sa.fit(estimator(), opt, params, DATA, mesh=mesh, replicas=8,
                  replica_hyperparams={"learning_rate": lrs}, **KW), lrs


def main():
    t0 = time.perf_counter()
    mesh = distributed.global_mesh()
    if MODE == "killed":
        bad_inputs(mesh)
        sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh, checkpoint_dir=f"{OUT}/ck",
               checkpoint_every=2, hooks=[Pause()], **KW)
    elif MODE == "resumed":
        res = sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh, checkpoint_dir=f"{OUT}/ck",
                     checkpoint_every=2, **KW)
        save("resumed", res)
        save("dp", sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh, **KW))
        save("sweep", sweep(mesh)[0])
    elif MODE == "reference":   # one process, four devices: plain, or a one-process gloo job
        save("dp", sa.fit(estimator(), optax.adam(0.05), PARAMS, DATA, mesh=mesh, **KW))
        if not distributed.is_initialized():
            res, lrs = sweep(mesh)
            save("sweep", res)
            for r in range(8):   # learning rates in the optimizer's state: one program, compiled once
                opt = optax.inject_hyperparams(optax.adam)(learning_rate=float(lrs[r]))
                single = sa.fit(estimator(), opt, PARAMS, DATA, **{**KW, "key": jax.random.fold_in(KW["key"], r)})
                save(f"single{r}", single)
    print(f"{MODE} done in {time.perf_counter() - t0:.1f}s", flush=True)


main()
'''


def _launch(tmp: Path, mode: str, processes: int, devices: int, **popen):
    cmd = [sys.executable, "-m", "sajax.cli", "launch", "--processes", str(processes), "--devices-per-process",
           str(devices), "--", sys.executable, str(tmp / "worker.py"), mode, str(tmp / "out")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _plain(tmp: Path, out: Path):
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4")
    return subprocess.Popen([sys.executable, str(tmp / "worker.py"), "reference", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc, timeout=240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"timed out:\n{out[-3000:]}")
    return out


def _wait_for(paths, proc, timeout=180.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if proc.poll() is not None or time.monotonic() > deadline:
            out = _finish(proc, 10)
            pytest.fail(f"the job ended (or hung) before step 20:\n{out[-4000:]}")
        time.sleep(0.1)


def _load(path: Path) -> list:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def _same(a: Path, b: Path, **tol) -> None:
    for x, y in zip(_load(a), _load(b), strict=True):
        if tol and np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, **tol)
        else:
            np.testing.assert_array_equal(x, y)


TINY = ["--no-progress", "--set", "epochs=2", "--set", "batch_size=20", "--set", "eval_k=20", "--set", "eval_n=30",
        "--set", "eval_batch=10"]


def _cli_sweep(tmp: Path):
    """``sajax launch --processes 2 --devices-per-process 2 -- train vae-mnist --replicas 4 --sweep lr=...``."""
    cmd = [sys.executable, "-m", "sajax.cli", "launch", "--processes", "2", "--devices-per-process", "2", "--",
           "train", "vae-mnist", "--out", str(tmp / "sweep"), "--replicas", "4", "--sweep", "lr=1e-3,3e-4", *TINY]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run every process of the module once: {name: (output, exit status)} and the folders."""
    tmp = tmp_path_factory.mktemp("distributed")
    (tmp / "worker.py").write_text(WORKER)
    for d in ("out", "plain", "gloo", "data"):
        (tmp / d).mkdir()
    t0 = time.perf_counter()
    with fake_mnist_dir(tmp / "data", sizes=(200, 40, 60), seed=0):
        cli = _cli_sweep(tmp)
    plain = _plain(tmp, tmp / "plain")
    killed = _launch(tmp, "killed", 2, 2)
    _wait_for([tmp / "out" / f"at20_p{r}" for r in range(2)], killed)
    victim = int((tmp / "out" / "at20_p1").read_text())
    os.kill(victim, signal.SIGKILL)
    runs = {"killed": (_finish(killed), killed.returncode),
            "checkpoints": sorted(p.name for p in (tmp / "out" / "ck").iterdir())}
    resumed = _launch(tmp, "resumed", 2, 2)
    runs["resumed"] = (_finish(resumed), resumed.returncode)
    t_2x2 = time.perf_counter()
    gloo = subprocess.Popen([sys.executable, "-m", "sajax.cli", "launch", "--processes", "1",
                             "--devices-per-process", "4", "--", sys.executable, str(tmp / "worker.py"),
                             "reference", str(tmp / "gloo")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    runs["gloo"] = (_finish(gloo), gloo.returncode)
    runs["plain"] = (_finish(plain), plain.returncode)
    runs["cli"] = (_finish(cli), cli.returncode)
    print(f"distributed job: {time.perf_counter() - t0:.1f}s (2x2 part {t_2x2 - t0:.1f}s)")
    return tmp, runs


def test_a_killed_process_stops_the_job_cleanly(job):
    tmp, runs = job
    out, code = runs["killed"]
    assert code == 128 + signal.SIGKILL, out[-3000:]
    assert "[launch] process 1 exited with status -9; stopping the others" in out
    assert runs["checkpoints"] == ["step_000000010", "step_000000020"], out[-3000:]
    assert re.search(r"^\[p0\] ", out, re.M) and re.search(r"^\[p1\] ", out, re.M)   # output prefixed


def test_bad_input_fails_before_any_step_on_every_process(job):
    tmp, runs = job
    errors = json.loads((tmp / "out" / "errors.json").read_text())
    assert "158 rows do not split over the 4 devices of the 2 processes" in errors["rows"]
    assert "settings differ across the 2 processes" in errors["local_rows"] and "data shape" in errors["local_rows"]
    assert "replicas=6 must be divisible by the 4 devices of the mesh" in errors["replicas"]
    assert "key (seed) (process 1 differs from process 0)" in errors["seed"]
    assert "fingerprint (process 1 differs from process 0)" in errors["setting"]
    assert "no step was run" in errors["seed"]


def test_two_processes_equal_one_process_with_four_devices(job):
    tmp, runs = job
    for name in ("resumed", "gloo", "plain"):
        assert runs[name][1] == 0, f"{name}:\n{runs[name][0][-4000:]}"
    _same(tmp / "out" / "dp.npz", tmp / "gloo" / "dp.npz")                            # bit for bit
    _same(tmp / "out" / "dp.npz", tmp / "plain" / "dp.npz", rtol=1e-5, atol=5e-5)     # another sum order


def test_restart_after_kill_resumes_to_the_same_result(job):
    tmp, runs = job
    out, code = runs["resumed"]
    assert code == 0, out[-4000:]
    _same(tmp / "out" / "resumed.npz", tmp / "out" / "dp.npz")


def test_replica_sweep_over_processes_equals_single_runs(job):
    tmp, runs = job
    _same(tmp / "out" / "sweep.npz", tmp / "plain" / "sweep.npz")
    sweep = _load(tmp / "out" / "sweep.npz")
    for r in range(8):
        single = _load(tmp / "plain" / f"single{r}.npz")
        for x, y in zip(sweep, single, strict=True):
            np.testing.assert_allclose(x[r], y, rtol=1e-5, atol=5e-5)


def test_cli_sweep_over_two_processes_writes_one_run_directory(job):
    tmp, runs = job
    out, code = runs["cli"]
    assert code == 0, out[-4000:]
    run = tmp / "sweep"
    for name in ("config.json", "metrics.jsonl", "sweep.json", "sweep.md", "sweep.png", "summary.json"):
        assert (run / name).exists(), name
    sweep = json.loads((run / "sweep.json").read_text())
    assert sweep["key"] == "lr" and sweep["values"] == [1e-3, 3e-4] and len(sweep["replicas"]) == 4
    assert [g["replicas"] for g in sweep["by_value"]] == [[0, 2], [1, 3]]
    assert all(np.isfinite(r["test_nll"]) for r in sweep["replicas"])
    assert "| lr | replicas |" in (run / "sweep.md").read_text()
    assert out.count("run directory:") == 1 and "[p0] run directory:" in out      # process 0 writes
