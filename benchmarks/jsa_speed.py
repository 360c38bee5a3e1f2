"""Speed of JSA against reweighted wake-sleep at the same K, and JSA's MIS acceptance over training.

Same sigmoid belief net (review Eq. 2), same data, batch, optimizer and budget
of K latent draws per example per step:

* ``rws``: reweighted wake-sleep, wake+sleep φ-update, K importance samples
  (review Sec. 3.2.2, Eq. 23 / 25);
* ``jsa``: JSA (Sec. 3.2.3, Algorithm 5) with ``num_moves=K, num_proposals=1``:
  K MIS proposals drawn in one batched call, K chain samples in the gradient,
  the per-example latent cache bit-packed on the device; the gradient by the
  batched-proposal trick (one forward pass of log p and log q over the cached
  state and the K proposals, pulled back with selection weights: ``batched``
  chosen automatically);
* ``jsa-gathered``: the same chain, but the candidates weighed without
  gradients and a second forward + backward pass over the K chain samples
  (``batched=False``, how JSA formed its gradient before issue 10);
* ``jsa-thin``: JSA with ``num_moves=1, num_proposals=K``: the same K
  proposals, only the last chain state enters the gradient.

Each run trains for ``--warmup`` + ``--epochs`` epochs with ``sajax.sa.fit``
(one jitted ``lax.scan`` per chunk of ``--chunk-steps`` steps); seconds per
epoch are the sum of its chunks, the warm-up epochs (compilation) are left out
and the median is taken over the timed epochs of all ``--rounds`` (the configs
are interleaved round by round, so a load change on a shared machine hits all
of them).  Target (issue 10): JSA at most 1.1x the time of RWS per epoch.

The MIS acceptance rate (mean of min(1, w(h')/w(h)) over the batch and the
moves, per chunk) is plotted against epochs; ``--curve-from`` adds the JSA
curve of a ``discrete_mnist.py`` JSON (a longer run).

Outputs in ``--out``: ``<name>.md``, ``<name>.json``, ``<name>.png``.

GPU::

    source .whl/env.sh && python3 benchmarks/jsa_speed.py --k 50 --epochs 5 --rounds 2 --out "$OUT"

Short CPU run::

    python benchmarks/jsa_speed.py --k 4 --epochs 3 --rounds 2 --name discrete_speed_cpu \\
        --curve-from benchmarks/results/discrete_mnist_cpu.json --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrete_mnist import ARCH_LABELS, ARCHS, command_line, environment, load_data, make_spec  # noqa: E402

CONFIGS = ("rws", "jsa", "jsa-gathered", "jsa-thin")


def build(config, spec, k):
    from sajax.estimators import jsa, rws

    if config == "rws":
        return rws(spec.model, spec.guide, num_samples=k, phi_update="wake+sleep")
    if config == "jsa":
        return jsa(spec.model, spec.guide, num_moves=k, num_proposals=1)
    if config == "jsa-gathered":
        return jsa(spec.model, spec.guide, num_moves=k, num_proposals=1, batched=False)
    if config == "jsa-thin":
        return jsa(spec.model, spec.guide, num_moves=1, num_proposals=k)
    raise ValueError(f"config must be one of {CONFIGS}, got {config!r}")


def run_one(config, spec, train, args, round_) -> dict:
    import jax
    import optax

    from sajax import sa

    est = build(config, spec, args.k)
    params = spec.init(jax.random.key(args.seed))
    spe = train.shape[0] // args.batch_size
    chunk = args.chunk_steps or spe
    tic = time.perf_counter()
    res = sa.fit(est, optax.adam(args.lr, eps=1e-4), params, train, key=jax.random.key(args.seed + 1 + round_),
                 batch_size=args.batch_size, epochs=args.warmup + args.epochs, chunk_steps=chunk, progress=False)
    wall = time.perf_counter() - tic
    secs = [h["seconds"] for h in res.history]
    per_epoch = spe // chunk
    epoch_secs = [float(sum(secs[i:i + per_epoch])) for i in range(0, len(secs), per_epoch)]
    rec = {"config": config, "round": round_, "epoch_seconds": epoch_secs,
           "timed_epoch_seconds": epoch_secs[args.warmup:], "setup_seconds": wall - sum(secs),
           "curve": [{"epoch": h["epoch"], **{m: h[m] for m in ("acceptance_rate", "changed", "cache_age", "elbo", "iw_bound") if m in h}}
                     for h in res.history]}
    if config.startswith("jsa"):
        from sajax.estimators import cache_nbytes

        rec["cache_bytes"] = cache_nbytes(res.state.est_state)
    return rec


def _plot(report, path, extra_curve):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report["meta"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for i, rec in enumerate(r for r in report["runs"] if r["config"].startswith("jsa")):
        pts = [(c["epoch"], c["acceptance_rate"]) for c in rec["curve"]]
        e, a = zip(*pts)
        ax.plot(e, a, color=f"C{CONFIGS.index(rec['config'])}", alpha=0.8, marker=".",
                label=f"{rec['config']} (round {rec['round']})")
    if extra_curve:
        e, a = zip(*extra_curve["points"])
        ax.plot(e, a, color="k", marker="o", ms=3, label=extra_curve["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("MIS acceptance rate")
    ax.set_title("JSA: MIS acceptance over training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    configs = [c for c in CONFIGS if c in m["summary"]]
    meds = [m["summary"][c]["median_epoch_seconds"] for c in configs]
    ax.bar(configs, meds, color=[f"C{CONFIGS.index(c)}" for c in configs])
    for j, c in enumerate(configs):
        ax.text(j, meds[j], f"{meds[j]:.2f} s\n{m['summary'][c]['ratio_to_rws']:.2f}x RWS", ha="center",
                va="bottom", fontsize=8)
    ax.axhline(1.1 * m["summary"]["rws"]["median_epoch_seconds"], color="r", ls="--", lw=1, label="1.1x RWS")
    ax.set_ylabel("seconds per epoch (median)")
    ax.set_title(f"K={m['k']}, {m['n_train']} images, batch {m['batch_size']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"{m['device_label']}: {ARCH_LABELS[m['arch']]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# JSA vs RWS speed and MIS acceptance: {m['device_label']}", "", "Command:", "", "```bash",
             m["command"], "```", "",
             f"- date {m['date']}; device {m['device_label']} ({m['cpu_count']} CPUs visible); "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"- model {m['arch']} ({ARCH_LABELS[m['arch']]}); {m['n_train']} fixed-binarized images, batch "
             f"{m['batch_size']} ({m['n_train'] // m['batch_size']} steps an epoch), Adam lr {m['lr']}, K={m['k']}",
             f"- seconds per epoch: sum of the jitted chunks ({m['chunk_steps']} steps each) of an epoch; the first "
             f"{m['warmup']} epoch(s) (compilation) left out; median over {m['epochs']} timed epochs x "
             f"{m['rounds']} interleaved rounds",
             f"- wall time {m['total_seconds'] / 60:.1f} min", "",
             "| config | K draws spent as | s/epoch (median) | min–max | x RWS | first epoch s | setup s | "
             "final acceptance | cache |",
             "|---|---|---|---|---|---|---|---|---|"]
    spend = {"rws": f"{m['k']} wake samples + 1 sleep dream",
             "jsa": f"{m['k']} MIS proposals, {m['k']} chain samples in the gradient (batched pass)",
             "jsa-gathered": f"{m['k']} MIS proposals, {m['k']} chain samples in the gradient (second pass)",
             "jsa-thin": f"{m['k']} MIS proposals, last chain state in the gradient"}
    for c, s in m["summary"].items():
        cache = f"{s['cache_bytes'] / 2 ** 20:.2f} MiB" if s.get("cache_bytes") else "–"
        acc = f"{s['final_acceptance']:.3f}" if s.get("final_acceptance") is not None else "–"
        lines.append(f"| {c} | {spend[c]} | {s['median_epoch_seconds']:.2f} | {s['min_epoch_seconds']:.2f}–"
                     f"{s['max_epoch_seconds']:.2f} | {s['ratio_to_rws']:.2f} | {s['first_epoch_seconds']:.1f} | "
                     f"{s['setup_seconds']:.1f} | {acc} | {cache} |")
    lines += ["", "Target (issue 10): JSA at most 1.1x RWS per epoch: " + ", ".join(
        f"{c} {s['ratio_to_rws']:.2f}x" for c, s in m["summary"].items() if c != "rws") + ".", ""]
    lines += ["MIS acceptance is the mean of min(1, w(h')/w(h)) over each chunk. Within an epoch it rises: "
              "`sa.fit` reshuffles every epoch, so an example visited at position t of an epoch was last moved "
              "on average half an epoch plus t steps ago; we read the rise as the staler cached states (weighed "
              "under the current θ, φ) losing more often to fresh proposals. It drops back at each epoch "
              "boundary.", ""]
    if m.get("curve_from"):
        lines += [f"The black curve in the plot is the JSA run of `{m['curve_from']}` "
                  f"(acceptance per epoch: " + ", ".join(f"{a:.3f}" for _, a in m["extra_curve"]) + ").", ""]
    lines += [f"![speed and acceptance]({m['png']})", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--arch", default="linear", choices=ARCHS)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    ap.add_argument("--warmup", type=int, default=1, help="untimed epochs per run (compilation)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every config")
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--chunk-steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--curve-from", default=None, help="a discrete_mnist.py JSON whose JSA acceptance to overlay")
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="discrete_speed")
    args = ap.parse_args(argv)
    for flag in ("k", "epochs", "rounds", "n_train", "batch_size", "chunk_steps"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 1:
        raise SystemExit("--warmup must be >= 1 (the first epoch includes compilation)")
    if "rws" not in args.configs:
        raise SystemExit("--configs must include rws (the reference of the ratio)")
    spe = args.n_train // args.batch_size
    if spe % args.chunk_steps:
        raise SystemExit(f"--chunk-steps {args.chunk_steps} must divide the {spe} steps of an epoch")

    train, _, _ = load_data(args.n_train, 1, 1)
    spec = make_spec(args.arch)
    env = environment(args.device_label)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = []
    for r in range(args.rounds):
        for config in args.configs:
            rec = run_one(config, spec, train, args, r)
            runs.append(rec)
            print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] round {r} {config:8s} s/epoch "
                  + " ".join(f"{s:.2f}" for s in rec["epoch_seconds"])
                  + (f"  acceptance {rec['curve'][-1]['acceptance_rate']:.3f}" if config != "rws" else ""),
                  flush=True)
    summary = {}
    for config in args.configs:
        mine = [r for r in runs if r["config"] == config]
        timed = [s for r in mine for s in r["timed_epoch_seconds"]]
        summary[config] = {"median_epoch_seconds": float(np.median(timed)), "min_epoch_seconds": float(min(timed)),
                           "max_epoch_seconds": float(max(timed)),
                           "first_epoch_seconds": float(np.median([r["epoch_seconds"][0] for r in mine])),
                           "setup_seconds": float(np.median([r["setup_seconds"] for r in mine])),
                           "final_acceptance": (float(np.mean([r["curve"][-1]["acceptance_rate"] for r in mine]))
                                                if config.startswith("jsa") else None),
                           "cache_bytes": mine[0].get("cache_bytes")}
    for config in summary:
        summary[config]["ratio_to_rws"] = summary[config]["median_epoch_seconds"] / summary["rws"]["median_epoch_seconds"]
    extra = None
    meta_extra = {}
    if args.curve_from and Path(args.curve_from).exists():
        src = json.loads(Path(args.curve_from).read_text())
        jsa_runs = [r for r in src["table"] if r["method"] == "jsa" and r.get("curve")]
        if jsa_runs:
            pts = [(c["epoch"], c["acceptance_rate"]) for c in jsa_runs[0]["curve"]]
            extra = {"points": pts, "label": f"jsa, {Path(args.curve_from).name} ({jsa_runs[0]['arch']})"}
            meta_extra = {"curve_from": args.curve_from, "extra_curve": pts}
    meta = dict(env, command=command_line(argv), arch=args.arch, k=args.k, epochs=args.epochs, warmup=args.warmup,
                rounds=args.rounds, n_train=len(train), batch_size=args.batch_size, chunk_steps=args.chunk_steps,
                lr=args.lr, seed=args.seed, summary=summary, total_seconds=time.perf_counter() - t0,
                png=f"{args.name}.png", **meta_extra)
    report = {"meta": meta, "runs": runs}
    _plot(report, out / meta["png"], extra)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
