"""Suite-wide settings.

* Tests start heaviest first (notebooks, then the CLI's end-to-end runs, then the rest in file
  order), so that with ``pytest -n auto`` no long test is left to run alone at the end.
* XLA compiles the suite's programs without its expensive LLVM passes
  (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, inherited by the notebooks' kernels): the suite's
  programs are small and run a few times, so compiling them is most of their cost.  Tests
  marked ``runtime_bound`` (long chains, training to convergence) compile fully optimized,
  as does everything when the variable is set to 0; a test carries the mark only where that
  measured faster (benchmarks/results/runtime_bound_cpu.md).
* XLA:CPU's MLIR fusion emitters are off too (``--xla_cpu_use_fusion_emitters=false`` appended
  to ``XLA_FLAGS``, inherited by kernels and subprocesses; unless ``XLA_FLAGS`` names the flag):
  they make every compile, even of one eager op, ~1.6x slower and pay back only in long runs
  (benchmarks/results/xla_cpu_flags_cpu.md).  The suite went from 888 s to 625 s with it
  (benchmarks/results/test_profile_fusion_cpu.md).
* The suite keeps its own persistent compilation cache, ``.pytest_cache/sajax-jax`` in the
  repository (``SAJAX_TEST_COMPILE_CACHE=DIR`` elsewhere, ``off`` for none; it grows with every
  new program, delete it at will): a fresh clone compiles everything, a second run reads what
  it can.  Only programs that took 0.05 s or more to compile are kept: writing and reading the
  thousands of one-op programs costs more than compiling them again
  (benchmarks/results/test_cache_threshold_cpu.md).  The CLI's own cache, the user's
  ``~/.cache/sajax/jax``, stays off in tests unless ``SAJAX_COMPILE_CACHE`` names a directory
  (a test run must not depend on, or fill, the user's cache).
* ``SAJAX_TEST_PROFILE=DIR`` writes, per test, its wall time and what JAX spent compiling in it
  (traces, lowerings, XLA compiles and their seconds, compile seconds per program name,
  persistent-cache hits) to
  ``DIR/<worker>.jsonl``, with the summary line of every z-test the test printed (its
  detectable bias); ``benchmarks/test_profile.py DIR`` turns the files into tables.
  The notebooks run in a Jupyter kernel of their own, so their compiles are not counted (their wall time is).
"""
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("SAJAX_COMPILE_CACHE", "off")
_SUITE_CACHE = os.environ.get("SAJAX_TEST_COMPILE_CACHE", str(Path(__file__).parent.parent / ".pytest_cache" / "sajax-jax"))
if _SUITE_CACHE.lower() not in ("off", "0", "false", "none", ""):
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _SUITE_CACHE)    # read by jax at import, also by
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.05")   # the notebooks' kernels
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

# files whose tests take tens of seconds each (benchmarks/results/test_profile_*.md), heaviest first
HEAVY_FIRST = ("test_notebooks.py", "test_cli_families.py", "test_cli_gradvar.py", "test_cli.py",
               "test_jsa.py", "test_jsa_schedule.py", "test_cli_richer.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: file order kept otherwise


_PROFILE_DIR = os.environ.get("SAJAX_TEST_PROFILE")
_EVENTS = {  # jax.monitoring duration events -> the profile's column names
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}
_current = {"counts": Counter(), "seconds": Counter(), "ztests": [], "programs": Counter()}


def _on_duration(event, seconds, fun_name="?", **_):
    name = _EVENTS.get(event)
    if name is not None:
        _current["counts"][name] += 1
        _current["seconds"][name] += seconds
        if name == "compile":
            _current["programs"][fun_name] += seconds


def _on_event(event, **_):
    if event == "/jax/compilation_cache/cache_hits":
        _current["counts"]["cache_hit"] += 1


if _PROFILE_DIR:
    import jax

    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    jax.monitoring.register_event_listener(_on_event)

    def pytest_runtest_logreport(report):
        if report.when == "call":
            _current["ztests"] += [line for line in report.capstdout.splitlines() if "detectable bias" in line]


def _write_profile(item, start: float) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    row = {"test": item.nodeid, "worker": worker, "start": start, "wall": time.time() - start,
           "counts": dict(_current["counts"]), "seconds": dict(_current["seconds"]),
           "ztests": _current["ztests"], "programs": dict(_current["programs"])}
    Path(_PROFILE_DIR).mkdir(parents=True, exist_ok=True)
    with open(Path(_PROFILE_DIR) / f"{worker}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Runtime-bound tests (setup, call and teardown) compile with every XLA optimization;
    with ``SAJAX_TEST_PROFILE`` each test's profile row is written."""
    import jax

    default = jax.config.read("jax_disable_most_optimizations")
    optimized = item.get_closest_marker("runtime_bound") is not None
    if optimized:
        jax.config.update("jax_disable_most_optimizations", False)
    _current.update(counts=Counter(), seconds=Counter(), ztests=[], programs=Counter())
    start = time.time()
    yield
    if optimized:
        jax.config.update("jax_disable_most_optimizations", default)
    if _PROFILE_DIR:
        _write_profile(item, start)
