"""A fingerprint of every recipe, to show that a refactor changed no numbers.

For each recipe (at its own settings, ``epochs=1``, text recipes on 2,000
sentences) it builds the pieces the CLI trains, then runs two steps of
``sajax.sa.fit`` from the recipe's seed, and records the sum of |leaf| of every
parameter group at initialization and after the two steps, and the last step's
metrics (wall-clock ``seconds`` left out).  Run it on two versions of the code
and compare:

    PYTHONPATH=/path/to/old/src python benchmarks/recipe_fingerprint.py --out old.json
    python benchmarks/recipe_fingerprint.py --out new.json --compare old.json

``--compare`` prints one line per recipe (``same`` or the first differences; a
difference is more than 1e-6 relative) and exits 1 if any recipe differs.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import jax
import numpy as np


def _build(cfg):
    """The pieces of ``cfg`` by the recipe layer of this version of the code."""
    try:
        from sajax._recipe_build import build
    except ImportError:          # before issue 17
        from sajax.recipes import build
    return build(cfg)


def _sums(tree: dict) -> dict:
    return {g: float(sum(np.abs(np.asarray(leaf, np.float64)).sum() for leaf in jax.tree_util.tree_leaves(t)))
            for g, t in tree.items()}


def fingerprint(name: str) -> dict:
    """Parameter sums at init and after two steps of ``fit``, and the last metrics, of recipe ``name``."""
    from sajax import recipes, sa

    over = {"epochs": 1.0}
    if recipes.MODELS[recipes.config_for(name, strict=False)["model"]].family == "text":
        over["num_sentences"] = 2000
    cfg = recipes.config_for(name, over, strict=False)
    p = _build(cfg)
    n = p.train.shape[0]
    res = sa.fit(p.estimator, p.optimizer, p.params, p.train, key=jax.random.PRNGKey(cfg["seed"]),
                 batch_size=int(cfg["batch_size"]), epochs=2.0 * cfg["batch_size"] / n * 1.0001,
                 preprocess=p.preprocess, require_binary=p.require_binary, progress=False)
    last = res.history[-1] if res.history else {}
    return {"init": _sums(p.params), "after": _sums(res.state.params), "steps": int(res.state.step),
            "metrics": {k: float(v) for k, v in last.items() if np.ndim(v) == 0 and k != "seconds"},
            "family": p.family, "train": list(p.train.shape), "test": list(p.test.shape)}


def differences(old: dict, new: dict) -> list:
    """Human-readable differences of two fingerprints of one recipe (relative tolerance 1e-6)."""
    out = []
    for part in ("init", "after", "metrics"):
        a, b = old[part], new[part]
        for k in sorted(set(a) | set(b)):
            u, v = a.get(k), b.get(k)
            same = u is not None and v is not None and (
                u == v or (math.isnan(u) and math.isnan(v)) or abs(u - v) <= 1e-6 * max(1.0, abs(u)))
            if not same:
                out.append(f"{part}.{k}: {u} vs {v}")
    out += [f"{k}: {old[k]} vs {new[k]}" for k in ("family", "train", "test", "steps") if old[k] != new[k]]
    return out


def main(argv=None) -> int:
    from sajax import recipes

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file of the fingerprints (written after every recipe)")
    ap.add_argument("--recipes", default="", help="comma-separated recipe names (default: all)")
    ap.add_argument("--compare", default="", help="a JSON file of an earlier run to compare against")
    args = ap.parse_args(argv)
    names = [r for r in args.recipes.split(",") if r] or sorted(recipes.RECIPES)
    out = {}
    for name in names:
        t0 = time.perf_counter()
        out[name] = fingerprint(name)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
    if not args.compare:
        return 0
    old = json.load(open(args.compare))
    bad = 0
    for name in names:
        diff = ["not in the old run"] if name not in old else differences(old[name], out[name])
        print(f"{name:24s} {'same' if not diff else 'DIFFERS: ' + '; '.join(diff[:4])}")
        bad += bool(diff)
    print(f"{len(names) - bad} of {len(names)} recipes the same")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
