"""The caching DAG executor.

A node's signature is a hash of (class_type, version, canonical literals, the signatures of the
upstream outputs it reads, and the fingerprint of any file it reads). It is computed once per
node from its parents, so a whole workflow costs one hash per node, and node ids never enter it:
two workflows sharing a subgraph share its cache entries. Only what the requested outputs need is
executed; a cached node's ancestors are not even looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import hashlib
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .cache import Entry, OutputCache
from .context import Context, Event, EventSink, Folders, Interrupted, RunState, resolve_device
from .expansion import rewrite_expansion
from .limits import DEFAULT_LIMITS, Limits
from .node import Expand, InputError, Node, NodeRegistry, output_values
from .validate import Graph, GraphNode, Issue, WorkflowInvalid, validate
from .workflow import Workflow, literal_input, load_workflow

GiB = 1 << 30


class NodeFailed(Exception):
    """A node raised while running. Names the node, and ``input`` the input at fault when the
    node said which (an :class:`InputError`); the original exception is the cause."""

    def __init__(self, node_id: str, class_type: str, error: BaseException, tb: str) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.error = error
        self.input = error.input if isinstance(error, InputError) else None
        self.traceback = tb
        super().__init__(f"node {node_id} ({class_type}) failed: {type(error).__name__}: {error}")


@dataclass
class RunResult:
    prompt_id: str
    outputs: dict[str, tuple[Any, ...]]
    ui: dict[str, dict[str, Any]]
    executed: list[str]
    cached: list[str]


_SCALARS = frozenset({int, float, str, bool, type(None)})
_NOTHING: frozenset[Any] = frozenset()  # no unread or skipped outputs: the common case, shared


def _canonical(value: Any) -> Any:
    if type(value) in _SCALARS:  # nearly every literal
        return value
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    return value


def signature(node: GraphNode, sigs: Mapping[str, str], fingerprint: Any = None) -> str:
    """One line per part: class and version, each literal (`name=repr`), each link
    (`name<parent signature:output`), the file fingerprint. A repr never holds a raw newline,
    so the text is unambiguous."""
    literals, links = node.literals, node.links
    parts = [node.cls.spec.signature_head]
    for name, value in sorted(literals.items()) if len(literals) > 1 else literals.items():
        parts.append(
            f"{name}={value!r}" if type(value) in _SCALARS else f"{name}={_canonical(value)!r}"
        )
    for name, (src, index) in sorted(links.items()) if len(links) > 1 else links.items():
        parts.append(f"{name}<{sigs[src]}:{index}")
    if fingerprint is not None:
        parts.append(repr(fingerprint))
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


@dataclass
class _Run:
    """Mutable bookkeeping of one execution (never outlives it)."""

    state: RunState
    sigs: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)  # signatures this run needs: not offloaded
    values: dict[str, Entry] = field(default_factory=dict)
    out_types: dict[str, tuple[str, ...]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)


class _FewerFullCollections(contextlib.ContextDecorator):
    """While any run (or validation) is in progress, let the cyclic collector make full
    passes far more rarely.

    A full (generation-2) pass walks every live container object, and a run keeps a growing
    number of them alive (the graph, the signatures, each node's cached outputs) while CPython
    makes a full pass whenever the survivors grew by a quarter: at 10,000 nodes those passes
    were half the run's time, per node twice the cost of a 200-node run. During a run the
    threshold of generation 2 is raised from CPython's 10 to ``full_every`` generation-1
    passes (700 x 10 x 1000 = 7 million net container allocations at the default thresholds,
    about 600,000 trivial nodes), so a run rarely meets one while the young generations are
    collected as usual (short-lived cycles still die young). The old threshold comes back when
    the last concurrent or nested run ends (a count under a lock: thresholds are process-wide),
    and the garbage a run left in generation 2 goes at the next full pass, as it would have. A
    threshold someone changed during the run is left as they set it; with automatic collection
    off (threshold 0) nothing changes. (CPython 3.14's incremental collector ignores this threshold: harmless there.)
    """

    def __init__(self, full_every: int = 1000) -> None:
        self.full_every = full_every
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[int, int, int] | None = None  # thresholds before the outermost run
        self._raised: tuple[int, int, int] | None = None  # what we set, while we hold it

    def __enter__(self) -> _FewerFullCollections:
        with self._lock:
            if self._depth == 0:
                saved = gc.get_threshold()
                self._saved = self._raised = None
                if saved[0] > 0 and saved[2] < self.full_every:
                    self._saved, self._raised = saved, (saved[0], saved[1], self.full_every)
                    gc.set_threshold(*self._raised)
            self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                if gc.get_threshold() == self._raised:
                    gc.set_threshold(*self._saved)
                self._saved = self._raised = None


fewer_full_collections = _FewerFullCollections()


class Executor:
    """Evaluates workflows with a signature-keyed cache that persists between runs.

    ``previews=True`` asks long nodes for preview images with their progress events.
    ``cache_bytes`` bounds the value tier, ``model_bytes`` the model tier; with ``cache_dir``,
    results of nodes that took at least ``disk_min_seconds`` are also kept on disk (bounded by
    ``disk_bytes``) for later processes. ``limits`` bounds the images and latents a node may
    make from a file header or its literals (see :class:`~latentgraph.executor.limits.Limits`).

    ``registry`` is the set of nodes it runs: the executor knows no node of its own (the package's
    ``latentgraph.Executor`` gives it the installed node pack, and the pack's version as
    ``pack_version``, which ``info`` and every node's ``ctx.executor_info`` carry).
    """

    def __init__(
        self,
        device: str | torch.device = "auto",
        cache_bytes: int = 2 * GiB,
        cache_dir: str | Path | None = None,
        *,
        model_bytes: int = 16 * GiB,
        offload_bytes: int = 32 * GiB,
        disk_bytes: int = 10 * GiB,
        disk_min_seconds: float = 0.05,
        registry: NodeRegistry,
        pack_version: str | None = None,
        folders: Folders | None = None,
        on_event: EventSink | None = None,
        previews: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.registry = registry
        self.device = resolve_device(device)
        self.cache = OutputCache(
            cache_bytes,
            model_bytes,
            cache_dir,
            disk_bytes,
            device=self.device,
            offload_bytes=offload_bytes,
        )
        self.disk_min_seconds = disk_min_seconds
        self.folders = folders or Folders.under(Path.cwd())
        self.on_event = on_event
        self.previews = previews
        self.limits = limits
        self._interrupt = threading.Event()
        self._lock = threading.Lock()
        self._last_valid: tuple[list[str], Graph] | None = (
            None  # targets, and the graph with its source
        )
        self._state_lock = threading.Lock()
        self._current: str | None = None
        self._pending_interrupts: set[str] = set()
        # What nodes may read of their host (ctx.executor_info), e.g. to record in the files they write.
        self.info = {"torch": torch.__version__, "device": str(self.device)}
        if pack_version is not None:
            self.info = {"latentgraph": pack_version, **self.info}

    # --- public API ----------------------------------------------------------------------------

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the current run (or the run of ``prompt_id``, even if it has not started yet)
        at the next node boundary or progress report. With nothing running it does nothing."""
        with self._state_lock:
            if prompt_id is None or prompt_id == self._current:
                if self._current is not None:
                    self._interrupt.set()
            else:
                self._pending_interrupts.add(prompt_id)

    @fewer_full_collections
    def validate(self, workflow: Any, targets: Iterable[str] | None = None) -> list[Issue]:
        wf = load_workflow(workflow, self.registry)
        return validate(wf.nodes, self.registry, targets or ())[1]

    @fewer_full_collections
    def run(
        self,
        workflow: Workflow | Mapping[str, Any] | str | Path,
        targets: Iterable[str] | None = None,
        *,
        prompt_id: str | None = None,
        on_event: EventSink | None = None,
        previews: bool | None = None,
        outputs: Iterable[str] | None = None,
    ) -> RunResult:
        """Validate, then execute what the output nodes and ``targets`` need.

        ``outputs`` limits which output nodes run (ComfyUI's partial execution; default all);
        ``previews`` overrides the executor's setting for this run.
        Raises :class:`WorkflowInvalid` (nothing ran), :class:`NodeFailed` or
        :class:`Interrupted`; the cache stays consistent in every case.
        """
        wf = load_workflow(workflow, self.registry)
        wanted = [str(t) for t in targets or ()]
        chosen = None if outputs is None else {str(o) for o in outputs}
        graph = self._validated(wf.nodes, wanted + sorted(chosen or ()))
        listener = on_event or self.on_event
        prompt_id = prompt_id or str(uuid.uuid4())
        with self._lock:
            with self._state_lock:
                self._current = prompt_id
                self._interrupt.clear()
                if prompt_id in self._pending_interrupts:
                    self._pending_interrupts.discard(prompt_id)
                    self._interrupt.set()
            state = RunState(
                prompt_id,
                wf.nodes,
                wf.ui,
                listener or _nobody,
                self._interrupt,
                self.previews if previews is None else previews,
                listening=listener is not None,
            )
            run = _Run(state)
            self.cache.pin(run.used)
            wanted += [
                n
                for n in graph.order
                if graph.nodes[n].cls.spec.output_node
                and n not in wanted
                and (chosen is None or n in chosen)
            ]
            self._emit(run, "execution_start", {"timestamp": _now_ms()})
            try:
                self._execute(graph, wanted, run, parent=None)
            except Interrupted:
                self._emit(
                    run,
                    "execution_interrupted",
                    {
                        "node_id": run.state.extra.get("node_id"),
                        "node_type": run.state.extra.get("class_type"),
                        "executed": run.executed,
                        "timestamp": _now_ms(),
                    },
                )
                raise
            finally:
                self.cache.pin(set())
                with self._state_lock:
                    self._current = None
                    self._interrupt.clear()
                # ComfyUI ends every prompt, whatever its outcome, with executing(null).
                self._emit(run, "executing", {"node": None})
            self._emit(run, "execution_success", {"timestamp": _now_ms()})
        return RunResult(
            prompt_id=prompt_id,
            outputs={n: run.values[n].outputs for n in wanted},
            ui={n: ui for n in wanted if (ui := run.values[n].ui)},
            executed=run.executed,
            cached=run.cached,
        )

    async def stream(
        self, workflow: Any, targets: Iterable[str] | None = None, *, prompt_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Run in a worker thread and yield its events as they happen; re-raises its error."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def sink(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def work() -> RunResult:
            try:
                return self.run(workflow, targets, prompt_id=prompt_id, on_event=sink)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        future = loop.run_in_executor(None, work)
        while (event := await queue.get()) is not None:
            yield event
        await future

    # --- internals -----------------------------------------------------------------------------

    def _emit(self, run: _Run, kind: str, data: dict[str, Any]) -> None:
        if run.state.listening:
            run.state.emit(Event(kind, {**data, "prompt_id": run.state.prompt_id}))

    def _validated(self, nodes: dict[str, Any], wanted: list[str]) -> Graph:
        """Validate, or reuse the last validation when the same workflow comes again.

        Re-running an unchanged graph is the common case (a server re-queueing, a user
        re-running after changing a downstream file); comparing with the copy validation kept
        is a C-level dict comparison, far cheaper than validating every node again.
        """
        last = self._last_valid
        if last is not None and last[0] == wanted and last[1].source == nodes:
            return last[1]
        graph, issues = validate(nodes, self.registry, wanted, keep_source=True)
        if graph is None:
            raise WorkflowInvalid(issues)
        self._last_valid = (list(wanted), graph)
        return graph

    def _sign(self, graph: Graph, run: _Run) -> None:
        nodes, sigs, used, out_types = graph.nodes, run.sigs, run.used, run.out_types
        for node_id in graph.order:
            node = nodes[node_id]
            spec = node.cls.spec
            fp = node.cls.fingerprint(node.literals, self.folders) if spec.reads_files else None
            sigs[node_id] = key = signature(node, sigs, fp)
            used.add(key)
            out_types[node_id] = spec.output_types

    def _plan(self, graph: Graph, wanted: set[str], run: _Run) -> list[str]:
        """Nodes to execute: the wanted ones and their ancestors, stopping at cache hits."""
        needed: set[str] = set()
        nodes = graph.nodes
        stack = [n for n in wanted if n in nodes]
        while stack:
            node_id = stack.pop()
            if node_id in needed or node_id in run.values:
                continue
            entry = self.cache.get(run.sigs[node_id])
            if (
                entry is None
                and self.cache.disk is not None
                and not nodes[node_id].cls.spec.output_node
            ):
                entry = self.cache.get_from_disk(run.sigs[node_id], self.device)
            if (
                entry is not None
                and entry.skipped
                and (
                    node_id in wanted
                    or not entry.skipped.isdisjoint(graph.read_outputs.get(node_id, ()))
                )
            ):
                entry = None  # cached without an output this run reads
            if entry is not None:
                run.values[node_id] = entry  # held for this run, whatever the cache evicts
                run.cached.append(node_id)
                continue
            needed.add(node_id)
            for src, _ in nodes[node_id].links.values():
                if src in nodes:  # else a node of the enclosing graph, already run
                    stack.append(src)
        return [n for n in graph.order if n in needed]

    def _execute(self, graph: Graph, wanted: list[str], run: _Run, parent: str | None) -> None:
        self._sign(graph, run)
        first_cached = len(run.cached)
        wanted_set = set(wanted)
        todo = self._plan(graph, wanted_set, run)
        if run.cached[first_cached:]:
            self._emit(
                run,
                "execution_cached",
                {"nodes": run.cached[first_cached:], "timestamp": _now_ms()},
            )
        for node_id in run.cached[first_cached:]:
            ui = run.values[node_id].ui
            if ui and parent is None:  # the editor shows a cached output's images again
                self._emit(
                    run, "executed", {"node": node_id, "display_node": node_id, "output": ui}
                )
        for done, node_id in enumerate(todo):
            if self._interrupt.is_set():
                raise Interrupted()
            node = graph.nodes[node_id]
            unread = _unread(node, graph, wanted_set) if node.cls.lazy_outputs else _NOTHING
            self._execute_node(node, run, unread)
            if parent is not None:
                self._emit(run, "progress", {"value": done + 1, "max": len(todo), "node": parent})

    def _execute_node(self, node: GraphNode, run: _Run, unread: frozenset[str] = _NOTHING) -> None:
        spec = node.cls.spec
        extra = run.state.extra
        extra["node_id"], extra["class_type"] = node.id, spec.class_type
        if run.state.listening:
            run.state.emit(
                Event(
                    "executing",
                    {
                        "node": node.id,
                        "display_node": node.id.split(".", 1)[0],
                        "prompt_id": run.state.prompt_id,
                    },
                )
            )
        kwargs = dict(node.literals)
        for name, (src, index) in node.links.items():
            kwargs[name] = run.values[src].outputs[index]
        ctx = Context(
            self.device,
            self.folders,
            run.state,
            node.id,
            spec.class_type,
            self.info,
            unread,
            self.limits,
        )
        instance = node.cls(ctx)
        timed = self.cache.disk is not None  # the time only decides what the disk tier keeps
        started = time.perf_counter() if timed else 0.0
        try:
            result = instance.run(node.cls.In.from_validated(kwargs))
            if isinstance(result, Expand):
                outputs = self._expand(node, result, run)
            else:
                outputs = output_values(result, node.cls)
        except Interrupted:
            raise
        except NodeFailed:
            raise  # from inside an expansion: already reported with the inner node's name
        except Exception as err:
            tb = traceback.format_exc()
            self._emit(
                run,
                "execution_error",
                {
                    "node_id": node.id,
                    "node_type": spec.class_type,
                    "executed": list(run.executed),
                    "exception_message": str(err),
                    "exception_type": type(err).__name__,
                    "traceback": tb.splitlines(),
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": _now_ms(),
                },
            )
            raise NodeFailed(node.id, spec.class_type, err, tb) from err
        skipped = _skipped(outputs, node.cls, unread) if unread else _NOTHING
        entry = Entry(outputs, instance.ui, skipped)
        key = run.sigs[node.id]
        self.cache.put(key, entry)
        if (
            timed
            and time.perf_counter() - started >= self.disk_min_seconds
            and node.cls.disk_cacheable
            and not spec.output_node
            and not skipped
        ):
            self.cache.persist(key, entry)
        run.values[node.id] = entry
        run.executed.append(node.id)
        if instance.ui:
            self._emit(
                run,
                "executed",
                {"node": node.id, "display_node": node.id.split(".", 1)[0], "output": instance.ui},
            )

    def _expand(self, parent: GraphNode, expansion: Expand, run: _Run) -> tuple[Any, ...]:
        """Run a node's returned subgraph in its place; its nodes cache by signature as usual."""

        def parent_input(name: str) -> Any:
            link = parent.links.get(name)
            return list(link) if link is not None else literal_input(parent.literals.get(name))

        nodes, outputs = rewrite_expansion(expansion, parent.id + ".", parent_input)
        graph, issues = validate(
            nodes, self.registry, require_output=False, known_outputs=run.out_types
        )
        if graph is None:
            raise ValueError(
                "the node expanded into an invalid subgraph:\n"
                + "\n".join(f"  - {i}" for i in issues)
            )
        self._execute(graph, [node_id for node_id, _ in outputs], run, parent=parent.id)
        run.state.extra.update(node_id=parent.id, class_type=parent.cls.class_type)
        return tuple(run.values[node_id].outputs[index] for node_id, index in outputs)


def _unread(node: GraphNode, graph: Graph, wanted: set[str]) -> frozenset[str]:
    """The node's lazy outputs that nothing reads: no link in the graph, not a wanted node."""
    if node.id in wanted:
        return _NOTHING
    read = graph.read_outputs.get(node.id, _NOTHING)
    unread = [name for index, name in node.cls.spec.lazy_indices if index not in read]
    return frozenset(unread) if unread else _NOTHING


def _skipped(outputs: tuple[Any, ...], cls: type[Node], unread: frozenset[str]) -> frozenset[int]:
    """Indices of the unread lazy outputs the node left out."""
    skipped = [i for i, name in cls.spec.lazy_indices if outputs[i] is None and name in unread]
    return _index_set(tuple(skipped)) if skipped else _NOTHING


@functools.cache
def _index_set(indices: tuple[int, ...]) -> frozenset[int]:
    return frozenset(indices)


def _nobody(event: Event) -> None:
    """The sink of a run nobody listens to (nothing is built for it)."""


def settle_heap() -> None:
    """For a process about to run many workflows (the CLI, the server): collect once, then move
    everything alive (modules, the node registry, loaded classes) out of the cyclic collector's
    way, so its full passes stop re-walking them (a 10,000-node chain runs about 40% faster).
    Objects still die by reference counting as usual. Then keep freed memory for reuse."""
    gc.collect()
    gc.freeze()
    _keep_freed_memory()


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Ask glibc's malloc to reuse freed memory instead of handing it back to the kernel.

    The cache keeps every node's outputs, so a run allocates fresh tensors at every step. With
    glibc's defaults the free top of the heap goes back to the kernel once it passes 128 KiB and
    every buffer of 128 KiB or more gets a mapping of its own, so the pages of each new output
    are faulted in and zeroed again: about 30 faults per sampler step on SD's 64x64 latent, a
    sixth of the step. Buffers up
    to ``mmap_threshold`` now come from the heap, and up to ``trim_threshold`` bytes of freed
    heap stay mapped for the next run. Returns whether the allocator took the settings (False
    off glibc: other allocators keep their own policy).
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
