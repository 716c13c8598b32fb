"""Cache-affinity routing: which worker runs a prompt, and when. Pure Python; no Ray in here.

Each worker reports the routing keys (``keys.py``) of the nodes whose results its executor still
holds, and which of those are models (the executor's model tier); the router also counts the keys
of the prompts it has sent a worker and that are not finished, since the worker will hold them by
the time it gets there.

Binding is late. The cluster claims a window of prompts from the queue (``lookahead`` per
worker, counting those sent and not finished) and holds those it has not sent anywhere yet
itself; a worker is sent a prompt only when it has room (fewer than ``depth`` out: one running
and one waiting on it, so it does not idle for the round trip). Which waiting prompt it gets
(``pick``), the first rule that gives one:

1. aging: the oldest waiting prompt, once it has been passed over ``max_overtakes`` times;
2. the prompt of which it holds most: the models of the prompt it was sent last first (it
   surely still holds those), then other models it holds or will, then other results (text
   embeddings, a latent an unchanged re-run would reuse); the oldest among equals. A worker
   still busy takes only a prompt of the models it surely holds next (of a prompt with no model
   known yet: one sharing a key with them) and otherwise waits until it is idle, when its
   report says what its cache kept: with room for one model, anything else would evict the one
   it is running;
3. an idle worker: the oldest prompt whose models no other worker holds or is about to (someone
   must load them; this one is as good as any, and becomes their holder);
4. an idle worker, every waiting prompt's models held elsewhere by busy workers: the oldest
   prompt of the models waiting most per holder, if more than ``slack`` of them wait per holder
   (fewer, and the holders get through them sooner than a load would; the worker waits). So a
   holder with more than it can do is passed over and its model spreads, the bounded-load rule
   of consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam 2018) applied
   to holdings instead of a hash ring, and a batch of one model runs on every worker. Among
   workers of equal load, one holding a waiting prompt's models is asked first, so an idle
   holder is not robbed by an idle worker asked before it.

Aging bounds how long a prompt can be overtaken: each prompt sent from the window counts one
against every older one still waiting, and the oldest waiting prompt (which has the most) goes
to the next worker with room, whatever it holds, once it has ``max_overtakes``. So at most
``max_overtakes`` prompts claimed after a prompt start before it (twice the window by default),
and nothing starves: every send either takes the oldest waiting prompt or brings it one step
nearer its turn. A prompt whose worker died is queued again and counts as new.
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
    #: routing key -> MODEL or RESULT, as the worker last reported
    held: dict[str, str] = field(default_factory=dict)
    #: prompt id -> its keys, for the prompts sent and not finished (in the order sent)
    in_flight: dict[str, frozenset[str]] = field(default_factory=dict)
    incoming: Counter[str] = field(default_factory=Counter)

    @property
    def load(self) -> int:
        return len(self.in_flight)

    def has(self, key: str) -> bool:
        return key in self.held or key in self.incoming

    def latest(self) -> frozenset[str]:
        """The keys it surely holds next: the last prompt sent, else what it reported."""
        if self.in_flight:
            return next(reversed(self.in_flight.values()))
        return frozenset(self.held)


@dataclass
class Waiting:
    """A claimed prompt not yet sent to a worker."""

    keys: frozenset[str]
    overtaken: int = 0


class Router:
    """Holds the claimed prompts, picks each worker's next one, keeps the books of what each
    worker holds and runs."""

    def __init__(self, depth: int = 2, lookahead: int = 8, slack: int = 2,
                 max_overtakes: int | None = None) -> None:
        if depth < 1 or lookahead < depth:
            raise ValueError("depth must be at least 1 and lookahead at least depth")
        if slack < 0 or (max_overtakes is not None and max_overtakes < 0):
            raise ValueError("slack and max_overtakes must be at least 0")
        self.depth = depth  # prompts out on one worker at most
        self.lookahead = lookahead  # prompts claimed per worker
        self.slack = slack  # prompts waiting per busy holder before an idle worker loads theirs
        self._max_overtakes = max_overtakes
        self.workers: dict[str, WorkerState] = {}  # in the order they joined: the last tie-break
        self.waiting: dict[str, Waiting] = {}  # oldest first
        #: every key a worker has reported as a model (to group waiting prompts by model)
        self.known_models: set[str] = set()

    # --- membership ----------------------------------------------------------------------------

    def add(self, name: str) -> None:
        if name in self.workers:
            raise ValueError(f"worker {name!r} is already known")
        self.workers[name] = WorkerState(name)

    def remove(self, name: str) -> list[str]:
        """Forget a worker (it died); returns the prompts it had, to be queued again. The
        prompts waiting here stay, for the other workers."""
        state = self.workers.pop(name, None)
        return list(state.in_flight) if state is not None else []

    # --- the window ----------------------------------------------------------------------------

    @property
    def window(self) -> int:
        """How many prompts the cluster has out at most, waiting here or sent."""
        return self.lookahead * len(self.workers)

    @property
    def max_overtakes(self) -> int:
        """How many later prompts may start before a waiting one (default: twice the window)."""
        return 2 * self.window if self._max_overtakes is None else self._max_overtakes

    def has_room(self) -> bool:
        """Whether the cluster claims another prompt now."""
        out = len(self.waiting) + sum(w.load for w in self.workers.values())
        return bool(self.workers) and out < self.window

    def hold(self, prompt_id: str, keys: Collection[str]) -> None:
        """A claimed prompt waits here until a worker has room for it."""
        if prompt_id in self.waiting:
            raise ValueError(f"prompt {prompt_id!r} is already waiting")
        self.waiting[prompt_id] = Waiting(frozenset(keys))

    def withdraw(self, prompt_id: str) -> bool:
        """Take a waiting prompt back (interrupted before it was sent); False if not waiting."""
        return self.waiting.pop(prompt_id, None) is not None

    # --- routing -------------------------------------------------------------------------------

    def _models(self) -> set[str]:
        """Every key a worker has reported as a model: a model on its way to a worker (sent
        with a prompt, not yet reported) counts for it before it is there."""
        return self.known_models

    def _score(self, worker: WorkerState, keys: frozenset[str], models: set[str]) -> tuple[int, ...]:
        latest = worker.latest()
        return (sum(1 for k in keys if k in models and k in latest),
                sum(1 for k in keys if k in models and worker.has(k)),
                sum(1 for k in keys if k in latest),
                sum(1 for k in keys if worker.has(k)))

    def _takes(self, worker: WorkerState, keys: frozenset[str], score: tuple[int, ...]) -> bool:
        """Whether ``worker`` holds enough of a prompt to take it now (rule 2)."""
        if not worker.load:
            return score[3] > 0
        # busy: the models it surely holds next, or (no model known in it) a key of those
        return score[0] > 0 or (score[2] > 0 and not keys & self.known_models)

    def scores(self, keys: Collection[str]) -> dict[str, tuple[int, ...]]:
        """Per worker: (models of the prompt it surely holds next, models it holds or will,
        keys of it it surely holds next, keys it holds or will)."""
        models, frozen = self._models(), frozenset(keys)
        return {name: self._score(w, frozen, models) for name, w in self.workers.items()}

    def pick(self, name: str) -> str | None:
        """The waiting prompt worker ``name`` should run next (see the module's docstring);
        None when nothing waits. Does not send it: see :meth:`assign`."""
        if not self.waiting:
            return None
        head_id, head = next(iter(self.waiting.items()))
        if head.overtaken >= self.max_overtakes:
            return head_id
        worker = self.workers[name]
        models = self._models()
        best_id, best = None, (0, 0, 0, 0)
        for pid, item in self.waiting.items():
            score = self._score(worker, item.keys, models)
            if score > best and self._takes(worker, item.keys, score):
                best_id, best = pid, score
        if best_id is not None or worker.load:
            return best_id  # a worker still busy waits for a prompt it holds, or until idle
        others = [w for n, w in self.workers.items() if n != name]
        count: Counter[frozenset[str]] = Counter()
        holders: dict[frozenset[str], list[WorkerState]] = {}
        group_of: dict[str, frozenset[str]] = {}
        for pid, item in self.waiting.items():
            group = group_of[pid] = item.keys & models
            count[group] += 1
            if group not in holders:
                holders[group] = [w for w in others if any(w.has(k) for k in group)]
            if not holders[group]:
                return pid  # nobody holds its models
        # All have holders elsewhere, busy: spread the models waiting most per holder.
        spread = {g: count[g] / len(hs) for g, hs in holders.items() if count[g] / len(hs) > self.slack}
        if not spread:
            return None  # the holders will get through what waits sooner than a load would
        busiest = max(spread.values())
        return next(pid for pid, g in group_of.items() if spread.get(g) == busiest)

    def _holds_waiting(self, worker: WorkerState) -> bool:
        models = self._models()
        return any(self._takes(worker, item.keys, self._score(worker, item.keys, models))
                   for item in self.waiting.values())

    def assign(self) -> list[tuple[str, str]]:
        """Send waiting prompts to the workers with room: the least loaded first, among equals
        one that holds a waiting prompt's models (so an idle holder is not robbed by an idle
        worker asked before it), then the first to join; returns (worker, prompt id) of each,
        in the order sent."""
        sent: list[tuple[str, str]] = []
        order = {name: i for i, name in enumerate(self.workers)}
        passed: set[str] = set()  # busy workers that hold nothing of what waits
        while self.waiting:
            open_ = [w for w in self.workers.values() if w.load < self.depth and w.name not in passed]
            if not open_:
                break
            worker = min(open_, key=lambda w: (w.load, not self._holds_waiting(w), order[w.name]))
            prompt_id = self.pick(worker.name)
            if prompt_id is None:
                passed.add(worker.name)
                continue
            self.dispatched(worker.name, prompt_id, self.waiting[prompt_id].keys)
            sent.append((worker.name, prompt_id))
        return sent

    # --- bookkeeping ---------------------------------------------------------------------------

    def dispatched(self, name: str, prompt_id: str, keys: Collection[str]) -> None:
        """``prompt_id`` is sent to ``name`` (from the window, or placed there directly)."""
        if prompt_id in self.waiting:
            for pid in self.waiting:  # every older one is passed over once
                if pid == prompt_id:
                    break
                self.waiting[pid].overtaken += 1
            del self.waiting[prompt_id]
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
            self.report(name, held)

    def report(self, name: str, held: Mapping[str, str]) -> None:
        if name in self.workers:
            self.workers[name].held = dict(held)
            self.known_models.update(k for k, kind in held.items() if kind == MODEL)
