"""Training throughput: sajax vs PyTorch eager vs NumPyro SVI vs a hand-fused JAX loop.

One model everywhere (see ``_peers.py``): the IWAE paper's one-stochastic-layer
VAE, 784-200-200-50 tanh Gaussian encoder, mirrored 50-200-200-784 Bernoulli
decoder, Adam 1e-3, batch 100, dynamic binarization, the first
``steps_per_epoch * 100`` training images (500 steps = the 50,000 images of
an epoch).  K = 1: reparameterized Monte Carlo ELBO (VAE); K > 1: the IW bound
(IWAE).  Also R replicas of the sajax K = 1 run in one program
(``sajax.sa.fit(..., replicas=R)``).

For every run: one warm-up epoch (it includes tracing and XLA compilation for
the JAX loops), then ``--epochs`` timed epochs; the table reports the median
seconds per epoch, that median scaled to a 500-step epoch when
``--steps-per-epoch`` is smaller (labelled "extrapolated"), and the warm-up
overhead (first epoch minus median: compilation for the JAX loops).  All
implementations start from the same weights, and every final model is scored
by one shared function (mean Î_K on fixed-binarized validation images) to
check that they optimize the same objective.

Usage (CPU, shortened)::

    python benchmarks/throughput.py --steps-per-epoch 50 --epochs 3 --out benchmarks/results

GPU (see benchmarks/README.md)::

    source .whl/env.sh && python3 benchmarks/throughput.py --device-label "H100" --out "$OUT"
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers  # noqa: E402

FULL_EPOCH_STEPS = 500


def _versions() -> dict:
    import jax
    import jaxlib

    out = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for mod in ("flax", "optax", "numpy", "torch", "numpyro", "sajax"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # not installed: the peer is simply not run
            out[mod] = None
    return out


def _device_info(torch_device) -> dict:
    import jax

    dev = jax.devices()[0]
    info = {"jax_backend": jax.default_backend(), "jax_device": getattr(dev, "device_kind", str(dev)),
            "jax_device_count": jax.device_count(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    try:
        import torch

        dev_t = _peers._torch_device(torch_device)
        info["torch_device"] = str(dev_t)
        info["torch_threads"] = torch.get_num_threads()
        if dev_t.type == "cuda":
            info["torch_device_name"] = torch.cuda.get_device_name(dev_t)
    except ImportError:
        pass
    return info


def _summarize(name, k, replicas, results, steps, eval_x, eval_seed) -> dict:
    """One table row from one or more rounds (``results``: a RunResult per round).

    The median is over the timed epochs of every round; the warm-up overhead is
    the median first epoch minus that median; bounds come from round 1 (every
    round repeats the same seeded run).
    """
    timed = [t for res in results for t in res.epoch_seconds[1:]]
    firsts = [res.epoch_seconds[0] for res in results]
    med = statistics.median(timed)
    res = results[0]
    row = {
        "impl": name, "k": k, "replicas": replicas, "steps_per_epoch": steps, "rounds": len(results),
        "epoch_seconds": [r.epoch_seconds for r in results],
        "first_epoch_s": statistics.median(firsts),
        "median_epoch_s": med,
        "median_epoch_s_500": med * FULL_EPOCH_STEPS / steps,
        "warmup_overhead_s": statistics.median(firsts) - med,
        "steps_per_s": steps / med,
        "train_bound_last_epoch": float(np.mean(res.train_bound[-1])),
        "note": res.note,
    }
    if replicas:
        row["examples_per_s_all_replicas"] = replicas * steps * 100 / med
    if res.canon is not None:
        row["eval_bound"] = _peers.eval_bound(res.canon, eval_x, k, seed=eval_seed)
    return row


def _ratio(rows, a, b, k):
    ta = next((r["median_epoch_s"] for r in rows if r["impl"] == a and r["k"] == k and not r["replicas"]), None)
    tb = next((r["median_epoch_s"] for r in rows if r["impl"] == b and r["k"] == k and not r["replicas"]), None)
    return None if ta is None or tb is None else ta / tb


def _fmt(v, nd=3):
    return "–" if v is None else f"{v:.{nd}f}"


def _markdown(report) -> str:
    m, rows = report["meta"], report["results"]
    ext = m["steps_per_epoch"] != FULL_EPOCH_STEPS
    lines = [f"# Training throughput: {m['device_label']}", ""]
    lines += ["Command:", "", "```bash", m["command"], "```", ""]
    lines += [f"- date: {m['date']}",
              f"- device: {m['device_label']}; jax backend `{m['device']['jax_backend']}` "
              f"({m['device']['jax_device']}), torch on `{m['device'].get('torch_device')}` "
              f"{m['device'].get('torch_device_name', '')}; {m['device']['cpu_count']} CPU cores "
              f"({m['device']['processor']})",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
              f"- model: 784-200-200-50 tanh Gaussian encoder, 50-200-200-784 Bernoulli decoder, Adam 1e-3, "
              f"batch {m['batch_size']}, dynamic binarization, {m['steps_per_epoch']} steps an epoch "
              f"(first {m['steps_per_epoch'] * m['batch_size']} training images)",
              f"- timing: 1 warm-up epoch (includes compilation) + {m['timed_epochs']} timed epochs per run, "
              f"{m.get('rounds', 1)} round(s) (order alternated); median over all timed epochs of all rounds "
              f"(replica runs: one round)",
              f"- load average (1 min) before / after: {m['loadavg_start']} / {m['loadavg_end']}"]
    if ext:
        lines.append(f"- **shortened epochs**: {m['steps_per_epoch']} steps were timed; the column "
                     f"\"s / 500-step epoch\" is the median **extrapolated** linearly to 500 steps")
    if m.get("note"):
        lines.append(f"- note: {m['note']}")
    lines += ["", "## Seconds per epoch", "",
              "| impl | K | median s / epoch | s / 500-step epoch" + (" (extrap.)" if ext else "") +
              " | steps / s | first epoch s | warm-up overhead s (≈ compile) | train bound (last epoch) "
              "| eval bound (shared scorer) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["replicas"]:
            continue
        lines.append(f"| {r['impl']} | {r['k']} | {_fmt(r['median_epoch_s'])} | {_fmt(r['median_epoch_s_500'], 2)} | "
                     f"{_fmt(r['steps_per_s'], 1)} | {_fmt(r['first_epoch_s'], 2)} | {_fmt(r['warmup_overhead_s'], 2)} | "
                     f"{_fmt(r['train_bound_last_epoch'], 2)} | {_fmt(r.get('eval_bound'), 2)} |")
    lines += ["", "## Ratios (median seconds per epoch; > 1 means the first is slower)", "",
              "| K | " + " | ".join(report["ratios"]["columns"]) + " |",
              "|---|" + "---|" * len(report["ratios"]["columns"])]
    for k, vals in report["ratios"]["by_k"].items():
        lines.append(f"| {k} | " + " | ".join(_fmt(vals.get(c), 2) for c in report["ratios"]["columns"]) + " |")
    reps = [r for r in rows if r["replicas"]]
    if reps:
        lines += ["", "## Replicas: R independent sajax K=1 runs in one program (`fit(..., replicas=R)`)", "",
                  "| R | median s / epoch (all R) | s / 500-step epoch" + (" (extrap.)" if ext else "") +
                  " | time vs R=1 | throughput vs R=1 (R·t₁/t_R) | first epoch s | mean train bound |",
                  "|---|---|---|---|---|---|---|"]
        t1 = next((r["median_epoch_s"] for r in reps if r["replicas"] == 1), None)
        for r in reps:
            rel = None if t1 is None else r["median_epoch_s"] / t1
            gain = None if t1 is None else r["replicas"] * t1 / r["median_epoch_s"]
            lines.append(f"| {r['replicas']} | {_fmt(r['median_epoch_s'])} | {_fmt(r['median_epoch_s_500'], 2)} | "
                         f"{_fmt(rel, 2)} | {_fmt(gain, 2)} | {_fmt(r['first_epoch_s'], 2)} | "
                         f"{_fmt(r['train_bound_last_epoch'], 2)} |")
    lines += ["", "## Implementations", ""]
    for name in dict.fromkeys(r["impl"] for r in rows):
        notes = list(dict.fromkeys(f"K={r['k']}: {r['note']}" for r in rows if r["impl"] == name and not r["replicas"]))
        lines.append(f"- **{name}**: {_peers.RUNNERS_DOC.get(name, name)} ({'; '.join(notes)})")
    lines += ["", "Train bound: mean over the last epoch of each loop's own training objective (Î_K per "
              "example, nats). Eval bound: every final model scored by the same jnp function (mean Î_K, same K, "
              f"on {m['eval_n']} fixed-binarized validation images); all implementations start from the same "
              "weights, so these agree up to Monte Carlo noise when the objectives are the same.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device-label", default=None, help="name of the machine for the table (default: from jax)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 50], help="number of samples K (1: VAE, >1: IWAE)")
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 10, 100],
                    help="R values for sajax K=1 replicas (none: skip)")
    ap.add_argument("--peers", nargs="+", default=["torch", "numpyro", "fused", "sajax"],
                    choices=sorted(_peers.RUNNERS), help="implementations to time")
    ap.add_argument("--steps-per-epoch", type=int, default=FULL_EPOCH_STEPS,
                    help="steps per epoch (500 = 50,000 images; fewer to shorten, then times are extrapolated)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat every (K, peer) run this many times, alternating the order; medians pool all "
                         "rounds (use >= 2 on a shared machine)")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-n", type=int, default=1000, help="validation images for the shared scorer")
    ap.add_argument("--torch-device", default=None, help="torch device (default: cuda if available, else cpu)")
    ap.add_argument("--note", default="", help="free text for the table (e.g. 'CPU shared with other jobs')")
    ap.add_argument("--out", default="benchmarks/results", help="directory for throughput.json / throughput.md")
    ap.add_argument("--name", default="throughput", help="file stem of the outputs")
    args = ap.parse_args(argv)
    for flag in ("epochs", "steps_per_epoch", "batch_size", "eval_n", "rounds"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if any(k < 1 for k in args.ks) or any(r < 1 for r in args.replicas):
        raise SystemExit("--ks and --replicas must be >= 1")

    import jax

    from sajax.data import fixed_binarize, load_mnist

    n = args.steps_per_epoch * args.batch_size
    train = np.asarray(load_mnist("train"), np.float32)
    if n > len(train):
        raise SystemExit(f"--steps-per-epoch {args.steps_per_epoch} x batch {args.batch_size} exceeds "
                         f"the {len(train)} training images")
    data = np.ascontiguousarray(train[:n])
    eval_x = fixed_binarize(np.asarray(load_mnist("valid"))[: args.eval_n], seed=args.seed)
    canon = _peers.canonical_init(args.seed)
    epochs = 1 + args.epochs
    label = args.device_label or f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(argv if argv is not None
                                                                                       else sys.argv[1:])),
        "device_label": label, "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "versions": _versions(), "device": _device_info(args.torch_device),
        "steps_per_epoch": args.steps_per_epoch, "batch_size": args.batch_size,
        "timed_epochs": args.epochs, "rounds": args.rounds, "eval_n": args.eval_n, "note": args.note,
        "loadavg_start": round(os.getloadavg()[0], 2),
    }
    rows = []
    t_start = time.perf_counter()
    runs = {}
    for rnd in range(args.rounds):
        # alternate the order so that slow drifts of a shared machine's load hit every peer alike
        order = args.peers if rnd % 2 == 0 else args.peers[::-1]
        for k in args.ks:
            for name in order:
                kw = dict(k=k, steps=args.steps_per_epoch, epochs=epochs, batch_size=args.batch_size, seed=args.seed)
                if name.startswith("torch") and args.torch_device:
                    kw["device"] = args.torch_device
                tic = time.perf_counter()
                res = _peers.RUNNERS[name](canon, data, **kw)
                runs.setdefault((k, name), []).append(res)
                print(f"[{time.perf_counter() - t_start:7.1f}s] round {rnd + 1} K={k:<3d} {name:14s} "
                      f"epochs {' '.join(f'{t:.3f}' for t in res.epoch_seconds)} s, train bound "
                      f"{res.train_bound[-1]:.2f} [{time.perf_counter() - tic:.0f} s]", flush=True)
    for k in args.ks:
        for name in args.peers:
            row = _summarize(name, k, None, runs[(k, name)], args.steps_per_epoch, eval_x, args.seed)
            rows.append(row)
            print(f"K={k:<3d} {name:14s} median {row['median_epoch_s']:.3f} s/epoch "
                  f"(500-step: {row['median_epoch_s_500']:.2f} s), first {row['first_epoch_s']:.2f} s, "
                  f"eval bound {row.get('eval_bound', float('nan')):.2f}", flush=True)
    for r in args.replicas:
        res = _peers.run_sajax(None, data, k=1, epochs=epochs, batch_size=args.batch_size, seed=args.seed, replicas=r)
        row = _summarize("sajax", 1, r, [res], args.steps_per_epoch, eval_x, args.seed)
        rows.append(row)
        print(f"[{time.perf_counter() - t_start:7.1f}s] sajax K=1 R={r:<4d} median {row['median_epoch_s']:.3f} s/epoch "
              f"(500-step: {row['median_epoch_s_500']:.2f} s), first {row['first_epoch_s']:.2f} s, "
              f"mean train bound {row['train_bound_last_epoch']:.2f}", flush=True)
    meta["loadavg_end"] = round(os.getloadavg()[0], 2)
    meta["total_seconds"] = time.perf_counter() - t_start

    pairs = [("sajax", "fused"), ("torch", "sajax"), ("torch_1t", "sajax"), ("numpyro", "sajax"),
             ("numpyro_epoch", "sajax")]
    columns, by_k = [], {}
    for a, b in pairs:
        if a in args.peers and b in args.peers:
            columns.append(f"{a}/{b}")
    for k in args.ks:
        by_k[str(k)] = {f"{a}/{b}": _ratio(rows, a, b, k) for a, b in pairs if f"{a}/{b}" in columns}
    rep = {}
    reps = {r["replicas"]: r["median_epoch_s"] for r in rows if r["replicas"]}
    if 1 in reps:
        rep = {str(r): {"time_vs_R1": t / reps[1], "throughput_vs_R1": r * reps[1] / t} for r, t in reps.items()}
    report = {"meta": meta, "results": rows, "ratios": {"columns": columns, "by_k": by_k, "replicas": rep}}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.md')}")


if __name__ == "__main__":
    main()
