"""Compile test programs fast: jit once, at XLA's lowest backend optimization level.

In the exact-answer tests compile time, not run time, dominates; the programs run a
few times at most, so an unoptimized compile is the cheaper trade.
"""
import jax

FAST = {"xla_backend_optimization_level": 0}


def fast_jit(fn):
    """``fn`` jitted and compiled once (on the first call's shapes) with :data:`FAST`."""
    jitted, cache = jax.jit(fn), []

    def call(*args):
        if not cache:
            cache.append(jitted.lower(*args).compile(compiler_options=FAST))
        return cache[0](*args)

    return call


def run_fast(fn, *args):
    """Compile ``fn`` for ``args`` with :data:`FAST` and run it once."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST)(*args)
