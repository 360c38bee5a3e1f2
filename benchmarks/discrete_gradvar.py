"""Gradient variance of the discrete-latent estimators at fixed parameters.

For a sigmoid belief net (review Eq. 2) at two fixed parameter points, at
initialization and at the checkpoint of a short training run, every estimator
of ``discrete_mnist.py`` (JSA, RWS wake+sleep, VIMCO, NVIL, RLOO, DisARM,
Gumbel-ST) is evaluated on one fixed minibatch for ``--num-keys`` independent
keys (``sajax.diagnostics.gradient_stats``, vmapped over keys) at the same
budget of K latent draws per example.  Reported per parameter group (φ: the
inference network q_φ(h|x), θ: the model p_θ(x, h)):

* total variance tr Cov[g] (sum of the per-coordinate variances),
* SNR = median over coordinates of |E g| / std g (Rainforth et al. 2018's
  per-coordinate SNR; the mean over coordinates that ``gradient_stats``
  reports is kept in the JSON: a few coordinates with a tiny spread dominate it),
* noise-to-signal tr Cov[g] / ||E g||² (scale-free).

The estimators do not all estimate the same vector: VIMCO's and RWS's θ-parts
follow ∇I_K (Eq. 19, 23), NVIL/RLOO/DisARM/Gumbel-ST follow the ELBO (Eq. 7;
NVIL's φ-part is scaled by its running 1/max(1, σ)), the φ-parts of RWS and
JSA descend the inclusive KL (Eq. 25, 26), and JSA's θ-part follows ∇ log p_θ(x)
(Eq. 27).  Variances are therefore compared together with the SNR, which is
invariant to the scale of the direction.

JSA's "gradient" is the MIS-chain estimate (Algorithm 5): its per-example
cache is initialized with one draw from q_φ, moved by ``--jsa-burnin`` JSA
iterations at the fixed parameters (only the chain moves), and the statistics
are taken over keys at that fixed chain state, i.e. they are conditional on
the cached sample.  Because successive SA iterations reuse the chain state,
that conditional spread understates the noise JSA feeds the SA recursion; the
row ``jsa-resampled`` redraws the cache and reruns the burn-in for every key,
so its spread is the variance marginally over the chain state.  NVIL's baseline network ψ and running moments are first
fitted for ``--nvil-fit-epochs`` at the fixed θ, φ (only ψ and the moments move).

Outputs in ``--out``: ``<name>.md``, ``<name>.json``, ``<name>.png``.

GPU::

    source .whl/env.sh && python3 benchmarks/discrete_gradvar.py --archs linear linear-3 --k 50 \\
        --num-keys 2000 --ckpt-epochs 100 --out "$OUT"

Short CPU run::

    python benchmarks/discrete_gradvar.py --archs linear --k 4 --num-keys 400 --jsa-burnin 10 --ckpt-epochs 3 \\
        --name discrete_gradvar_cpu --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrete_mnist import (ARCH_LABELS, ARCHS, METHODS, budget, build_estimator, command_line,  # noqa: E402
                            environment, init_params, load_data, make_spec)

POINTS = ("init", "trained")
GROUPS = {"guide": "φ", "model": "θ"}
TICK = {"jsa": "jsa\nfixed\nchain", "jsa-resampled": "jsa\nchain\nredrawn", "gumbel-st": "gumbel\n-st"}


def _fit_nvil_baseline(spec, est, params, train, args, key):
    """Fit NVIL's ψ and running moments at fixed θ, φ; returns (params, state)."""
    import optax

    from sajax import sa

    opt = sa.per_group({"model": optax.set_to_zero(), "guide": optax.set_to_zero(),
                        "baseline": optax.adam(args.lr, eps=1e-4)})
    res = sa.fit(est, opt, params, train, key=key, batch_size=100, epochs=args.nvil_fit_epochs, progress=False)
    return res.state.params, res.state.est_state


def _jsa_state(est, params, batch, key, burnin):
    """JSA's chain state for ``batch``: a cache drawn from q_φ, then ``burnin``
    iterations of the estimator at the fixed parameters (only the chain moves)."""
    import jax

    state = est.init(jax.random.fold_in(key, 0), params, batch.x)

    @jax.jit
    def sweep(state, keys):
        def body(s, k):
            e = est.estimate(params, s, k, batch)
            return e.state, e.metrics["acceptance_rate"]
        return jax.lax.scan(body, state, keys)

    state, acc = sweep(state, jax.random.split(jax.random.fold_in(key, 1), burnin))
    return state, float(np.mean(acc[-max(1, burnin // 2):])) if burnin else float("nan")


def _jsa_resampled(est, burnin):
    """JSA whose chain state is part of the randomness: every key draws a fresh cache
    from q_φ, runs ``burnin`` iterations at the fixed parameters, then estimates.
    Its spread over keys is the variance of the MIS-chain estimate marginally over
    the chain state (after ``burnin`` sweeps), not conditional on one state."""
    import jax

    from sajax.core import Estimator

    def estimate(params, state, key, batch):
        k_init, k_burn, k_est = jax.random.split(key, 3)
        state = est.init(k_init, params, batch.x)

        def body(s, k):
            return est.estimate(params, s, k, batch).state, None

        state, _ = jax.lax.scan(body, state, jax.random.split(k_burn, burnin))
        return est.estimate(params, state, k_est, batch)

    return Estimator(est.init, estimate)


def measure(method, spec, params, batch, train, args, key) -> dict:
    """Gradient statistics of one estimator at fixed ``params`` on ``batch``."""
    import jax

    from sajax.diagnostics import gradient_stats

    extra = {}
    if method == "jsa-resampled":
        est = _jsa_resampled(build_estimator("jsa", spec, args.k, jsa_proposals=args.jsa_proposals),
                             args.jsa_burnin)
        state = est.init(jax.random.fold_in(key, 0), params, batch.x)
    elif method == "jsa":
        est = build_estimator("jsa", spec, args.k, jsa_proposals=args.jsa_proposals)
        state, acc = _jsa_state(est, params, batch, key, args.jsa_burnin)
        extra["acceptance_rate"] = acc
    else:
        est = build_estimator(method, spec, args.k, jsa_proposals=args.jsa_proposals,
                              temperature=args.temperature)
        state = None
        if method == "nvil":
            params = dict(params, baseline=init_params("nvil", spec, jax.random.fold_in(key, 2))["baseline"])
            if args.nvil_fit_epochs > 0:
                params, state = _fit_nvil_baseline(spec, est, params, train, args, jax.random.fold_in(key, 3))
                extra["nvil_signal_mean"] = float(state.mean)
                extra["nvil_signal_std"] = float(np.sqrt(state.var))
    tic = time.perf_counter()
    stats = gradient_stats(est, params, batch, jax.random.fold_in(key, 4), num_keys=args.num_keys,
                           state=state, chunk=args.chunk)
    out = {"seconds": time.perf_counter() - tic, **extra}
    for group in GROUPS:
        s = stats[group]
        tv, nm = float(s.total_variance), float(s.norm_of_mean)
        mean = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(s.mean)])
        std = np.sqrt(np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(s.variance)]))
        live = (std > 0) | (mean != 0)          # leave out coordinates no estimator moves
        frozen = int(np.sum((std == 0) & (mean != 0)))
        ratio = np.where(std[live] > 0, np.abs(mean[live]) / np.where(std[live] > 0, std[live], 1.0), np.inf)
        out[group] = {"total_variance": tv, "norm_of_mean": nm,
                      "noise_to_signal": tv / nm ** 2 if nm > 0 else float("inf"),
                      # the median is robust to the few coordinates with a tiny (or zero) spread that
                      # dominate the mean over coordinates (gradient_stats' SNR) at a fixed JSA chain state
                      "snr": float(np.median(ratio)) if ratio.size else float("nan"),
                      "snr_mean_gradient_stats": float(s.snr), "frozen_coordinates": frozen,
                      "coordinates": int(mean.size)}
    return out


def checkpoint(spec, train, args, key):
    """Parameters after a short training run with ``--ckpt-method``."""
    import optax

    from sajax import sa

    est = build_estimator(args.ckpt_method, spec, args.k, jsa_proposals=args.jsa_proposals,
                          temperature=args.temperature)
    params = init_params(args.ckpt_method, spec, key)
    res = sa.fit(est, optax.adam(args.lr, eps=1e-4), params, train, key=key, batch_size=100,
                 epochs=args.ckpt_epochs, progress=False)
    params = res.state.params
    return {"model": params["model"], "guide": params["guide"]}


def _plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["table"]
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    fig, axes = plt.subplots(2 * len(archs), 2, figsize=(11, 6.5 * len(archs)), squeeze=False)
    for a, arch in enumerate(archs):
        methods = list(dict.fromkeys(r["method"] for r in rows if r["arch"] == arch))
        x = np.arange(len(methods))
        for g, (group, sym) in enumerate(GROUPS.items()):
            for c, (field, label) in enumerate((("total_variance", "total variance tr Cov[g]"),
                                                ("snr", "SNR (median over coordinates of |E g| / std g)"))):
                ax = axes[2 * a + g][c]
                for p, point in enumerate(POINTS):
                    vals = [next((r[group][field] for r in rows if r["arch"] == arch and r["method"] == m
                                  and r["point"] == point), np.nan) for m in methods]
                    ax.bar(x + (p - 0.5) * 0.38, vals, width=0.38, label=point, color=f"C{p}")
                ax.set_yscale("log")
                ax.set_xticks(x, [TICK.get(m, m) for m in methods], fontsize=8)
                ax.set_title(f"{arch}: {sym}-gradient, {label}", fontsize=9)
                ax.grid(axis="y", alpha=0.3)
                ax.legend(fontsize=8)
    m = report["meta"]
    fig.suptitle(f"{m['device_label']}: K={m['k']} draws per example, {m['num_keys']} keys, "
                 f"batch of {m['batch_size']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Gradient variance of discrete-latent estimators at fixed parameters: {m['device_label']}", "",
             "Command:", "", "```bash", m["command"], "```", "",
             f"- date {m['date']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
             f"- K={m['k']} latent draws per example for every method (how each spends them: "
             f"`discrete_mnist.py`), {m['num_keys']} keys, one fixed batch of the first {m['batch_size']} "
             f"training images (fixed binarization, seed 0)",
             f"- points: `init` = the SBN's initialization (seed {m['seed']}); `trained` = after "
             f"{m['ckpt_epochs']:g} epochs of {m['ckpt_method']} (K={m['k']}, Adam lr {m['lr']}) on "
             f"{m['n_train']} images",
             f"- JSA: cache drawn from q_φ then {m['jsa_burnin']} JSA iterations at the fixed parameters; statistics "
             f"over keys at that fixed chain state (conditional on the cached sample). `jsa-resampled`: the same, "
             f"but every key redraws the cache and reruns the {m['jsa_burnin']} iterations, so the spread includes "
             f"the chain state's randomness (the marginal variance of the MIS-chain estimate). NVIL: baseline ψ and "
             f"moments fitted for {m['nvil_fit_epochs']:g} epoch(s) at the fixed θ, φ",
             "- total var = tr Cov[g]; SNR = median over coordinates of |E g|/std g (Rainforth et al. 2018's per-coordinate "
             "SNR; the JSON also has gradient_stats' mean over coordinates, which a few near-constant coordinates dominate); N/S = tr Cov[g] / ||E g||². "
             "Targets differ (ELBO, I_K, inclusive KL, log p(x)): compare SNR and N/S across methods, "
             "variances within a column",
             f"- wall time {m['total_seconds'] / 60:.1f} min", ""]
    for arch in dict.fromkeys(r["arch"] for r in report["table"]):
        lines += [f"## {arch} ({ARCH_LABELS[arch]})", "",
                  "| point | method | φ total var | φ SNR | φ N/S | θ total var | θ SNR | θ N/S | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in report["table"]:
            if r["arch"] != arch:
                continue
            note = (f"MIS acceptance {r['acceptance_rate']:.2f}" if "acceptance_rate" in r else
                    f"signal mean {r['nvil_signal_mean']:.1f}, std {r['nvil_signal_std']:.1f}"
                    if "nvil_signal_mean" in r else "")
            f, t = r["guide"], r["model"]
            frozen = [f"{GROUPS[g]}: {r[g]['frozen_coordinates']} of {r[g]['coordinates']} coordinates constant "
                      f"over keys" for g in GROUPS if r[g]["frozen_coordinates"]]
            note = "; ".join([note] + frozen if note else frozen)
            lines.append(f"| {r['point']} | {r['method']} | {f['total_variance']:.3g} | {f['snr']:.3f} | "
                         f"{f['noise_to_signal']:.3g} | {t['total_variance']:.3g} | {t['snr']:.3f} | "
                         f"{t['noise_to_signal']:.3g} | {note} |")
        lines.append("")
    lines += [f"![gradient variance]({m['png']})", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--archs", nargs="+", default=["linear"], choices=ARCHS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--k", type=int, default=4, help="latent draws per example (every method)")
    ap.add_argument("--num-keys", type=int, default=500)
    ap.add_argument("--chunk", type=int, default=50, help="keys vmapped at once")
    ap.add_argument("--batch-size", type=int, default=100, help="examples in the fixed batch")
    ap.add_argument("--ckpt-method", default="vimco", choices=METHODS)
    ap.add_argument("--ckpt-epochs", type=float, default=3)
    ap.add_argument("--n-train", type=int, default=50000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--jsa-proposals", type=int, default=1)
    ap.add_argument("--jsa-burnin", type=int, default=20, help="JSA iterations at fixed params before measuring")
    ap.add_argument("--no-jsa-resampled", dest="jsa_resampled", action="store_false",
                    help="skip the JSA row whose chain state is redrawn for every key")
    ap.add_argument("--nvil-fit-epochs", type=float, default=1)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device-label", default=None)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="discrete_gradvar")
    args = ap.parse_args(argv)
    for flag in ("k", "num_keys", "chunk", "batch_size", "n_train", "jsa_proposals"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.num_keys < 2:
        raise SystemExit("--num-keys must be >= 2")
    for m in args.methods:
        budget(m, args.k, args.jsa_proposals)

    import jax

    from sajax.core import Batch

    train, _, _ = load_data(args.n_train, 1, 1)
    batch = Batch(jax.numpy.asarray(train[:args.batch_size]), jax.numpy.arange(args.batch_size))
    env = environment(args.device_label)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = []
    for arch in args.archs:
        spec = make_spec(arch)
        init = spec.init(jax.random.key(args.seed))
        points = {"init": {"model": init["model"], "guide": init["guide"]}}
        if args.ckpt_epochs > 0:
            tic = time.perf_counter()
            points["trained"] = checkpoint(spec, train, args, jax.random.key(args.seed + 1))
            print(f"[{arch}] checkpoint: {args.ckpt_epochs:g} epochs of {args.ckpt_method} in "
                  f"{time.perf_counter() - tic:.0f} s", flush=True)
        for point, params in points.items():
            methods = [m for meth in args.methods
                       for m in ((meth, "jsa-resampled") if meth == "jsa" and args.jsa_resampled else (meth,))]
            for method in methods:
                rec = measure(method, spec, params, batch, train, args, jax.random.key(args.seed + 2))
                rec.update(arch=arch, point=point, method=method)
                table.append(rec)
                print(f"[{(time.perf_counter() - t0) / 60:5.1f} min] {arch} {point:7s} {method:9s} "
                      f"φ var {rec['guide']['total_variance']:.3g} SNR {rec['guide']['snr']:.3f} | "
                      f"θ var {rec['model']['total_variance']:.3g} SNR {rec['model']['snr']:.3f}", flush=True)
    meta = dict(env, command=command_line(argv), k=args.k, num_keys=args.num_keys, batch_size=args.batch_size,
                ckpt_method=args.ckpt_method, ckpt_epochs=args.ckpt_epochs, n_train=len(train), lr=args.lr,
                jsa_burnin=args.jsa_burnin, jsa_proposals=args.jsa_proposals, nvil_fit_epochs=args.nvil_fit_epochs,
                temperature=args.temperature, seed=args.seed, total_seconds=time.perf_counter() - t0,
                png=f"{args.name}.png")
    report = {"meta": meta, "table": table}
    _plot(report, out / meta["png"])
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
