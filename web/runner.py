"""Runs queued prompts one at a time on a worker thread and reports them as ComfyUI does.

The event loop claims the next prompt from the store, hands it to the worker thread running
``Executor.run``, and records the outcome in the history when the thread is done; meanwhile the
loop keeps serving requests. The executor's events arrive on the worker thread and are moved to
the loop with ``call_soon_threadsafe``, which keeps their order, and the thread's result is
delivered the same way, after its last event.

The executor's events already follow ComfyUI's sequence (cached outputs are re-announced with
``executed``, every run ends with ``executing`` ``{"node": null}``); the runner adds an
``execution_error`` only for a prompt that no longer validates when its turn comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..executor import Event, Executor, Interrupted, NodeFailed, RunResult, WorkflowInvalid
from ..executor.workflow import Workflow
from .previews import preview_png
from .queue_store import QueuedPrompt, QueueStore, RunOutcome
from .ws import ClientHub

log = logging.getLogger(__name__)

# The events ComfyUI keeps in a history entry's status.messages.
HISTORY_EVENTS = frozenset({
    "execution_start", "execution_cached", "execution_success", "execution_error", "execution_interrupted",
})


@dataclass
class ActivePrompt:
    """The prompt being run; only the event loop's thread reads or writes it."""

    item: QueuedPrompt
    node: str | None = None
    display_node: str | None = None
    interrupt_requested: bool = False
    messages: list[list[Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


class PromptRunner:
    """Owns the worker: claims prompts, runs them, forwards events, writes the history."""

    def __init__(self, executor: Executor, store: QueueStore, hub: ClientHub) -> None:
        self.executor = executor
        self.store = store
        self.hub = hub
        self.active: ActivePrompt | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._worker = WorkerThread()

    # --- control, from request handlers --------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._serve(), name="latentgraph-queue")

    def notify(self) -> None:
        """Something was queued: wake the worker if it is idle."""
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Stop the running prompt (only if it is ``prompt_id``, when given)."""
        active = self.active
        if active is None or (prompt_id is not None and prompt_id != active.item.prompt_id):
            return False
        active.interrupt_requested = True
        self.executor.interrupt(active.item.prompt_id)
        return True

    async def stop(self, grace_s: float) -> None:
        """Interrupt the running prompt and put it back in the queue for the next start."""
        self._stopping = True
        self._wake.set()
        if self.active is not None:
            self.executor.interrupt(self.active.item.prompt_id)
        self._worker.close()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            # A node that never checks for interruption: leave the prompt marked running in the
            # database (the next start re-queues it) and abandon the daemon thread.
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def reconnect_messages(self, client_id: str) -> list[tuple[str, dict[str, Any]]]:
        """What a client reconnecting mid-run must hear to show the right node as running."""
        active = self.active
        if active is None or active.item.client_id != client_id or active.node is None:
            return []
        return [("executing", {"node": active.node, "display_node": active.display_node,
                               "prompt_id": active.item.prompt_id})]

    # --- the worker loop -----------------------------------------------------------------------

    async def _serve(self) -> None:
        while not self._stopping:
            item = self.store.claim_next()
            if item is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._run(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the queue for good
                log.exception("recording prompt %s failed", item.prompt_id)

    async def _run(self, item: QueuedPrompt) -> None:
        loop = asyncio.get_running_loop()
        active = self.active = ActivePrompt(item)

        def on_event(event: Event) -> None:  # on the worker thread
            png = None
            if event.type == "progress" and "preview" in event.data:
                png = preview_png(event.data["preview"])
                event = Event(event.type, {k: v for k, v in event.data.items() if k != "preview"})
            _post(loop, self._forward, active, event, png)

        def work() -> RunResult:
            extra = item.extra_data.get("extra_pnginfo")
            ui = extra.get("workflow") if isinstance(extra, dict) else None
            workflow = Workflow(nodes=item.prompt, ui=ui if isinstance(ui, dict) else None)
            # The nodes to execute are targets, not just a filter on the output nodes: a
            # partial_execution_targets list may name any node (a preview of an intermediate
            # value), and the executor then runs what that node needs. Without such a list they
            # are the workflow's output nodes, so this is the same run as before.
            targets = item.outputs_to_execute or None
            # Previews cost a render and a PNG per step: ask for them only when someone will see them.
            return self.executor.run(workflow, targets, prompt_id=item.prompt_id, on_event=on_event,
                                     previews=self.hub.has_listeners(item.client_id), outputs=targets)

        try:
            result = await self._worker.submit(loop, work)
        except Interrupted:
            if self._stopping and not active.interrupt_requested:
                self.store.requeue(item.prompt_id)  # the server stopped it, not the user
                self.active = None
                return
            outcome = self._failed(active)
        except NodeFailed:
            outcome = self._failed(active)  # the executor already sent execution_error
        except Exception as err:  # WorkflowInvalid (a node changed since queueing) or a bug
            self._report_error(active, err)
            if isinstance(err, WorkflowInvalid):  # nothing started, so the executor said nothing
                self.hub.send("executing", {"node": None, "prompt_id": item.prompt_id}, item.client_id)
            outcome = self._failed(active)
        else:
            outcome = self._succeeded(active, result)
        finally:
            if self.active is active:
                self.active = None
        self.store.finish(item.prompt_id, outcome)
        self.hub.broadcast_status(self.store.remaining)

    # --- events --------------------------------------------------------------------------------

    def _forward(self, active: ActivePrompt, event: Event, png: bytes | None) -> None:
        """On the loop: record what the history keeps, track the node, send to the client."""
        data = event.data
        if event.type in HISTORY_EVENTS:
            active.messages.append([event.type, data])
        if event.type == "executing":
            active.node, active.display_node = data.get("node"), data.get("display_node")
        if event.type == "executed" and data.get("output") is not None:
            active.outputs[data["node"]] = data["output"]
        self.hub.send(event.type, data, active.item.client_id)
        if png is not None:
            self.hub.send_preview(png, active.item.client_id)

    def _succeeded(self, active: ActivePrompt, result: RunResult) -> RunOutcome:
        return RunOutcome({**active.outputs, **result.ui}, "success", True, active.messages)

    def _failed(self, active: ActivePrompt) -> RunOutcome:
        return RunOutcome(active.outputs, "error", False, active.messages)

    def _report_error(self, active: ActivePrompt, err: Exception) -> None:
        """An execution_error for failures the executor did not report itself."""
        first = err.issues[0] if isinstance(err, WorkflowInvalid) and err.issues else None
        data: dict[str, Any] = {
            "prompt_id": active.item.prompt_id,
            "node_id": first.node_id if first else active.node,
            "node_type": first.class_type if first else None,
            "executed": [], "exception_message": str(err), "exception_type": type(err).__name__,
            "traceback": traceback.format_exception(type(err), err, err.__traceback__),
            "current_inputs": {}, "current_outputs": {}, "timestamp": int(time.time() * 1000),
        }
        if not isinstance(err, WorkflowInvalid):
            log.error("prompt %s failed outside any node: %s", active.item.prompt_id, err)
        active.messages.append(["execution_error", data])
        self.hub.send("execution_error", data, active.item.client_id)


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``call_soon_threadsafe`` that tolerates a loop already closed (server shut down)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


class WorkerThread:
    """One long-lived daemon thread that runs jobs handed over from the event loop.

    Daemon, so a node stuck at shutdown cannot keep the process alive (a ThreadPoolExecutor's
    threads are joined at exit); long-lived, because starting a thread per prompt costs the
    event loop a couple of milliseconds while it waits for the thread to come up.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, loop: asyncio.AbstractEventLoop, work: Callable[[], RunResult]) -> asyncio.Future[RunResult]:
        """Run ``work`` on the thread; its result or exception arrives in the returned future."""
        future: asyncio.Future[RunResult] = loop.create_future()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._serve, name="latentgraph-prompt", daemon=True)
            self._thread.start()
        self._jobs.put((loop, future, work))
        return future

    def close(self) -> None:
        """Let the thread end once its current job (if any) is over."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, work = job
            try:
                result = work()
            except BaseException as err:  # delivered to the awaiting coroutine, never lost
                _post(loop, _settle, future, None, err)
            else:
                _post(loop, _settle, future, result, None)


def _settle(future: asyncio.Future[RunResult], result: RunResult | None, error: BaseException | None) -> None:
    if future.done():
        return  # cancelled: the server stopped waiting
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
