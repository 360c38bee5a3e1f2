"""Binarized MNIST with fully visible autoregressive models: exact test NLL (review Sec. 3.1.3).

Three models trained by maximum likelihood (``sajax.estimators._likelihood.maximum_likelihood``)
with the SA driver ``sajax.sa.fit`` and Adam, scored by the exact test NLL
-mean log p_θ(x) (no sampling: the likelihoods are exact):

=========  ===================================================================  =========
model      sajax                                                                published
=========  ===================================================================  =========
nade       ``nade(784, hidden=500)``                                            88.86 (Larochelle & Murray 2011)
made       ``made(784, (500,), num_masks=32)``: one random mask set per step    88.04 (Germain et al. 2015,
           in training (order + connectivity agnostic), the 32-mask mixture     1 hidden layer, 32 masks)
           logsumexp_m log p_m(x) - log 32 at test
pixelcnn   ``pixelcnn(28, 28, channels, num_layers)``: mask-A 7x7, mask-B 3x3   81.30 (van den Oord et al.
           residual blocks, 1x1 head                                           2016)
=========  ===================================================================  =========

Data: the standard 50k/10k/10k MNIST pickle, binarized once with a seeded draw
(``fixed_binarize``: train seed 0, validation seed 2, test seed 1), as in
``benchmarks/discrete_mnist.py``.  This is not the fixed binarization of
Larochelle & Murray used by the papers, so the published numbers are anchors,
not exact targets.  The published PixelCNN is far larger (and trained far
longer) than the default here.

Outputs in ``--out``: ``<name>.md`` (table with the command and the published
rows side by side), ``<name>.json``, ``<name>.png`` (validation NLL per epoch).

GPU run::

    python benchmarks/autoregressive_mnist.py --models nade made pixelcnn --epochs 100 \\
        --device-label "H100" --out "$OUT"

Smoke test (seconds)::

    python benchmarks/autoregressive_mnist.py --models nade made pixelcnn --epochs 1 --max-train 200 \\
        --max-test 100 --batch-size 50 --made-masks 4 --pixelcnn-channels 8 --pixelcnn-layers 1 \\
        --name autoregressive_smoke --out /tmp/ar_smoke
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

MODELS = ("nade", "made", "pixelcnn")
PUBLISHED = {
    "nade": (88.86, "NADE, 500 hidden (Larochelle & Murray 2011)"),
    "made": (88.04, "MADE, 1 hidden layer, 32 masks (Germain et al. 2015)"),
    "pixelcnn": (81.30, "PixelCNN (van den Oord et al. 2016)"),
}


def build(name: str, args):
    """(spec, estimator) of one model."""
    from sajax.estimators._likelihood import maximum_likelihood
    from sajax.models._autoregressive import made, nade, pixelcnn

    if name == "nade":
        spec = nade(784, 500)
        return spec, maximum_likelihood(spec.model)
    if name == "made":
        spec = made(784, (500,), num_masks=args.made_masks, seed=args.seed)
        return spec, maximum_likelihood(spec.model, stochastic_log_prob=spec.random_mask_log_prob)
    spec = pixelcnn(28, 28, channels=args.pixelcnn_channels, num_layers=args.pixelcnn_layers)
    return spec, maximum_likelihood(spec.model)


def load_data(n_train: int, n_valid: int, n_test: int):
    """Fixed-binarized train / validation / test images (seeds 0 / 2 / 1)."""
    from sajax.data import fixed_binarize, load_mnist

    train = fixed_binarize(np.asarray(load_mnist("train"))[:n_train], seed=0)
    valid = fixed_binarize(np.asarray(load_mnist("valid"))[:n_valid], seed=2)
    test = fixed_binarize(np.asarray(load_mnist("test"))[:n_test], seed=1)
    return train, valid, test


def exact_log_prob(spec, params, data, batch_size: int) -> np.ndarray:
    """log p_θ(x) ``[N]`` of every row, in jitted batches (the last one padded)."""
    import jax
    import jax.numpy as jnp

    fn = jax.jit(lambda t, x: spec.model.log_prob(t, x))
    out = []
    for i in range(0, len(data), batch_size):
        x = np.asarray(data[i:i + batch_size], np.float32)
        pad = batch_size - len(x)
        xp = np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)]) if pad else x
        out.append(np.asarray(fn(params, jnp.asarray(xp)))[:len(x)])
    return np.concatenate(out).astype(np.float64)


def train_one(name: str, args, train, valid, test) -> dict:
    """Train one model and compute its exact test NLL; a JSON-ready record."""
    import jax
    import optax

    from sajax import sa
    from sajax.core import MODEL

    spec, est = build(name, args)
    params = spec.init(jax.random.key(args.seed))
    n_params = int(sum(np.size(a) for a in jax.tree_util.tree_leaves(params[MODEL])))

    def eval_fn(p, step):
        return {"valid_nll": float(-exact_log_prob(spec, p[MODEL], valid, args.eval_batch).mean())}

    tic = time.perf_counter()
    res = sa.fit(est, optax.adam(args.lr), params, train, key=jax.random.key(args.seed + 1),
                 batch_size=args.batch_size, epochs=args.epochs, chunk_steps=args.chunk_steps,
                 eval_fn=eval_fn if len(valid) else None, progress=args.progress)
    train_s = time.perf_counter() - tic
    tic = time.perf_counter()
    log_p = exact_log_prob(spec, jax.device_get(res.state.params)[MODEL], test, args.eval_batch)
    return {"model": name, "nll": float(-log_p.mean()), "nll_se": float(log_p.std(ddof=1) / np.sqrt(len(log_p))),
            "published": PUBLISHED[name][0], "params": n_params, "steps": int(res.state.step),
            "train_seconds": train_s, "eval_seconds": time.perf_counter() - tic,
            "curve": [dict(h) for h in res.history]}


def environment(device_label=None) -> dict:
    import jax
    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    label = device_label or f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    return {"device_label": label, "versions": versions, "cpu_count": os.cpu_count(),
            "date": _dt.datetime.now().isoformat(timespec="seconds")}


def command_line(argv) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + args)


def _plot(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, rec in enumerate(records):
        pts = [(c["epoch"], c["eval/valid_nll"]) for c in rec["curve"] if "eval/valid_nll" in c]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, color=f"C{i}", label=rec["model"])
        ax.axhline(rec["published"], color=f"C{i}", ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NLL (nats, exact)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Autoregressive models on binarized MNIST: {m['device_label']}", "",
             f"Command: `{m['command']}`", "",
             f"- data: {m['n_train']} training / {m['n_valid']} validation / {m['n_test']} test images, "
             "binarized once (seeds 0 / 2 / 1), not the papers' fixed binarization",
             f"- {m['epochs']:g} epochs, batch {m['batch_size']}, Adam lr {m['lr']}; MADE: "
             f"{m['made_masks']} mask sets; PixelCNN: {m['pixelcnn_channels']} channels, "
             f"{m['pixelcnn_layers']} residual layers", ""]
    if m["short"]:
        lines += ["**Short run, not a reproduction**: the published rows need full data and long training.", ""]
    lines += ["| model | test NLL (exact, nats) | published | parameters | steps | train s |",
              "|---|---|---|---|---|---|"]
    for r in report["table"]:
        lines.append(f"| {r['model']} | {r['nll']:.2f} ± {r['nll_se']:.2f} | {r['published']:.2f} "
                     f"({PUBLISHED[r['model']][1]}) | {r['params']:,} | {r['steps']} | {r['train_seconds']:.0f} |")
    lines += ["", f"![validation NLL]({m['png']})", ""]
    return "\n".join(lines)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-train", type=int, default=50000, help="training images used")
    ap.add_argument("--max-test", type=int, default=10000, help="test images of the exact NLL")
    ap.add_argument("--curve-n", type=int, default=1000, help="validation images of the curve (0: none)")
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--made-masks", type=int, default=32)
    ap.add_argument("--pixelcnn-channels", type=int, default=32)
    ap.add_argument("--pixelcnn-layers", type=int, default=4)
    ap.add_argument("--chunk-steps", type=int, default=None, help="steps per jitted chunk; default one epoch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="autoregressive_mnist")
    args = ap.parse_args(argv)
    for flag in ("batch_size", "max_train", "max_test", "eval_batch", "made_masks", "pixelcnn_channels"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.epochs <= 0 or args.lr <= 0:
        raise SystemExit("--epochs and --lr must be > 0")
    return args


def main(argv=None):
    args = parse(argv)
    train, valid, test = load_data(args.max_train, args.curve_n, args.max_test)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device_label)
    t0, table = time.perf_counter(), []
    for name in args.models:
        rec = train_one(name, args, train, valid, test)
        table.append(rec)
        print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {name:9s} test NLL {rec['nll']:.2f} "
              f"(published {rec['published']:.2f}), train {rec['train_seconds']:.0f} s", flush=True)
    short = args.epochs < 100 or args.max_train < 50000 or args.max_test < 10000
    meta = dict(env, command=command_line(argv), short=short, epochs=args.epochs, lr=args.lr,
                batch_size=args.batch_size, n_train=len(train), n_valid=len(valid), n_test=len(test),
                made_masks=args.made_masks, pixelcnn_channels=args.pixelcnn_channels,
                pixelcnn_layers=args.pixelcnn_layers, seed=args.seed,
                total_seconds=time.perf_counter() - t0, png=f"{args.name}.png")
    _plot(table, out / meta["png"], f"{env['device_label']}: exact validation NLL (dotted: published test NLL)")
    report = {"meta": meta, "published": PUBLISHED, "table": table}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
