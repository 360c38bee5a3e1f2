"""The ``sajax`` command.

* ``sajax list``: recipes, estimators, models, kernels.
* ``sajax show RECIPE [--set k=v ...]``: one recipe's settings (only the keys
  that matter for its model and estimator).
* ``sajax train RECIPE [--set k=v ...] [--out DIR] [--resume | --fresh]``:
  train into a run directory.
* ``sajax eval RUN_DIR [--set eval_k=...]``: evaluate a run's checkpoint.
* ``sajax gradvar RECIPE --estimators a,b,c [--run RUN_DIR] [--keys N]``:
  gradient mean, variance, SNR and cosine to a reference, per parameter group.

A run directory holds ``config.json`` (the recipe and its settings),
``metrics.jsonl``, ``checkpoint/``, ``curves.png`` (objective and evaluations
against steps, with the final test NLL), ``samples.png`` and ``summary.json``
(how the run ended: ``"ended": "completed"``, ``"non-finite"`` or
``"interrupted"``, and the final test NLL).

Every setting is checked before data loads, and everything ``sa.fit`` checks
(the run's length, the estimator on a first step) before anything is written;
errors are one line on stderr with exit status 2 (3 for a non-finite stop).
Ctrl-C ends a run after its current chunk (a second Ctrl-C at once) with exit
status 130: stderr and summary.json say where it stopped, its last checkpoint
and the command that resumes it.  ``--resume`` on a completed run changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from sajax import recipes

_IMPORTED = time.perf_counter()
_COMMANDS: list = []  # perf_counter() at each command's start (the process's start for the first)
BEST_PARAMS = "best_params.npz"  # early-stopped parameters (the checkpoints hold the last ones)
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "samples.png", "curves.png", "gradvar.json",
             "sweep.json", "sweep.md", "sweep.png",
             "gradvar.png", BEST_PARAMS)
EXIT_USAGE, EXIT_NONFINITE, EXIT_INTERRUPTED = 2, 3, 130


def _print_table(title, entries, module: str = ""):
    """One line per entry; ``module``: where the entry's factory lives (the Python name beside the CLI name)."""
    print(f"{title}:")
    width = max(len(n) for n in entries)
    for name, e in entries.items():
        latent = f" ({e.latent} latents)" if getattr(e, "latent", "any") != "any" else ""
        family = getattr(e, "family", "latent")
        if family != "latent":
            latent += f" ({' / '.join(family) if isinstance(family, tuple) else family} models)"
        factory = f" = {module}.{e.factory}" if module and getattr(e, "factory", "") else ""
        print(f"  {name:<{width}}  [{e.section}] {e.summary}{latent}{factory}")
    print()


def cmd_list(args) -> int:
    _print_table("recipes", recipes.RECIPES)
    _print_table("estimators (--set estimator=NAME; = the Python function it builds)", recipes.ESTIMATORS,
                 "sajax.estimators")
    _print_table("models (--set model=NAME)", recipes.MODELS, "sajax.models")
    _print_table("kernels (sajax.kernels.NAME)", recipes.KERNELS)
    return 0


def _parse_sets(pairs):
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _show(recipe: str, cfg: dict) -> None:
    r = recipes.RECIPES[recipe]
    print(f"{recipe}: {r.summary} [{r.section}]")
    if r.measured:
        print(f"  at these defaults: {r.measured}")
    own = recipes.config_for(recipe)   # what the recipe runs with: --set marks what differs from it
    width = max(len(k) for k in cfg)
    for key, value in cfg.items():
        default = own.get(key, recipes.SETTINGS[key].default)
        mark = "" if value == default else f"   (set; recipe default {default})"
        print(f"  {key:<{width}} = {value!s:<10} {recipes.SETTINGS[key].help}{mark}")


def cmd_show(args) -> int:
    _show(args.recipe, recipes.config_for(args.recipe, _parse_sets(args.set)))
    return 0


# --------------------------------------------------------------------------
# Run directories


def _check_writable(run_dir: Path) -> None:
    """ValueError unless ``run_dir`` is (or can be made) a writable directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file, not a directory")
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {run_dir}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {run_dir}: no permission to write in {parent}")


def _config_diff(saved: dict, recipe: str, cfg: dict, ignore=()) -> list:
    """``key (saved A, now B)`` for every setting where a saved run differs."""
    try:
        saved_recipe, saved_cfg = recipes.config_from_saved(saved)
    except ValueError as err:
        return [f"config.json ({err})"]
    diffs = [] if saved_recipe == recipe else [f"recipe (saved {saved_recipe}, now {recipe})"]
    for key in dict.fromkeys([*saved_cfg, *cfg]):
        if key not in ignore and saved_cfg.get(key, "-") != cfg.get(key, "-"):
            diffs.append(f"{key} (saved {saved_cfg.get(key, '-')}, now {cfg.get(key, '-')})")
    return diffs


def _run_mode(run_dir: Path, recipe: str, cfg: dict, *, resume: bool, fresh: bool) -> str:
    """``"new"``, ``"resume"`` or ``"fresh"`` for training into ``run_dir``; ValueError if refused."""
    _check_writable(run_dir)
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"--out {run_dir} is not empty and holds no sajax run (no config.json); "
                         f"choose a new or empty directory")
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--out {run_dir}: cannot read its config.json ({err}); use --fresh or another --out") \
            from None
    if fresh:
        return "fresh"
    # a run may continue with a new length or evaluation, not with a new recursion
    ignore = tuple(set(recipes.RESUMABLE) - {"epochs"}) if recipes.length_sets_schedule(cfg) else recipes.RESUMABLE
    diffs = _config_diff(saved, recipe, cfg, ignore=ignore if resume else ())
    if resume and not diffs:
        return "resume"
    if diffs:
        raise ValueError(f"--out {run_dir} holds a different run; settings that differ: {', '.join(diffs)}. "
                         f"Refusing to mix runs: choose another --out, or --fresh to replace it")
    raise ValueError(f"--out {run_dir} already holds this run; pass --resume to continue it or --fresh to "
                     f"start over")


def _prepare_run_dir(run_dir: Path, mode: str) -> None:
    """Create the directory; with ``fresh``, remove the old run's files (only those)."""
    if mode == "fresh":
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
        for replica in run_dir.glob("replica_[0-9][0-9][0-9]"):
            shutil.rmtree(replica, ignore_errors=True)
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------
# Evaluation: what applies depends on what the model offers


def _nll_how(summary: dict) -> str:
    return f"K={summary['eval_k']}" if "eval_k" in summary else "exact"


def _report_nll(summary: dict, run_dir: Path) -> None:
    if "test_nll" in summary:
        print(f"test NLL ({_nll_how(summary)}, {summary['eval_n']} test images): {summary['test_nll']:.2f} nats")
    if "samples" in summary:
        print(f"samples: {summary['samples']}")
    if (run_dir / "curves.png").exists():
        print(f"curves: {run_dir / 'curves.png'}")


def _plot_curves(run_dir: Path, title: str, summary: dict | None = None) -> None:
    """curves.png from metrics.jsonl, with the summary's final test NLL as a point at the
    last step (``eval/test_nll (K=..., final)``; the log itself is left as it is)."""
    from sajax import evaluate

    log = run_dir / "metrics.jsonl"
    records = evaluate.read_metrics(log) if log.exists() else []
    if not records:
        return
    if summary and "test_nll" in summary:
        records[-1] = {**records[-1], f"eval/test_nll ({_nll_how(summary)}, final)": summary["test_nll"]}
    with tempfile.TemporaryDirectory(prefix="sajax-curves-") as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        evaluate.plot_curves(path, run_dir / "curves.png", title=title)


# --------------------------------------------------------------------------
# train / eval


def process_seconds() -> float:
    """Seconds since this process started (Linux: ``/proc/self/stat``; elsewhere since
    ``sajax.cli`` was imported)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def _run_watch(start_step: int, steps_per_epoch: int):
    """A hook that notes where the run is: ``step`` and ``epoch()`` of the last chunk done, and
    ``first``, at the end of the first chunk, the seconds since the command started (the process
    start for a process's first command: imports, data, compiling the chunk, running it):
    ``seconds_to_first_chunk`` in summary.json.  It ends the run after the chunk in which
    ``interrupted`` was set (:class:`_CtrlC`)."""
    from sajax import sa

    class RunWatch(sa.Hook):
        first, step, interrupted = None, start_step, False

        def should_stop(self) -> bool:
            return self.interrupted

        def on_chunk(self, carry, record, metrics):
            self.step = int(record["step"])
            if self.first is None:
                self.first = round(time.perf_counter() - (_COMMANDS[-1] if _COMMANDS else _IMPORTED), 2)

        def epoch(self) -> float:
            return self.step / steps_per_epoch

    return RunWatch()


class _CtrlC:
    """Ctrl-C (SIGINT) during ``sajax train``: while training, the first one ends the run after
    the current chunk (checkpointed and logged: nothing is lost) and a second one at once; while
    evaluating, at once (KeyboardInterrupt); while an interrupted run is reported, it is ignored."""

    def __init__(self, watch):
        self.watch, self.phase, self.previous = watch, "training", None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self.handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def handle(self, signum, frame):
        if self.phase == "reporting":
            return
        if self.phase == "training" and not self.watch.interrupted:
            self.watch.interrupted = True
            print("sajax: Ctrl-C: stopping after the current chunk (its checkpoint is saved); Ctrl-C again to "
                  "stop at once", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt


def _start_state(pieces, cfg, run_dir: Path, mode: str):
    """The carry training starts from, made with every check ``sa.fit`` runs before its first
    step (the data, the run's length, the estimator's own checks on a traced first step, such
    as PacGAN's pack against the batch size) and, with ``--resume``, restored from the newest
    readable checkpoint: all of it before anything is written.  ``fit`` continues from it."""
    import jax
    import jax.numpy as jnp

    from sajax import sa
    from sajax.core import check_data
    from sajax.sa._driver import _plan, _probe

    batch_size = int(cfg["batch_size"])
    data = jnp.asarray(check_data(pieces.train, name="data", binary=pieces.require_binary))
    _plan(data, batch_size, float(cfg["epochs"]), None, None)
    state = sa.init_train_state(pieces.estimator, pieces.optimizer, jax.random.PRNGKey(cfg["seed"]),
                                pieces.params, data)
    _probe(pieces.estimator, pieces.optimizer, pieces.preprocess, state, data, batch_size, None)
    if mode != "resume":
        return state
    restored, _ = sa.restore_latest(run_dir / "checkpoint", state)
    return state if restored is None else restored


def _multiprocess() -> bool:
    """Whether this command runs as one process of a jax.distributed job (``sajax launch``, srun, mpirun)."""
    from sajax import distributed

    return distributed.is_initialized()


def _primary() -> bool:
    """Process 0 of a job (it writes the run directory), or the only process."""
    import jax

    return not _multiprocess() or jax.process_index() == 0


def _sync(name: str) -> None:
    """Every process of a job waits here (nothing in a single-process run)."""
    if _multiprocess():
        from sajax.sa._distributed import barrier

        barrier(name)


def _job_kw(cfg) -> dict:
    """``fit`` keywords of a multi-process job: the global mesh and the settings every process must share."""
    if not _multiprocess():
        return {}
    from sajax import distributed

    return {"mesh": distributed.global_mesh(), "fingerprint": json.dumps(cfg, sort_keys=True, default=str)}


def _fit(pieces, cfg, run_dir: Path, state, *, progress: bool, hooks=()):
    import jax

    from sajax import _recipe_eval, sa

    return sa.fit(pieces.estimator, pieces.optimizer, pieces.params, pieces.train, **_job_kw(cfg),
                  key=jax.random.PRNGKey(cfg["seed"]), batch_size=int(cfg["batch_size"]),
                  epochs=float(cfg["epochs"]), preprocess=pieces.preprocess,
                  require_binary=pieces.require_binary, eval_fn=_recipe_eval.eval_fn_for(pieces, cfg),
                  eval_every=max(int(cfg.get("eval_every", 1)), 1), log_path=run_dir / "metrics.jsonl",
                  checkpoint_dir=run_dir / "checkpoint", state=state, progress=progress, hooks=hooks)


def _early_stopping(cfg):
    """``[EarlyStopping]`` on the validation NLL when the recipe asks for it (``patience`` > 0), else ``[]``."""
    from sajax import sa

    return [sa.EarlyStopping("valid_nll", int(cfg["patience"]))] if cfg.get("patience", 0) > 0 else []


def _stopped_summary(stopper) -> dict:
    """What early stopping decided: the best validation NLL, its step, whether the run ended early."""
    if stopper is None or stopper.best_params is None:
        return {}
    return {"best_valid_nll": round(stopper.best, 3), "best_step": int(stopper.best_step),
            "stopped_early": bool(stopper.should_stop())}


def _write_ended(run_dir: Path, summary: dict, title: str) -> None:
    """summary.json of a run that ended before its evaluation, and its curves so far."""
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot_curves(run_dir, title)


def _nonfinite(err, recipe: str, run_dir: Path, train_seconds: float) -> int:
    """Report a non-finite stop: one line, and a summary.json that says how the run ended."""
    last_good = getattr(err, "last_good", None)
    summary = {"recipe": recipe, "ended": "non-finite", "step": getattr(err, "step", None),
               "metric": getattr(err, "name", None), "last_good_checkpoint": str(last_good) if last_good else None,
               "message": str(err), "train_seconds": round(train_seconds, 2)}
    _write_ended(run_dir, summary, f"{recipe} (stopped: non-finite)")
    where = f"last good checkpoint: {last_good}" if last_good else "no checkpoint was saved before it"
    print(f"sajax: error: training stopped at step {summary['step']}: non-finite {summary['metric']}; {where}; "
          f"start over with --fresh and a smaller lr", file=sys.stderr)
    return EXIT_NONFINITE


def _completed(run_dir: Path, cfg: dict) -> dict | None:
    """The summary of a run that completed and that ``cfg`` does not lengthen (its ``epochs``
    are at most the run's), else None."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(summary, dict) or summary.get("ended") != "completed":
        return None
    return summary if float(cfg["epochs"]) <= float(saved.get("epochs", "inf")) else None


def _report_completed(run_dir: Path, summary: dict, epochs) -> int:
    print(f"the run in {run_dir} is complete ({summary.get('steps')} steps, epochs={float(epochs):g}): nothing "
          f"to do, nothing changed. To train it longer, --resume with a larger --set epochs; to evaluate it "
          f"again: sajax eval {run_dir}")
    return 0


def _resume_command(args, run_dir: Path) -> str:
    sets = [a for s in args.set or [] for a in ("--set", s)]
    return shlex.join(["sajax", "train", args.recipe, "--out", str(run_dir), *sets, "--resume"])


def _interrupted(args, run_dir: Path, watch, train_seconds: float) -> int:
    """Report Ctrl-C: where the run stopped, its last checkpoint and the command that resumes it,
    on stderr and in summary.json (``"ended": "interrupted"``)."""
    from sajax import sa

    last = sa.latest_checkpoint(run_dir / "checkpoint")
    step = max(watch.step, int(last.name.split("_")[-1]) if last else 0)
    watch.step = step
    summary = {"recipe": args.recipe, "ended": "interrupted", "step": step, "epoch": watch.epoch(),
               "last_checkpoint": str(last) if last else None, "resume": _resume_command(args, run_dir),
               "train_seconds": round(train_seconds, 2)}
    _write_ended(run_dir, summary, f"{args.recipe} (interrupted)")
    where = f"last checkpoint: {last}" if last else "no checkpoint was saved yet"
    print(f"sajax: interrupted at step {step} (epoch {watch.epoch():g}); {where}; resume with:\n"
          f"  {summary['resume']}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _last_metrics(history: list, run_dir: Path) -> dict:
    """The last chunk's record (from the log when this command trained no chunk), less step and seconds."""
    from sajax.evaluate import read_metrics

    log = run_dir / "metrics.jsonl"
    records = history or (read_metrics(log) if log.exists() else [])
    last = records[-1] if records else {}
    return {k: v for k, v in last.items() if k not in ("step", "seconds")}


def _train(args, cfg, pieces, state, run_dir: Path, ctrl_c) -> int:
    """Train from ``state``, evaluate, and write summary.json and the pictures."""
    from sajax import _recipe_eval, sa

    t0 = time.perf_counter()
    hooks = _early_stopping(cfg)
    watch = ctrl_c.watch
    try:
        res = _fit(pieces, cfg, run_dir, state, progress=not args.no_progress, hooks=hooks + [watch])
    except sa.NonFiniteError as err:
        return _nonfinite(err, args.recipe, run_dir, time.perf_counter() - t0)
    if watch.interrupted:
        raise KeyboardInterrupt
    ctrl_c.phase = "evaluating"
    summary = {"recipe": args.recipe, "ended": "completed", "steps": sa._loop.current_step(res.state),
               "train_seconds": round(time.perf_counter() - t0, 2), "seconds_to_first_chunk": watch.first,
               **_last_metrics(res.history, run_dir)}
    stopper = hooks[0] if hooks else None
    summary.update(_stopped_summary(stopper))
    params = sa._distributed.host_local(res.state.params)
    if stopper is not None and stopper.best_params is not None:
        params = stopper.best_params
        if _primary():
            _save_best(run_dir, params)
    if not _primary():   # every process evaluates (the same numbers); process 0 writes the run directory
        with tempfile.TemporaryDirectory(prefix="sajax-eval-") as tmp:
            _recipe_eval.evaluate(pieces, params, cfg, Path(tmp), progress=False)
        return 0
    summary.update(_recipe_eval.evaluate(pieces, params, cfg, run_dir, progress=not args.no_progress))
    _plot_curves(run_dir, f"{args.recipe}: {cfg['estimator']} on {cfg['model']}", summary)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    _report_nll(summary, run_dir)
    return 0


def _start_run_dir(args, cfg, run_dir: Path, mode: str, extra: dict | None = None) -> None:
    """Process 0 prepares the run directory and writes config.json, once every process has checked it."""
    _sync("sajax-run-dir-checked")
    if _primary():
        _prepare_run_dir(run_dir, mode)
        (run_dir / "config.json").write_text(json.dumps({"recipe": args.recipe, **cfg, **(extra or {})}, indent=2))
        print(f"run directory: {run_dir}" + {"new": "", "fresh": " (old run removed: --fresh)",
                                              "resume": " (resuming its checkpoint: --resume)"}[mode])
    _sync("sajax-run-dir-ready")


def cmd_train(args) -> int:
    from sajax import _recipe_build

    cfg = recipes.config_for(args.recipe, _parse_sets(args.set))
    if args.show:
        _show(args.recipe, cfg)
        return 0
    run_dir = Path(args.out or f"runs/{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    mode = _run_mode(run_dir, args.recipe, cfg, resume=args.resume, fresh=args.fresh)
    done = _completed(run_dir, cfg) if mode == "resume" else None
    if done is not None:
        return _report_completed(run_dir, done, cfg["epochs"])
    if args.replicas is not None or args.sweep:
        return _train_replicas(args, cfg, run_dir, mode)
    pieces = _recipe_build.build(cfg)                # loads data
    state = _start_state(pieces, cfg, run_dir, mode)  # nothing is written before this succeeds
    _start_run_dir(args, cfg, run_dir, mode)
    watch = _run_watch(int(np.asarray(state.step)), len(pieces.train) // int(cfg["batch_size"]))
    t0 = time.perf_counter()
    with _CtrlC(watch) as ctrl_c:
        try:
            return _train(args, cfg, pieces, state, run_dir, ctrl_c)
        except KeyboardInterrupt:
            ctrl_c.phase = "reporting"
            return _interrupted(args, run_dir, watch, time.perf_counter() - t0)


# --------------------------------------------------------------------------
# replicas and sweeps: R runs of one recipe in one program


SWEEPABLE = ("lr", "critic_lr", "beta1", "momentum", "weight_decay")  # settings that only change the optimizer


def _sweep_configs(args, cfg) -> tuple:
    """``(key, values, [cfg per value])`` of ``--sweep KEY=v1,v2,...`` (one value: the recipe's own)."""
    replicas = 1 if args.replicas is None else args.replicas
    if replicas < 1:
        raise ValueError(f"--replicas must be >= 1, got {replicas}")
    if not args.sweep:
        return None, [], [cfg]
    key, _, text = args.sweep.partition("=")
    key, values = key.strip(), [v.strip() for v in text.split(",") if v.strip()]
    if key not in SWEEPABLE:
        raise ValueError(f"--sweep {key}: only settings that change nothing but the optimizer can be swept in one "
                         f"program: {', '.join(SWEEPABLE)} (seeds: --replicas alone)")
    if not values:
        raise ValueError(f"--sweep expects KEY=v1,v2,..., got {args.sweep!r}")
    if replicas % len(values):
        raise ValueError(f"--replicas {replicas} must be a multiple of the {len(values)} --sweep values "
                         f"(replica r runs value r % {len(values)})")
    sets = _parse_sets(args.set)
    cfgs = [recipes.config_for(args.recipe, {**sets, key: v}) for v in values]
    return key, [c[key] for c in cfgs], cfgs


def _sweep_pieces(cfgs: list) -> list:
    """The recipe built for each value; refused if a value changes the model, data or initial parameters."""
    import jax

    from sajax import _recipe_build

    built = [_recipe_build.build(c) for c in cfgs]
    first = jax.tree_util.tree_leaves(built[0].params)
    for c, b in zip(cfgs[1:], built[1:]):
        same = np.array_equal(b.train, built[0].train) and all(
            np.array_equal(x, y) for x, y in zip(first, jax.tree_util.tree_leaves(b.params), strict=True))
        if not same:
            raise ValueError(f"--sweep: a value changes the recipe's data or initial parameters (seen at {c}); "
                             f"sweep a setting of the optimizer only")
    return built


def _replica_state(built: list, cfg, replicas: int):
    """The stacked carry: replica r runs value r % V (``sa.SweepState``) with key fold_in(seed, r)."""
    import jax
    import jax.numpy as jnp

    from sajax import sa

    first, data = built[0], jnp.asarray(built[0].train)
    states = []
    for r in range(replicas):
        v = r % len(built)
        st = sa.init_train_state(first.estimator, built[v].optimizer,
                                 jax.random.fold_in(jax.random.PRNGKey(cfg["seed"]), r), first.params, data)
        states.append(st._replace(opt_state=sa.SweepState(jnp.int32(v), st.opt_state)))
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)


def _replica_start(built, cfg, replicas: int, run_dir: Path, mode: str):
    """The stacked carry after fit's checks (run length, traced first step), or restored with --resume."""
    from sajax import sa
    from sajax.core import check_data
    from sajax.sa._driver import _plan, _probe

    pieces, batch_size = built[0], int(cfg["batch_size"])
    check_data(pieces.train, name="data", binary=pieces.require_binary)
    _plan(pieces.train, batch_size, float(cfg["epochs"]), None, None)
    state = _replica_state(built, cfg, replicas)
    optimizer = sa.sweep([b.optimizer for b in built])
    _probe(pieces.estimator, optimizer, pieces.preprocess, state, pieces.train, batch_size, replicas)
    if mode == "resume":
        restored, _ = sa.restore_latest(run_dir / "checkpoint", state)
        state = state if restored is None else restored
    return optimizer, state


def _replica_mesh(replicas: int):
    """The mesh the replicas spread over: every device of every process when they divide R (a job needs it)."""
    import jax

    from sajax import distributed

    if _multiprocess() or (jax.device_count() > 1 and replicas % jax.device_count() == 0):
        return distributed.global_mesh()
    return None


def _train_replicas(args, cfg, run_dir: Path, mode: str) -> int:
    """``--replicas R [--sweep KEY=v1,...]``: R runs in one program, then a table and a plot of the sweep."""
    import jax

    from sajax import sa

    key, values, cfgs = _sweep_configs(args, cfg)
    replicas = args.replicas or len(cfgs)
    if int(cfg.get("patience", 0)) > 0 or int(cfg.get("eval_every", 0)) > 0:
        raise ValueError("--replicas: evaluation during training (eval_every, patience) is not supported; "
                         "the replicas are evaluated at the end")
    extra = {"_replicas": replicas, "_sweep": args.sweep or ""}
    if mode == "resume":
        saved = json.loads((run_dir / "config.json").read_text())
        if (saved.get("_replicas"), saved.get("_sweep")) != (replicas, extra["_sweep"]):
            raise ValueError(f"--out {run_dir} holds a run with --replicas {saved.get('_replicas')} --sweep "
                             f"{saved.get('_sweep') or '-'}; resume it with the same flags")
    built = _sweep_pieces(cfgs)
    optimizer, state = _replica_start(built, cfg, replicas, run_dir, mode)
    _start_run_dir(args, cfg, run_dir, mode, extra)
    pieces, t0 = built[0], time.perf_counter()
    job = _job_kw(cfg)
    res = sa.fit(pieces.estimator, optimizer, None, pieces.train, key=jax.random.PRNGKey(cfg["seed"]),
                 batch_size=int(cfg["batch_size"]), epochs=float(cfg["epochs"]), preprocess=pieces.preprocess,
                 require_binary=pieces.require_binary, log_path=run_dir / "metrics.jsonl",
                 checkpoint_dir=run_dir / "checkpoint", state=state, progress=not args.no_progress,
                 replicas=replicas, **{**job, "mesh": _replica_mesh(replicas)})
    params = sa._distributed.host_local(res.state.params)
    rows = _evaluate_replicas(args, built, cfgs, params, run_dir, res.history, replicas)
    if _primary():
        _write_sweep(run_dir, args.recipe, key, values, rows, time.perf_counter() - t0)
    return 0


def _evaluate_replicas(args, built, cfgs, params, run_dir: Path, history, replicas: int) -> list:
    """One row per replica: its value, final training metrics and evaluation.  Process p of a
    job evaluates replicas p, p + P, ...; each writes ``replica_NNN/`` (pictures, result.json)."""
    import jax

    from sajax import _recipe_eval

    for r in range(replicas):
        if r % jax.process_count() != jax.process_index():
            continue
        v, out = r % len(built), run_dir / f"replica_{r:03d}"
        out.mkdir(exist_ok=True)
        result = _recipe_eval.evaluate(built[v], jax.tree_util.tree_map(lambda a: a[r], params), cfgs[v], out,
                                       progress=False)
        (out / "result.json").write_text(json.dumps(result))
    _sync("sajax-replicas-evaluated")
    last = history[-1] if history else {}
    rows = []
    for r in range(replicas):
        result = json.loads((run_dir / f"replica_{r:03d}" / "result.json").read_text())
        train = {k: val[r] for k, val in last.items() if isinstance(val, list)}
        rows.append({"replica": r, "value_index": r % len(built), **train,
                     **{k: val for k, val in result.items() if isinstance(val, (int, float))}})
    return rows


def _sweep_table(key, values, rows: list) -> tuple[list, str]:
    """Per value: the mean and spread over its replicas of every number; and the markdown table."""
    names = [k for k in rows[0] if k not in ("replica", "value_index", "eval_k", "eval_n")
             and not k.endswith("seconds") and isinstance(rows[0][k], (int, float))]
    groups = []
    for v, value in enumerate(values or [None]):
        mine = [row for row in rows if row["value_index"] == v]
        stats = {n: (float(np.mean([m[n] for m in mine])), float(np.std([m[n] for m in mine]))) for n in names}
        groups.append({"value": value, "replicas": [m["replica"] for m in mine], **{n: s[0] for n, s in stats.items()},
                       **{f"{n}_std": s[1] for n, s in stats.items()}})
    head = f"| {key or 'run'} | replicas | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 2)]
    for g in groups:
        cells = " | ".join(f"{g[n]:.4g} ± {g[n + '_std']:.2g}" for n in names)
        lines.append(f"| {g['value'] if g['value'] is not None else 'all'} | {len(g['replicas'])} | {cells} |")
    return groups, "\n".join(lines) + "\n"


def _plot_sweep(path: Path, key, values, rows: list, title: str) -> None:
    """The sweep's final numbers against the swept value (each replica a point, the mean a line)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = [k for k in rows[0] if k not in ("replica", "value_index") and isinstance(rows[0][k], (int, float))]
    names = [k for k in ("test_nll", "objective", "loss") if k in numbers] or numbers[:1]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.5 * max(len(names), 1), 3.5), squeeze=False)
    xs = [float(v) for v in values] if values else [0.0]
    for ax, name in zip(axes[0], names):
        for row in rows:
            ax.plot(xs[row["value_index"]], row[name], "o", color="C0", alpha=0.5)
        means = [np.mean([r[name] for r in rows if r["value_index"] == v]) for v in range(len(xs))]
        ax.plot(xs, means, "-", color="C1")
        if values and min(xs) > 0 and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
        ax.set_xlabel(key or "replica set")
        ax.set_ylabel(name)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_sweep(run_dir: Path, recipe: str, key, values, rows: list, seconds: float) -> None:
    """sweep.json (every replica and every value's mean ± std), sweep.md (the table), sweep.png."""
    groups, table = _sweep_table(key, values, rows)
    title = f"{recipe}: {len(rows)} replicas" + (f", {key} = {', '.join(map(str, values))}" if key else "")
    (run_dir / "sweep.json").write_text(json.dumps({"recipe": recipe, "key": key, "values": values,
                                                    "replicas": rows, "by_value": groups,
                                                    "train_seconds": round(seconds, 2)}, indent=2))
    (run_dir / "sweep.md").write_text(f"# {title}\n\nmean ± std over each value's replicas\n\n{table}")
    _plot_sweep(run_dir / "sweep.png", key, values, rows, title)
    (run_dir / "summary.json").write_text(json.dumps({"recipe": recipe, "ended": "completed", "replicas": len(rows),
                                                      "sweep": key, "train_seconds": round(seconds, 2)}, indent=2))
    print(table + f"\n{run_dir / 'sweep.md'}\n{run_dir / 'sweep.png'}")


def _save_best(run_dir: Path, params) -> None:
    """The early-stopped parameters beside the checkpoints (``sajax eval`` tests them)."""
    import jax

    leaves = jax.tree_util.tree_leaves(params)
    np.savez(run_dir / BEST_PARAMS, *[np.asarray(a) for a in leaves])


def _load_best(run_dir: Path, like):
    """The early-stopped parameters of a run (shaped like ``like``), or None if it has none."""
    import jax

    path = run_dir / BEST_PARAMS
    if not path.exists():
        return None
    with np.load(path) as f:
        leaves = [f[f"arr_{i}"] for i in range(len(f.files))]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)


def _load_run(run_dir: Path, overrides: dict):
    """``(recipe, cfg, pieces, TrainState, checkpoint path)`` of a run directory."""
    from sajax import _recipe_build
    import jax

    from sajax import sa

    recipe, cfg = recipes.config_from_saved(_read_config(run_dir))
    cfg = recipes.config_for(recipe, {**cfg, **overrides}, strict=False)
    pieces = _recipe_build.build(cfg)
    like = sa.init_train_state(pieces.estimator, pieces.optimizer, jax.random.PRNGKey(0), pieces.params,
                               pieces.train)
    state, path = sa.restore_latest(run_dir / "checkpoint", like)
    if state is None:
        raise ValueError(f"no checkpoint in {run_dir / 'checkpoint'}")
    return recipe, cfg, pieces, state, path


def cmd_eval(args) -> int:
    from sajax import _recipe_eval
    run_dir = Path(args.run_dir)
    overrides = _parse_sets(args.set)
    bad = [k for k in overrides if k not in recipes.EVAL_KEYS]
    if bad:
        raise ValueError(f"eval --set takes {', '.join(recipes.EVAL_KEYS)}; not {bad[0]}")
    _, cfg, pieces, state, path = _load_run(run_dir, overrides)
    best = _load_best(run_dir, state.params)
    result = _recipe_eval.evaluate(pieces, state.params if best is None else best, cfg, run_dir)
    result["checkpoint"] = str(path) if best is None else str(run_dir / BEST_PARAMS)
    print(json.dumps(result, indent=2))
    return 0


# --------------------------------------------------------------------------
# gradvar


# settings that define the model and data of a trained run (gradvar --run may not change them)
_RUN_FIXED = ("model", "layers", "kind", "seed", "binarization", "train_split")


def _gradvar_configs(args, sets: dict, saved_cfg):
    """``{estimator: cfg}``, each checked (the estimator must fit the model)."""
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    if not names:
        raise ValueError("--estimators needs at least one estimator name, e.g. vimco,rloo,jsa")
    if saved_cfg is not None:
        changed = [k for k in sets if k in _RUN_FIXED and str(sets[k]) != str(saved_cfg.get(k))]
        if changed:
            raise ValueError(f"--set {changed[0]} cannot change the model or data of the trained run --run")
    base = {k: v for k, v in (saved_cfg or {}).items() if k != "estimator"}
    cfgs = {}
    for name in dict.fromkeys(names):
        try:
            cfgs[name] = recipes.config_for(args.recipe, {**base, **sets, "estimator": name}, strict=False)
        except ValueError as err:
            raise ValueError(f"--estimators {name}: {err}") from None
    unused = [k for k in sets if not any(k in c for c in cfgs.values())]
    if unused:
        raise ValueError(f"--set {unused[0]} does not apply to any of {list(cfgs)} "
                         f"(used by {recipes.users_of(unused[0])})")
    return cfgs


def _gradvar_point(args, cfg0, spec):
    """Parameters to measure at, the run's estimator and state (or None at initialization)."""
    import jax

    if not args.run:
        return spec.init(jax.random.PRNGKey(cfg0["seed"])), None, None, "initialization"
    _, run_cfg, _, state, path = _load_run(Path(args.run), {})
    return state.params, run_cfg["estimator"], state.est_state, f"checkpoint {path}"


def _gradvar_candidates(cfgs, spec, point, data):
    from sajax import _recipe_build
    from sajax.core import GUIDE, MODEL
    from sajax.diagnostics import Candidate

    params, run_est, run_state = point
    out = {}
    for name, cfg in cfgs.items():
        ctx = _recipe_build.Context(cfg, data, spec=spec)
        est = _recipe_build.build_estimator(ctx)
        if name == run_est:      # the run's own estimator: its trained extra groups and state
            out[name] = Candidate(est, params, run_state)
            continue
        extra = _recipe_build.init_params(ctx)
        out[name] = Candidate(est, {**extra, MODEL: params[MODEL], GUIDE: params[GUIDE]}, None)
    return out


def _gradvar_reference(args, cfg0, spec, params, batch):
    import jax

    from sajax.diagnostics import exact_reference, high_k_reference

    latent = recipes.MODELS[cfg0["model"]].latent
    if latent == "discrete" and sum(recipes.layer_sizes(cfg0)) <= args.exact_max:
        return exact_reference(spec.model, spec.guide, params, batch.x, max_latents=args.exact_max)
    return high_k_reference(spec.model, spec.guide, params, batch, jax.random.PRNGKey(cfg0["seed"] + 5),
                            latent=latent, num_samples=args.ref_k, num_keys=args.ref_keys)


def _gradvar_out(args) -> Path:
    out = Path(args.out or args.run or f"runs/gradvar-{args.recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    _check_writable(out)
    return out


def _gradvar_checks(args):
    """Check the recipe (supported first), the flags and ``--run``; the run's saved settings or None."""
    family = recipes.MODELS[recipes.config_for(args.recipe, strict=False)["model"]].family
    if family != "latent":
        raise ValueError(f"gradvar compares estimators of latent-variable models; recipe {args.recipe} trains "
                         f"{recipes.article(family)} model")
    if not args.estimators:
        raise ValueError("gradvar needs --estimators: comma-separated estimator names that fit the recipe's "
                         "model (sajax list), e.g. --estimators vimco,rloo,jsa")
    if args.burnin < 0:
        raise ValueError(f"--burnin must be >= 0, got {args.burnin}")
    for flag in ("keys", "batch", "ref_k", "ref_keys", "chunk"):
        if getattr(args, flag) < (2 if flag in ("keys", "ref_keys") else 1):
            raise ValueError(f"--{flag.replace('_', '-')} must be >= {2 if flag in ('keys', 'ref_keys') else 1}, "
                             f"got {getattr(args, flag)}")
    if not args.run:
        return None
    saved_recipe, saved_cfg = recipes.config_from_saved(_read_config(Path(args.run)))
    if saved_recipe != args.recipe:
        raise ValueError(f"--run {args.run} is a run of recipe {saved_recipe}, not {args.recipe}")
    return saved_cfg


def cmd_gradvar(args) -> int:
    """Gradient mean, variance, SNR and cosine to a reference for several estimators."""
    from sajax import _recipe_build
    import jax
    import jax.numpy as jnp

    from sajax.core import Batch
    from sajax.data import fixed_binarize
    from sajax.diagnostics import compare_estimators, format_table, plot_comparison

    saved_cfg = _gradvar_checks(args)
    cfgs = _gradvar_configs(args, _parse_sets(args.set), saved_cfg)
    out = _gradvar_out(args)
    cfg0 = next(iter(cfgs.values()))
    data = _recipe_build.load_data_for(cfg0)
    train, preprocess = data.train, data.preprocess
    spec = _recipe_build.build_model(_recipe_build.Context(cfg0, data))
    params, run_est, run_state, where = _gradvar_point(args, cfg0, spec)
    b = min(args.batch, train.shape[0])
    x = train[:b] if preprocess is None else fixed_binarize(train[:b], seed=cfg0["seed"])
    batch = Batch(jnp.asarray(x), jnp.arange(b))
    refs, how = _gradvar_reference(args, cfg0, spec, params, batch)
    candidates = _gradvar_candidates(cfgs, spec, (params, run_est, run_state), data)
    rows = compare_estimators(candidates, batch, jax.random.PRNGKey(cfg0["seed"] + 4), num_keys=args.keys,
                              data=train, references=refs, chunk=min(args.chunk, args.keys), burnin=args.burnin)
    meta = {"recipe": args.recipe, "point": where, "num_keys": args.keys, "batch": b, "reference": how,
            "burnin": args.burnin,
            "settings": cfgs, "device": str(jax.devices()[0].device_kind)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gradvar.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=float))
    title = f"{args.recipe} at {where.split('/')[-1]}: {args.keys} keys, batch {b}" + \
        (f", {args.burnin} burn-in estimates" if args.burnin else "")
    plot_comparison(rows, out / "gradvar.png", title=title)
    print(f"{title}\nreference: {how}\n")
    print(format_table(rows))
    print(f"\n{out / 'gradvar.json'}\n{out / 'gradvar.png'}")
    return 0


# --------------------------------------------------------------------------
# launch


_SUBCOMMANDS = ("list", "show", "train", "eval", "gradvar")


def cmd_launch(args) -> int:
    """Start N local processes of one jax.distributed job (for testing a multi-host run on one machine)."""
    from sajax import distributed

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError("launch needs a command after --, e.g. sajax launch --processes 2 -- train iwae")
    if command[0] in _SUBCOMMANDS:
        command = [sys.executable, "-m", "sajax.cli", *command]
    if args.processes < 1 or (args.devices_per_process is not None and args.devices_per_process < 1):
        raise ValueError("--processes and --devices-per-process must be >= 1")
    return distributed.launch(command, processes=args.processes, devices_per_process=args.devices_per_process,
                              port=args.port)


def _read_config(run_dir: Path) -> dict:
    if not (run_dir / "config.json").is_file():
        raise ValueError(f"{run_dir} is not a run directory (no config.json)")
    return json.loads((run_dir / "config.json").read_text())


def _settings_help() -> str:
    lines = ["recipes:"]
    for name, r in recipes.RECIPES.items():
        lines.append(f"  {name:<12} {r.summary}")
        lines.append(f"  {'':<12} ({' '.join(f'{k}={v}' for k, v in r.settings.items())})")
    lines += ["", "settings (--set KEY=VALUE; default; which models/estimators read it):"]
    for key, s in recipes.SETTINGS.items():
        users = recipes.users_of(key)
        lines.append(f"  {key:<16} {s.default!s:<10} {s.help}" + ("" if users == "every recipe" else f" [{users}]"))
    return "\n".join(lines)


def _add_sets(p, help_text="override a setting (sajax show RECIPE lists them)"):
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help_text)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sajax", description="Learning deep generative models in JAX (Ou, 2019).")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="estimators, models, kernels and recipes").set_defaults(fn=cmd_list)
    s = sub.add_parser("show", help="print one recipe's settings", epilog=_settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("recipe")
    _add_sets(s)
    s.set_defaults(fn=cmd_show)
    t = sub.add_parser("train", help="train a recipe into a run directory", epilog=_settings_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("recipe")
    _add_sets(t)
    t.add_argument("--out", help="run directory (default runs/RECIPE-TIME)")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue the run in --out (its saved settings must match; epochs and eval_* may change)")
    mode.add_argument("--fresh", action="store_true", help="replace the run in --out (its checkpoint and logs)")
    t.add_argument("--show", action="store_true", help="print the settings and exit")
    t.add_argument("--replicas", type=int, help="train R runs in one program (keys fold_in(seed, r)), spread over "
                   "every device of every process when R divides over them; evaluated at the end")
    t.add_argument("--sweep", metavar="KEY=v1,v2,...",
                   help=f"replica r trains with value r %% V of an optimizer setting ({', '.join(SWEEPABLE)}); "
                   f"writes sweep.md, sweep.json and sweep.png")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval", help="evaluate a run directory's checkpoint (test NLL, mode metrics, AIS, samples)")
    e.add_argument("run_dir")
    _add_sets(e, "an evaluation setting (eval_k, eval_n, eval_samples, ais_runs, ...), e.g. eval_k=5000")
    e.set_defaults(fn=cmd_eval)
    g = sub.add_parser("gradvar", help="gradient variance, SNR and cosine to a reference, per estimator",
                       description=cmd_gradvar.__doc__)
    g.add_argument("recipe")
    g.add_argument("--estimators", help="comma-separated estimator names (sajax list); required")
    g.add_argument("--run", help="measure at this run's checkpoint (default: at initialization)")
    g.add_argument("--keys", type=int, default=200, help="gradient draws per estimator")
    g.add_argument("--batch", type=int, default=100, help="first B training images, held fixed")
    g.add_argument("--chunk", type=int, default=50, help="keys vmapped at once")
    g.add_argument("--ref-k", type=int, default=500, help="K of the high-K reference")
    g.add_argument("--ref-keys", type=int, default=20, help="keys averaged by the high-K reference")
    g.add_argument("--exact-max", type=int, default=10,
                   help="enumerate up to this many binary latents for an exact reference")
    g.add_argument("--burnin", type=int, default=0,
                   help="estimates at the fixed parameters before measuring, moving chain states (JSA's cache)")
    g.add_argument("--out", help="output directory (default: --run, else runs/gradvar-RECIPE-TIME)")
    _add_sets(g, "override a setting for every estimator, e.g. k=4")
    g.set_defaults(fn=cmd_gradvar)
    la = sub.add_parser("launch", help="run a command as N local processes of one distributed job",
                        description="Start --processes local processes with the SAJAX_COORDINATOR_ADDRESS, "
                        "SAJAX_NUM_PROCESSES and SAJAX_PROCESS_ID variables set (and virtual CPU devices with "
                        "--devices-per-process); their output is prefixed [pN]; when one fails the others are "
                        "stopped and its exit status returned.  A command that starts with a sajax subcommand "
                        "(train, eval, ...) runs as sajax; anything else runs as given.")
    la.add_argument("--processes", type=int, required=True, help="number of processes")
    la.add_argument("--devices-per-process", type=int, help="virtual CPU devices per process (CPU testing)")
    la.add_argument("--port", type=int, help="coordinator port on 127.0.0.1 (default: a free one)")
    la.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command, e.g. -- train iwae --set epochs=1")
    la.set_defaults(fn=cmd_launch)
    return p


def compile_cache_dir() -> str | None:
    """Where the CLI keeps JAX's persistent compilation cache: ``$SAJAX_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/sajax/jax`` (``~/.cache/sajax/jax``); None when that variable is ``off``
    (or ``0``, ``false``, ``none``)."""
    where = os.environ.get("SAJAX_COMPILE_CACHE", "").strip()
    if where.lower() in ("off", "0", "false", "none"):
        return None
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return where or os.path.join(root, "sajax", "jax")


def _use_compile_cache() -> None:
    """Compile each program once per machine: a second run of a recipe reads its XLA programs
    from the persistent cache (every program is kept)."""
    path = compile_cache_dir()
    if path is None:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def main(argv=None) -> int:
    """Run the command; errors print one line (``SAJAX_DEBUG=1`` re-raises them with the traceback)."""
    _COMMANDS.append(time.perf_counter() - (0.0 if _COMMANDS else process_seconds()))
    args = make_parser().parse_args(argv)
    if args.fn in (cmd_train, cmd_eval, cmd_gradvar):
        _use_compile_cache()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            if args.fn is cmd_train:   # one process of a job under sajax launch, srun or mpirun: join it
                from sajax import distributed

                distributed.initialize()
            return args.fn(args)
        except (ValueError, TypeError, OSError, KeyboardInterrupt):
            if os.environ.get("SAJAX_DEBUG"):
                raise
            return _report_error(sys.exc_info()[1])


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """sajax's own warnings (a checkpoint that falls back, ...) as one line; others as Python shows them."""
    if Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent):
        print(f"sajax: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _report_error(err) -> int:
    if isinstance(err, KeyboardInterrupt):
        print("sajax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(err, (ValueError, TypeError)):
        print(f"sajax: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
    else:
        print(f"sajax: error: {err}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
