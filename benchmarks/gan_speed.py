"""Speed of a 2-D GAN step: sajax's driver against a hand-fused JAX scan and a PyTorch eager loop.

The same model and update everywhere: PacGAN's 2-D networks (generator
2 → 400×4 (BN+ReLU) → 2, critic 3 maxout layers of 200 units × 5 pieces),
the non-saturating GAN loss (review Eq. 28), batch 100, Adam 1e-4 (β1 0.8) on
both players, simultaneous updates from one draw per step.

* ``sajax``: ``sa.fit(gan(...), per_group(...))``, chunks of ``--chunk`` steps as
  one jitted ``lax.scan``; ``--replicas R`` trains R seeds in one program.
* ``fused``: the floor: the same Flax modules' apply functions, the two losses'
  gradients and optax written by hand into one jitted, carry-donating
  ``lax.scan`` with on-device batches.
* ``torch``: an ordinary PyTorch eager loop (``nn.Sequential``, ``BatchNorm1d``,
  maxout by ``view(...).amax``, ``torch.optim.Adam``, ``loss.item()`` per step).

Each implementation runs one warm-up chunk (compilation) and ``--rounds`` timed
chunks; the table gives the median steps per second and the ratios.

GPU::

    source .whl/env.sh && python3 benchmarks/gan_speed.py --steps 2000 --replicas 1 10 --out "$OUT"

CPU (what ``results/gan_speed_cpu.md`` holds)::

    python benchmarks/gan_speed.py --steps 200 --replicas 1 10 --name gan_speed_cpu --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sajax import estimators as E
from sajax import models, sa
from sajax.core import CRITIC, GENERATOR
from sajax.data import toy_dataset

BATCH, LR, B1 = 100, 1e-4, 0.8


def run_sajax(data, steps: int, rounds: int, replicas: int):
    spec = models.mlp_gan(x_dim=2)
    est = E.gan(spec.generator, spec.critic, generator_loss="non-saturating")
    tx = sa.per_group({GENERATOR: optax.adam(LR, b1=B1), CRITIC: optax.adam(LR, b1=B1)})
    keys = jax.random.split(jax.random.PRNGKey(0), replicas)
    params = jax.vmap(spec.init)(keys) if replicas > 1 else spec.init(keys[0])
    res = sa.fit(est, tx, params, data, key=jax.random.PRNGKey(1), batch_size=BATCH,
                 num_steps=steps * (rounds + 1), chunk_steps=steps, progress=False,
                 replicas=replicas if replicas > 1 else None)
    # per-chunk wall seconds (the first chunk compiles); chunk_steps must divide the 1,000-step epoch
    return [h["seconds"] for h in res.history[1:]]


def run_fused(data, steps: int, rounds: int):
    spec = models.mlp_gan(x_dim=2)
    tx = optax.adam(LR, b1=B1)
    data = jnp.asarray(data)
    n = data.shape[0] // BATCH * BATCH

    def losses(params, key, x):
        fake = spec.generator.sample(params[GENERATOR], key, BATCH)
        v, _ = spec.critic.apply(params[CRITIC], (), jnp.concatenate([x, jax.lax.stop_gradient(fake)]))
        critic_loss = -jnp.mean(jax.nn.log_sigmoid(v[:BATCH])) - jnp.mean(jax.nn.log_sigmoid(-v[BATCH:]))
        v_g, _ = spec.critic.apply(jax.lax.stop_gradient(params[CRITIC]), (), fake)
        return critic_loss - jnp.mean(jax.nn.log_sigmoid(v_g))   # each player's loss reaches only its group

    @partial(jax.jit, donate_argnums=0)
    def chunk(carry, key):
        perm = jax.random.permutation(jax.random.fold_in(key, steps), n)   # one order per chunk (<= an epoch)

        def body(c, t):
            params, opt = c
            k = jax.random.fold_in(key, t)
            idx = jax.lax.dynamic_slice(perm, (t * BATCH,), (BATCH,))
            g = jax.grad(losses)(params, k, data[idx])
            upd, opt = tx.update(g, opt, params)
            return (optax.apply_updates(params, upd), opt), None
        return jax.lax.scan(body, carry, jnp.arange(steps))[0]

    params = spec.init(jax.random.PRNGKey(0))
    carry = (params, tx.init(params))
    carry = jax.block_until_ready(chunk(carry, jax.random.PRNGKey(1)))   # warm-up (compiles); the carry is donated
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        carry = jax.block_until_ready(chunk(carry, jax.random.PRNGKey(r + 2)))
        times.append(time.perf_counter() - t0)
    return times


def run_torch(data, steps: int, rounds: int):
    import torch
    from torch import nn

    class Maxout(nn.Module):
        def __init__(self, d_in, d_out, pieces=5):
            super().__init__()
            self.lin, self.d_out, self.pieces = nn.Linear(d_in, d_out * pieces), d_out, pieces

        def forward(self, x):
            return self.lin(x).view(-1, self.d_out, self.pieces).amax(-1)

    torch.manual_seed(0)
    gen = nn.Sequential(*[m for i in range(4) for m in (nn.Linear(2 if i == 0 else 400, 400), nn.BatchNorm1d(400),
                                                        nn.ReLU())], nn.Linear(400, 2))
    crit = nn.Sequential(Maxout(2, 200), Maxout(200, 200), Maxout(200, 200), nn.Linear(200, 1))
    opt_g = torch.optim.Adam(gen.parameters(), lr=LR, betas=(B1, 0.999))
    opt_c = torch.optim.Adam(crit.parameters(), lr=LR, betas=(B1, 0.999))
    x_all = torch.from_numpy(np.asarray(data))
    bce = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(BATCH, 1), torch.zeros(BATCH, 1)

    def step():
        x = x_all[torch.randint(0, x_all.shape[0], (BATCH,))]
        fake = gen(torch.randn(BATCH, 2))
        loss_c = bce(crit(x), ones) + bce(crit(fake.detach()), zeros)
        opt_c.zero_grad()
        loss_c.backward()
        opt_c.step()
        loss_g = bce(crit(fake), ones)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        return loss_c.item() + loss_g.item()

    for _ in range(10):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 10])
    p.add_argument("--peers", nargs="+", default=["fused", "sajax", "torch"])
    p.add_argument("--name", default="gan_speed")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    data = toy_dataset("grid25", 100_000, seed=0)
    rows = {}
    for peer in args.peers:
        if peer == "sajax":
            for r in args.replicas:
                rows[f"sajax R={r}"] = run_sajax(data, args.steps, args.rounds, r)
        else:
            rows[peer] = {"fused": run_fused, "torch": run_torch}[peer](data, args.steps, args.rounds)
    med = {k: statistics.median(v) / args.steps for k, v in rows.items()}
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.machine()}"
    lines = [f"# 2-D GAN step speed ({args.steps} steps a chunk, median of {args.rounds})", "",
             f"Command: `{command}`", f"Device: {device}; jax {jax.__version__}", "",
             "| implementation | ms / step | ratio to sajax R=1 |", "|---|---|---|"]
    base = med.get("sajax R=1")
    for k, v in med.items():
        lines.append(f"| {k} | {1e3 * v:.3f} | {v / base:.2f} |" if base else f"| {k} | {1e3 * v:.3f} | - |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps({"command": command, "device": device,
                                                                  "seconds": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
