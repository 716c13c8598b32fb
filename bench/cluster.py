"""Cluster routing and throughput.

1. A simulated trace (no Ray): ``--prompts`` prompts (1,000) over ``--models`` models (4) drawn
   with Zipf popularity (weight of the i-th model 1 / i^s, ``--zipf`` s = 1.0), queued at once, on
   W simulated workers, each with an LRU cache of k models. A prompt takes ``--run-s`` seconds on
   its worker, plus ``--load-s`` when the worker must load its model first; a worker runs what it
   was sent in order, ``depth`` (2) out at most. Routed by ``cluster/router.py`` as on a real
   cluster (it claims a window of the queue, holds it and picks each worker's next prompt when
   the worker has room) or round-robin (the queue in order, each prompt to the next worker with
   room: its best form). Prints model loads and makespan of each, the ratio of loads (the target
   is >= 3x fewer with affinity), the lower bound on makespan (every worker busy, each model
   loaded once) and, against the aging bound, the most prompts claimed after one that started
   before it. Then a batch of one model, which must keep every worker busy all the same.

2. Real throughput (``--real``): a local Ray cluster of two workers on this machine runs
   ``--real-prompts`` prompts of the shipped tiny SD graph (``graphs/shapes_sd.json``,
   ``--steps`` steps, a seed each) on one of them, then on both, ``--rounds`` times in turn (so
   both see the same load on a busy machine); each worker first runs one prompt so the model
   load is not timed. Prints prompts per second of each round and the median ratio.

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
             load_s: float, router: Router) -> tuple[int, float, int]:
    """(model loads, makespan, most prompts claimed later that started before one) of the trace
    under ``policy``: "affinity" (the router holds its window and picks each worker's next
    prompt) or "round-robin" (the queue in order, each prompt to the next worker with room)."""
    sims = {}
    for i in range(workers):
        name = f"w{i}"
        router.add(name)
        sims[name] = SimWorker(name, cache_models)
    turn = itertools.cycle(list(sims))
    pending = deque(enumerate(trace))
    events: list[tuple[float, int, str, str]] = []  # (time, tie, worker, prompt id)
    tie = itertools.count()
    started: list[int] = []  # prompt numbers, in the order they were sent
    now = 0.0

    def round_robin() -> list[tuple[str, str]]:
        sent = []
        while pending:
            name = next((n for n in (next(turn) for _ in range(workers))
                         if router.workers[n].load < router.depth), None)
            if name is None:
                break
            index, model = pending.popleft()
            router.dispatched(name, str(index), [f"model-{model}", f"result-{index}"])
            sent.append((name, str(index)))
        return sent

    def affinity() -> list[tuple[str, str]]:
        while pending and router.has_room():
            index, model = pending.popleft()
            router.hold(str(index), [f"model-{model}", f"result-{index}"])
        return router.assign()

    def begin(worker: SimWorker) -> None:
        if worker.busy or not worker.queue:
            return
        prompt_id, model = worker.queue.popleft()
        worker.busy = True
        heapq.heappush(events, (now + worker.start(model, run_s, load_s), next(tie), worker.name, prompt_id))

    def dispatch() -> None:
        for name, prompt_id in (affinity() if policy == "affinity" else round_robin()):
            started.append(int(prompt_id))
            sims[name].queue.append((prompt_id, trace[int(prompt_id)]))
            begin(sims[name])

    dispatch()
    while events:
        now, _, name, prompt_id = heapq.heappop(events)
        worker = sims[name]
        worker.busy = False
        router.finished(name, prompt_id, worker.held())  # the worker's report with its result
        begin(worker)
        dispatch()
    assert sorted(started) == list(range(len(trace)))
    overtaken = [sum(1 for earlier in started[:pos] if earlier > p) for pos, p in enumerate(started)]
    return sum(w.loads for w in sims.values()), now, max(overtaken, default=0)


def make_router(args: argparse.Namespace) -> Router:
    return Router(depth=args.depth, lookahead=args.lookahead, slack=args.slack,
                  max_overtakes=args.max_overtakes)


def trace_table(args: argparse.Namespace) -> None:
    trace = zipf_trace(args.prompts, args.models, args.zipf, args.seed)
    share = [trace.count(m) / len(trace) for m in range(args.models)]
    print(f"simulated trace: {args.prompts} prompts over {args.models} models, Zipf s={args.zipf} "
          f"(shares {', '.join(f'{p:.2f}' for p in share)}), {args.run_s:g} s a prompt, "
          f"{args.load_s:g} s a model load; router: depth {args.depth}, lookahead {args.lookahead}, "
          f"slack {args.slack}")
    print(f"{'W':>3} {'k':>2} {'window':>6} {'aging':>5} | {'loads RR':>8} {'loads aff':>9} {'ratio':>6} | "
          f"{'makespan RR':>11} {'makespan aff':>12} {'bound':>7} | {'overtaken':>9}")
    for workers in args.workers:
        for k in args.cache_models:
            # round-robin at its best: a worker takes the next prompt whenever it has room
            rr_loads, rr_time, _ = simulate(trace, workers, k, "round-robin", run_s=args.run_s,
                                            load_s=args.load_s, router=Router(args.depth, args.depth))
            router = make_router(args)
            aff_loads, aff_time, overtaken = simulate(trace, workers, k, "affinity", run_s=args.run_s,
                                                      load_s=args.load_s, router=router)
            bound = (len(trace) * args.run_s + min(args.models, workers * k) * args.load_s) / workers
            print(f"{workers:>3} {k:>2} {router.window:>6} {router.max_overtakes:>5} | {rr_loads:>8} "
                  f"{aff_loads:>9} {rr_loads / max(aff_loads, 1):>5.1f}x | "
                  f"{rr_time:>10.0f}s {aff_time:>11.0f}s {bound:>6.0f}s | {overtaken:>9}")


def one_model_table(args: argparse.Namespace) -> None:
    """A batch of one workflow (seeds of one model): affinity must still use every worker."""
    trace = [0] * args.prompts
    print(f"one model, {args.prompts} prompts: W, loads, makespan (bound)")
    for workers in args.workers:
        loads, makespan, _ = simulate(trace, workers, 1, "affinity", run_s=args.run_s, load_s=args.load_s,
                                      router=make_router(args))
        bound = (len(trace) * args.run_s + workers * args.load_s) / workers
        print(f"{workers:>3} {loads:>5} {makespan:>7.0f}s ({bound:.0f}s)")


# --- 2. real throughput on this machine ---------------------------------------------------------

def real_throughput(args: argparse.Namespace) -> None:
    import statistics

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

    def rate(cluster: Cluster, names: list[str], round_: int) -> float:
        known, cluster.router = cluster.router, Router()
        for name in names:  # a router that knows only these workers: the others stay idle
            cluster.router.add(name)
            cluster.router.report(name, (known.workers.get(name) or full.workers[name]).held)
        report = BatchReport()
        jobs = [Job(f"r{round_}-{len(names)}-{i}", prompt(1000 * (2 * round_ + len(names)) + i), events=False)
                for i in range(args.real_prompts)]
        started = time.perf_counter()
        asyncio.run(run_on_cluster(cluster, jobs, report.record))
        elapsed = time.perf_counter() - started
        assert report.done == args.real_prompts and not report.failed, report.failed
        return report.done / elapsed

    ray.init(num_cpus=args.real_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ratios = []
    try:
        with tempfile.TemporaryDirectory() as root:
            folders = Folders.under(root)
            for folder in (folders.input, folders.output, folders.temp):
                folder.mkdir(parents=True)
            settings = WorkerSettings(input_dir=str(folders.input), models_dir=str(folders.models),
                                      device=args.device)
            cluster = Cluster.start("auto", settings, folders, workers=2)
            try:
                asyncio.run(warm(cluster))
                full, names = cluster.router, list(cluster.actors)  # what each holds after warming
                for round_ in range(1, args.rounds + 1):  # interleaved, so both see the same load
                    one, two = rate(cluster, names[:1], round_), rate(cluster, names, round_)
                    ratios.append(two / one)
                    print(f"real, round {round_}: {args.real_prompts} prompts, 1 worker {one:.2f} prompts/s, "
                          f"2 workers {two:.2f} prompts/s: {two / one:.2f}x")
            finally:
                cluster.close()
    finally:
        ray.shutdown()
    print(f"real: 2 workers / 1 worker throughput, median of {len(ratios)} rounds = "
          f"{statistics.median(ratios):.2f}x (shapes_sd, {args.steps} steps, 32x32, device {args.device}, "
          f"{args.real_cpus} CPUs for Ray)")


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
                        help="prompts out on one worker at most (the router's default)")
    parser.add_argument("--lookahead", type=int, default=Router().lookahead,
                        help="prompts the cluster claims per worker (the router's default)")
    parser.add_argument("--slack", type=int, default=Router().slack,
                        help="prompts waiting per busy holder before an idle worker loads their model too")
    parser.add_argument("--max-overtakes", type=int, default=None,
                        help="later prompts that may start before a waiting one (default: twice the window)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", action="store_true", help="also measure 1 vs 2 Ray workers here")
    parser.add_argument("--real-prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved 1- and 2-worker rounds (default 3)")
    parser.add_argument("--real-cpus", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    trace_table(args)
    one_model_table(args)
    if args.real:
        real_throughput(args)


if __name__ == "__main__":
    main()
