"""``serve --ray``: the queue's prompts run on a Ray cluster's workers, several at a time.

The SQLite queue stays the source of truth. The runner claims prompts while the cluster's window
has room (``Router.window``); the router holds them until a worker has room and gives each worker
the waiting prompt whose models it holds (``cluster/router.py``), and its events come back as
the local runner's do: the same ``_forward`` records the history's messages and outputs and
sends them, and the previews, to the client that queued it. The files its output nodes wrote arrive with the events and are written
into this server's output folder (``cluster/files.py``), so ``/view`` and the history name them
as after a local run.

A prompt whose worker dies goes back to pending in the database and runs again on another
worker; when no worker is left the server runs the queue itself, as without ``--ray``. If the
cluster cannot be had at start (Ray not installed, the address does not answer), the error is
logged and the server serves with its own executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..cluster.protocol import INTERRUPTED, INVALID, NODE_FAILED, SUCCESS, Finished, Job
from ..executor import Issue, WorkflowInvalid
from .queue_store import QueuedPrompt, QueueStore, RunOutcome
from .runner import ActivePrompt, PromptRunner

log = logging.getLogger(__name__)


async def cluster_runner(state: Any, store: QueueStore) -> ClusterRunner | None:
    """The runner on the cluster ``state.config`` names, or None (logged) when there is none."""
    from ..cluster.backend import Cluster, ClusterUnavailable
    from ..cluster.worker import WorkerSettings

    config = state.config
    folders = config.folders
    settings = WorkerSettings(
        input_dir=str(folders.input.resolve()), models_dir=str(folders.models.resolve()),
        device=config.device, cache_bytes=config.cache_bytes, absolute_models=False,
        models_hint=folders.models_hint, limits=config.limits,
        more_models=tuple(str(p.resolve()) for p in folders.more_models),
    )
    try:
        cluster = await asyncio.to_thread(Cluster.start, config.ray_address, settings, folders,
                                          workers=config.ray_workers)
    except ClusterUnavailable as err:
        log.error("--ray %s: %s; running prompts on this server", config.ray_address, err)
        return None
    log.info("running prompts on %d Ray worker(s) at %s", cluster.alive, config.ray_address)
    return ClusterRunner(state.executor, store, state.hub, cluster)


class ClusterRunner(PromptRunner):
    """A :class:`PromptRunner` whose prompts run on the cluster's workers."""

    def __init__(self, executor: Any, store: QueueStore, hub: Any, cluster: Any) -> None:
        super().__init__(executor, store, hub)
        self.cluster = cluster
        self.remote: dict[str, ActivePrompt] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- control -------------------------------------------------------------------------------

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Stop ``prompt_id`` (also while it waits for a worker), or without one every prompt
        that has started, as ComfyUI stops the running one: those waiting behind them run."""
        found = super().interrupt(prompt_id)  # a prompt run here after the workers were lost
        for pid, active in self.remote.items():
            started = bool(active.messages)  # execution_start has come
            if pid == prompt_id or (prompt_id is None and started):
                active.interrupt_requested = True
                found = self.cluster.interrupt(pid) or found
        return found

    def reconnect_messages(self, client_id: str) -> list[tuple[str, dict[str, Any]]]:
        messages = super().reconnect_messages(client_id)
        for active in self.remote.values():
            if active.item.client_id == client_id and active.node is not None:
                messages.append(("executing", {"node": active.node, "display_node": active.display_node,
                                               "prompt_id": active.item.prompt_id}))
        return messages

    async def stop(self, grace_s: float) -> None:
        """Interrupt what the workers run (it goes back to the queue), then close the cluster."""
        self._stopping = True
        self.cluster.interrupt()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=grace_s)
            for task in late:  # left "running" in the database: the next start runs them again
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await super().stop(grace_s)
        await asyncio.to_thread(self.cluster.close)

    # --- the loop ------------------------------------------------------------------------------

    async def _serve(self) -> None:
        while not self._stopping:
            if not self.cluster.alive:
                item = self.store.claim_next()
                if item is None:
                    await self._idle()
                    continue
                await self._run(item)  # no worker left: as a server without a cluster
                continue
            if not self.cluster.has_room():
                await self._idle()
                continue
            item = self.store.claim_next()
            if item is None:
                await self._idle()
                continue
            try:
                self._start(item)
            except Exception:  # a bug here must not stop the queue for good
                log.exception("sending prompt %s to the cluster failed", item.prompt_id)
                self.store.finish(item.prompt_id, RunOutcome({}, "error", False, []))

    async def _idle(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def _start(self, item: QueuedPrompt) -> None:
        extra = item.extra_data.get("extra_pnginfo")
        ui = extra.get("workflow") if isinstance(extra, dict) else None
        targets = item.outputs_to_execute or None  # as the local runner: see PromptRunner._run
        job = Job(item.prompt_id, item.prompt, ui if isinstance(ui, dict) else None, targets, targets,
                  previews=self.hub.has_listeners(item.client_id))
        ticket = self.cluster.submit(job)
        active = self.remote[item.prompt_id] = ActivePrompt(item)
        task = asyncio.create_task(self._follow(active, ticket), name=f"latentgraph-{item.prompt_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, active: ActivePrompt, ticket: Any) -> None:
        from ..cluster.backend import WorkerLost

        item = active.item
        try:
            final = await self.cluster.follow(ticket, lambda event, png: self._forward(active, event, png))
        except WorkerLost as lost:
            log.warning("prompt %s goes back to the queue: %s", item.prompt_id, lost)
            self.store.requeue(item.prompt_id)
            return
        except Exception as err:  # a bug: recorded as the prompt's failure, the queue goes on
            log.exception("following prompt %s failed", item.prompt_id)
            final = Finished("error", message=f"{type(err).__name__}: {err}")
        finally:
            self.remote.pop(item.prompt_id, None)
            self._wake.set()
        if final.status == INTERRUPTED and self._stopping and not active.interrupt_requested:
            self.store.requeue(item.prompt_id)  # the server stopped it, not the user
            return
        self.store.finish(item.prompt_id, self._outcome(active, final))
        self.hub.broadcast_status(self.store.remaining)

    def _outcome(self, active: ActivePrompt, final: Finished) -> RunOutcome:
        if final.status == SUCCESS:
            return RunOutcome({**active.outputs, **final.ui}, "success", True, active.messages)
        if final.status not in (NODE_FAILED, INTERRUPTED):  # the worker's executor said nothing
            if final.status == INVALID:
                err: Exception = WorkflowInvalid([Issue(**i) for i in final.details.get("issues", [])])
            else:
                err = RuntimeError(final.message)
            self._report_error(active, err)
            if final.status == INVALID:
                self.hub.send("executing", {"node": None, "prompt_id": active.item.prompt_id},
                              active.item.client_id)
        return self._failed(active)
