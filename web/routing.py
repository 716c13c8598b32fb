"""Plumbing shared by the route modules: the ``/api`` twin of every route, JSON in and out."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

# ComfyUI's newer frontend calls /api/...; older clients and scripts call the bare paths.
API_PREFIX = "/api"


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


async def read_json(request: web.Request, default: Any = None) -> Any:
    """The body as JSON; ``default`` when empty. Bodies over client_max_size get aiohttp's 413."""
    raw = await request.read()
    if not raw.strip():
        return default
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": {"type": "invalid_json", "message": f"the body is not JSON: {err}"}}),
            content_type="application/json") from None


def query_int(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
