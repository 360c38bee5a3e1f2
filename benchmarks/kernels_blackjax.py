"""sajax's kernels against BlackJAX's on the same 2-D target: moments and moves per second.

Target: N(μ, Σ) in 2-D with μ = (1, −1), Σ = [[1, 0.8], [0.8, 1]].  ``--chains``
independent chains from N(0, 4I), ``--moves`` moves, one jitted ``lax.scan``
for each implementation (BlackJAX's step ``vmap``-ed over chains).  Reported:
the chain-end mean and covariance errors against the exact target (and, for
the unadjusted Langevin algorithm, against its exact stationary law
(Σ⁻¹ − ε/2 Σ⁻²)⁻¹, which both implementations should reach), and chain-moves
per second (median of ``--rounds``).

* ``langevin``: ``sajax.kernels.langevin`` vs ``blackjax.sgld`` with the exact
  gradient as its estimator (the same update x + ε∇log π + sqrt(2ε)ξ);
* ``mala``: ``sajax.kernels.mala`` vs ``blackjax.mala``;
* ``sghmc``: ``sajax.kernels.sghmc`` (persistent momentum, Chen et al. 2014
  Eq. 15, friction α) vs ``blackjax.sghmc`` (momentum redrawn each step, 10
  inner moves: a different scheme, so per-gradient cost is the comparable number).

BlackJAX is a benchmark-only dependency (``pip install blackjax``).

CPU (what ``results/kernels_blackjax_cpu.md`` holds)::

    python benchmarks/kernels_blackjax.py --name kernels_blackjax_cpu --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sajax.kernels import langevin, mala, repeat_moves, sghmc

MU = jnp.array([1.0, -1.0])
SIGMA = jnp.array([[1.0, 0.8], [0.8, 1.0]])
PREC = jnp.linalg.inv(SIGMA)


def log_target(x):
    d = x - MU
    return -0.5 * jnp.einsum("...i,ij,...j->...", d, PREC, d)


def ours(name, eps, moves):
    kernels = {"langevin": lambda: langevin.build_kernel(log_target, eps),
               "mala": lambda: mala.build_kernel(log_target, eps),
               "sghmc": lambda: sghmc.build_kernel(log_target, eps, friction=0.1)}
    inits = {"langevin": langevin.init, "mala": mala.init, "sghmc": sghmc.init}
    run = repeat_moves(kernels[name](), moves, keep_states=False)

    def go(key, x0):
        final, _ = run(key, inits[name](x0, log_target))
        return final.position
    return jax.jit(go)


def theirs(name, eps, moves):
    import blackjax

    grad = jax.grad(log_target)
    if name == "mala":
        alg = blackjax.mala(log_target, eps)
        step = lambda k, s: alg.step(k, s)[0]
        init, position = alg.init, lambda s: s.position
    else:
        alg = (blackjax.sgld(lambda x, _: grad(x)) if name == "langevin"
               else blackjax.sghmc(lambda x, _: grad(x), num_integration_steps=10, alpha=0.1))
        step = lambda k, s: alg.step(k, s, None, eps)
        init, position = alg.init, lambda s: s

    def go(key, x0):
        def body(states, k):
            return jax.vmap(step)(jax.random.split(k, x0.shape[0]), states), None
        states, _ = jax.lax.scan(body, jax.vmap(init)(x0), jax.random.split(key, moves))
        return position(states)
    return jax.jit(go)


def moments_row(x, eps, name):
    x = np.asarray(x, np.float64)
    cov = np.cov(x.T)
    exact = np.asarray(SIGMA, np.float64)
    row = {"mean_error": float(np.abs(x.mean(0) - np.asarray(MU)).max()),
           "cov_error_vs_target": float(np.abs(cov - exact).max())}
    if name == "langevin":
        ula = np.linalg.inv(np.linalg.inv(exact) - eps / 2 * np.linalg.inv(exact) @ np.linalg.inv(exact))
        row["cov_error_vs_ula_law"] = float(np.abs(cov - ula).max())
    return row


def timed(fn, x0, rounds):
    jax.block_until_ready(fn(jax.random.PRNGKey(0), x0))
    times, out = [], None
    for r in range(rounds):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(jax.random.PRNGKey(r + 1), x0))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=10_000)
    p.add_argument("--moves", type=int, default=1_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--name", default="kernels_blackjax")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    x0 = 2.0 * jax.random.normal(jax.random.PRNGKey(42), (args.chains, 2))
    steps = {"langevin": 0.05, "mala": 0.2, "sghmc": 0.05}
    rows = []
    for name, eps in steps.items():
        for impl, build in (("sajax", ours), ("blackjax", theirs)):
            moves = args.moves if not (impl == "blackjax" and name == "sghmc") else args.moves // 10
            seconds, x = timed(build(name, eps, moves), x0, args.rounds)
            grads = moves * (10 if impl == "blackjax" and name == "sghmc" else 1)
            rows.append({"kernel": name, "impl": impl, "step_size": eps, "moves": moves,
                         "gradient_evals_per_chain": grads, "seconds": seconds,
                         "chain_gradients_per_second": args.chains * grads / seconds, **moments_row(x, eps, name)})
    lines = ["| kernel | impl | ε | gradient evals / chain | max mean error | max cov error (target) | "
             "max cov error (ULA law) | chain-gradients / s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kernel']} | {r['impl']} | {r['step_size']} | {r['gradient_evals_per_chain']} | "
                     f"{r['mean_error']:.3f} | {r['cov_error_vs_target']:.3f} | "
                     f"{r.get('cov_error_vs_ula_law', float('nan')):.3f} | {r['chain_gradients_per_second']:.3g} |")
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    import blackjax

    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.machine()}"
    md = [f"# Kernels: sajax against BlackJAX {blackjax.__version__} ({args.chains} chains)", "",
          f"Command: `{command}`", f"Device: {device}; jax {jax.__version__}", "", *lines]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    main()
