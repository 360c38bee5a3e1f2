"""RBMs on binarized MNIST: CD-1, CD-k and PCD, test log-likelihood with log Z by AIS.

Each method is a ``sajax train`` run of the ``rbm-cd-mnist`` / ``rbm-pcd-mnist``
recipes (binary RBM, ``--hidden`` units, SGD with momentum 0.5, batch 100,
fixed-binarized 50k MNIST), evaluated by ``sajax.evaluate.rbm_ais``
(Salakhutdinov & Murray 2008: base-rate start from the training data's pixel
means, W and c annealed linearly over ``--ais-temps`` temperatures, tempered
Gibbs transitions, ``--ais-runs`` runs; the table gives log Z ± its standard
error) on the 10,000 test images (fixed binarization, seed 1).

Anchor (Salakhutdinov & Murray 2008, 500 hidden units): CD-25 −86.34 nats;
CD-1 clearly behind.  Ours is a seeded binarization of the standard
50k/10k/10k set, not theirs.

GPU / long run::

    source .whl/env.sh && python3 benchmarks/rbm_mnist.py --epochs 100 --ais-temps 14500 --out "$OUT"

Short CPU run (what ``results/rbm_mnist_cpu.md`` holds)::

    python benchmarks/rbm_mnist.py --epochs 5 --ais-temps 10000 --name rbm_mnist_cpu --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from sajax import cli

METHODS = {"CD-1": ("rbm-cd-mnist", {"moves": 1}), "CD-25": ("rbm-cd-mnist", {"moves": 25}),
           "PCD": ("rbm-pcd-mnist", {})}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--ais-temps", type=int, default=10000)
    p.add_argument("--ais-runs", type=int, default=100)
    p.add_argument("--name", default="rbm_mnist")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods:
            recipe, sets = METHODS[name]
            sets = {**sets, "epochs": args.epochs, "hidden": args.hidden, "lr": args.lr,
                    "ais_temps": args.ais_temps, "ais_runs": args.ais_runs}
            run = Path(tmp) / name
            argv_run = ["train", recipe, "--out", str(run), "--no-progress"]
            for k, v in sets.items():
                argv_run += ["--set", f"{k}={v}"]
            if cli.main(argv_run) != 0:
                raise SystemExit(f"{name}: sajax {' '.join(argv_run)} failed")
            s = json.loads((run / "summary.json").read_text())
            rows.append({"method": name, **{k: s[k] for k in ("test_log_likelihood", "log_z", "log_z_se",
                                                              "train_seconds", "steps")}})
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    lines = [f"# RBM ({args.hidden} hidden) on binarized MNIST, {args.epochs:g} epochs", "",
             f"Command: `{command}`", "", "AIS: base-rate start, linear β over "
             f"{args.ais_temps} temperatures, {args.ais_runs} runs; test log-likelihood on 10,000 images.", "",
             "| method | test log-likelihood (nats) | log Z ± se | steps | train s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['test_log_likelihood']:.2f} | {r['log_z']:.2f} ± {r['log_z_se']:.2f} | "
                     f"{r['steps']} | {r['train_seconds']:.0f} |")
    lines += ["", "Anchor (Salakhutdinov & Murray 2008, 500 hidden): CD-25 −86.34 nats."]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
