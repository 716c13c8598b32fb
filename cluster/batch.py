"""``latentgraph batch``: many prompts from one workflow, on the local executor or a cluster.

Both ways write what ``run`` writes (the output nodes' files in the output folder) and report
each prompt as it ends; the cluster way keeps every worker busy (the router gives each worker
with room its next prompt) and gives a prompt whose worker died to the next free one. When no worker is left,
the prompts not yet done are handed back to run locally.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..executor import Executor, Interrupted, NodeFailed, WorkflowInvalid
from .backend import Cluster, WorkerLost
from .protocol import INTERRUPTED, INVALID, NODE_FAILED, SUCCESS, Finished, Job


@dataclass
class BatchReport:
    """What a batch did, prompt by prompt (in the order they ended)."""

    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (prompt id, message)
    files: list[dict[str, Any]] = field(default_factory=list)  # ui image entries
    lost_workers: int = 0

    def record(self, job: Job, outcome: Finished) -> None:
        self.done += 1
        if outcome.status != SUCCESS:
            self.failed.append((job.prompt_id, outcome.message))
        for ui in outcome.ui.values():
            self.files += [img for img in ui.get("images", []) if isinstance(img, dict)]


def run_local(executor: Executor, jobs: Iterable[Job], on_done: Callable[[Job, Finished], None]) -> None:
    """One prompt after another on this process's executor (its cache shared by all of them)."""
    for job in jobs:
        on_done(job, run_one(executor, job))


def run_one(executor: Executor, job: Job) -> Finished:
    try:
        result = executor.run(job.prompt, job.targets, prompt_id=job.prompt_id)
    except NodeFailed as err:
        return Finished(NODE_FAILED, message=str(err))
    except WorkflowInvalid as err:
        return Finished(INVALID, message=str(err))
    except Interrupted:
        return Finished(INTERRUPTED, message="interrupted")
    return Finished(SUCCESS, ui=result.ui, executed=result.executed, cached=result.cached)


async def run_on_cluster(cluster: Cluster, jobs: Iterable[Job],
                         on_done: Callable[[Job, Finished], None],
                         on_lost: Callable[[str], None] | None = None) -> list[Job]:
    """Run ``jobs`` on the cluster's workers; returns the jobs left when no worker is left
    (empty when all ran). A prompt whose worker died is run again on another one."""
    source: Iterator[Job] = iter(jobs)
    retry: deque[Job] = deque()
    running: dict[asyncio.Task[Finished], Job] = {}

    def next_job() -> Job | None:
        return retry.popleft() if retry else next(source, None)

    while True:
        while cluster.alive and cluster.has_room():
            job = next_job()
            if job is None:
                break
            running[asyncio.ensure_future(cluster.follow(cluster.submit(job)))] = job
        if not running:
            break
        finished, _ = await asyncio.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            job = running.pop(task)
            try:
                outcome = task.result()
            except WorkerLost as lost:
                retry.append(job)
                if on_lost is not None:
                    on_lost(lost.worker)
                continue
            on_done(job, outcome)
    return [*retry, *source]
