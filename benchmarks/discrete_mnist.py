"""Binarized MNIST with discrete latents: JSA against the variational and wake-sleep estimators.

Sigmoid belief nets (review Sec. 3.1.1, Eq. 2) trained by seven learning
methods side by side, at equal budgets (same epochs, batch, optimizer and
number of latent samples per example per step), then scored by the
importance-sampled test NLL (Eq. 17 / 19 with K = ``--eval-k`` samples from
q_φ(h|x)):

==========  ==========================================================  ==============
method      estimator (sajax)                                           review
==========  ==========================================================  ==============
jsa         ``jsa(num_moves=K/P, num_proposals=P)``: MIS chain + cache  3.2.3, Alg. 5
jsa-sched   the same, cache switched on after 60 % of the steps         Ou & Song 2020
            (``cache_from``; before it every chain starts at q)
jsa-off     the same, cache never used (``cache_from=None``)
jsa-thin    ``jsa(num_moves=1, num_proposals=K)``: one chain sample     3.2.3, Alg. 2
rws         ``rws(num_samples=K, phi_update="wake+sleep")``             3.2.2, Eq. 23/25
vimco       ``vimco(num_samples=K)``                                    3.2.1, Eq. 19
nvil        ``nvil(num_samples=K)`` + baseline net ``params["baseline"]`` 3.2.1 (2)
rloo        ``rloo(num_samples=K)``                                     3.2.1 (2)
disarm      ``disarm(num_pairs=K//2)`` (K//2 antithetic pairs)          3.2.1 (2)
gumbel-st   ``gumbel_softmax(num_samples=K, hard=True, τ)``             3.2.1 (2)
==========  ==========================================================  ==============

Budget: K latent draws whose log p_θ(x, h) is computed per example per step
(JSA: K = moves × proposals MIS proposals, plus one re-evaluation of the cached
state; RWS adds one sleep dream; DisARM on L stochastic layers evaluates
L × K).  Architectures (``sajax.models.sbn``): ``linear`` (784-200, Bernoulli
layer of 200, linear), ``linear-2`` (200-200 linear), ``nonlinear``
(784-200-200-(200): tanh MLPs around one stochastic layer of 200, the JSA
paper's "nonlinear"), ``linear-3`` (200-200-200 linear, the VIMCO paper's SBN).

Data: the standard 50k/10k/10k MNIST pickle, binarized once with a seeded
draw (``fixed_binarize``: train seed 0, validation seed 2, test seed 1).  This
is not Larochelle's fixed binarization used by the papers, so absolute NLLs
are not exactly comparable with published ones even at full length.

Outputs in ``--out``: ``<name>.md`` (table, command, anchors), ``<name>.json``,
``<name>.png`` (validation log p̂ per epoch).

GPU (the anchors of issue 3: VIMCO K=50 on 200-200-200 reaches 91.9 nats after
3000 epochs, Mnih & Rezende 2016; NVIL 96.7)::

    source .whl/env.sh && python3 benchmarks/discrete_mnist.py --archs linear-3 --methods vimco nvil \\
        --k 50 --epochs 3000 --eval-k 1000 --eval-n 10000 --out "$OUT"

Short CPU run::

    python benchmarks/discrete_mnist.py --archs linear --epochs 8 --k 4 --lr 1e-3 --eval-k 1000 \\
        --eval-n 1000 --curve-k 50 --curve-n 500 --name discrete_mnist_cpu --out benchmarks/results
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

METHODS = ("jsa", "rws", "vimco", "nvil", "rloo", "disarm", "gumbel-st", "jsa-sched", "jsa-off", "jsa-thin")
JSA_VARIANTS = ("jsa", "jsa-sched", "jsa-off", "jsa-thin")
CACHE_ON_AFTER = 0.6     # the share of training before jsa-sched switches its cache on
ARCHS = ("linear", "linear-2", "nonlinear", "linear-3")
ARCH_LABELS = {"linear": "784-200 linear", "linear-2": "784-200-200 linear",
               "nonlinear": "784-[200]-200-[200] tanh MLP, 1 stochastic layer",
               "linear-3": "784-200-200-200 linear"}
# Targets named in issue 3 (GPU scale, full length): VIMCO K=50 on the 200-200-200
# linear SBN after 3000 epochs (Mnih & Rezende 2016), NVIL on the same model.
ANCHORS = {("linear-3", "vimco"): (91.9, "VIMCO K=50, Mnih & Rezende 2016, 3000 epochs"),
           ("linear-3", "nvil"): (96.7, "NVIL (issue 3's anchor)")}
# Mnih & Rezende (2016), Table 1, SBN 200-200-200 on MNIST: test NLL at K = 2, 5, 10, 50
PAPER_ROWS = {"vimco": {2: 93.5, 5: 92.8, 10: 92.6, 50: 91.9}, "rws": {2: 94.6, 5: 93.5, 10: 93.0, 50: 92.5}}
METRICS = {**{m: ("acceptance_rate", "changed", "cache_age", "elbo") for m in JSA_VARIANTS}, "rws": ("iw_bound", "ess"), "vimco": ("iw_bound",),
           "nvil": ("elbo",), "rloo": ("elbo",), "disarm": ("elbo",), "gumbel-st": ("elbo",)}


def make_spec(arch: str):
    """The SBN spec of an architecture name (see the module docstring)."""
    from sajax.models import paper_sbn, sbn

    if arch == "linear-3":
        return sbn(784, (200, 200, 200), kind="linear")
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return paper_sbn(arch)


def budget(method: str, k: int, jsa_proposals: int = 1) -> dict:
    """How a budget of K latent draws per example per step is spent by ``method``."""
    if method == "jsa-thin":
        return {"num_moves": 1, "num_proposals": k, "draws": f"{k} MIS proposals (1 move x {k}) + 1 cached"}
    if method in JSA_VARIANTS:
        moves = max(1, k // jsa_proposals)
        start = {"jsa": "1 cached", "jsa-off": "1 fresh start"}.get(method, "1 fresh start, cached after 60 %")
        return {"num_moves": moves, "num_proposals": jsa_proposals,
                "draws": f"{moves * jsa_proposals} MIS proposals ({moves} moves x {jsa_proposals}) + {start}"}
    if method == "disarm":
        return {"pairs": max(1, k // 2), "draws": f"{2 * max(1, k // 2)} ({max(1, k // 2)} antithetic pairs) per layer"}
    if method == "rws":
        return {"draws": f"{k} wake + 1 sleep dream"}
    if method in ("vimco", "rloo") and k < 2:
        raise ValueError(f"{method} needs K >= 2, got {k}")
    return {"draws": str(k)}


def build_estimator(method: str, spec, k: int, *, jsa_proposals: int = 1,
                    temperature: float = 0.5, total_steps: int = 0):
    """``method``'s estimator on ``spec`` with a budget of K draws per example per step."""
    import sajax.estimators as d
    from sajax.estimators import jsa, nvil_baseline, rws

    b = budget(method, k, jsa_proposals)
    if method in JSA_VARIANTS:
        cache_from = {"jsa-sched": int(CACHE_ON_AFTER * total_steps), "jsa-off": None}.get(method, 0)
        return jsa(spec.model, spec.guide, cache_from=cache_from,
                   num_moves=b["num_moves"], num_proposals=b["num_proposals"])
    if method == "rws":
        return rws(spec.model, spec.guide, num_samples=k, phi_update="wake+sleep")
    if method == "vimco":
        return d.vimco(spec.model, spec.guide, num_samples=k)
    if method == "nvil":
        return d.nvil(spec.model, spec.guide, nvil_baseline(spec.x_dim), num_samples=k)
    if method == "rloo":
        return d.rloo(spec.model, spec.guide, num_samples=k)
    if method == "disarm":
        return d.disarm(spec.model, spec.layers, num_pairs=b["pairs"])
    if method == "gumbel-st":
        return d.gumbel_softmax(spec.model, spec.layers, num_samples=k, temperature=temperature, hard=True)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def init_params(method: str, spec, key):
    """``spec.init(key)``, plus NVIL's baseline network ψ under ``"baseline"``."""
    import jax

    from sajax.estimators import nvil_baseline

    params = spec.init(key)
    if method == "nvil":
        params["baseline"] = nvil_baseline(spec.x_dim)[0](jax.random.fold_in(key, 7))
    return params


def load_data(n_train: int, n_valid: int, n_test: int):
    """Fixed-binarized train / validation / test images (seeds 0 / 2 / 1)."""
    from sajax.data import fixed_binarize, load_mnist

    train = fixed_binarize(np.asarray(load_mnist("train"))[:n_train], seed=0)
    valid = fixed_binarize(np.asarray(load_mnist("valid"))[:n_valid], seed=2)
    test = fixed_binarize(np.asarray(load_mnist("test"))[:n_test], seed=1)
    return train, valid, test


def environment(device_label=None) -> dict:
    import jax
    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for mod in ("flax", "optax", "sajax"):
        versions[mod] = getattr(__import__(mod), "__version__", "?")
    label = device_label or f"{jax.default_backend()} ({jax.devices()[0].device_kind})"
    return {"device_label": label, "jax_backend": jax.default_backend(), "versions": versions,
            "cpu_count": os.cpu_count(), "date": _dt.datetime.now().isoformat(timespec="seconds")}


def command_line(argv) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + args)


def train_one(arch, method, args, train, valid, test) -> dict:
    """Train one (architecture, method) and evaluate its test NLL; a JSON-ready record."""
    import jax
    import optax

    from sajax import sa
    from sajax.evaluate import iw_log_likelihood

    spec = make_spec(arch)
    spe = train.shape[0] // args.batch_size
    est = build_estimator(method, spec, args.k, jsa_proposals=args.jsa_proposals,
                          temperature=args.temperature, total_steps=int(round(args.epochs * spe)))
    params = init_params(method, spec, jax.random.key(args.seed))
    curve_key = jax.random.key(args.seed + 3)

    def eval_fn(p, step):
        lp = iw_log_likelihood(spec.model, spec.guide, p, curve_key, valid, num_samples=args.curve_k,
                               batch_size=min(100, len(valid)))
        return {"valid_log_p": float(np.mean(lp))}

    record = {"arch": arch, "method": method, "k": args.k, "budget": budget(method, args.k, args.jsa_proposals)}
    spe = train.shape[0] // args.batch_size
    tic = time.perf_counter()
    try:
        res = sa.fit(est, optax.adam(args.lr, eps=1e-4), params, train, key=jax.random.key(args.seed + 1),
                     batch_size=args.batch_size, epochs=args.epochs, chunk_steps=args.chunk_steps,
                     eval_fn=eval_fn if args.curve_k > 0 else None, eval_every=args.curve_every,
                     progress=args.progress, checkpoint_every=args.checkpoint_every,
                     checkpoint_dir=(Path(args.checkpoint_dir) / f"{arch}_{method}") if args.checkpoint_dir else None)
    except sa.NonFiniteError as err:
        record.update(error=str(err), train_seconds=time.perf_counter() - tic, nll=None)
        return record
    train_s = time.perf_counter() - tic
    chunk = args.chunk_steps or spe
    per_epoch = spe // chunk
    secs = [h["seconds"] for h in res.history]
    epoch_secs = [sum(secs[i:i + per_epoch]) for i in range(0, len(secs) - per_epoch + 1, per_epoch)]
    tic = time.perf_counter()
    final = jax.device_get(res.state.params)
    log_p = np.asarray(iw_log_likelihood(spec.model, spec.guide, final, jax.random.key(args.seed + 12345), test,
                                         num_samples=args.eval_k, batch_size=args.eval_batch,
                                         memory_budget_mb=args.memory_mb), np.float64)
    nll = float(-log_p.mean())
    eval_s = time.perf_counter() - tic
    record.update(
        nll=nll, nll_se=float(log_p.std(ddof=1) / np.sqrt(len(log_p))),
        test_log_p=[round(float(v), 3) for v in log_p], train_seconds=train_s, eval_seconds=eval_s, steps=int(res.state.step),
        epochs=int(res.state.step) / spe, first_epoch_seconds=epoch_secs[0] if epoch_secs else None,
        median_epoch_seconds=float(np.median(epoch_secs[1:])) if len(epoch_secs) > 1 else None,
        # a run resumed from a finished checkpoint has no new chunks
        final_metric={m: res.history[-1][m] for m in METRICS[method]} if res.history else {},
        curve=[{k: v for k, v in h.items()} for h in res.history])
    return record


def _curve_points(rec, metric, x="epoch"):
    """(x, metric) pairs of a run's history; x "seconds" is the cumulative training time."""
    pts, clock = [], 0.0
    for c in rec.get("curve", []):
        clock += c.get("seconds", 0.0)
        if metric in c:
            pts.append((clock if x == "seconds" else c["epoch"], c[metric]))
    return pts


def _plot(records, path, title):
    """Per architecture (columns): validation log p̂ against epochs and against
    training seconds (equal wall-clock), and JSA's MIS acceptance per chunk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = sorted({r["arch"] for r in records}, key=ARCHS.index)
    panels = (("eval/valid_log_p", "epoch", "validation log p̂ (nats)"),
              ("eval/valid_log_p", "seconds", "validation log p̂ (nats)"),
              ("acceptance_rate", "epoch", "JSA: MIS acceptance rate"))
    fig, axes = plt.subplots(len(panels), len(archs), figsize=(max(7.0, 5.5 * len(archs)), 11), squeeze=False)
    for col, arch in enumerate(archs):
        for row, (metric, x, ylabel) in enumerate(panels):
            ax = axes[row][col]
            for rec in (r for r in records if r["arch"] == arch):
                pts = _curve_points(rec, metric, x)
                if pts:
                    e, v = zip(*pts)
                    ax.plot(e, v, marker="o" if metric.startswith("eval") else None, ms=3,
                            color=f"C{METHODS.index(rec['method'])}", label=rec["method"])
            ax.set_xlabel("training seconds" if x == "seconds" else "epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
        axes[0][col].set_title(ARCH_LABELS[arch], fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _anchor(r) -> str:
    """The published number for this row, if any (Mnih & Rezende 2016 for the 200-200-200 SBN)."""
    paper = PAPER_ROWS.get(r["method"], {}).get(r["k"]) if r["arch"] == "linear-3" else None
    if paper is not None:
        return f"{paper} (Mnih & Rezende 2016, K={r['k']})"
    anchor = ANCHORS.get((r["arch"], r["method"]))
    return f"{anchor[0]} ({anchor[1]})" if anchor else "–"


def _delta_vs_jsa(table, r) -> str:
    """Paired NLL difference to the JSA run of the same architecture, '± s.e.'."""
    ref = next((j for j in table if j["arch"] == r["arch"] and j["method"] == "jsa" and j.get("test_log_p")), None)
    if ref is None or r["method"] == "jsa" or not r.get("test_log_p"):
        return "–"
    d = np.asarray(ref["test_log_p"]) - np.asarray(r["test_log_p"])     # NLL(r) - NLL(jsa)
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Discrete latents on binarized MNIST: {m['device_label']}", ""]
    if m["short"]:
        lines += [f"**Short run, not a reproduction.** {m['epochs']:g} epochs over {m['n_train']} training "
                  f"images (the anchors need ~3000 epochs over 50,000 on a GPU), test NLL with K={m['eval_k']} on "
                  f"{m['n_test']} test images. These numbers show the pipeline and how the methods compare "
                  f"at this small budget only.", ""]
    lines += ["Command:", "", "```bash", m["command"], "```", "",
              f"- date {m['date']}; device: {m['device_label']} (jax `{m['jax_backend']}`, {m['cpu_count']} CPUs "
              f"visible); " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
              f"- budget: K={m['k']} latent draws per example per step for every method; batch {m['batch_size']}, "
              f"Adam(lr {m['lr']}, ε=1e-4) on every parameter group, {m['epochs']:g} epochs; Gumbel-ST τ={m['temperature']}",
              f"- data: MNIST 50k/10k/10k pickle, binarized once (train seed 0, test seed 1); "
              f"test NLL = -mean log p̂_K(x), K={m['eval_k']} samples from q_φ(h|x), first {m['n_test']} test images",
              f"- wall time {m['total_seconds'] / 60:.1f} min" + (f"; {m['note']}" if m.get("note") else ""), "",
              "- Δ vs JSA: mean over the same test images of NLL(method) - NLL(JSA), ± its standard error "
              "(paired; negative: the method is better than JSA). One training seed per method: the s.e. covers the "
              "test images and the importance samples, not seed-to-seed variation", "",
              "| architecture | method | draws per example per step | test NLL ± s.e. (nats) | Δ vs JSA | anchor | "
              "s/epoch (median) | first epoch s | final train metric |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in report["table"]:
        anchor = _anchor(r)
        if r.get("error"):
            lines.append(f"| {r['arch']} | {r['method']} | {r['budget']['draws']} | diverged: {r['error']} | | {anchor} | | | |")
            continue
        fm = ", ".join(f"{k} {v:.3g}" for k, v in r["final_metric"].items())
        med = f"{r['median_epoch_seconds']:.2f}" if r.get("median_epoch_seconds") else "–"
        first = f"{r['first_epoch_seconds']:.1f}" if r.get("first_epoch_seconds") is not None else "–"
        lines.append(f"| {r['arch']} | {r['method']} | {r['budget']['draws']} | {r['nll']:.2f} ± {r['nll_se']:.2f} | "
                     f"{_delta_vs_jsa(report['table'], r)} | {anchor} | "
                     f"{med} | {first} | {fm} |")
    ranked = sorted((r for r in report["table"] if r.get("nll") is not None), key=lambda r: (r["arch"], r["nll"]))
    lines += ["", "Ranking by test NLL (lower is better): " + "; ".join(
        f"{arch}: " + " < ".join(f"{r['method']} {r['nll']:.1f}" for r in ranked if r["arch"] == arch)
        for arch in dict.fromkeys(r["arch"] for r in ranked)), ""]
    lines += [f"Validation curve (log p̂ with K={m['curve_k']} on {m['n_valid']} validation images): "
              f"`{m['png']}`", "", f"![curves]({m['png']})", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["linear"], choices=ARCHS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--epochs", type=float, default=5)
    ap.add_argument("--k", type=int, default=4, help="latent draws per example per step (every method)")
    ap.add_argument("--jsa-proposals", type=int, default=1,
                    help="JSA: MIS proposals per collected sample (moves = K // this)")
    ap.add_argument("--temperature", type=float, default=0.5, help="Gumbel-ST temperature")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--eval-k", type=int, default=1000, help="importance samples for the test NLL")
    ap.add_argument("--eval-n", type=int, default=10000, help="test images for the test NLL")
    ap.add_argument("--eval-batch", type=int, default=100)
    ap.add_argument("--memory-mb", type=float, default=1024, help="memory budget of one K-chunk in evaluation")
    ap.add_argument("--curve-k", type=int, default=50, help="importance samples of the validation curve (0: none)")
    ap.add_argument("--curve-n", type=int, default=500, help="validation images of the curve")
    ap.add_argument("--curve-every", type=int, default=1, help="chunks between curve points")
    ap.add_argument("--chunk-steps", type=int, default=None, help="steps per jitted chunk; default one epoch")
    ap.add_argument("--checkpoint-dir", default=None, help="orbax checkpoints per run (resumed if present)")
    ap.add_argument("--checkpoint-every", type=int, default=10, help="chunks between checkpoints")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--note", default="")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="discrete_mnist")
    args = ap.parse_args(argv)
    for flag in ("k", "batch_size", "n_train", "eval_k", "eval_n", "curve_n", "curve_every", "jsa_proposals",
                 "checkpoint_every"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.epochs <= 0 or args.temperature <= 0 or args.lr <= 0:
        raise SystemExit("--epochs, --temperature and --lr must be > 0")
    for m in args.methods:
        budget(m, args.k, args.jsa_proposals)

    train, valid, test = load_data(args.n_train, args.curve_n, args.eval_n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device_label)
    t0 = time.perf_counter()
    table = []
    for arch in args.archs:
        for method in args.methods:
            rec = train_one(arch, method, args, train, valid, test)
            table.append(rec)
            nll = "diverged" if rec.get("error") else f"test NLL {rec['nll']:.2f}"
            print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {arch:9s} {method:9s} {nll}  "
                  f"train {rec['train_seconds']:.0f} s, eval {rec.get('eval_seconds', 0):.0f} s", flush=True)
    short = args.epochs < 1000 or args.n_train < 50000 or args.eval_n < 10000
    meta = dict(env, command=command_line(argv), short=short, k=args.k, epochs=args.epochs, lr=args.lr,
                batch_size=args.batch_size, temperature=args.temperature, jsa_proposals=args.jsa_proposals,
                n_train=len(train), n_valid=len(valid), n_test=len(test), eval_k=args.eval_k,
                curve_k=args.curve_k, seed=args.seed, note=args.note,
                total_seconds=time.perf_counter() - t0, png=f"{args.name}.png")
    _plot(table, out / meta["png"], f"{env['device_label']}\nvalidation log p̂ (K={args.curve_k}), "
          f"K={args.k} draws per example per step, {args.epochs:g} epochs")
    report = {"meta": meta, "anchors": {f"{a}/{m}": v for (a, m), v in ANCHORS.items()}, "table": table}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
