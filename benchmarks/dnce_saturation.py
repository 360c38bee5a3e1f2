"""Why DNCE (α = 0.25) stalls on the generated corpus: a trace of its first steps (issue 20).

Builds the ``trf-dnce-text`` recipe on a smaller corpus, takes plain SA steps (the recipe's
optimizer) and prints, every ``--every`` steps, the DNCE objective J_α, the mean model
log p_θ̂(x) = log π_l + u_θ(x) - ζ_l and noise log q_φ(x) on 256 training sentences, the mean
potential u_θ on them, and J_α's dead value: when p_θ̂ ≪ q_φ everywhere the logit is the
constant c = log((1 - α)/ν), J_α = log σ(c) + ν log σ(-c), and every gradient of θ̂ carries the
factor α p_θ̂ / (α p_θ̂ + (1 - α) q_φ) ≈ 0.

    python benchmarks/dnce_saturation.py --out benchmarks/results/dnce_saturation_cpu.md
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from sajax import _recipe_build, recipes
from sajax.core import POTENTIAL, SAMPLER, Batch


def dead_value(alpha: float, nu: float) -> float:
    c = math.log((1.0 - alpha) / nu)
    log_sig = lambda v: -math.log1p(math.exp(-v))   # noqa: E731
    return log_sig(c) + nu * log_sig(-c)


def trace(sets: dict, steps: int, every: int) -> list:
    cfg = recipes.config_for("trf-dnce-text", sets)
    p = _recipe_build.build(cfg)
    lm, probe = p.proposal[0], jnp.asarray(p.train[:256])
    step = jax.jit(lambda params, key, xb: p.estimator.estimate(params, (), key, Batch(xb, jnp.arange(xb.shape[0]))))
    params, opt_state = p.params, p.optimizer.init(p.params)
    rows, b = [], int(cfg["batch_size"])
    for t in range(steps + 1):
        start = (t * b) % (p.train.shape[0] - b)
        out = step(params, jax.random.PRNGKey(t), jnp.asarray(p.train[start:start + b]))
        if t % every == 0:
            rows.append((t, float(out.metrics["objective"]),
                         float(p.spec.model.potential(params[POTENTIAL], probe).mean()),
                         float(lm.log_prob(params[SAMPLER], probe).mean()),
                         float(p.spec.energy(params[POTENTIAL], probe).mean())))
        updates, opt_state = p.optimizer.update(out.grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return rows, cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=["num_sentences=4000", "noise_epochs=0", "critic_lr=3e-5"],
                    metavar="KEY=VALUE", help="recipe settings (default: a fresh noise, 1/30 of the step)")
    ap.add_argument("--steps", type=int, default=240)
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--out", default="benchmarks/results/dnce_saturation_cpu.md")
    args = ap.parse_args(argv)
    rows, cfg = trace(dict(s.split("=", 1) for s in args.set), args.steps, args.every)
    dead = dead_value(float(cfg["alpha"]), float(cfg["nu"]))
    lines = ["# DNCE on the generated corpus: the first steps", "",
             f"Command: `python benchmarks/dnce_saturation.py {' '.join(shlex.quote(a) for a in (argv or sys.argv[1:]))}`",
             "", f"Settings: {', '.join(f'{k}={v}' for k, v in cfg.items())}. "
             f"J_α's dead value log σ(c) + ν log σ(−c), c = log((1 − α)/ν): **{dead:.4f}**.", "",
             "| step | J_α | mean log p_θ̂(x) | mean log q_φ(x) | mean u_θ(x) |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {j:.4f} | {lp:.2f} | {lq:.2f} | {u:.2f} |" for t, j, lp, lq, u in rows]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
