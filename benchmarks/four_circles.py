"""Four circles (Song & Ou 2018): random fields and GANs on 32 modes, every seed in one program.

Data (``sajax.data.toy_dataset("four_circles")``): 32 Gaussians on circles of
radius 2, 3, 4, 5 (angles kπ/4 on radii 2 and 4, offset by π/8 on 3 and 5),
σ = 0.1, 50 points a mode (1,600 points).  Set-up of the authors' toy
experiments: potential 2 → 100 → 100 → 1 (leaky ReLU, weight norm), generator
h ∈ R² → 50 → 50 (BN+ReLU) → 2, batch 100, Adam 1e-3 with β1 = 0, SGLD revision
of 10 moves with gradient coefficient 0.01 and noise 0.01 (the recipes
``nrf-inclusive-circles``, ``nrf-exclusive-circles``, ``ebm-pcd-circles``,
``nce-circles``).  GAN and WGAN-GP use PacGAN's 2-D networks
(``sajax.models.mlp_gan``), not the authors' generator.

Metrics (Song & Ou): covered modes, the mean over 100 batches of 100 samples of
the number of modes with a sample within 0.3; realistic ratio, the share of
10,000 samples within 0.3 of a mode.  For the random fields the samples are
(a) Langevin chains of the learned potential from N(0, 3²I), 500 moves, and
(b) for the NRF methods their generators' samples (inclusive-NRF: raw and
revised).  Mean ± standard error over ``--seeds`` replicas.

GPU (the full schedule, 1,000 epochs)::

    source .whl/env.sh && python3 benchmarks/four_circles.py --epochs 1000 --seeds 10 --out "$OUT"

Short CPU run (what ``results/four_circles_cpu.md`` holds)::

    python benchmarks/four_circles.py --epochs 100 --seeds 5 --name four_circles_cpu --out benchmarks/results

The samples of seed 0 are saved next to the picture (``<name>_samples.npz``); ``--replot``
redraws the picture from them without training.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sajax import _recipe_build
from sajax import _recipe_eval as F
from sajax import recipes, sa
from sajax.core import GENERATOR
from sajax.data import toy_modes
from sajax.evaluate import covered_modes, mean_stderr, plot_samples_grid, realistic_ratio
from sajax.evaluate.pictures import load_panels, save_panels

METHODS = {
    "pcd": ("ebm-pcd-circles", {}),
    "nce": ("nce-circles", {}),
    "nrf-exclusive": ("nrf-exclusive-circles", {}),
    "nrf-inclusive": ("nrf-inclusive-circles", {}),
    "gan": ("gan-grid", {"dataset": "four_circles", "lr": 1e-3, "beta1": 0.5}),
    "wgan-gp": ("wgan-gp-grid", {"dataset": "four_circles", "lr": 1e-3}),
}


def stacked(recipe: str, overrides: dict, seeds: int):
    """Pieces of seed 0 and every seed's initial parameters stacked on a leading axis."""
    builds = [_recipe_build.build(recipes.config_for(recipe, {**overrides, "seed": s}, strict=False))
              for s in range(seeds)]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[b.params for b in builds])
    return builds[0], params


def sample_sets(pieces, params, cfg, key) -> dict:
    """``{label: [10000, 2]}`` for one replica's parameters."""
    if pieces.family == "adversarial":
        return {"generator": pieces.spec.generator.sample(params[GENERATOR], key, 10_000)}
    return F._energy_samples(pieces, params, cfg, key)


def run_method(name: str, args):
    recipe, overrides = METHODS[name]
    overrides = {**overrides, "epochs": args.epochs}
    cfg = recipes.config_for(recipe, overrides, strict=False)
    pieces, params = stacked(recipe, overrides, args.seeds)
    t0 = time.perf_counter()
    res = sa.fit(pieces.estimator, pieces.optimizer, params, pieces.train, key=jax.random.PRNGKey(args.seed),
                 batch_size=int(cfg["batch_size"]), epochs=args.epochs, replicas=args.seeds, progress=False)
    seconds = time.perf_counter() - t0
    modes = toy_modes("four_circles")
    per_seed, first = [], None
    for r in range(args.seeds):
        p = jax.tree_util.tree_map(lambda a: a[r], res.state.params)
        sets = sample_sets(pieces, p, cfg, jax.random.PRNGKey(100 + r))
        first = first or {k: np.asarray(v) for k, v in sets.items()}
        per_seed.append({k: (float(covered_modes(v, modes, 0.3, batch_size=100)),
                             float(realistic_ratio(v, modes, 0.3))) for k, v in sets.items()})
    rows = []
    for label in per_seed[0]:
        cov = np.array([s[label][0] for s in per_seed])
        real = np.array([s[label][1] for s in per_seed])
        (mc, mr), (sc, sr) = mean_stderr((cov, real))
        rows.append({"method": name, "samples": label, "epochs": args.epochs, "seeds": args.seeds,
                     "covered_modes": float(mc), "covered_modes_se": float(sc), "realistic_ratio": float(mr),
                     "realistic_ratio_se": float(sr), "train_seconds": seconds})
    return rows, first


def table(rows) -> str:
    lines = ["| method | samples | covered modes (of 32) | realistic ratio | train s (all seeds) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['samples']} | {r['covered_modes']:.2f} ± {r['covered_modes_se']:.2f} | "
                     f"{r['realistic_ratio']:.3f} ± {r['realistic_ratio_se']:.3f} | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--epochs", type=float, default=100)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="four_circles")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--replot", action="store_true", help="only redraw the picture from the saved <name>_samples.npz")
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.replot:
        plot_samples_grid(load_panels(out / f"{args.name}_samples.npz"), toy_modes("four_circles"),
                          out / f"{args.name}.png")
        return print(f"redrew {out / f'{args.name}.png'} from {out / f'{args.name}_samples.npz'}")
    out.mkdir(parents=True, exist_ok=True)
    rows, panels = [], {}
    for name in args.methods:
        r, first = run_method(name, args)
        rows += r
        panels.update({f"{name}: {k}": v for k, v in first.items()})
        print(table(r), flush=True)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.machine()}"
    save_panels(out / f"{args.name}_samples.npz", panels)
    plot_samples_grid(panels, toy_modes("four_circles"), out / f"{args.name}.png")
    md = [f"# Four circles ({args.epochs:g} epochs of 16 steps, {args.seeds} seeds in one program)", "",
          f"Command: `{command}`", f"Device: {device}; jax {jax.__version__}", "", table(rows), "",
          f"Samples of seed 0: `{args.name}.png` (saved in `{args.name}_samples.npz`; `--replot` redraws)."]
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps({"command": command, "device": device, "rows": rows},
                                                      indent=2))
    print("\n".join(md))


if __name__ == "__main__":
    main()
