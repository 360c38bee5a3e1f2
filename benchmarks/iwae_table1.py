"""IWAE paper, Table 1, one stochastic layer: test NLL of VAE and IWAE for K = 1, 5, 50.

Burda, Grosse & Salakhutdinov (2016), "Importance weighted autoencoders",
Sec. 5 / Table 1, reproduced with sajax (review Sec. 3.2.1, Eq. 7 and Eq. 19):

* model: ``sajax.models.iwae_one_layer(784)`` (784-200-200-50 tanh Gaussian
  encoder, mirrored Bernoulli decoder);
* VAE with K samples: ``reparam_elbo(num_samples=K, kl="mc")`` (the K-sample
  average of the ELBO, Eq. 7); IWAE: ``iwae(num_samples=K)`` (the IW bound,
  Eq. 19).  At K = 1 the two are the same estimator, so K = 1 is trained once
  and reported in both rows;
* training: dynamically binarized MNIST (50,000 training images), batch 20,
  Adam (β = 0.9, 0.999, ε = 1e-4) with the paper's schedule
  ``sajax.sa.iwae_schedule``: stage i = 0..7 lasts 3^i passes at learning rate
  1e-3·10^(-i/7), 3,280 passes in all; ``--stages`` / ``--epoch-scale``
  shorten it;
* evaluation: test NLL = -mean log p̂_K(x) with K = 5000 importance samples
  (``sajax.evaluate.iw_nll``) on the test set binarized once with a fixed seed;
* training curve: log p̂_K with ``--curve-k`` samples on ``--curve-n`` validation
  images, every ``--curve-every`` chunks of ``--chunk-steps`` steps.

Outputs in ``--out``: ``<name>.md`` (the table beside the paper's numbers, with
the command), ``<name>.json`` (everything), ``<name>_curve.png``.

Full schedule (GPU)::

    source .whl/env.sh && python3 benchmarks/iwae_table1.py --out "$OUT"

Short CPU run::

    python benchmarks/iwae_table1.py --ks 1 5 --stages 2 --epoch-scale 0.5 --eval-k 1000 --eval-n 1000 \\
        --chunk-steps 500 --name iwae_table1_cpu --out benchmarks/results
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

PAPER_NLL = {("iwae", 1): 86.76, ("iwae", 5): 85.54, ("iwae", 50): 84.78,
             ("vae", 1): 86.76, ("vae", 5): 86.47, ("vae", 50): 86.35}
PAPER_EPOCHS = 3280


def _schedule_epochs(stages: int, epoch_scale: float) -> float:
    return sum(3 ** i * epoch_scale for i in range(stages))


def _replica(tree, r):
    import jax

    return jax.tree_util.tree_map(lambda a: a[r], tree)


def train_one(method: str, k: int, args, train, valid_bin, test_bin, run_seed: int) -> dict:
    """Train one (method, K) configuration (``args.replicas`` seeds in one program)
    and evaluate its test NLL; returns a JSON-ready record."""
    import jax
    import optax

    from sajax import sa
    from sajax.data import dynamic_binarize
    from sajax.estimators import iwae, reparam_elbo
    from sajax.evaluate import iw_log_likelihood, iw_nll
    from sajax.models import iwae_one_layer

    spec = iwae_one_layer(784)
    if method == "iwae" and k > 1:
        est, metric = iwae(spec.model, spec.guide, num_samples=k), "iw_bound"
    else:   # the VAE, and K = 1 for both (the same estimator)
        est, metric = reparam_elbo(spec.model, spec.guide, num_samples=k, kl="mc"), "elbo"
    spe = train.shape[0] // args.batch_size
    schedule = sa.iwae_schedule(spe, base=args.lr, stages=args.stages, epoch_scale=args.epoch_scale)
    optimizer = optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-4)
    total_steps = sum(int(round(3 ** i * args.epoch_scale * spe)) for i in range(args.stages))
    reps = args.replicas
    init_keys = jax.random.split(jax.random.key(run_seed), reps)
    params = jax.vmap(spec.init)(init_keys) if reps > 1 else spec.init(init_keys[0])
    curve_key = jax.random.key(run_seed + 7)

    def curve_bound(p):
        return float(np.mean(iw_log_likelihood(spec.model, spec.guide, p, curve_key, valid_bin,
                                               num_samples=args.curve_k, batch_size=min(100, len(valid_bin)))))

    def eval_fn(p, step):
        if reps > 1:
            vals = [curve_bound(_replica(p, r)) for r in range(reps)]
            return {"valid_bound": vals}
        return {"valid_bound": curve_bound(p)}

    chunk = args.chunk_steps or spe
    ckpt = log = None
    if args.checkpoint_dir:
        # a resumed run continues from the last chunk saved; its log holds the whole curve
        ckpt = Path(args.checkpoint_dir) / f"{method}_k{k}"
        log = ckpt / "metrics.jsonl"
    elif args.log:
        log = Path(args.out) / f"{args.name}_{method}_k{k}.jsonl"
    res = sa.fit(est, optimizer, params, train, key=jax.random.key(run_seed + 1), batch_size=args.batch_size,
                 num_steps=total_steps, chunk_steps=chunk, preprocess=dynamic_binarize,
                 eval_fn=eval_fn, eval_every=args.curve_every, progress=args.progress,
                 replicas=reps if reps > 1 else None, log_path=log, checkpoint_dir=ckpt)
    history = res.history
    if ckpt is not None and log.exists():
        # a chunk logged but not checkpointed before an interruption is redone: keep its last record
        by_step = {}
        for line in log.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                by_step[rec["step"]] = rec
        history = [by_step[s] for s in sorted(by_step)]
    train_s = sum(h["seconds"] for h in history)
    final = jax.device_get(res.state.params)
    tic = time.perf_counter()
    eval_key = jax.random.key(args.seed + 12345)
    nlls = [iw_nll(spec.model, spec.guide, _replica(final, r) if reps > 1 else final, eval_key, test_bin,
                   num_samples=args.eval_k, batch_size=args.eval_batch, memory_budget_mb=args.memory_mb)
            for r in range(reps)]
    eval_s = time.perf_counter() - tic
    curve = [{"epoch": h["epoch"], "train_bound": h[metric], "seconds": h["seconds"],
              **({"valid_bound": h["eval/valid_bound"]} if "eval/valid_bound" in h else {})}
             for h in history]
    return {"method": method, "k": k, "objective": metric, "nll": nlls, "nll_mean": float(np.mean(nlls)),
            "nll_std": float(np.std(nlls)) if reps > 1 else None, "train_seconds": train_s,
            "eval_seconds": eval_s, "steps": total_steps, "epochs": total_steps / spe, "curve": curve}


def _plot(records, path, args):
    """Two panels against epochs: validation log p̂ (the curve) and the training bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    panels = (("valid_bound", f"valid log p̂, K={args.curve_k}, {args.curve_n} images"),
              ("train_bound", "training bound (dynamic binarization, chunk mean)"))
    for ax, (field, title) in zip(axes, panels):
        ys = []
        for i, rec in enumerate(records):
            pts = [(c["epoch"], float(np.mean(c[field]))) for c in rec["curve"] if field in c]
            if not pts:
                continue
            e, v = zip(*pts)
            ys += list(v[len(v) // 4:])
            ax.plot(e, v, marker="o" if field == "valid_bound" else None, ms=3, color=f"C{i}", label=rec["label"])
        if ys:
            ax.set_ylim(min(ys) - 2, max(ys) + 2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch (passes over 50,000 images)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("nats per image (higher is better)")
    fig.suptitle(f"IWAE Table 1 (one stochastic layer), {args.device_label}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(report) -> str:
    m = report["meta"]
    short = m["stages"] != 8 or m["epoch_scale"] != 1.0 or m["eval_k"] != 5000 or m["eval_n"] != 10000
    title = "IWAE paper Table 1 (one stochastic layer)"
    lines = [f"# {title}: {m['device_label']}" + (" — SHORTENED RUN" if short else ""), ""]
    if short:
        lines += [f"**Shortened run**: {m['epochs']:.3g} passes over the training set (paper: {PAPER_EPOCHS}), "
                  f"schedule stages={m['stages']}, epoch_scale={m['epoch_scale']}; test NLL with K={m['eval_k']} "
                  f"on {m['eval_n']} test images (paper: K=5000 on all 10,000). The numbers are therefore not "
                  f"comparable to the paper's; they show the pipeline and the ordering of the methods.", ""]
    lines += ["Command:", "", "```bash", m["command"], "```", ""]
    lines += [f"- date: {m['date']}; device: {m['device_label']} (jax `{m['jax_backend']}`); "
              f"versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
              f"- model: iwae_one_layer (784-200-200-50 tanh, Bernoulli); batch {m['batch_size']}, Adam "
              f"(0.9, 0.999, ε=1e-4), lr {m['lr']}·10^(-i/7) for 3^i·{m['epoch_scale']} passes, i < {m['stages']}; "
              f"dynamic binarization; init: flax default (LeCun normal; the paper used Glorot & Bengio)",
              f"- test NLL: -mean log p̂_K, K={m['eval_k']}, first {m['eval_n']} test images binarized once "
              f"(seed {m['seed']}); replicas per configuration: {m['replicas']}",
              f"- wall time: {m['total_seconds'] / 60:.1f} min" + (f"; {m['note']}" if m.get("note") else ""),
              "", "| method | K | test NLL (ours) | test NLL (paper) | final train objective | passes | train min | eval min |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["table"]:
        nll = f"{row['nll_mean']:.2f}" + (f" ± {row['nll_std']:.2f}" if row.get("nll_std") is not None else "")
        tb = np.mean(row["curve"][-1]["train_bound"]) if row["curve"] else float("nan")
        name = row["method"].upper() + (" (same run as VAE K=1)" if row.get("shared") else "")
        lines.append(f"| {name} | {row['k']} | {nll} | {PAPER_NLL.get((row['method'], row['k']), '–')} | "
                     f"{tb:.2f} | {row['epochs']:.3g} | {row['train_seconds'] / 60:.1f} | {row['eval_seconds'] / 60:.1f} |")
    lines += ["", f"Training curve: `{m['curve_png']}` (valid log p̂ with K={m['curve_k']} on {m['curve_n']} "
              f"validation images, and the training objective per chunk of {m['chunk_steps']} steps).", "",
              "Final train objective: mean over the last chunk of the objective each run optimizes on "
              "dynamically binarized training batches: the K-sample average ELBO for the VAE, the IW bound "
              "Î_K for IWAE (nats, higher is better).", "",
              f"![training curve]({m['curve_png']})", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["vae", "iwae"], choices=["vae", "iwae"])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    ap.add_argument("--stages", type=int, default=8, help="schedule stages i = 0..stages-1 (paper: 8)")
    ap.add_argument("--epoch-scale", type=float, default=1.0, help="stage i lasts 3^i * scale passes (paper: 1)")
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-k", type=int, default=5000, help="importance samples for the test NLL")
    ap.add_argument("--eval-n", type=int, default=10000, help="test images for the test NLL")
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--memory-mb", type=float, default=2048, help="memory budget of one K-chunk in evaluation")
    ap.add_argument("--curve-k", type=int, default=100, help="importance samples of the validation curve")
    ap.add_argument("--curve-n", type=int, default=1000, help="validation images of the curve")
    ap.add_argument("--chunk-steps", type=int, default=None,
                    help="steps per jitted chunk (must divide 50000/batch); default one epoch")
    ap.add_argument("--curve-every", type=int, default=None,
                    help="chunks between curve points (default: about 40 points over the run)")
    ap.add_argument("--replicas", type=int, default=1, help="seeds per configuration, trained in one program")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--progress", action="store_true", help="tqdm progress bar")
    ap.add_argument("--log", action="store_true", help="write a JSON-lines log per run")
    ap.add_argument("--checkpoint-dir", default=None,
                    help="orbax checkpoints per chunk under DIR/<method>_k<K>; rerunning the same command "
                         "resumes there (for schedules longer than one session)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="iwae_table1")
    args = ap.parse_args(argv)
    for flag in ("stages", "batch_size", "eval_k", "eval_n", "curve_k", "curve_n", "replicas", "eval_batch"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.epoch_scale <= 0 or any(k < 1 for k in args.ks):
        raise SystemExit("--epoch-scale must be > 0 and --ks >= 1")

    import jax

    from sajax.data import fixed_binarize, load_mnist

    train = np.asarray(load_mnist("train"), np.float32)
    valid_bin = fixed_binarize(np.asarray(load_mnist("valid"))[: args.curve_n], seed=args.seed + 1)
    test_bin = fixed_binarize(np.asarray(load_mnist("test"))[: args.eval_n], seed=args.seed)
    spe = train.shape[0] // args.batch_size
    chunk = args.chunk_steps or spe
    if spe % chunk:
        raise SystemExit(f"--chunk-steps {chunk} must divide the {spe} steps of an epoch")
    total_steps = sum(int(round(3 ** i * args.epoch_scale * spe)) for i in range(args.stages))
    if args.curve_every is None:
        args.curve_every = max(1, -(-total_steps // chunk) // 40)
    args.device_label = args.device_label or f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    table, done = [], {}
    for method in args.methods:
        for k in args.ks:
            cfg = ("same", 1) if k == 1 else (method, k)   # K=1: VAE and IWAE are one estimator
            if cfg in done:
                row = dict(done[cfg], method=method, shared=True)
            else:
                rec = train_one(method, k, args, train, valid_bin, test_bin, args.seed + 1000 * k)
                row = dict(rec, method=method)
                done[cfg] = rec
            table.append(row)
            print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {method.upper()} K={k}: test NLL "
                  f"{row['nll_mean']:.2f} (paper {PAPER_NLL.get((method, k), '–')}), {row['epochs']:.3g} passes, "
                  f"train {row['train_seconds']:.0f} s, eval {row['eval_seconds']:.0f} s", flush=True)

    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for mod in ("flax", "optax", "sajax"):
        versions[mod] = __import__(mod).__version__
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(
                argv if argv is not None else sys.argv[1:])),
            "date": _dt.datetime.now().isoformat(timespec="seconds"), "device_label": args.device_label,
            "jax_backend": jax.default_backend(), "versions": versions, "cpu_count": os.cpu_count(),
            "stages": args.stages, "epoch_scale": args.epoch_scale, "epochs": total_steps / spe,
            "batch_size": args.batch_size, "lr": args.lr, "eval_k": args.eval_k, "eval_n": len(test_bin),
            "curve_k": args.curve_k, "curve_n": len(valid_bin), "chunk_steps": chunk, "replicas": args.replicas,
            "seed": args.seed, "note": args.note, "total_seconds": time.perf_counter() - t0,
            "curve_png": f"{args.name}_curve.png"}
    uniq = [dict(r, label=("VAE=IWAE" if r["k"] == 1 else r["method"].upper()) + f" K={r['k']}")
            for r in table if not r.get("shared")]
    _plot(uniq, out / meta["curve_png"], args)
    report = {"meta": meta, "paper": {f"{m}_k{k}": v for (m, k), v in PAPER_NLL.items()}, "table": table}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {out / (args.name + '.md')}, {out / (args.name + '.json')}, {out / meta['curve_png']}")


if __name__ == "__main__":
    main()
