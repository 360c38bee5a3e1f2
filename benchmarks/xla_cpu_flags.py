"""What XLA:CPU's fusion emitters cost the test suite: compile and step times side by side.

The suite (tests/conftest.py) turns XLA:CPU's MLIR fusion emitters off
(``--xla_cpu_use_fusion_emitters=false``) and most LLVM optimizations too
(``JAX_DISABLE_MOST_OPTIMIZATIONS=1``), since its programs are small and run a few times.  This
benchmark measures, for each setting in fresh processes (no compilation cache), two probes:

* ``eager op``: the mean time of a trivial eager op on a new shape (``(x + 1) * 2 - x``, one
  compile per op and shape), the bulk of a test's compiles;
* ``scan fit``: compiling 8 shapes of a 2-layer MLP's Adam training loop as one ``lax.scan``
  (the driver's form), then its steady step time over 200 steps, and the final loss (which must
  agree across settings).

    python benchmarks/xla_cpu_flags.py --out benchmarks/results/xla_cpu_flags_cpu.md
"""
import argparse
import json
import os
import subprocess
import sys

PROBE = r'''
import json, time
import jax, jax.numpy as jnp, optax
jnp.ones(3).block_until_ready()
t = time.perf_counter()
for n in range(1, 61):
    x = jnp.ones((n, 3)); ((x + 1.0) * 2.0 - x).block_until_ready()
eager_ms = (time.perf_counter() - t) / 240 * 1e3          # 4 ops per shape: ones, add, mul, sub

def loss(p, x):
    return jnp.sum(jax.nn.log_softmax(jnp.tanh(x @ p[0]) @ p[1]))

opt = optax.adam(1e-3)

def train(p, s, xs):
    def step(carry, x):
        p, s = carry
        u, s = opt.update(jax.grad(loss)(p, x), s, p)
        return (optax.apply_updates(p, u), s), loss(p, x)
    return jax.lax.scan(step, (p, s), xs)

p = [jnp.full((784, 200), 0.01), jnp.full((200, 10), 0.01)]
s = opt.init(p)
t = time.perf_counter()
for n in range(1, 9):
    jax.block_until_ready(jax.jit(train)(p, s, jnp.ones((20, n * 10, 784))))
compile_s = time.perf_counter() - t
run, xs = jax.jit(train), jnp.ones((200, 100, 784))
jax.block_until_ready(run(p, s, xs))
t = time.perf_counter()
out = jax.block_until_ready(run(p, s, xs))
step_ms = (time.perf_counter() - t) / 200 * 1e3
print(json.dumps({"eager_ms": eager_ms, "compile_s": compile_s, "step_ms": step_ms,
                  "loss": float(out[1][-1])}))
'''

SETTINGS = [  # (fusion emitters, most optimizations disabled)
    (True, False), (False, False), (True, True), (False, True)]


def measure(emitters, noopt):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["XLA_FLAGS"] = "--xla_cpu_use_fusion_emitters=" + ("true" if emitters else "false")
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1" if noopt else "0"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows):
    lines = ["| fusion emitters | most optimizations off | eager op (ms) | 8 scan-fit compiles (s) "
             "| scan step (ms) | final loss |", "|---|---|---|---|---|---|"]
    for (emitters, noopt), r in rows:
        lines.append(f"| {'on' if emitters else 'off'} | {'yes' if noopt else 'no'} | {r['eager_ms']:.1f} "
                     f"| {r['compile_s']:.2f} | {r['step_ms']:.2f} | {r['loss']:.6f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the markdown table here too")
    args = ap.parse_args()
    rows = [((e, n), measure(e, n)) for e, n in SETTINGS]
    text = table(rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# XLA:CPU compile settings: compile and step time (2 CPU cores, fresh process each, "
                    "no compilation cache)\n\nCommand:\n\n```bash\npython benchmarks/xla_cpu_flags.py "
                    f"--out {args.out}\n```\n\n{text}\n")


if __name__ == "__main__":
    main()
