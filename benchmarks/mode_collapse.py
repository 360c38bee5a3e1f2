"""2-D mode collapse, PacGAN's set-up (Lin et al. 2018, Sec. 5, Table 1), every seed in one program.

Targets (``sajax.data.toy_dataset``): ``ring8``, 8 modes on the unit circle,
σ = 0.01; ``grid25``, 25 modes on {−4,−2,0,2,4}², σ = 0.05; 100,000 training
points.  Networks (``sajax.models.mlp_gan``): generator 2 → 400×4 (BN+ReLU) → 2,
critic 3 maxout layers of 200 units × 5 pieces; Adam 1e-4, β1 0.8, batch 100
(the ``gan-grid`` recipe).  Each method trains ``--seeds`` replicas at once
(``sajax.sa.fit(..., replicas=R)``) and is scored on 2,500 samples per seed by
PacGAN's metrics (``sajax.evaluate.mode_coverage``): modes captured, share of
high-quality samples (within 3σ), reverse KL of the mode histogram against
uniform; mean ± standard error over seeds.

Methods (``--methods``): gan, ns-gan, fgan-<divergence> (principled
activation), wgan-gp (5 critic steps a generator step, β1 0.5), sn-gan (hinge
loss, spectral-norm critic), pacgan2, pacgan4 (non-saturating loss, packed
critic), ali (generator, encoder and a critic on (x, z)).

Anchors (PacGAN Table 1, 400 epochs = 400,000 steps): grid GAN 17.3 ± 0.8
modes, 94.8 % HQ, reverse KL 0.70; PacGAN4 24.8 ± 0.2, 93.6 %, 0.04; ring
PacGAN2 7.9 ± 0.1 modes, reverse KL 0.07.

GPU (the paper's length)::

    source .whl/env.sh && python3 benchmarks/mode_collapse.py --steps 400000 --seeds 10 --out "$OUT"

Short CPU run (what ``results/mode_collapse_cpu.md`` holds)::

    python benchmarks/mode_collapse.py --steps 2000 --seeds 3 --name mode_collapse_cpu --out benchmarks/results

Each dataset's samples of seed 0 are saved next to its picture (``<name>_<dataset>_samples.npz``);
``--replot`` redraws the pictures from them without training.
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
import numpy as np

from sajax import sa
from sajax.core import GENERATOR
from sajax.data import toy_modes, toy_std
from sajax.evaluate import mean_stderr, mode_coverage, plot_samples_grid
from sajax.evaluate.pictures import load_panels, save_panels

from four_circles import stacked   # the seeds' initial parameters, stacked (same folder)

METHODS = {
    "gan": dict(estimator="gan"),
    "ns-gan": dict(estimator="ns-gan"),
    "fgan-js": dict(estimator="fgan", divergence="js"),
    "fgan-kl": dict(estimator="fgan", divergence="kl"),
    "fgan-reverse_kl": dict(estimator="fgan", divergence="reverse_kl"),
    "fgan-pearson": dict(estimator="fgan", divergence="pearson"),
    "fgan-squared_hellinger": dict(estimator="fgan", divergence="squared_hellinger"),
    "wgan-gp": dict(estimator="wgan-gp", n_critic=5, beta1=0.5),
    "sn-gan": dict(estimator="hinge", spectral_norm=1),
    "pacgan2": dict(estimator="ns-gan", pack=2),
    "pacgan4": dict(estimator="ns-gan", pack=4),
    "ali": dict(model="ali-mlp", estimator="ali"),
}


def generate(pieces, params, key, n: int):
    """Samples ``[R, n, 2]`` of every replica's generator."""
    if pieces.family == "ali":
        dec = pieces.spec.decoder.sampler
        z = jax.random.normal(key, (n, pieces.spec.latent_dim))
        return jax.vmap(lambda th: dec.sample(th, key, z, 1)[0])(params[GENERATOR])
    return jax.vmap(lambda th: pieces.spec.generator.sample(th, key, n))(params[GENERATOR])


def coverage(pieces, params, dataset: str, key):
    """PacGAN's metrics of every replica on 2,500 samples: (mean, se) dicts over seeds, the per-seed
    modes, and the first seed's samples."""
    x = generate(pieces, params, key, 2500)
    cov = jax.vmap(lambda s: mode_coverage(s, toy_modes(dataset), toy_std(dataset)))(x)
    mean, se = mean_stderr({"modes": cov.modes, "high_quality": cov.high_quality, "reverse_kl": cov.reverse_kl})
    return mean, se, np.asarray(cov.modes).tolist(), np.asarray(x[0])


def run_method(name: str, dataset: str, args):
    overrides = {"dataset": dataset, "num_train": args.num_train, **METHODS[name]}
    pieces, params = stacked("gan-grid", overrides, args.seeds)

    def eval_fn(p, step):  # the curve: the seeds' mean metrics every --eval-every steps
        return {k: float(v) for k, v in coverage(pieces, p, dataset, jax.random.PRNGKey(step))[0].items()}

    every = max(args.eval_every // args.chunk, 1) if args.eval_every else None
    t0 = time.perf_counter()
    res = sa.fit(pieces.estimator, pieces.optimizer, params, pieces.train, key=jax.random.PRNGKey(args.seed),
                 batch_size=100, num_steps=args.steps, chunk_steps=args.chunk, replicas=args.seeds,
                 eval_fn=eval_fn if every else None, eval_every=every or 1, progress=False)
    seconds = time.perf_counter() - t0
    mean, se, per_seed, x = coverage(pieces, res.state.params, dataset, jax.random.PRNGKey(args.seed + 1))
    curve = [{"step": h["step"], **{k: h[f"eval/{k}"] for k in mean}} for h in res.history if "eval/modes" in h]
    row = {"method": name, "dataset": dataset, "steps": args.steps, "seeds": args.seeds,
           "seconds_per_step": seconds / args.steps,
           **{k: float(v) for k, v in mean.items()}, **{f"{k}_se": float(v) for k, v in se.items()},
           "per_seed_modes": per_seed, "curve": curve}
    return row, x


def plot_curves(rows, path: Path) -> None:
    """Modes, high-quality share and reverse KL against steps, one line per method and dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for i, r in enumerate(r for r in rows if r["curve"]):
        steps = [c["step"] for c in r["curve"]]
        for ax, key, scale in zip(axes, ("modes", "high_quality", "reverse_kl"), (1, 100, 1)):
            ax.plot(steps, [scale * c[key] for c in r["curve"]], marker="o", ms=2, color=f"C{i}",
                    label=f"{r['method']} ({r['dataset']})")
    for ax, label in zip(axes, ("modes captured", "high-quality samples %", "reverse KL")):
        ax.set_xlabel("generator steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(rows) -> str:
    lines = ["| dataset | method | modes | high quality % | reverse KL | s / step (all seeds) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['modes']:.1f} ± {r['modes_se']:.1f} | "
                     f"{100 * r['high_quality']:.1f} ± {100 * r['high_quality_se']:.1f} | "
                     f"{r['reverse_kl']:.2f} ± {r['reverse_kl_se']:.2f} | {r['seconds_per_step']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["ring8", "grid25"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--chunk", type=int, default=500)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=100_000)
    p.add_argument("--eval-every", type=int, default=0,
                   help="steps between the curve's evaluations (a multiple of --chunk; 0: none)")
    p.add_argument("--name", default="mode_collapse")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--replot", action="store_true",
                   help="only redraw the sample pictures from the saved <name>_<dataset>_samples.npz")
    args = p.parse_args(argv)
    if args.replot:
        return replot(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    rows, panels = [], {}
    for dataset in args.datasets:
        for name in args.methods:
            row, x = run_method(name, dataset, args)
            rows.append(row)
            panels[f"{name} ({dataset})"] = x
            print(table([row]).splitlines()[-1], flush=True)
            write(rows, panels, args, command)   # partial results survive a cut-off
    print(write(rows, panels, args, command))


def replot(args) -> None:
    """Redraw ``<name>_<dataset>.png`` from ``<name>_<dataset>_samples.npz`` (no training)."""
    out = Path(args.out)
    for dataset in args.datasets:
        saved = out / f"{args.name}_{dataset}_samples.npz"
        if saved.is_file():
            plot_samples_grid(load_panels(saved), toy_modes(dataset), out / f"{args.name}_{dataset}.png",
                              std=toy_std(dataset))
            print(f"redrew {out / f'{args.name}_{dataset}.png'} from {saved}")
        else:
            print(f"no saved samples at {saved}: run the benchmark once to write them")


def write(rows, panels, args, command: str) -> str:
    """Table, JSON, sample panels and curves of the rows so far into ``--out``; the markdown."""
    out = Path(args.out)
    device = f"{jax.devices()[0].device_kind} ({jax.default_backend()}), {platform.processor() or platform.machine()}"
    for dataset in {r["dataset"] for r in rows}:
        these = {k: v for k, v in panels.items() if dataset in k}
        save_panels(out / f"{args.name}_{dataset}_samples.npz", these)
        plot_samples_grid(these, toy_modes(dataset), out / f"{args.name}_{dataset}.png", std=toy_std(dataset))
    if any(r["curve"] for r in rows):
        plot_curves(rows, out / f"{args.name}_curves.png")
    md = [f"# 2-D mode collapse ({args.steps} steps, {args.seeds} seeds in one program)", "",
          f"Command: `{command}`", f"Device: {device}; jax {jax.__version__}", "",
          table(rows), "", "Anchors (PacGAN Table 1, 400,000 steps): grid GAN 17.3 ± 0.8 modes, 94.8 % HQ, "
          "reverse KL 0.70; PacGAN4 24.8 ± 0.2, 93.6 %, 0.04; ring PacGAN2 7.9 ± 0.1, reverse KL 0.07."]
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps({"command": command, "device": device, "rows": rows},
                                                      indent=2))
    return "\n".join(md)


if __name__ == "__main__":
    main()
