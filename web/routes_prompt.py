"""Queueing and its bookkeeping: /prompt, /queue, /history, /interrupt, /free."""

from __future__ import annotations

from typing import Any

import torch
from aiohttp import web

from .prompt_intake import PromptRejected, build_queued_prompt, rejection
from .routing import add_routes, query_int, read_json
from .state import ServerState, state_of

routes = web.RouteTableDef()


def _ids(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise web.HTTPBadRequest(text="'delete' must be a list of prompt ids")
    return [str(v) for v in value]


def _queue_changed(state: ServerState) -> None:
    state.hub.broadcast_status(state.store.remaining)


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request)
    store = state.store
    try:
        item = build_queued_prompt(body, state.executor.registry, state.config.folders.input,
                                   store.take_number, store.contains)
        store.enqueue(item)
    except PromptRejected as err:
        return web.json_response(err.body, status=400)
    except KeyError:  # the id was taken between the check and the insert
        rejected = rejection("invalid_prompt", "prompt_id is already used")
        return web.json_response(rejected.body, status=400)
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
    max_items = query_int(request, "max_items", None)
    offset = query_int(request, "offset", -1)
    return web.json_response(state_of(request).store.history(max_items, offset if offset is not None else -1))


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
