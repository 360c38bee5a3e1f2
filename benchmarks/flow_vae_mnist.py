"""Flow inference models on binarized MNIST: diagonal q vs planar flows vs IAF (review Sec. 3.2.1 item 4).

One generative model for every row, the IWAE paper's one-layer VAE (784-200-200-50 tanh encoder,
mirrored Bernoulli decoder; ``sajax.models.flow_vae`` reuses ``sajax.models.vae``'s p(x|h)); only
q_φ(h|x) changes:

* ``diag``: the diagonal Gaussian (``num_flows = 0``);
* ``planar``: K planar steps amortized on the encoder's last hidden layer (Rezende & Mohamed 2015);
* ``radial``, ``nice``, ``realnvp``: as in ``sajax.models._flows``;
* ``iaf``: K IAF steps with a conditional MADE (``--iaf-hidden``), order reversed between steps
  (Kingma et al. 2016).

Training: ``sajax.sa.fit`` with ``reparam_elbo(num_samples=1, kl="mc")`` (Eq. 12-13), Adam,
dynamically binarized training images (``--max-train`` of the 50,000), batch ``--batch-size``.
Evaluation on the first ``--eval-n`` test images binarized once: test -ELBO (mean over
``--elbo-samples`` draws per image) and test NLL = -log p̂_K(x) with ``--eval-k`` importance
samples (``sajax.evaluate.iw_nll``, which needs only the guide's ``sample_and_log_prob``, so
planar flows evaluate too).

Published rows (not reproduced by a short run): Rezende & Mohamed (2015), Table 2, MNIST, -ELBO
of a DLGM: diagonal ≤ 89.9, planar K=10 ≤ 87.5, planar K=80 ≤ 85.1 (their architecture and 500k
updates; not the same as ours).  Kingma et al. (2016): IAF test NLL 79.10 with a convolutional
ResNet VAE: a different, much larger architecture, listed for orientation only.

Outputs in ``--out``: ``<name>.md`` (table with the command and the published rows),
``<name>.json``, ``<name>_curves.png`` (training ELBO per chunk).

GPU run (the lead's)::

    python benchmarks/flow_vae_mnist.py --flows diag planar planar iaf --num-flows 0 10 80 2 \\
        --epochs 100 --out "$OUT" --name flow_vae_mnist_gpu --device-label "H100"

Smoke test (CPU, seconds)::

    python benchmarks/flow_vae_mnist.py --flows diag planar iaf --num-flows 0 2 1 --epochs 1 \\
        --max-train 1000 --eval-n 100 --eval-k 50 --out /tmp/flow_smoke --name smoke
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

PUBLISHED = [
    ("diag", 0, "-ELBO ≤ 89.9", "Rezende & Mohamed 2015, Table 2 (DLGM, diagonal covariance)"),
    ("planar", 10, "-ELBO ≤ 87.5", "Rezende & Mohamed 2015, Table 2 (DLGM + NF, k = 10)"),
    ("planar", 80, "-ELBO ≤ 85.10", "Rezende & Mohamed 2015, Table 2 (DLGM + NF, k = 80)"),
    ("iaf", None, "NLL 79.10", "Kingma et al. 2016 (IAF, conv-ResNet VAE: NOT a comparable architecture)"),
]


def _label(flow: str, k: int) -> str:
    return "diag" if flow == "diag" or k == 0 else f"{flow} K={k}"


def _test_elbo(spec, params, key, x, samples: int, batch: int = 100) -> float:
    """Mean over images of the ``samples``-draw average ELBO log p(x, h) - log q(h|x) (nats)."""
    import jax
    import jax.numpy as jnp

    from sajax.core import GUIDE, MODEL, log_joint

    @jax.jit
    def elbo(p, k, xb):
        h, log_q = spec.guide.sample_and_log_prob(p[GUIDE], k, xb, samples)
        return jnp.mean(log_joint(spec.model, p[MODEL], xb, h) - log_q, axis=0)

    vals = [elbo(params, jax.random.fold_in(key, i), x[i:i + batch]) for i in range(0, len(x), batch)]
    return float(np.mean(np.concatenate([np.asarray(v) for v in vals])))


def train_one(flow: str, k: int, args, train, test_bin, seed: int) -> dict:
    """Train the VAE with one q and evaluate it; a JSON-ready record."""
    import jax
    import optax

    from sajax import sa
    from sajax.data import dynamic_binarize
    from sajax.estimators import reparam_elbo
    from sajax.evaluate import iw_nll
    from sajax.models._flows import flow_vae

    spec = flow_vae(784, args.latent_dim, tuple(args.hidden), "planar" if flow == "diag" else flow,
                    0 if flow == "diag" else k, flow_hidden=tuple(args.iaf_hidden) if flow == "iaf" else ())
    est = reparam_elbo(spec.model, spec.guide, num_samples=1, kl="mc")
    params = spec.init(jax.random.key(seed))
    spe = train.shape[0] // args.batch_size
    chunk = args.chunk_steps or spe
    res = sa.fit(est, optax.adam(args.lr), params, train, key=jax.random.key(seed + 1),
                 batch_size=args.batch_size, epochs=args.epochs, chunk_steps=chunk,
                 preprocess=dynamic_binarize, progress=args.progress)
    final = jax.device_get(res.state.params)
    tic = time.perf_counter()
    neg_elbo = -_test_elbo(spec, final, jax.random.key(seed + 2), test_bin, args.elbo_samples)
    nll = iw_nll(spec.model, spec.guide, final, jax.random.key(seed + 3), test_bin, num_samples=args.eval_k,
                 batch_size=args.eval_batch, memory_budget_mb=args.memory_mb)
    curve = [{"epoch": h["epoch"], "train_elbo": float(np.mean(h["elbo"])), "seconds": h["seconds"]}
             for h in res.history]
    return {"flow": flow, "num_flows": 0 if flow == "diag" else k, "label": _label(flow, k),
            "test_neg_elbo": neg_elbo, "test_nll": float(nll), "epochs": args.epochs,
            "train_seconds": sum(h["seconds"] for h in res.history), "eval_seconds": time.perf_counter() - tic,
            "curve": curve}


def _plot(records, path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, rec in enumerate(records):
        if rec["curve"]:
            ax.plot([c["epoch"] for c in rec["curve"]], [c["train_elbo"] for c in rec["curve"]],
                    color=f"C{i}", marker="o", ms=3, label=rec["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("training ELBO per chunk (nats, higher is better)")
    ax.set_title(f"VAE 784-200-200-{args.latent_dim}, q by flow: {args.device_label}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Flow inference models on binarized MNIST: {m['device_label']}", "",
             "Command:", "", "```bash", m["command"], "```", "",
             f"- date: {m['date']}; versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"- model: VAE 784-{'-'.join(map(str, m['hidden']))}-{m['latent_dim']} tanh, Bernoulli; "
             f"reparam_elbo (K=1), Adam lr {m['lr']}, batch {m['batch_size']}, {m['epochs']} epochs on "
             f"{m['train_n']} dynamically binarized training images; IAF MADE hidden {m['iaf_hidden']}",
             f"- test: first {m['eval_n']} test images binarized once; -ELBO averaged over {m['elbo_samples']} "
             f"draws; NLL = -log p̂_K with K={m['eval_k']} (sajax.evaluate.iw_nll)",
             f"- wall time: {m['total_seconds'] / 60:.1f} min", "",
             "| q(h|x) | test -ELBO | test NLL (IW) | epochs | train min | eval min |", "|---|---|---|---|---|---|"]
    for r in report["table"]:
        lines.append(f"| {r['label']} | {r['test_neg_elbo']:.2f} | {r['test_nll']:.2f} | {r['epochs']:g} | "
                     f"{r['train_seconds'] / 60:.1f} | {r['eval_seconds'] / 60:.1f} |")
    lines += ["", "Published (different architectures and training lengths; orientation only):", "",
              "| q(h|x) | published | source |", "|---|---|---|"]
    lines += [f"| {_label(f, k) if k is not None else f} | {v} | {src} |" for f, k, v, src in PUBLISHED]
    lines += ["", f"![training curves]({m['curves_png']})", ""]
    return "\n".join(lines)


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--flows", nargs="+", default=["diag", "planar", "planar", "iaf"],
                    choices=["diag", "planar", "radial", "nice", "realnvp", "iaf"])
    ap.add_argument("--num-flows", type=int, nargs="+", default=[0, 10, 80, 2],
                    help="K for each entry of --flows (one value: used for all)")
    ap.add_argument("--epochs", type=float, default=100)
    ap.add_argument("--max-train", type=int, default=50000, help="training images used (of 50,000)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent-dim", type=int, default=50)
    ap.add_argument("--hidden", type=int, nargs="+", default=[200, 200])
    ap.add_argument("--iaf-hidden", type=int, nargs="+", default=[200])
    ap.add_argument("--eval-k", type=int, default=5000)
    ap.add_argument("--eval-n", type=int, default=10000)
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--elbo-samples", type=int, default=10)
    ap.add_argument("--memory-mb", type=float, default=2048)
    ap.add_argument("--chunk-steps", type=int, default=None, help="steps per jitted chunk (default one epoch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="flow_vae_mnist")
    args = ap.parse_args(argv)
    if len(args.num_flows) == 1:
        args.num_flows = args.num_flows * len(args.flows)
    if len(args.num_flows) != len(args.flows):
        raise SystemExit(f"--num-flows needs one value or one per --flows entry ({len(args.flows)}), "
                         f"got {len(args.num_flows)}")
    if any(k < 0 for k in args.num_flows) or args.epochs <= 0 or args.max_train < args.batch_size:
        raise SystemExit("--num-flows must be >= 0, --epochs > 0 and --max-train >= --batch-size")
    return args


def main(argv=None):
    args = _parse(argv)
    import jax
    import jaxlib

    from sajax.data import fixed_binarize, load_mnist

    train = np.asarray(load_mnist("train"), np.float32)[: args.max_train]
    test_bin = fixed_binarize(np.asarray(load_mnist("test"))[: args.eval_n], seed=args.seed)
    args.device_label = args.device_label or f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = []
    for i, (flow, k) in enumerate(zip(args.flows, args.num_flows)):
        rec = train_one(flow, k, args, train, test_bin, args.seed + 1000 * i)
        table.append(rec)
        print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {rec['label']}: test -ELBO {rec['test_neg_elbo']:.2f}, "
              f"NLL {rec['test_nll']:.2f}", flush=True)
    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for mod in ("flax", "optax", "distrax"):
        versions[mod] = __import__(mod).__version__
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(
                argv if argv is not None else sys.argv[1:])),
            "date": _dt.datetime.now().isoformat(timespec="seconds"), "device_label": args.device_label,
            "versions": versions, "epochs": args.epochs, "train_n": len(train), "batch_size": args.batch_size,
            "lr": args.lr, "latent_dim": args.latent_dim, "hidden": args.hidden, "iaf_hidden": args.iaf_hidden,
            "eval_k": args.eval_k, "eval_n": len(test_bin), "elbo_samples": args.elbo_samples,
            "total_seconds": time.perf_counter() - t0, "curves_png": f"{args.name}_curves.png"}
    _plot(table, out / meta["curves_png"], args)
    report = {"meta": meta, "published": PUBLISHED, "table": table}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
