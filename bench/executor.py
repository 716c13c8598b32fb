"""Executor overhead: chains and wide graphs of trivial LG_FloatMath nodes.

For each shape and size: a cold run (empty cache), an identical re-run, and a re-run after one
literal in the middle changed. Prints wall ms, microseconds per node and nodes executed.
Reference figures for ComfyUI on the same machine class are quoted in the issue: a 200-node
chain takes 1.21 s cold and 1.40 s re-run; a 200-node wide graph 31 ms cold and 8.9 ms re-run.

    python bench/executor.py [--sizes 50 200 1000 10000] [--repeat 5]

``--scaling`` instead measures what a library user sees: one cold chain run through
``Executor.run`` in a fresh process per size (no ``settle_heap``), per node, with CPython's own
collector thresholds (the oracle: what the run cost before the executor deferred full
collections) beside the executor's during-run thresholds, and the full passes each made.

    python bench/executor.py --scaling [--sizes 200 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time

from latentgraph import Executor
from latentgraph.executor.run import fewer_full_collections, settle_heap


def chain(n: int) -> dict:
    graph = {"0": {"class_type": "LG_FloatMath", "inputs": {"a": 1.0, "b": 1.0, "op": "add"}}}
    for i in range(1, n):
        graph[str(i)] = {"class_type": "LG_FloatMath", "inputs": {"a": [str(i - 1), 0], "b": 1.0, "op": "add"}}
    return graph


def wide(n: int) -> dict:
    graph = {}
    for i in range(n // 2):
        graph[f"{i}a"] = {"class_type": "LG_FloatMath", "inputs": {"a": float(i), "b": 2.0, "op": "mul"}}
        graph[f"{i}b"] = {"class_type": "LG_FloatMath", "inputs": {"a": [f"{i}a", 0], "b": 1.0, "op": "add"}}
    return graph


def sinks(graph: dict) -> list[str]:
    used = {str(v[0]) for call in graph.values() for v in call["inputs"].values() if isinstance(v, list)}
    return [n for n in graph if n not in used]


def timed(ex: Executor, graph: dict, targets: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    result = ex.run(graph, targets)
    return (time.perf_counter() - start) * 1000, len(result.executed)


def measure(shape: str, n: int, repeat: int) -> dict:
    build = chain if shape == "chain" else wide
    rows: dict[str, list[tuple[float, int]]] = {"cold": [], "rerun": [], "one changed": []}
    for r in range(repeat):
        graph = build(n)
        targets = sinks(graph)
        ex = Executor(device="cpu")
        rows["cold"].append(timed(ex, graph, targets))
        rows["rerun"].append(timed(ex, build(n), targets))
        changed = build(n)
        middle = list(changed)[n // 2]
        changed[middle]["inputs"]["b"] = 100.0 + r
        rows["one changed"].append(timed(ex, changed, targets))
    return {k: (statistics.median(t for t, _ in v), v[0][1]) for k, v in rows.items()}


def one_chain(n: int, cpython_gc: bool) -> dict:
    """In this (fresh) process: one cold n-node chain run, as a library user makes it."""
    if cpython_gc:
        fewer_full_collections.full_every = 0  # leave CPython's thresholds alone: the oracle
    Executor(device="cpu").run(chain(50), ["49"])  # imports and first-use caches, not measured
    graph, ex = chain(n), Executor(device="cpu")
    full_passes = []
    gc.callbacks.append(lambda phase, info: full_passes.append(1)
                        if phase == "start" and info["generation"] == 2 else None)
    start, cpu = time.perf_counter(), time.process_time()
    ex.run(graph, [str(n - 1)])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"us_per_node": seconds * 1e6 / n, "cpu_us_per_node": cpu * 1e6 / n, "full_passes": len(full_passes)}


def scaling(sizes: list[int], repeat: int) -> None:
    """Per node: wall and CPU microseconds (CPU time is the steadier figure on a busy machine),
    the best of ``repeat`` fresh processes, and the full collections the run made."""
    print(f"{'chain':>7}  {'CPython gc: wall/cpu us/node':>29}{'full':>6}  {'during-run: wall/cpu us/node':>29}"
          f"{'full':>6}{'cpu ratio':>11}")
    for n in sizes:
        row = []
        for cpython_gc in (True, False):
            runs = [json.loads(subprocess.run(
                [sys.executable, __file__, "--one-chain", str(n)] + (["--cpython-gc"] if cpython_gc else []),
                check=True, capture_output=True, text=True).stdout) for _ in range(repeat)]
            # The least disturbed by other load: the smallest of each figure.
            row.append({k: min(r[k] for r in runs) for k in runs[0]})
        old, new = row
        print(f"{n:>7}  {old['us_per_node']:>20.2f} /{old['cpu_us_per_node']:>7.2f}{old['full_passes']:>6}  "
              f"{new['us_per_node']:>20.2f} /{new['cpu_us_per_node']:>7.2f}{new['full_passes']:>6}"
              f"{new['cpu_us_per_node'] / old['cpu_us_per_node']:>11.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--scaling", action="store_true", help="per-node cost of cold chains, fresh processes")
    parser.add_argument("--one-chain", type=int, help=argparse.SUPPRESS)  # a --scaling child
    parser.add_argument("--cpython-gc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_chain:
        print(json.dumps(one_chain(args.one_chain, args.cpython_gc)))
        return 0
    if args.scaling:
        scaling(args.sizes or [200, 10_000, 100_000], args.repeat or 3)
        return 0
    args.sizes = args.sizes or [50, 200, 1000, 10000]
    args.repeat = args.repeat or 5
    settle_heap()  # as `latentgraph run` and `latentgraph serve` do at start-up
    print(f"{'graph':<12}{'nodes':>7}  {'run':<12}{'wall ms':>10}{'us/node':>10}{'executed':>10}")
    for shape in ("chain", "wide"):
        for n in args.sizes:
            repeat = max(1, args.repeat if n <= 1000 else args.repeat // 3)
            for kind, (ms, executed) in measure(shape, n, repeat).items():
                print(f"{shape:<12}{n:>7}  {kind:<12}{ms:>10.2f}{ms * 1000 / n:>10.2f}{executed:>10}")
    print("ComfyUI reference (issue): chain-200 cold 1210 ms, re-run 1400 ms; wide-200 cold 31 ms, re-run 8.9 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
