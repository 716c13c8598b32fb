"""Cluster routing and throughput.

1. A simulated trace (no Ray): ``--prompts`` prompts (1,000) over ``--models`` models (4) drawn
   with Zipf popularity (weight of the i-th model 1 / i^s, ``--zipf`` s = 1.0), queued at once, on
   W simulated workers, each with an LRU cache of k models. A prompt takes ``--run-s`` seconds on
   its worker, plus ``--load-s`` when the worker must load its model first. The same dispatch
   loop (each worker takes ``capacity`` prompts at a time, the queue in order) routes with
   ``cluster/router.py`` (cache affinity with bounded load) or round-robin (each worker takes
   ``depth`` prompts, the next one whenever it has room: its best form). Prints model loads and
   makespan of each, and the ratio of loads (the target is >= 3x fewer with affinity); beside
   them the loads of the same router given no room to choose (capacity = depth: a worker takes
   only its share, so the one that just finished takes the next prompt, whatever it needs), and
   the lower bound on makespan, every worker busy and each model loaded once.

2. Real throughput (``--real``): a local Ray cluster on this machine runs ``--real-prompts``
   prompts of the shipped tiny SD graph (``graphs/shapes_sd.json``, ``--steps`` steps, a seed
   each) on 1 worker, then on 2; each worker first runs one prompt so the model load is not
   timed. Prints prompts per second and the ratio.

    python bench/cluster.py [--workers 2 4 8] [--cache-models 1 2] [--real]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import random
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from latentgraph.cluster.router import MODEL, Router

GRAPH = Path(__file__).resolve().parents[1] / "graphs" / "shapes_sd.json"


# --- 1. the simulated trace ---------------------------------------------------------------------

@dataclass
class SimWorker:
    name: str
    cache_models: int
    cache: OrderedDict[int, None] = field(default_factory=OrderedDict)
    queue: deque[tuple[str, int]] = field(default_factory=deque)
    busy: bool = False
    loads: int = 0

    def start(self, model: int, run_s: float, load_s: float) -> float:
        """Begin a prompt of ``model``; returns how long it takes."""
        if model in self.cache:
            self.cache.move_to_end(model)
            return run_s
        self.loads += 1
        self.cache[model] = None
        while len(self.cache) > self.cache_models:
            self.cache.popitem(last=False)
        return load_s + run_s

    def held(self) -> dict[str, str]:
        return {f"model-{m}": MODEL for m in self.cache}


def zipf_trace(prompts: int, models: int, s: float, seed: int) -> list[int]:
    weights = [1 / (i + 1) ** s for i in range(models)]
    return random.Random(seed).choices(range(models), weights, k=prompts)


def simulate(trace: list[int], workers: int, cache_models: int, policy: str, *, run_s: float,
             load_s: float, router: Router) -> tuple[int, float]:
    """(model loads, makespan) of the trace under ``policy`` ("affinity" or "round-robin")."""
    sims = {}
    for i in range(workers):
        name = f"w{i}"
        router.add(name)
        sims[name] = SimWorker(name, cache_models)
    turn = itertools.cycle(list(sims))
    pending = deque(enumerate(trace))
    events: list[tuple[float, int, str, str]] = []  # (time, tie, worker, prompt id)
    tie = itertools.count()
    now = 0.0

    def round_robin() -> str | None:
        for _ in range(workers):
            name = next(turn)
            if router.workers[name].load < router.workers[name].capacity:
                return name
        return None

    choose: Callable[[list[str]], str | None] = router.choose if policy == "affinity" else (
        lambda keys: round_robin())

    def begin(worker: SimWorker) -> None:
        if worker.busy or not worker.queue:
            return
        prompt_id, model = worker.queue.popleft()
        worker.busy = True
        heapq.heappush(events, (now + worker.start(model, run_s, load_s), next(tie), worker.name, prompt_id))

    def dispatch() -> None:
        while pending and router.has_room():
            index, model = pending[0]
            keys = [f"model-{model}", f"result-{index}"]
            name = choose(keys)
            if name is None:
                return
            pending.popleft()
            router.dispatched(name, str(index), keys)
            sims[name].queue.append((str(index), model))
            begin(sims[name])

    dispatch()
    while events:
        now, _, name, prompt_id = heapq.heappop(events)
        worker = sims[name]
        worker.busy = False
        router.finished(name, prompt_id, worker.held())  # the worker's report with its result
        begin(worker)
        dispatch()
    return sum(w.loads for w in sims.values()), now


def make_router(args: argparse.Namespace) -> Router:
    return Router(capacity=args.capacity, slack=args.slack, depth=args.depth)


def trace_table(args: argparse.Namespace) -> None:
    trace = zipf_trace(args.prompts, args.models, args.zipf, args.seed)
    share = [trace.count(m) / len(trace) for m in range(args.models)]
    print(f"simulated trace: {args.prompts} prompts over {args.models} models, Zipf s={args.zipf} "
          f"(shares {', '.join(f'{p:.2f}' for p in share)}), {args.run_s:g} s a prompt, "
          f"{args.load_s:g} s a model load; {args.depth} prompts out per worker, at most "
          f"{args.capacity} on one, slack {args.slack}")
    print(f"{'W':>3} {'k':>2} | {'loads RR':>8} {'loads aff':>9} {'ratio':>6} {'capacity=depth':>14} | "
          f"{'makespan RR':>11} {'makespan aff':>12} {'bound':>7}")
    for workers in args.workers:
        for k in args.cache_models:
            # round-robin at its best: a worker takes the next prompt whenever it has room
            rr_loads, rr_time = simulate(trace, workers, k, "round-robin", run_s=args.run_s,
                                         load_s=args.load_s, router=Router(args.depth, 0, args.depth))
            aff_loads, aff_time = simulate(trace, workers, k, "affinity", run_s=args.run_s,
                                           load_s=args.load_s, router=make_router(args))
            # the same router with no room to choose: each worker takes only its share
            narrow, _ = simulate(trace, workers, k, "affinity", run_s=args.run_s, load_s=args.load_s,
                                 router=Router(args.depth, args.slack, args.depth))
            bound = (len(trace) * args.run_s + min(args.models, workers * k) * args.load_s) / workers
            print(f"{workers:>3} {k:>2} | {rr_loads:>8} {aff_loads:>9} {rr_loads / max(aff_loads, 1):>5.1f}x "
                  f"{narrow:>14} | "
                  f"{rr_time:>10.0f}s {aff_time:>11.0f}s {bound:>6.0f}s")


# --- 2. real throughput on this machine ---------------------------------------------------------

def real_throughput(args: argparse.Namespace) -> None:
    import ray
    from latentgraph.cluster.backend import Cluster
    from latentgraph.cluster.batch import BatchReport, run_on_cluster
    from latentgraph.cluster.protocol import Job
    from latentgraph.cluster.worker import WorkerSettings
    from latentgraph.executor import Folders

    base = json.loads(GRAPH.read_text())
    base["5"]["inputs"]["steps"] = args.steps

    def prompt(seed: int) -> dict:
        nodes = json.loads(json.dumps(base))
        nodes["5"]["inputs"]["seed"] = seed
        return nodes

    async def warm(cluster: Cluster) -> None:
        """One prompt on each worker at once, so that every worker loads the model untimed."""
        sent = [cluster.dispatch(Job(f"warm-{name}", prompt(10_000 + i)), to=name)
                for i, name in enumerate(cluster.actors)]
        await asyncio.gather(*(cluster.follow(d) for d in sent if d is not None))

    ray.init(num_cpus=args.real_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rates = {}
    try:
        for workers in (1, 2):
            report = BatchReport()
            with tempfile.TemporaryDirectory() as root:
                folders = Folders.under(root)
                for folder in (folders.input, folders.output, folders.temp):
                    folder.mkdir(parents=True)
                settings = WorkerSettings(input_dir=str(folders.input), models_dir=str(folders.models),
                                          device=args.device)
                cluster = Cluster.start("auto", settings, folders, workers=workers)
                try:
                    asyncio.run(warm(cluster))
                    jobs = [Job(f"p{i}", prompt(i), events=False) for i in range(args.real_prompts)]
                    started = time.perf_counter()
                    asyncio.run(run_on_cluster(cluster, jobs, report.record))
                    elapsed = time.perf_counter() - started
                finally:
                    cluster.close()
            rates[workers] = report.done / elapsed
            failed = f" ({len(report.failed)} failed)" if report.failed else ""
            print(f"real: {workers} worker(s): {report.done} prompts in {elapsed:.2f} s = "
                  f"{rates[workers]:.2f} prompts/s{failed}")
    finally:
        ray.shutdown()
    print(f"real: 2 workers / 1 worker throughput = {rates[2] / rates[1]:.2f}x "
          f"(shapes_sd, {args.steps} steps, 32x32, device {args.device}, {args.real_cpus} CPUs for Ray)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--cache-models", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--run-s", type=float, default=2.0, help="seconds a prompt runs (default 2)")
    parser.add_argument("--load-s", type=float, default=10.0, help="seconds a model load takes (default 10)")
    parser.add_argument("--depth", type=int, default=Router().depth,
                        help="prompts out per worker, on average (the router's default)")
    parser.add_argument("--capacity", type=int, default=Router().capacity,
                        help="prompts out on one worker at most (the router's default)")
    parser.add_argument("--slack", type=int, default=Router().slack,
                        help="how many more than the least-loaded worker a holder may have")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also measure 1 vs 2 Ray workers here")
    parser.add_argument("--real-prompts", type=int, default=16)
    parser.add_argument("--real-cpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    trace_table(args)
    if args.real:
        real_throughput(args)


if __name__ == "__main__":
    main()
