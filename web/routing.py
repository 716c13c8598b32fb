"""Plumbing shared by the route modules: the ``/api`` twin of every route, JSON in and out,
and the last line of defence that answers any unexpected failure with a JSON error."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..executor import jsonio

log = logging.getLogger(__name__)

# ComfyUI's newer frontend calls /api/...; older clients and scripts call the bare paths.
API_PREFIX = "/api"
# Bodies larger than this are parsed on a worker thread, so the event loop keeps serving.
PARSE_INLINE_BYTES = 1 << 20


def add_routes(app: web.Application, routes: web.RouteTableDef) -> None:
    """Register each route twice: as written and under ``/api``."""
    for route in routes:
        if not isinstance(route, web.RouteDef):
            raise TypeError(f"only plain routes are supported here, got {route!r}")
        for path in (route.path, API_PREFIX + route.path):
            # RouteDef.register uses add_get & co., so GET routes also answer HEAD.
            web.RouteDef(route.method, path, route.handler, route.kwargs).register(app.router)


def json_error(status: int, message: str, kind: str = "bad_request") -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


def error_body(kind: str, message: str, details: str = "") -> dict[str, Any]:
    """ComfyUI's shape of a refused ``POST /prompt``, which its clients parse for any error."""
    return {"error": {"type": kind, "message": message, "details": details or message, "extra_info": {}},
            "node_errors": {}}


def _refusal(http_error: Callable[..., web.HTTPException], kind: str, message: str) -> web.HTTPException:
    return http_error(text=json.dumps(error_body(kind, message)), content_type="application/json")


async def read_json(request: web.Request, default: Any = None) -> Any:
    """The body as JSON (:func:`latentgraph.executor.jsonio.loads`: finite numbers, bounded
    nesting); ``default`` when empty. A body that is not, or one over ``client_max_size``, is
    answered with a JSON 400 or 413."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        limit_mb = limit / (1 << 20)
        too_large = functools.partial(web.HTTPRequestEntityTooLarge, limit)
        raise _refusal(too_large, "request_too_large",
                       f"the body is larger than this server's limit of {limit_mb:g} MB for JSON bodies "
                       "(start it with --max-body-mb, or ServerConfig(max_body_mb=...), to raise it)") from None
    if not raw.strip():
        return default
    try:
        if len(raw) > PARSE_INLINE_BYTES:
            return await asyncio.to_thread(functools.partial(jsonio.loads, raw, cooperative=True))
        return jsonio.loads(raw)
    except jsonio.InvalidJson as err:
        raise _refusal(web.HTTPBadRequest, "invalid_json", f"the body is not JSON: {err}") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def unexpected_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An exception no handler expected becomes a logged, JSON 500 (ComfyUI's error shape)
    instead of aiohttp's plain-text page; the server goes on serving either way."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as err:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            raise  # the connection is no longer HTTP: nothing to answer with
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return web.json_response(error_body(
            "server_error", f"the server failed on this request ({type(err).__name__}); the details are in its log"),
            status=500)


def query_int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
