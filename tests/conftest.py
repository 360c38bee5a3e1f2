"""Suite-wide settings.

* The CLI's persistent compilation cache stays off in tests unless ``SAJAX_COMPILE_CACHE`` names
  a directory (a test run must not depend on, or fill, the user's cache; set the variable to
  measure a warm suite).
* ``SAJAX_TEST_PROFILE=DIR`` writes, per test, its wall time and what JAX spent compiling in it
  (traces, lowerings, XLA compiles and their seconds, compile seconds per program name,
  persistent-cache hits) to
  ``DIR/<worker>.jsonl``, with the summary line of every z-test the test printed (its
  detectable bias); ``benchmarks/test_profile.py DIR`` turns the files into tables.
  Notebooks run in their own kernels, so their compiles are not counted (their wall time is).
"""
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("SAJAX_COMPILE_CACHE", "off")

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

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _current.update(counts=Counter(), seconds=Counter(), ztests=[], programs=Counter())
        start = time.time()
        yield
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        row = {"test": item.nodeid, "worker": worker, "start": start, "wall": time.time() - start,
               "counts": dict(_current["counts"]), "seconds": dict(_current["seconds"]),
               "ztests": _current["ztests"], "programs": dict(_current["programs"])}
        Path(_PROFILE_DIR).mkdir(parents=True, exist_ok=True)
        with open(Path(_PROFILE_DIR) / f"{worker}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
