"""The application factory and the ``serve`` entry point.

Routes live in one module per concern, each with a ``register(app)``; ``ROUTE_MODULES`` lists
them, and ``create_app(extra_routes=...)`` adds more. The editor's are ``routes_editor`` (the
pinned ComfyUI frontend at ``/``, templates from graphs/, startup stubs), ``routes_userdata``
(users, settings, saved workflows) and ``routes_jobs`` (the queue panel's jobs API).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from types import ModuleType

from aiohttp import web

from ..api import Executor
from ..executor import NodeRegistry
from . import (
    routes_editor,
    routes_files,
    routes_info,
    routes_jobs,
    routes_prompt,
    routes_userdata,
    routes_ws,
)
from .config import ServerConfig
from .queue_store import QueueStore
from .routing import unexpected_errors
from .runner import PromptRunner
from .security import add_security_headers, check_bind, security_middlewares
from .state import STATE, ServerState
from .ws import ClientHub

log = logging.getLogger(__name__)

# routes_editor last: it serves the frontend's static folders beside the API routes.
ROUTE_MODULES: tuple[ModuleType, ...] = (routes_prompt, routes_files, routes_info, routes_ws, routes_jobs,
                                         routes_userdata, routes_editor)


def create_app(
    config: ServerConfig | None = None,
    *,
    registry: NodeRegistry | None = None,
    executor: Executor | None = None,
    extra_routes: Iterable[Callable[[web.Application], None]] = (),
) -> web.Application:
    """A ready-to-run application; the queue database opens when it starts and closes when it
    stops, so two apps on one data directory may exist as long as one runs at a time.

    ``registry`` swaps the node set (tests add their own nodes); ``executor`` replaces the
    executor entirely (its folders should then be ``config.folders``).
    """
    config = config or ServerConfig()
    folders = config.folders
    for folder in (folders.input, folders.output, folders.temp):
        folder.mkdir(parents=True, exist_ok=True)
    if executor is None:
        executor = Executor(device=config.device, cache_bytes=config.cache_bytes, registry=registry,
                            folders=folders, limits=config.limits)
    # unexpected_errors outermost: whatever fails below it is answered in JSON, and logged.
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[unexpected_errors, *security_middlewares(config)])
    app[STATE] = ServerState(config=config, executor=executor, hub=ClientHub())
    app.on_response_prepare.append(add_security_headers)
    for module in ROUTE_MODULES:
        module.register(app)
    for register in extra_routes:
        register(app)
    app.cleanup_ctx.append(_queue_lifecycle)
    app.on_shutdown.append(_close_websockets)
    return app


async def _queue_lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    store = QueueStore(state.config.database_path, state.config.history_limit)
    if store.requeued_on_open:
        log.info("re-queued %d prompt(s) that were running when the server last stopped",
                 store.requeued_on_open)
    state.open_store = store
    state.open_runner = PromptRunner(state.executor, store, state.hub)
    if state.config.ray_address:  # a cluster that cannot be had is logged; prompts then run here
        from .cluster_runner import cluster_runner

        state.open_runner = await cluster_runner(state, store) or state.open_runner
    if state.config.run_queue:
        state.open_runner.start()
    try:
        yield
    finally:
        await state.open_runner.stop(state.config.shutdown_grace_s)
        store.close()
        state.open_store = state.open_runner = None


async def _close_websockets(app: web.Application) -> None:
    await app[STATE].hub.close_all()


def serve(config: ServerConfig) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM stop gracefully; a running prompt is re-queued)."""
    check_bind(config.host, config.auth_token)
    app = create_app(config)
    state = app[STATE]
    host = f"[{config.host}]" if ":" in config.host else config.host

    def announce(_: str) -> None:
        print(f"latentgraph {state.executor.info['latentgraph']} serving on http://{host}:{config.port}"
              f" (device {state.executor.device}, data in {config.data_dir.resolve()})", flush=True)

    web.run_app(app, host=config.host, port=config.port, print=announce, access_log=None,
                handle_signals=True)
