"""What every request handler shares, stored on the application under one typed key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from ..executor import Executor
from .config import ServerConfig
from .queue_store import QueueStore
from .runner import PromptRunner
from .ws import ClientHub


@dataclass
class ServerState:
    config: ServerConfig
    executor: Executor
    hub: ClientHub
    # Uploads choose a free name and then write it; one at a time, so two never pick the same.
    upload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Opened when the application starts and closed when it stops (see app.py).
    open_store: QueueStore | None = None
    open_runner: PromptRunner | None = None

    @property
    def store(self) -> QueueStore:
        if self.open_store is None:
            raise RuntimeError("the queue store is only open while the application runs")
        return self.open_store

    @property
    def runner(self) -> PromptRunner:
        if self.open_runner is None:
            raise RuntimeError("the runner only exists while the application runs")
        return self.open_runner


STATE = web.AppKey("latentgraph_state", ServerState)


def state_of(request: web.Request) -> ServerState:
    return request.app[STATE]
