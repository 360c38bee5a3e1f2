"""Random fields over sentences: TRF language models by NCE, DNCE and SA with MIS, beside an
LSTM LM and the text VAE, on the generated corpus (issue 20).

Review Sec. 4.1 (neural trans-dimensional random fields, Wang & Ou 2017, 2018a,b; Wang, Ou &
Tan 2018), Sec. 4.2.3 (an autoregressive generator as the MIS proposal) and Sec. 4.2.4
(NCE, Algorithm 9; DNCE).  Data: ``sajax.data.text.text_corpus`` (a seeded grammar with a
topic and a tense per sentence, 125 words, 6-15 tokens), 20,000 sentences split 90/10,
rows of 16 ids (words, ``<eos>``, padding).

==============  ===========================  ===================================================
method          recipe                       what is trained
==============  ===========================  ===================================================
LSTM LM         ``lstm-lm-text``             an LSTM LM by maximum likelihood (exact likelihood)
text VAE        ``text-vae``                 GRU text VAE, Gaussian h, reparameterized ELBO
TRF-NCE         ``trf-nce-text``             TRF (CNN potential) by NCE, noise = an LSTM LM
                                             pre-trained by ML for ``noise_epochs`` and fixed
TRF-DNCE        ``trf-dnce-text``            the same TRF by DNCE (noise trained with it, α = 0.25;
                                             ``α=1``: no interpolation, NCE with the trained noise)
TRF-SA          ``trf-sa-text``              the same TRF by SA: LSTM generator proposals, MIS,
                                             ζ_l by SA, generator fitted to the chains
==============  ===========================  ===================================================

Scores on the 2,000 first test sentences: NLL per sentence and per token (words + ``<eos>``)
and perplexity.  The LSTM LM's likelihood is exact; the text VAE's is an importance-weighted
bound at K = 100 (an upper bound on its perplexity); a TRF's log Z_l is estimated by
importance sampling from its LSTM LM (``sajax.evaluate.trf_log_normalizers``, ``eval_k``
draws; log Ẑ is biased low, so the TRF's perplexity is optimistic by up to
E[log Z_l - log Ẑ_l]; the minimum effective sample size over lengths is reported).

Runs live in ``--runs`` (one directory per method); a finished run (summary.json says
"completed") is read, an unfinished one continued (``sajax train ... --resume``), so the script
can be stopped and restarted at any time.

All five methods at the recipes' defaults (2 CPU cores; one method at a time)::

    python benchmarks/trf_text.py --runs runs/trf_text --name trf_text_cpu --out benchmarks/results

Short run (``--set`` overrides for every method)::

    python benchmarks/trf_text.py --runs /tmp/trf --set epochs=0.2 --set num_sentences=2000 \\
        --set eval_n=200 --name trf_text_smoke --out /tmp
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from sajax import cli, recipes

# method: (recipe, run directory name, overrides of the recipe's defaults)
METHODS = {"LSTM LM": ("lstm-lm-text", "lstm-lm", {}), "text VAE": ("text-vae", "text-vae", {}),
           "TRF-NCE": ("trf-nce-text", "trf-nce", {}), "TRF-DNCE": ("trf-dnce-text", "trf-dnce", {}),
           "TRF-DNCE α=1": ("trf-dnce-text", "trf-dnce-a1", {"alpha": 1.0}),
           "TRF-SA": ("trf-sa-text", "trf-sa", {})}


def run_method(name: str, runs: Path, sets: dict) -> dict:
    """The summary of method ``name``: read if its run finished, else trained (resumed) first.
    Settings of ``sets`` that the method's recipe does not read are left out."""
    recipe, dirname, overrides = METHODS[name]
    run = runs / dirname
    done = run / "summary.json"
    if done.exists() and json.loads(done.read_text()).get("ended") == "completed":
        return json.loads(done.read_text())
    cfg = recipes.config_for(recipe)
    keys = recipes.relevant_keys(cfg["model"], cfg["estimator"])
    argv = ["train", recipe, "--out", str(run), "--no-progress"] + (["--resume"] if run.exists() else [])
    for k, v in {**overrides, **sets}.items():
        if k in keys:
            argv += ["--set", f"{k}={v}"]
    print(f"== {name}: sajax {' '.join(argv)}", flush=True)
    if cli.main(argv) != 0:
        raise SystemExit(f"{name}: sajax {' '.join(argv)} failed")
    return json.loads(done.read_text())


def _row(name: str, summary: dict) -> dict:
    ev = summary
    return {"method": name, "recipe": METHODS[name][0], "epochs": summary.get("epoch"),
            "nll": ev["nll"], "nll_per_token": ev["nll_per_token"], "perplexity": ev["perplexity"],
            "perplexity_with_zeta": ev.get("perplexity_with_zeta"), "proposal_perplexity": ev.get("proposal_perplexity"),
            "min_ess": ev.get("min_ess"), "max_zeta_gap": ev.get("max_zeta_gap"),
            "train_seconds": summary.get("train_seconds"), "samples": ev.get("samples")}


def plot(rows, runs: Path, path: Path) -> None:
    """Test perplexity per method (left) and each TRF's ζ_l − log Ẑ_l per length (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.bar([r["method"] for r in rows], [r["perplexity"] for r in rows], color=[f"C{i}" for i in range(len(rows))])
    a.set_ylabel("test perplexity (words + <eos>)")
    a.tick_params(axis="x", labelsize=8, labelrotation=25)
    for i, r in enumerate(rows):
        gaps = runs / METHODS[r["method"]][1] / "zeta_gap.json"
        if gaps.exists():
            g = json.loads(gaps.read_text())
            b.plot(g["lengths"], np.asarray(g["zeta"]) - np.asarray(g["log_z"]), "o-", color=f"C{i}", label=r["method"])
    b.axhline(0.0, color="k", lw=0.8)
    b.set_xlabel("sentence length l")
    b.set_ylabel("ζ_l − log Ẑ_l (nats)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows, command: str) -> list:
    lines = ["# Random fields over sentences: TRF LMs beside an LSTM LM and the text VAE", "",
             f"Command: `{command}`", "",
             "Test: the first 2,000 held-out sentences of the generated corpus (unless --set eval_n). "
             "Perplexity per token, words + <eos>. LSTM LM exact; text VAE an IW bound (K = 100); TRF with log Z_l "
             "by importance sampling from its LSTM LM (optimistic by the Jensen gap; min ESS over lengths shown). "
             "Wall times on 2 CPU cores.", "",
             "| method | recipe | epochs | NLL / sentence | NLL / token | perplexity | perplexity with ζ | "
             "proposal LM perplexity | min ESS | max abs(ζ − log Ẑ) | train min |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f: "—" if v is None else format(v, f)   # noqa: E731
    for r in rows:
        lines.append(f"| {r['method']} | {r['recipe']} | {fmt(r['epochs'], 'g')} | {r['nll']:.3f} | "
                     f"{r['nll_per_token']:.4f} | {r['perplexity']:.3f} | {fmt(r['perplexity_with_zeta'], '.3f')} | "
                     f"{fmt(r['proposal_perplexity'], '.3f')} | {fmt(r['min_ess'], '.0f')} | "
                     f"{fmt(r['max_zeta_gap'], '.3f')} | {fmt((r['train_seconds'] or 0) / 60, '.1f')} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--runs", default="runs/trf_text", help="one run directory per method, kept (resumable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for every method that reads it (e.g. epochs=1), as `sajax train --set`")
    p.add_argument("--name", default="trf_text")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    sets = dict(s.split("=", 1) for s in args.set)
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.methods:
        rows.append(_row(name, run_method(name, runs, sets)))
        command = "python benchmarks/trf_text.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
        (out / f"{args.name}.md").write_text("\n".join(table(rows, command)) + "\n")
    plot(rows, runs, out / f"{args.name}.png")
    print("\n".join(table(rows, command)))


if __name__ == "__main__":
    main()
