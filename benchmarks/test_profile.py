"""Tables from a profiled test run: where the suite's time goes, and how much of it is compiling.

Run the suite with ``SAJAX_TEST_PROFILE=DIR`` (tests/conftest.py writes one JSON line per test
and worker), then::

    python benchmarks/test_profile.py DIR --title "before" --out benchmarks/results/test_profile_before.md
    python benchmarks/test_profile.py AFTER_DIR --powers-against BEFORE_DIR   # the z-tests' power, compared

The tables: the run as a whole (tests, worker busy time, distinct programs compiled), the
slowest tests with their compile share, the time per file and per worker. Notebook tests run in
their own kernels: their wall time counts, their compiles do not.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path


def load(directory) -> list[dict]:
    rows = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"no profile rows under {directory} (run pytest with SAJAX_TEST_PROFILE={directory})")
    return rows


def _jax_seconds(row) -> float:
    s = row["seconds"]
    return s.get("trace", 0.0) + s.get("lower", 0.0) + s.get("compile", 0.0)


def summary(rows) -> list[str]:
    start = min(r["start"] for r in rows)
    end = max(r["start"] + r["wall"] for r in rows)
    busy = sum(r["wall"] for r in rows)
    compiles = sum(r["counts"].get("compile", 0) for r in rows)
    compile_s = sum(r["seconds"].get("compile", 0.0) for r in rows)
    jax_s = sum(_jax_seconds(r) for r in rows)
    hits = sum(r["counts"].get("cache_hit", 0) for r in rows)
    return [
        "| tests | first test to last (s) | worker busy (s) | XLA compiles | compile s | trace+lower+compile s | share of busy | persistent-cache hits |",
        "|---|---|---|---|---|---|---|---|",
        f"| {len(rows)} | {end - start:.0f} | {busy:.0f} | {compiles} | {compile_s:.0f} | {jax_s:.0f} | "
        f"{jax_s / busy:.0%} | {hits} |",
    ]


def slowest(rows, n: int) -> list[str]:
    out = ["| test | wall s | compiles | compile s | trace+lower s | compile share |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["wall"])[:n]:
        s = r["seconds"]
        tl = s.get("trace", 0.0) + s.get("lower", 0.0)
        share = "(kernel)" if "test_notebooks" in r["test"] else f"{_jax_seconds(r) / max(r['wall'], 1e-9):.0%}"
        out.append(f"| `{r['test']}` | {r['wall']:.1f} | {r['counts'].get('compile', 0)} | "
                   f"{s.get('compile', 0.0):.1f} | {tl:.1f} | {share} |")
    return out


def per_group(rows, key, header) -> list[str]:
    groups = defaultdict(lambda: [0, 0.0, 0.0, 0])
    for r in rows:
        g = groups[key(r)]
        g[0] += 1
        g[1] += r["wall"]
        g[2] += _jax_seconds(r)
        g[3] += r["counts"].get("compile", 0)
    out = [f"| {header} | tests | wall s | trace+lower+compile s | compiles |", "|---|---|---|---|---|"]
    for name, (count, wall, jax_s, compiles) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        out.append(f"| {name} | {count} | {wall:.0f} | {jax_s:.0f} | {compiles} |")
    return out


def programs(rows, n: int) -> list[str]:
    """Compile seconds by program name over the suite: ``jit(add)`` and the like are
    single operations run outside ``jit`` (op-by-op), compiled once per shape and process."""
    secs, tests = defaultdict(float), defaultdict(int)
    for r in rows:
        for name, s in r.get("programs", {}).items():
            secs[name] += s
            tests[name] += 1
    out = ["| program | compile s | tests that compiled it |", "|---|---|---|"]
    for name, s in sorted(secs.items(), key=lambda kv: -kv[1])[:n]:
        out.append(f"| `{name}` | {s:.1f} | {tests[name]} |")
    return out


def worker_spans(rows) -> list[str]:
    start = min(r["start"] for r in rows)
    out = ["| worker | tests | busy s | finished at s |", "|---|---|---|---|"]
    workers = defaultdict(list)
    for r in rows:
        workers[r["worker"]].append(r)
    for w, rs in sorted(workers.items()):
        end = max(r["start"] + r["wall"] for r in rs) - start
        out.append(f"| {w} | {len(rs)} | {sum(r['wall'] for r in rs):.0f} | {end:.0f} |")
    return out


def report(rows, title: str, n: int) -> str:
    parts = [f"# Test-suite profile: {title}", "", *summary(rows), "", f"## The {n} slowest tests", "",
             *slowest(rows, n), "", "## Per file", "", *per_group(rows, lambda r: r["test"].split("::")[0], "file"),
             "", "## Per worker", "", *worker_spans(rows), ""]
    if any("programs" in r for r in rows):
        parts += ["## Compile seconds by program", "", *programs(rows, n), ""]
    return "\n".join(parts)


_ZTEST = re.compile(r"^(?P<check>.*?): .*\bn = (?P<n>\d+)\b.*detectable bias \|\|b\|\| = (?P<bias>[-+.\deE]+)")


def _ztests(rows) -> dict:
    """``{(test, check, i): (draws, detectable bias)}`` from the z-test lines the tests printed."""
    out = {}
    for r in rows:
        for i, line in enumerate(r.get("ztests", [])):
            m = _ZTEST.match(line)
            if m:
                out[(r["test"], m["check"], i)] = (int(m["n"]), float(m["bias"]))
    return out


def powers(after_rows, before_rows) -> list[str]:
    """The detectable bias of every z-test, after against before (matched by test, check and order):
    a check is worse if it has fewer draws or a detectable bias more than 5% larger."""
    after, before = _ztests(after_rows), _ztests(before_rows)
    common = sorted(set(after) & set(before))
    ratios = [after[k][1] / before[k][1] for k in common if before[k][1] > 0]
    worse = [k for k in common if after[k][0] < before[k][0] or after[k][1] > 1.05 * before[k][1]]
    lines = [f"    checks compared {len(common)} (after {len(after)}, before {len(before)}; tests "
             f"{len({k[0] for k in common})})"]
    if ratios:
        ratios.sort()
        lines.append(f"    ratio after/before of detectable bias: min {ratios[0]:.3f} median "
                     f"{ratios[len(ratios) // 2]:.3f} max {ratios[-1]:.3f}")
    lines += [f"    worse (fewer draws or >5% larger detectable): {len(worse)}",
              *[f"    only before: {k[0]} / {k[1]}" for k in sorted(set(before) - set(after))],
              *[f"    only after: {k[0]} / {k[1]}" for k in sorted(set(after) - set(before))], "",
              "| test | check | draws before | after | detectable before | after | after/before |",
              "|---|---|---|---|---|---|---|"]
    for k in common:
        (nb, bb), (na, ba) = before[k], after[k]
        lines.append(f"| `{k[0].split('::')[-1]}` | {k[1]} | {nb} | {na} | {bb:.3g} | {ba:.3g} | "
                     f"{ba / bb if bb > 0 else float('nan'):.3f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--title", default="")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", help="write the markdown here (default: print)")
    parser.add_argument("--powers-against", metavar="BEFORE_DIR",
                        help="instead: compare every z-test's draws and detectable bias with an earlier run's")
    args = parser.parse_args(argv)
    if args.powers_against:
        text = "\n".join([f"# The z-tests' power: {args.title}", "", *powers(load(args.directory),
                                                                             load(args.powers_against)), ""])
    else:
        text = report(load(args.directory), args.title, args.top)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
