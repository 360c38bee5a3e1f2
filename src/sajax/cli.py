"""The ``sajax`` command: ``list``, ``train RECIPE [--set key=value ...]``, ``eval RUN_DIR``.

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoint/``,
``samples.png`` and ``summary.json`` (with the final test NLL).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sajax import recipes


def _print_table(title, entries):
    print(f"{title}:")
    width = max(len(n) for n in entries)
    for name, e in entries.items():
        print(f"  {name:<{width}}  [{e.section}] {e.summary}")
    print()


def cmd_list(args) -> int:
    _print_table("recipes", recipes.RECIPES)
    _print_table("estimators (--set estimator=NAME)", recipes.ESTIMATORS)
    _print_table("models (--set model=NAME)", recipes.MODELS)
    _print_table("kernels", recipes.KERNELS)
    return 0


def _parse_sets(pairs):
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _evaluate(pieces, params, cfg, run_dir: Path) -> dict:
    import jax

    from sajax.evaluate import iw_nll, sample_grid

    test = pieces.test[: int(cfg["eval_n"])]
    t0 = time.perf_counter()
    nll = iw_nll(pieces.spec.model, pieces.spec.guide, params, jax.random.PRNGKey(cfg["seed"] + 2), test,
                 k=int(cfg["eval_k"]), batch_size=int(cfg["eval_batch"]),
                 memory_budget_mb=int(cfg["memory_budget_mb"]), progress=True)
    seconds = time.perf_counter() - t0
    sample_grid(pieces.spec.model, params["model"], jax.random.PRNGKey(cfg["seed"] + 3), run_dir / "samples.png")
    return {"test_nll": float(nll), "eval_k": int(cfg["eval_k"]), "eval_n": int(len(test)),
            "eval_seconds": round(seconds, 2)}


def cmd_train(args) -> int:
    import jax

    from sajax import sa

    cfg = recipes.config_for(args.recipe, _parse_sets(args.set))
    run_dir = Path(args.out or f"runs/{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"recipe": args.recipe, **cfg}, indent=2))
    print(f"run directory: {run_dir}")
    pieces = recipes.build(cfg)
    eval_fn = None
    if cfg["eval_every"] > 0:
        from sajax.evaluate import iw_nll

        def eval_fn(params, step):
            x = pieces.test[:1000]
            return {"test_nll_k100_n1000": float(iw_nll(pieces.spec.model, pieces.spec.guide, params,
                                                        jax.random.PRNGKey(step), x, k=100))}
    t0 = time.perf_counter()
    res = sa.fit(pieces.estimator, pieces.optimizer, pieces.params, pieces.train,
                 key=jax.random.PRNGKey(cfg["seed"]), batch_size=int(cfg["batch_size"]),
                 epochs=float(cfg["epochs"]), preprocess=pieces.preprocess,
                 require_binary=pieces.preprocess is None, eval_fn=eval_fn,
                 eval_every=max(int(cfg["eval_every"]), 1), log_path=run_dir / "metrics.jsonl",
                 checkpoint_dir=run_dir / "checkpoint", progress=not args.no_progress)
    train_seconds = time.perf_counter() - t0
    last = res.history[-1] if res.history else {}
    summary = {"recipe": args.recipe, "steps": int(res.state.step), "train_seconds": round(train_seconds, 2),
               **{k: v for k, v in last.items() if k not in ("step", "seconds")}}
    summary.update(_evaluate(pieces, res.state.params, cfg, run_dir))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"test NLL (K={summary['eval_k']}, {summary['eval_n']} test images): {summary['test_nll']:.2f} nats")
    print(f"samples: {run_dir / 'samples.png'}")
    return 0


def cmd_eval(args) -> int:
    import jax

    from sajax import sa

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not a run directory (no config.json)")
    saved = json.loads((run_dir / "config.json").read_text())
    recipe = saved.pop("recipe")
    overrides = {k: str(v) for k, v in saved.items() if not k.startswith("_")}
    overrides.update(_parse_sets(args.set))
    cfg = recipes.config_for(recipe, overrides)
    pieces = recipes.build(cfg)
    ckpt = sa.latest_checkpoint(run_dir / "checkpoint")
    if ckpt is None:
        raise ValueError(f"no checkpoint in {run_dir / 'checkpoint'}")
    like = sa.init_train_state(pieces.estimator, pieces.optimizer, jax.random.PRNGKey(0), pieces.params,
                               pieces.train)
    state = sa.restore_checkpoint(ckpt, like)
    result = _evaluate(pieces, state.params, cfg, run_dir)
    result["checkpoint"] = str(ckpt)
    print(json.dumps(result, indent=2))
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sajax", description="Learning deep generative models in JAX (Ou, 2019).")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="estimators, models, kernels and recipes").set_defaults(fn=cmd_list)
    t = sub.add_parser("train", help="train a recipe into a run directory")
    t.add_argument("recipe")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe default")
    t.add_argument("--out", help="run directory (default runs/RECIPE-TIME)")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval", help="evaluate a run directory's checkpoint (test NLL, samples)")
    e.add_argument("run_dir")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. eval_k=5000 eval_n=10000")
    e.set_defaults(fn=cmd_eval)
    return p


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as err:
        print(f"sajax: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
