"""Queueing and its bookkeeping: /prompt, /queue, /history, /interrupt, /free."""

from __future__ import annotations

import asyncio
from typing import Any

import torch
from aiohttp import web

from .prompt_intake import PromptRejected, build_queued_prompt, prompt_size, rejection
from .queue_store import QueuedPrompt
from .routing import PARSE_INLINE_BYTES, add_routes, query_int, read_json
from .state import ServerState, state_of

routes = web.RouteTableDef()


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise web.HTTPBadRequest(text="'delete' must be a list of prompt ids")
    return [str(v) for v in value]


def _queue_changed(state: ServerState) -> None:
    state.hub.broadcast_status(state.store.remaining)


# Prompts up to this many nodes (in a body of up to PARSE_INLINE_BYTES) are checked on the
# event loop, in under a millisecond; larger ones on a worker thread, so that one big prompt
# does not stall every other client meanwhile.
CHECK_INLINE_NODES = 100


def _intake(state: ServerState, body: Any) -> QueuedPrompt | web.Response:
    """Check and queue a prompt; the answer to send if it is refused. Safe on any thread."""
    store = state.store
    try:
        item = build_queued_prompt(body, state.executor.registry, state.config.folders.input,
                                   store.take_number, store.contains, state.config.max_prompt_nodes)
    except PromptRejected as err:
        return web.json_response(err.body, status=err.status)
    try:
        store.enqueue(item)
    except KeyError:  # the id was taken between the check and the insert
        rejected = rejection("invalid_prompt", f"prompt_id '{item.prompt_id}' is already used")
        return web.json_response(rejected.body, status=400)
    return item


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request)
    size = prompt_size(body.get("prompt")) if isinstance(body, dict) else 0
    small = size <= CHECK_INLINE_NODES and (request.content_length or PARSE_INLINE_BYTES + 1) <= PARSE_INLINE_BYTES
    item = _intake(state, body) if small else await asyncio.to_thread(_intake, state, body)
    if isinstance(item, web.Response):
        return item
    state.runner.notify()
    _queue_changed(state)
    return web.json_response({"prompt_id": item.prompt_id, "number": item.as_list()[0], "node_errors": {}})


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response({"exec_info": {"queue_remaining": state_of(request).store.remaining()}})


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    store = state_of(request).store
    return web.json_response({
        "queue_running": [item.as_list() for item in store.running()],
        "queue_pending": [item.as_list() for item in store.pending()],
    })


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    """``{"clear": true}`` empties the pending queue, ``{"delete": [ids]}`` removes some of it;
    the running prompt is stopped with /interrupt, as in ComfyUI."""
    state = state_of(request)
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    if body.get("clear"):
        state.store.clear_pending()
    if "delete" in body:
        state.store.delete_pending(_ids(body["delete"]))
    _queue_changed(state)
    return web.Response(status=200)


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    """ComfyUI's paging: ``max_items`` entries from ``offset`` (oldest first), or without an
    offset the most recent ``max_items``. At most ``history_page_limit`` entries either way; a
    request without ``max_items`` gets the most recent ones up to that cap."""
    state = state_of(request)
    cap = max(state.config.history_page_limit, 1)
    max_items = query_int(request, "max_items", None)
    offset = query_int(request, "offset", -1)
    max_items = cap if max_items is None else min(max_items, cap)
    return web.json_response(state.store.history(max_items, offset if offset is not None else -1))


@routes.get("/history/{prompt_id}")
async def get_history_entry(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    entry = state_of(request).store.history_entry(prompt_id)
    return web.json_response({prompt_id: entry} if entry is not None else {})


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    store = state_of(request).store
    body = await read_json(request, {})
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    if body.get("clear"):
        store.clear_history()
    if "delete" in body:
        store.delete_history(_ids(body["delete"]))
    return web.Response(status=200)


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    """Stop the running prompt; with ``{"prompt_id"}``, only if that is the one running."""
    body = await read_json(request, {})
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    state_of(request).runner.interrupt(str(prompt_id) if prompt_id else None)
    return web.Response(status=200)


@routes.post("/free")
async def post_free(request: web.Request) -> web.Response:
    """Drop cached results (``free_memory``) and models too (``unload_models``)."""
    state = state_of(request)
    body = await read_json(request, {})
    body = body if isinstance(body, dict) else {}
    unload, free = bool(body.get("unload_models")), bool(body.get("free_memory"))
    if unload or free:
        state.executor.cache.clear(models=unload)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return web.Response(status=200)


def register(app: web.Application) -> None:
    add_routes(app, routes)
