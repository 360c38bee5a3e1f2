"""The inference gap of a VAE and of SA-VAE on binarized MNIST, split into the
approximation and amortization gaps (Cremer, Li & Duvenaud 2018; Kim et al. 2018;
review Sec. 3.2.1 item 5).

Two models with the same architecture (``sajax.models.vae(784, (latent,),
(hidden, hidden))``, tanh, Bernoulli) are trained on dynamically binarized MNIST
with Adam: the VAE by ``reparam_elbo`` and SA-VAE by ``semi_amortized`` (K
refinement steps, backpropagated into the encoder).  On the first ``--n-test``
test images (binarized once, seed 0), ``sajax.evaluate.amortization.amortization_gap``
reports per image

    log p̂(x)            IW bound with ``--iw-samples`` draws from q* (a lower bound on log p(x)),
    L[q_φ]              ELBO of the amortized encoder,
    L[q_K]              ELBO after the K SA-VAE refinement steps from q_φ (both models),
    L[q*]               ELBO of the per-example optimum (``--gap-steps`` Adam steps),
    inference gap = approximation gap (log p̂ - L[q*]) + amortization gap (L[q*] - L[q_φ]),

as means over images ± standard errors.  Outputs ``<name>.md`` (table and command)
and ``<name>.json`` in ``--out``.

GPU run (about 10 epochs)::

    python benchmarks/amortization_gap.py --epochs 10 --n-test 1000 --out "$OUT"

Smoke test (seconds, numbers meaningless)::

    python benchmarks/amortization_gap.py --epochs 1 --n-train 1000 --n-test 8 --gap-steps 20 \\
        --eval-samples 50 --iw-samples 100 --out /tmp/amortization_smoke
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

GAPS = ("log_marginal", "elbo_amortized", "elbo_refined", "elbo_optimal", "inference_gap",
        "approximation_gap", "amortization_gap")


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sa-steps", type=int, default=5)
    p.add_argument("--sa-step-size", type=float, default=0.1)
    p.add_argument("--sa-clip", type=float, default=5.0, help="per-example λ-gradient norm clip")
    p.add_argument("--gap-steps", type=int, default=1000)
    p.add_argument("--gap-lr", type=float, default=1e-2)
    p.add_argument("--gap-samples", type=int, default=8)
    p.add_argument("--eval-samples", type=int, default=1000)
    p.add_argument("--iw-samples", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="amortization_gap")
    return p.parse_args(argv)


def _refined_elbo(spec, params, x, args) -> np.ndarray:
    """L[q_K] per image: K SA-VAE steps from the encoder's λ0, then a Monte Carlo ELBO."""
    import jax

    from sajax.estimators._refined_q import as_encoder, gaussian_elbo, refine_gaussian

    enc = as_encoder(spec)

    @jax.jit
    def run(p, key, xb):
        k_ref, k_eps = jax.random.split(key)
        lam = refine_gaussian(k_ref, spec.model, p["model"], xb, *enc(p["guide"], xb), num_steps=args.sa_steps,
                              step_size=args.sa_step_size, max_grad_norm=args.sa_clip)
        eps = jax.random.normal(k_eps, (args.eval_samples,) + lam[0].shape)
        return gaussian_elbo(spec.model, p["model"], xb, *lam, eps)

    b = min(100, len(x))
    return np.concatenate([np.asarray(run(params, jax.random.key(args.seed + s), x[s:s + b]))
                           for s in range(0, len(x), b)])


def run_method(method: str, spec, train, test, args) -> dict:
    import jax
    import optax

    from sajax import sa
    from sajax.data import dynamic_binarize
    from sajax.estimators import reparam_elbo
    from sajax.estimators._refined_q import semi_amortized
    from sajax.evaluate.amortization import amortization_gap

    if method == "vae":
        est = reparam_elbo(spec.model, spec.guide, num_samples=1)
    else:
        est = semi_amortized(spec.model, spec, num_samples=1, num_steps=args.sa_steps, step_size=args.sa_step_size,
                             max_grad_norm=args.sa_clip)
    tic = time.perf_counter()
    res = sa.fit(est, optax.adam(args.lr), spec.init(jax.random.key(args.seed)), train,
                 key=jax.random.key(args.seed + 1), batch_size=args.batch_size, epochs=args.epochs,
                 preprocess=dynamic_binarize, progress=False)
    train_s = time.perf_counter() - tic
    params = jax.device_get(res.state.params)
    tic = time.perf_counter()
    gap = amortization_gap(spec.model, spec, params, jax.random.key(args.seed + 2), test,
                           num_steps=args.gap_steps, learning_rate=args.gap_lr, num_samples=args.gap_samples,
                           eval_samples=args.eval_samples, iw_samples=args.iw_samples)
    per = {k: gap.per_example[k] for k in GAPS if k in gap.per_example}
    per["elbo_refined"] = _refined_elbo(spec, params, test, args)
    stats = {k: [float(np.mean(v)), float(np.std(v, ddof=1) / np.sqrt(len(v)))] for k, v in per.items()}
    return {"method": method, "stats": stats, "train_seconds": train_s,
            "eval_seconds": time.perf_counter() - tic, "final_objective": float(np.mean(res.history[-1]["objective"]))}


def _markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Amortization gap: VAE vs SA-VAE on binarized MNIST ({m['device']})", "", "Command:", "",
             "```bash", m["command"], "```", "",
             f"- {m['epochs']} epochs on {m['n_train']} training images, batch {m['batch_size']}, Adam {m['lr']}; "
             f"vae(784, ({m['latent']},), ({m['hidden']}, {m['hidden']})) tanh Bernoulli; SA-VAE K={m['sa_steps']}, "
             f"step {m['sa_step_size']}, clip {m['sa_clip']}",
             f"- gaps on the first {m['n_test']} test images; q*: {m['gap_steps']} Adam steps (lr {m['gap_lr']}, "
             f"{m['gap_samples']} draws); ELBOs with {m['eval_samples']} draws; log p̂ = IW bound with "
             f"{m['iw_samples']} draws from q* (so the approximation gap is a lower estimate)",
             "- nats per image, mean ± standard error over images", "",
             "| method | log p̂(x) | L[q_φ] | L[q_K] | L[q*] | inference gap | approximation gap | amortization gap |",
             "|---|---|---|---|---|---|---|---|"]
    for rec in report["results"]:
        cells = " | ".join(f"{rec['stats'][k][0]:.2f} ± {rec['stats'][k][1]:.2f}" for k in GAPS)
        lines.append(f"| {rec['method'].upper()} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = _parse(argv)
    import jax

    from sajax.data import fixed_binarize, load_mnist
    from sajax.models import vae

    train = np.asarray(load_mnist("train")[: args.n_train], np.float32)
    test = fixed_binarize(load_mnist("test")[: args.n_test], seed=0).astype(np.float32)
    spec = vae(784, (args.latent,), (args.hidden, args.hidden), "bernoulli", "tanh")
    results = [run_method(m, spec, train, test, args) for m in ("vae", "savae")]
    meta = {**vars(args), "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
            "device": str(jax.devices()[0].device_kind), "jax": jax.__version__}
    report = {"meta": meta, "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    (out / f"{args.name}.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
