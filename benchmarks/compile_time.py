"""Compile time (cold and warm persistent cache) and steady-state step time, per recipe.

For every recipe, two fresh processes share one new cache directory: the first compiles
cold, the second reads JAX's persistent compilation cache (what a second ``sajax train``
of the same recipe pays).  Each process builds the recipe (model, estimator, data) and
reports:

* ``import s``: seconds from the process start to ``import sajax`` done;
* for both forms of a chunk of ``--steps`` steps that ``sa.run_loop`` (so ``fit``) can run,
  one jitted ``lax.scan`` and a Python loop over the jitted step (same steps, same
  minibatches), run as two chunks: the compile seconds (first chunk minus the second)
  and the steady-state milliseconds per step (the second chunk, metrics fetched);
* ``scan/loop``: their ratio (the convolution recipes on XLA:CPU, issue 16), the form that
  ``fit`` picks (``form="auto"``) and its time over the loop's;
* ``max abs param diff``: the largest difference of the parameters after both chunks, the
  same steps run both ways.

The main job (README) is timed through the CLI as well: ``seconds_to_first_chunk`` of a
one-step ``sajax train vae-mnist`` (process start to the first step done), cold and warm.

    python benchmarks/compile_time.py --out benchmarks/results/compile_time_cpu
    python benchmarks/compile_time.py --recipes vae-mnist,cgan-mnist --steps 10
    python benchmarks/compile_time.py --recipes '' --warm-runs 5 --out benchmarks/results/main_job_start_cpu
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_RECIPES = ["vae-mnist", "iwae2-mnist", "sbn-jsa", "sbn-vimco", "made-mnist", "text-vae", "gan-grid",
                   "nrf-inclusive-circles", "rbm-pcd-mnist", "cgan-mnist", "acgan-mnist", "pixelcnn-mnist"]


def _run(step, state, data, b: int, steps: int, form: str):
    """Two chunks of ``steps`` through ``sa.run_loop`` (what ``fit`` runs): the first pays the
    compile, the second is the steady state.  Returns (final carry, compile s, ms per step)."""
    import jax

    from sajax import sa

    carry = jax.tree_util.tree_map(jax.numpy.copy, state)   # the loop donates its carry
    carry, history = sa.run_loop(step, carry, data, batch_size=b, num_steps=2 * steps, chunk_steps=steps, form=form)
    first, second = history[0]["seconds"], history[1]["seconds"]
    return carry, first - second, 1e3 * second / steps


def measure_one(recipe: str, steps: int, cache: str | None) -> dict:
    """The numbers of the module docstring for one recipe, in this process."""
    from sajax.cli import process_seconds

    import_s = process_seconds()
    import jax
    import numpy as np

    from sajax import _recipe_build, recipes, sa
    from sajax.sa._loop import chunk_fn, prefers_step_loop

    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    cfg = recipes.config_for(recipe)
    pieces = _recipe_build.build(cfg)
    b = int(cfg["batch_size"])
    data = jax.device_put(np.asarray(pieces.train))
    n = int(data.shape[0])
    steps = min(steps, n // b // 2)
    state = sa.init_train_state(pieces.estimator, pieces.optimizer, jax.random.PRNGKey(0), pieces.params, data)
    step = sa.make_step(pieces.estimator, pieces.optimizer, pieces.preprocess)
    auto = "loop" if prefers_step_loop(jax.jit(chunk_fn(step, b, n, steps)).lower(state, data)) else "scan"
    by_scan, scan_compile, scan_ms = _run(step, state, data, b, steps, "scan")
    by_loop, loop_compile, loop_ms = _run(step, state, data, b, steps, "loop")
    diff = max(float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
               for u, v in zip(jax.tree_util.tree_leaves(by_scan.params), jax.tree_util.tree_leaves(by_loop.params)))
    return {"recipe": recipe, "steps": steps, "batch_size": b, "import_s": round(import_s, 2),
            "compile_scan_s": round(scan_compile, 2), "compile_loop_s": round(loop_compile, 2),
            "scan_step_ms": round(scan_ms, 2), "loop_step_ms": round(loop_ms, 2),
            "scan_over_loop": round(scan_ms / loop_ms, 2), "fit_form": auto,
            "fit_over_loop": round((loop_ms if auto == "loop" else scan_ms) / loop_ms, 2),
            "max_abs_param_diff": diff}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main_job(cache: str, warm_runs: int = 1) -> dict:
    """seconds_to_first_chunk of a one-step ``sajax train vae-mnist``: once cold, then ``warm_runs`` times warm."""
    sajax = str(Path(sys.executable).with_name("sajax"))
    row = {}
    for mode in ["cold"] + [f"warm {i + 1}" if warm_runs > 1 else "warm" for i in range(warm_runs)]:
        with tempfile.TemporaryDirectory() as run:
            t = time.perf_counter()
            subprocess.run([sajax, "train", "vae-mnist", "--out", f"{run}/r", "--no-progress",
                            "--set", "epochs=0.002", "--set", "eval_k=10", "--set", "eval_n=100"],
                           check=True, capture_output=True, env={**os.environ, "SAJAX_COMPILE_CACHE": cache})
            summary = json.loads(Path(f"{run}/r/summary.json").read_text())
            row[mode] = {"seconds_to_first_chunk": summary["seconds_to_first_chunk"],
                         "whole_command_s": round(time.perf_counter() - t, 1)}
    return row


def table(rows: list[dict], main: dict | None) -> str:
    lines = [] if not rows else ["| recipe | steps × B | import s | scan compile cold s | warm s | loop compile cold s | warm s | "
             "scan ms/step | loop ms/step | scan/loop | fit's form | fit/loop | max abs param diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cold, warm in rows:
        if "error" in cold or "error" in warm:
            lines.append(f"| {cold.get('recipe', '?')} | error: {cold.get('error') or warm.get('error')} |")
            continue
        lines.append(f"| {cold['recipe']} | {cold['steps']} × {cold['batch_size']} | {cold['import_s']} | "
                     f"{cold['compile_scan_s']} | {warm['compile_scan_s']} | {cold['compile_loop_s']} | "
                     f"{warm['compile_loop_s']} | {warm['scan_step_ms']} | {warm['loop_step_ms']} | "
                     f"{warm['scan_over_loop']} | {warm['fit_form']} | {warm['fit_over_loop']} | "
                     f"{warm['max_abs_param_diff']:.2g} |")
    if main:
        lines += ["", "Main job (`sajax train vae-mnist`, one step): seconds from the command to the first step done "
                  "(`seconds_to_first_chunk`), and the whole command (+ a 100-image evaluation and pictures):", "",
                  "| cache | to first step s | whole command s |", "|---|---|---|"]
        lines += [f"| {m} | {v['seconds_to_first_chunk']} | {v['whole_command_s']} |" for m, v in main.items()]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="comma-separated, 'all' or '' (none)")
    parser.add_argument("--steps", type=int, default=20, help="steps per chunk")
    parser.add_argument("--out", help="write OUT.md and OUT.json")
    parser.add_argument("--no-main-job", action="store_true")
    parser.add_argument("--warm-runs", type=int, default=1, help="warm runs of the main job (after its cold one)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.steps, args.cache)))
        return
    from sajax import recipes

    names = list(recipes.RECIPES) if args.recipes == "all" else [n for n in args.recipes.split(",") if n]
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            pair = tuple(_child(["--one", name, "--steps", str(args.steps), "--cache", cache]) for _ in range(2))
        print(json.dumps(pair), flush=True)
        rows.append(pair)
    main_row = None
    if not args.no_main_job:
        with tempfile.TemporaryDirectory() as cache:
            main_row = main_job(cache, args.warm_runs)
    text = table(rows, main_row)
    print(text)
    if args.out:
        Path(args.out + ".md").write_text(f"# Compile and step time per recipe\n\nCommand: `python benchmarks/compile_time.py "
                                          f"{' '.join(argv or sys.argv[1:])}`\n\n{text}\n")
        Path(args.out + ".json").write_text(json.dumps({"recipes": rows, "main_job": main_row}, indent=1))


if __name__ == "__main__":
    main()
