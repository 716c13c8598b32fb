"""``GET /ws?clientId=``: the live event stream (see ws.py for the messages)."""

from __future__ import annotations

from aiohttp import web

from .routes_info import feature_flags
from .routing import add_routes
from .state import state_of
from .ws import client_id_from, serve_websocket

routes = web.RouteTableDef()


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = state_of(request)
    client_id = client_id_from(request)
    greeting = state.runner.reconnect_messages(client_id)
    return await serve_websocket(request, state.hub, client_id, state.store.remaining(), greeting,
                                 feature_flags(state))


def register(app: web.Application) -> None:
    add_routes(app, routes)
