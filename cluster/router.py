"""Cache-affinity routing: which worker runs a prompt. Pure Python; no Ray in here.

Each worker reports the routing keys (``keys.py``) of the nodes whose results its executor still
holds, and which of those are models (the executor's model tier); the router also counts the keys
of the prompts it has sent a worker and that are not finished, since the worker will hold them by
the time it gets there. A prompt goes to the worker that holds most of its models, then most of
its other results (text embeddings, a latent an unchanged re-run would reuse); among equals the
least loaded; a worker that holds none of them is as good as any other.

Three bounds keep affinity from starving the cluster, and leave it a choice to make:

* a holder is passed over when it has more than ``slack`` prompts more than the least-loaded
  worker: then a popular model spreads to a second worker (which loads it once and becomes a
  holder too) instead of queueing behind the first. This is the rule of consistent hashing with
  bounded loads (Mirrokni, Thorup and Zadimoghaddam 2018), applied to a score instead of a hash
  ring;
* the cluster takes a window of prompts at a time (the queue's next one is claimed only while
  fewer are out): ``depth`` per worker, and never fewer than the others can hold while one idle
  worker waits, ``(n - 1) * (slack + 1) + 1`` for n workers, so holders cannot absorb the whole
  window and leave a worker idle for good (a batch of one model would otherwise run on one
  worker of two);
* one worker takes at most ``capacity`` of them, more than its share of the window: when a
  prompt comes, its holder can take it though others have room -- were the capacities no larger
  than the shares, only the worker that just finished would ever have room, and routing would be
  round-robin in all but name (``bench/cluster.py`` shows both).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

MODEL = "model"
RESULT = "result"


@dataclass
class WorkerState:
    """What the router knows of one worker."""

    name: str
    capacity: int
    #: routing key -> MODEL or RESULT, as the worker last reported
    held: dict[str, str] = field(default_factory=dict)
    #: prompt id -> its keys, for the prompts sent and not finished
    in_flight: dict[str, frozenset[str]] = field(default_factory=dict)
    incoming: Counter[str] = field(default_factory=Counter)

    @property
    def load(self) -> int:
        return len(self.in_flight)

    def has(self, key: str) -> bool:
        return key in self.held or key in self.incoming


class Router:
    """Chooses workers for prompts and keeps the books of what each holds and runs."""

    def __init__(self, capacity: int = 12, slack: int = 8, depth: int = 2) -> None:
        if depth < 1 or capacity < depth or slack < 0:
            raise ValueError("depth must be at least 1, capacity at least depth, slack at least 0")
        self.capacity = capacity
        self.slack = slack
        self.depth = depth
        self.workers: dict[str, WorkerState] = {}  # in the order they joined: the last tie-break

    # --- membership ----------------------------------------------------------------------------

    def add(self, name: str, capacity: int | None = None) -> None:
        if name in self.workers:
            raise ValueError(f"worker {name!r} is already known")
        self.workers[name] = WorkerState(name, capacity or self.capacity)

    def remove(self, name: str) -> list[str]:
        """Forget a worker (it died); returns the prompts it had, to be queued again."""
        state = self.workers.pop(name, None)
        return list(state.in_flight) if state is not None else []

    # --- routing -------------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """How many prompts the cluster takes at a time (see the module's docstring)."""
        n = len(self.workers)
        return max(self.depth * n, (n - 1) * (self.slack + 1) + 1) if n else 0

    def has_room(self) -> bool:
        """Whether the cluster takes another prompt now."""
        workers = self.workers.values()
        total = sum(w.load for w in workers)
        return total < self.window and any(w.load < w.capacity for w in workers)

    def _models(self) -> set[str]:
        return {k for w in self.workers.values() for k, kind in w.held.items() if kind == MODEL}

    def scores(self, keys: Collection[str]) -> dict[str, tuple[int, int]]:
        """Per worker: (models of the prompt it holds or will, all keys of it it holds or will)."""
        models = self._models()
        return {
            name: (sum(1 for k in keys if k in models and w.has(k)), sum(1 for k in keys if w.has(k)))
            for name, w in self.workers.items()
        }

    def choose(self, keys: Collection[str]) -> str | None:
        """The worker for a prompt of these keys, or None when every worker is full."""
        open_ = [w for w in self.workers.values() if w.load < w.capacity]
        if not open_:
            return None
        least = min(w.load for w in self.workers.values())
        eligible = [w for w in open_ if w.load <= least + self.slack]
        scores = self.scores(keys)
        order = {name: i for i, name in enumerate(self.workers)}
        best = max(eligible, key=lambda w: (scores[w.name], -w.load, -order[w.name]))
        return best.name

    # --- bookkeeping ---------------------------------------------------------------------------

    def dispatched(self, name: str, prompt_id: str, keys: Collection[str]) -> None:
        worker = self.workers[name]
        frozen = frozenset(keys)
        worker.in_flight[prompt_id] = frozen
        worker.incoming.update(frozen)

    def finished(self, name: str, prompt_id: str, held: Mapping[str, str] | None = None) -> None:
        """A prompt ended on ``name`` (any outcome); ``held`` is the worker's report, if any."""
        worker = self.workers.get(name)
        if worker is None:
            return  # removed meanwhile
        keys = worker.in_flight.pop(prompt_id, frozenset())
        worker.incoming.subtract(keys)
        worker.incoming += Counter()  # drop the keys that reached zero
        if held is not None:
            worker.held = dict(held)

    def report(self, name: str, held: Mapping[str, str]) -> None:
        if name in self.workers:
            self.workers[name].held = dict(held)
