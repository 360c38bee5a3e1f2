"""Small RBMs on binarized MNIST, exact test log-likelihood: sajax PCD-1 and CD-1 against scikit-learn.

Three learners of the same binary RBM (784 visibles, ``--hidden`` H hiddens, default 25),
side by side in one run, with the same data, epochs, batch size B and step size:

* ``sajax PCD-1``: ``sajax.estimators.pcd(spec, kernel="gibbs", num_chains=B, num_moves=1)``, SML /
  persistent contrastive divergence (Tieleman 2008; review Sec. 4.2.1, Algorithm 7, Eq. 39):
  B persistent chains, one block-Gibbs sweep each per iteration, trained by ``sajax.sa.fit``
  with ``optax.sgd(lr)``;
* ``sajax CD-1``: ``sajax.estimators.cd(spec, num_moves=1)`` (Hinton 2002): Algorithm 7 with the
  chains restarted at the data minibatch every iteration, same driver and optimizer;
* ``sklearn PCD-1``: ``sklearn.neural_network.BernoulliRBM`` (its ``fit`` is PCD-1, Tieleman
  2008) with ``n_components=H, learning_rate=lr, batch_size=B, n_iter=epochs``.

Step sizes are the same.  scikit-learn's source (``BernoulliRBM._fit``, checked in 1.9.1)
does ``lr = learning_rate / v_pos.shape[0]`` and then ``W += lr * (v_posᵀ p(h|v_pos) -
v_negᵀ p(h|v_neg))`` (likewise for both biases): plain SGD on the batch *mean* of the SML
gradient, with Rao-Blackwellized (mean-field) hiddens in both phases, no momentum and no
weight decay.  sajax's SML estimate is mean ∇u(data) - mean ∇u(chains) with
u(v) = bᵀv + Σ_j softplus(c_j + (vᵀW)_j), whose gradient is the same mean-field expression,
and ``optax.sgd(lr)`` steps by lr times it; so ``learning_rate = lr`` needs no conversion.
Known differences, none of them in the step size: sklearn visits fixed contiguous minibatches
in the same order every epoch (``gen_even_slices``, no shuffling; ceil(N/B) batches), sajax a
fresh permutation per epoch (N // B batches); sklearn's chains start from h = 0 (so the first
negative v is Bernoulli(1/2) noise), sajax's PCD chains from B training rows (``init="data"``);
both draw W ~ N(0, 0.01²), b = c = 0, but from different random streams.  sklearn is given
float32 arrays, so it trains in float32 as sajax does.

Evaluation is the same function for all three: the learned weights are put into sajax's
layout θ = {"W": [V, H], "b": [V], "c": [H]} (sklearn: ``components_.T``,
``intercept_visible_``, ``intercept_hidden_``) and log p(v) = u(v) - log Z(θ) is averaged
over the test (and training) images, with u = ``sajax.models.rbm(V, H).model.potential``
and log Z = ``sajax.models._rbm.rbm_log_partition(θ, max_units=H)``, exact by enumerating
the 2^H hidden configurations: 2^25 x 784 softplus terms, 1-2 minutes per model for H = 25
on 2 CPU cores (106 s measured with another job running), which dominates a CPU run.

Data: ``sajax.data.load_mnist("train")`` (50,000) fixed-binarized with seed 0, ``("test")``
(10,000) with seed 1, the first ``--max-train`` / ``--max-test`` rows of those arrays.

Timing, the same way for all three: a wall clock stamped at the start of every epoch and
when training returns (sajax: a ``sajax.sa.Hook``, one jitted chunk = one epoch, whose
metrics are fetched to the host, so the stamp follows finished work; sklearn: a wrapper on
the estimator's per-minibatch ``_fit`` that stamps the first minibatch of each epoch).  The
table gives the median seconds of epochs 2..E (steady state: sajax's first epoch includes
tracing and XLA compilation), the first epoch separately, and the whole training call.

The table in ``results/rbm_exact_sklearn_cpu.md`` (50k / 10k images, H = 20, 10 epochs; about
2 minutes on 2 shared cores: log Z takes seconds at H = 20, 1-2 minutes per model at H = 25)::

    python benchmarks/rbm_exact_sklearn.py --hidden 20 --epochs 10 --name rbm_exact_sklearn_cpu --out benchmarks/results

Smoke test::

    python benchmarks/rbm_exact_sklearn.py --hidden 8 --epochs 2 --max-train 2000 --max-test 500 --out /tmp/smoke
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sajax.core import POTENTIAL
from sajax.data import fixed_binarize, load_mnist
from sajax.estimators import cd, pcd
from sajax.models import rbm
from sajax.models._rbm import rbm_log_partition
from sajax.sa import Hook, fit

METHODS = ("sajax PCD-1", "sajax CD-1", "sklearn PCD-1")
_log_partition = jax.jit(rbm_log_partition, static_argnames=("kind", "max_units"))


def load_data(max_train=None, max_test=None):
    """Fixed-binarized MNIST, float32 ``[N, 784]``: train (seed 0) and test (seed 1), first rows kept."""
    x_train = fixed_binarize(load_mnist("train"), seed=0)[:max_train]
    x_test = fixed_binarize(load_mnist("test"), seed=1)[:max_test]
    return np.ascontiguousarray(x_train), np.ascontiguousarray(x_test)


class EpochClock(Hook):
    """Stamps ``time.perf_counter()`` before the first chunk and after every chunk (one chunk = one epoch)."""

    def __init__(self):
        self.stamps = []

    def on_start(self, carry):
        self.stamps.append(time.perf_counter())

    def on_chunk(self, carry, record, metrics):
        self.stamps.append(time.perf_counter())


def train_sajax(method, x_train, args):
    """Train one sajax estimator with ``sajax.sa.fit`` and ``optax.sgd``.

    Returns ``(θ as numpy dict, per-epoch seconds, whole fit seconds)``.
    """
    spec = rbm(x_train.shape[1], args.hidden)
    if method == "sajax PCD-1":
        estimator = pcd(spec, kernel="gibbs", num_chains=args.batch_size, num_moves=1)
    else:
        estimator = cd(spec, num_moves=1)
    k_init, k_fit = jax.random.split(jax.random.PRNGKey(args.seed))
    clock = EpochClock()
    tic = time.perf_counter()
    result = fit(estimator, optax.sgd(args.lr), spec.init(k_init), x_train, key=k_fit,
                 batch_size=args.batch_size, epochs=args.epochs, require_binary=True,
                 progress=False, hooks=[clock])
    total = time.perf_counter() - tic
    theta = {k: np.asarray(v) for k, v in jax.device_get(result.state.params[POTENTIAL]).items()}
    return theta, list(np.diff(clock.stamps)), total


def _stamp_epochs(model, n_batches):
    """Wrap ``model._fit`` (one minibatch update) to stamp the start of every epoch; returns the stamps."""
    stamps, inner, calls = [], model._fit, [0]

    def timed(*args, **kwargs):
        if calls[0] % n_batches == 0:
            stamps.append(time.perf_counter())
        calls[0] += 1
        return inner(*args, **kwargs)

    model._fit = timed
    return stamps


def train_sklearn(x_train, args):
    """Train ``sklearn.neural_network.BernoulliRBM`` (PCD-1) with its own ``fit``.

    Returns ``(θ in sajax's layout, per-epoch seconds, whole fit seconds)``.
    """
    from sklearn.neural_network import BernoulliRBM

    model = BernoulliRBM(n_components=args.hidden, learning_rate=args.lr, batch_size=args.batch_size,
                         n_iter=args.epochs, random_state=args.seed)
    stamps = _stamp_epochs(model, math.ceil(x_train.shape[0] / args.batch_size))
    tic = time.perf_counter()
    model.fit(x_train)
    stamps.append(time.perf_counter())
    total = time.perf_counter() - tic
    theta = {"W": np.asarray(model.components_.T, np.float32),
             "b": np.asarray(model.intercept_visible_, np.float32),
             "c": np.asarray(model.intercept_hidden_, np.float32)}
    return theta, list(np.diff(stamps)), total


def exact_log_likelihood(theta, xs):
    """Mean exact log p(v) = u(v) - log Z(θ) (nats) over each array in ``xs``; also log Z and its seconds."""
    theta = {k: jnp.asarray(v, jnp.float32) for k, v in theta.items()}
    V, H = theta["W"].shape
    tic = time.perf_counter()
    log_z = float(_log_partition(theta, max_units=H))
    seconds = time.perf_counter() - tic
    potential = rbm(V, H).model.potential
    means = [float(jnp.mean(potential(theta, jnp.asarray(x)))) - log_z for x in xs]
    return means, log_z, seconds


def run_method(method, x_train, x_test, args):
    """Train one method, score it exactly, and return its table row (a dict)."""
    if method == "sklearn PCD-1":
        theta, epochs, total = train_sklearn(x_train, args)
    else:
        theta, epochs, total = train_sajax(method, x_train, args)
    (test_ll, train_ll), log_z, z_seconds = exact_log_likelihood(theta, [x_test, x_train])
    steady = epochs[1:] or epochs
    return {"method": method, "test_log_likelihood": test_ll, "train_log_likelihood": train_ll,
            "log_z": log_z, "log_z_seconds": z_seconds, "epoch_seconds": epochs,
            "median_epoch_seconds": statistics.median(steady), "first_epoch_seconds": epochs[0],
            "train_seconds": total}


def environment():
    """Versions and machine, for the note under the table."""
    from importlib.metadata import version

    names = ("jax", "jaxlib", "optax", "numpy", "scikit-learn", "sajax")
    return {"python": platform.python_version(), **{n: version(n) for n in names},
            "device": jax.devices()[0].platform, "cores": os.cpu_count(), "load_average": list(os.getloadavg())}


def render(rows, args, command, env, n_train, n_test):
    """The markdown report: header with the command, one row per method, a note on versions."""
    machine = f"{env['device'].upper()}, {env['cores']} cores" if env["device"] == "cpu" else env["device"]
    lines = [f"# RBM (784-{args.hidden}) on binarized MNIST, exact log-likelihood: sajax vs scikit-learn", "",
             f"Command: `{command}`", "",
             f"{args.epochs} epochs, batch {args.batch_size}, plain SGD lr {args.lr}, seed {args.seed}; "
             f"{n_train} training / {n_test} test images (fixed binarization, seeds 0 / 1). "
             f"log Z exact (2^{args.hidden} hidden configurations). Seconds per epoch: median of epochs "
             f"2..{args.epochs} (wall clock at epoch boundaries; sajax's first epoch includes compilation).", "",
             "| method | test log-lik (nats) | train log-lik (nats) | log Z | s / epoch (median) | "
             "first epoch s | train s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['test_log_likelihood']:.2f} | {r['train_log_likelihood']:.2f} | "
                     f"{r['log_z']:.2f} | {r['median_epoch_seconds']:.3f} | {r['first_epoch_seconds']:.2f} | "
                     f"{r['train_seconds']:.1f} |")
    lines += ["", f"Machine: {machine} (load average at start {env['load_average'][0]:.2f}). "
              f"Versions: jax {env['jax']}, jaxlib {env['jaxlib']}, optax {env['optax']}, "
              f"scikit-learn {env['scikit-learn']}, numpy {env['numpy']}, Python {env['python']}."]
    return lines


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=25, help="hidden units H (log Z enumerates 2^H)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--max-train", type=int, default=None, help="keep the first N training images")
    p.add_argument("--max-test", type=int, default=None, help="keep the first N test images")
    p.add_argument("--name", default="rbm_exact_sklearn")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is not timed in the median)")
    return args


def main(argv=None):
    args = parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    env = environment()
    x_train, x_test = load_data(args.max_train, args.max_test)
    rows = []
    for method in args.methods:
        rows.append(run_method(method, x_train, x_test, args))
        print(f"{method}: test log-lik {rows[-1]['test_log_likelihood']:.2f}", flush=True)
    lines = render(rows, args, command, env, x_train.shape[0], x_test.shape[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    record = {"command": command, "config": vars(args), "n_train": int(x_train.shape[0]),
              "n_test": int(x_test.shape[0]), "environment": env, "rows": rows}
    (out / f"{args.name}.json").write_text(json.dumps(record, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
