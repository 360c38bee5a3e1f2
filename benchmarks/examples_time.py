"""Time each module's docstring examples (what tests/test_examples.py runs) and count their XLA compiles.

An example that calls an estimator op by op compiles every primitive on its own; this shows which
modules' examples pay for it.  Each module runs in this one process, in the order given, with the
suite's XLA settings (most optimizations and the fusion emitters off):

    python benchmarks/examples_time.py sajax.estimators._nrf sajax.estimators._nce
"""
import argparse
import os
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+", help="dotted module names, e.g. sajax.estimators._nrf")
    args = parser.parse_args()
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()
    import doctest
    import importlib

    import jax

    compiles = Counter()
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **_: compiles.update(["n"]) if event.endswith("backend_compile_duration") else None)
    print("| module | examples | failed | seconds | XLA compiles |\n|---|---|---|---|---|")
    for name in args.modules:
        module = importlib.import_module(name)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        compiles.clear()
        start = time.perf_counter()
        for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
            runner.run(test, out=lambda _: None)
        result = runner.summarize(verbose=False)
        print(f"| `{name}` | {result.attempted} | {result.failed} | {time.perf_counter() - start:.2f} | {compiles['n']} |")


if __name__ == "__main__":
    main()
