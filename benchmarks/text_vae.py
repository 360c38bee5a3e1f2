"""Text VAEs on the generated corpus: Gaussian latents (reparameterized ELBO) and
Bernoulli latents (JSA, RWS), scored by IW NLL, perplexity and the collapse metrics.

Review Sec. 3.2.1 item 3 (discrete observations; Bowman et al. 2016).  Data:
``sajax.data.text.text_corpus`` (a seeded grammar with a topic and a tense per
sentence, 125 words, 6-15 tokens), encoded with ``<eos>`` and padding, split
80/10/10.  Model: ``sajax.models._sequence.text_vae`` (GRU decoder over
tokens, latent fed as the initial state and at every step, GRU encoder).

==============  ======================================================  ==============
method          estimator (sajax)                                       review
==============  ======================================================  ==============
gauss-elbo      ``reparam_elbo(kl="analytic")``, Gaussian h             3.2.1, Eq. 8/13
bern-jsa        ``jsa(num_moves=K)``: MIS with q as proposal + cache    3.2.3, Alg. 5
bern-rws        ``rws(num_samples=K, phi_update="wake")``               3.2.2, Eq. 23/25
==============  ======================================================  ==============

All runs: ``sajax.sa.fit`` with Adam, the same epochs, batch and seed.
Reported on the test split (``sajax.evaluate.collapse``): IW NLL per sentence
(K = ``--eval-k``), NLL per token and perplexity (words + <eos>), the mean
KL[q(h|x) || p(h)], active units (Cov_x E_q[h_i] > 0.01), reconstruction
term, ELBO.  Also a reference: the entropy rate of a unigram model fitted to
the training split (perplexity a latent-free bag of words reaches).

Outputs in ``--out``: ``<name>.md`` (table with its command) and ``<name>.json``.

Smoke test (seconds)::

    python benchmarks/text_vae.py --n 400 --epochs 1 --eval-k 8 --name text_vae_smoke --out /tmp/text_vae

A real CPU run::

    python benchmarks/text_vae.py --n 20000 --epochs 20 --eval-k 500 --name text_vae_cpu
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

METHODS = ("gauss-elbo", "bern-jsa", "bern-rws")


def environment() -> dict:
    import jax
    import jaxlib

    versions = {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for mod in ("flax", "optax"):
        versions[mod] = getattr(__import__(mod), "__version__", "?")
    return {"device": f"{jax.default_backend()} ({jax.devices()[0].device_kind})", "versions": versions,
            "cpu_count": os.cpu_count(), "date": _dt.datetime.now().isoformat(timespec="seconds")}


def command_line(argv) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + args)


def load_data(n: int, seed: int, max_len: int):
    """(vocab, train, valid, test) token ids of the generated corpus."""
    from sajax.data.text import Vocab, encode, grammar_words, split_corpus, text_corpus

    vocab = Vocab.from_words(grammar_words())
    x = encode(text_corpus(n, seed=seed), vocab, max_len)
    return (vocab, *split_corpus(x, (0.8, 0.1, 0.1), seed=seed))


def unigram_reference(train, test) -> dict:
    """Per-token NLL and perplexity on ``test`` of the unigram (word + <eos>) frequencies of ``train``."""
    from sajax.data.text import PAD_ID

    counts = np.bincount(train[train != PAD_ID].ravel(), minlength=int(max(train.max(), test.max())) + 1) + 0.5
    log_p = np.log(counts / counts.sum())
    nll = float(-np.mean(log_p[test[test != PAD_ID]]))
    return {"nll_per_token": nll, "perplexity": float(np.exp(nll))}


def build(method: str, vocab_size: int, args):
    """(spec, estimator) of one method."""
    from sajax.estimators import jsa, reparam_elbo, rws
    from sajax.models._sequence import text_vae

    latent = "gaussian" if method.startswith("gauss") else "bernoulli"
    spec = text_vae(vocab_size, args.max_len, latent=latent, latent_dim=args.latent_dim, embed=args.embed,
                    hidden=args.hidden, cell=args.cell)
    if method == "gauss-elbo":
        est = reparam_elbo(spec.model, spec.guide, num_samples=1, kl="analytic")
    elif method == "bern-jsa":
        est = jsa(spec.model, spec.guide, num_moves=args.k)
    else:
        est = rws(spec.model, spec.guide, num_samples=args.k)
    return spec, est


def train_one(method: str, vocab, train, test, args) -> dict:
    import jax
    import optax

    from sajax import sa
    from sajax.evaluate.collapse import collapse_metrics

    spec, est = build(method, vocab.size, args)
    params = spec.init(jax.random.PRNGKey(args.seed))
    tic = time.perf_counter()
    res = sa.fit(est, optax.adam(args.lr), params, train, key=jax.random.PRNGKey(args.seed + 1),
                 batch_size=args.batch_size, epochs=args.epochs, progress=args.progress)
    train_s = time.perf_counter() - tic
    tic = time.perf_counter()
    metrics = collapse_metrics(spec.model, spec.guide, jax.device_get(res.state.params),
                               jax.random.PRNGKey(args.seed + 2), test, num_samples=args.eval_k, mc_samples=8)
    last = res.history[-1] if res.history else {}
    return {"method": method, "latent": spec.latent, **metrics, "train_objective": last.get("objective"),
            "steps": int(res.state.step), "train_seconds": train_s, "eval_seconds": time.perf_counter() - tic}


def markdown(report) -> str:
    m = report["meta"]
    lines = [f"# Text VAE on the generated corpus ({m['device']})", "",
             f"Command: `{m['command']}`", "",
             f"{m['n_train']} train / {m['n_test']} test sentences, max_len {m['max_len']}, vocabulary "
             f"{m['vocab_size']} ids; {m['epochs']:g} epochs, batch {m['batch_size']}, Adam {m['lr']:g}; "
             f"latent dim {m['latent_dim']}, K = {m['k']} (JSA moves / RWS samples); IW K = {m['eval_k']}."
             + (" **Short run: not a converged result.**" if m["short"] else ""), "",
             "| method | latent | NLL (nats/sent.) | NLL/token | perplexity | KL | AU | reconstruction | ELBO "
             "| train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["table"]:
        lines.append(f"| {r['method']} | {r['latent']} | {r['nll']:.2f} | {r['nll_per_token']:.3f} | "
                     f"{r['perplexity']:.2f} | {r['kl']:.3f} | {r['active_units']:.0f}/{m['latent_dim']} | "
                     f"{r['reconstruction']:.2f} | {r['elbo']:.2f} | {r['train_seconds']:.0f} |")
    u = report["unigram"]
    lines += ["", f"Unigram reference (no context, no latent): NLL/token {u['nll_per_token']:.3f}, "
              f"perplexity {u['perplexity']:.2f}.", "", f"Versions: {m['versions']}; {m['date']}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--n", type=int, default=20000, help="sentences generated (80/10/10 split)")
    ap.add_argument("--max-len", type=int, default=16)
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--cell", default="gru", choices=("gru", "lstm"))
    ap.add_argument("--k", type=int, default=4, help="JSA moves / RWS samples per example per step")
    ap.add_argument("--eval-k", type=int, default=500, help="importance samples of the test NLL")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="text_vae")
    args = ap.parse_args(argv)

    vocab, train, _, test = load_data(args.n, args.seed, args.max_len)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    table = []
    for method in args.methods:
        rec = train_one(method, vocab, train, test, args)
        table.append(rec)
        print(f"{method:11s} NLL/token {rec['nll_per_token']:.3f} ppl {rec['perplexity']:.2f} KL {rec['kl']:.3f} "
              f"AU {rec['active_units']:.0f} ({rec['train_seconds']:.0f} s)", flush=True)
    meta = dict(env, command=command_line(argv), short=args.epochs < 10 or args.n < 10000, n_train=len(train),
                n_test=len(test), vocab_size=vocab.size, **{k: getattr(args, k) for k in (
                    "max_len", "epochs", "batch_size", "lr", "latent_dim", "embed", "hidden", "cell", "k",
                    "eval_k", "seed")})
    report = {"meta": meta, "unigram": unigram_reference(train, test), "table": table}
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=float))
    (out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
