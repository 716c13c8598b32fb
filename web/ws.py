"""The WebSocket: ComfyUI's ``{"type", "data"}`` messages and binary preview frames.

Each connection has its own bounded outbox drained by its own task, so a slow or vanished client
never holds up the run or the other clients: previews are dropped first when an outbox fills,
and a client that still cannot keep up is disconnected (it reconnects and gets the status again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import struct
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from ..executor import jsonio

log = logging.getLogger(__name__)

# ComfyUI's binary layout: event type (1 = PREVIEW_IMAGE), image format (1 = JPEG, 2 = PNG).
PREVIEW_IMAGE = 1
PNG_FORMAT = 2
STATUS_INTERVAL_S = 0.05
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


def preview_frame(png: bytes) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE, PNG_FORMAT) + png


def encode_message(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "data": data}, default=str)


class Connection:
    """One open WebSocket and the messages waiting to be written to it."""

    def __init__(self, client_id: str, ws: web.WebSocketResponse, outbox_size: int) -> None:
        self.client_id = client_id
        self.ws = ws
        self.outbox: asyncio.Queue[str | bytes] = asyncio.Queue(outbox_size)
        self.limit = outbox_size
        self.overflowed = False
        self.closing: asyncio.Future[bool] | None = None

    def offer(self, message: str | bytes, droppable: bool = False) -> None:
        if droppable and self.outbox.qsize() >= self.limit // 2:
            return  # previews are a courtesy; the JSON events are not
        if self.overflowed:
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            log.warning("websocket client %s cannot keep up; disconnecting it", self.client_id)
            # Kept on the connection: a task nobody references may be collected before it runs.
            self.closing = asyncio.ensure_future(self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER))

    async def pump(self) -> None:
        """Write queued messages until the socket closes."""
        while True:
            message = await self.outbox.get()
            try:
                if isinstance(message, bytes):
                    await self.ws.send_bytes(message)
                else:
                    await self.ws.send_str(message)
            except (ConnectionError, RuntimeError):
                return  # closed underneath us: the handler cleans up


class ClientHub:
    """All open WebSockets by client id. Used only on the event loop's thread."""

    def __init__(self, outbox_size: int = 1024) -> None:
        self._clients: dict[str, set[Connection]] = {}
        self.outbox_size = outbox_size
        self._status_timer: asyncio.TimerHandle | None = None
        self._last_status = float("-inf")

    def connect(self, client_id: str, ws: web.WebSocketResponse) -> Connection:
        conn = Connection(client_id, ws, self.outbox_size)
        self._clients.setdefault(client_id, set()).add(conn)
        return conn

    def disconnect(self, conn: Connection) -> None:
        peers = self._clients.get(conn.client_id)
        if peers is not None:
            peers.discard(conn)
            if not peers:
                del self._clients[conn.client_id]

    def _targets(self, client_id: str | None) -> Iterable[Connection]:
        """A prompt's events go to the client that queued it; without a client id, to everyone."""
        if client_id is None:
            return [c for peers in self._clients.values() for c in peers]
        return list(self._clients.get(client_id, ()))

    def has_listeners(self, client_id: str | None) -> bool:
        return bool(self._targets(client_id))

    def send(self, kind: str, data: dict[str, Any], client_id: str | None = None) -> None:
        targets = self._targets(client_id)
        if targets:
            text = encode_message(kind, data)
            for conn in targets:
                conn.offer(text)

    def send_preview(self, png: bytes, client_id: str | None) -> None:
        targets = self._targets(client_id)
        if targets:
            frame = preview_frame(png)
            for conn in targets:
                conn.offer(frame, droppable=True)

    def broadcast_status(self, queue_remaining: Callable[[], int]) -> None:
        """Tell everyone the queue length, at most once per ``STATUS_INTERVAL_S``.

        Under load the queue changes hundreds of times a second and every change would be one
        message per client; instead the first change is sent at once and later ones within the
        interval are folded into one trailing message that reads the count when it goes out,
        so the last word is always the current length.
        """
        if self._status_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_status + STATUS_INTERVAL_S - loop.time()
        if wait <= 0:
            self._send_status(queue_remaining)
        else:
            self._status_timer = loop.call_later(wait, self._send_status, queue_remaining)

    def _send_status(self, queue_remaining: Callable[[], int]) -> None:
        self._status_timer = None
        self._last_status = asyncio.get_running_loop().time()
        try:
            count = queue_remaining()
        except Exception:  # the store closed between scheduling and sending: nothing to report
            return
        self.send("status", status_data(count))

    async def close_all(self) -> None:
        if self._status_timer is not None:
            self._status_timer.cancel()
            self._status_timer = None
        for conn in self._targets(None):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def status_data(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return data


def client_id_from(request: web.Request) -> str:
    """The client's own id when it is a sane token, else a fresh one (ComfyUI does the same)."""
    wanted = request.query.get("clientId", "")
    return wanted if _CLIENT_ID.match(wanted) else uuid.uuid4().hex


async def serve_websocket(
    request: web.Request, hub: ClientHub, client_id: str, queue_remaining: int,
    on_connect: list[tuple[str, dict[str, Any]]], feature_flags: dict[str, Any],
) -> web.WebSocketResponse:
    """Accept a socket, greet it with the status (and ``on_connect`` messages), then keep it open.

    Incoming messages are ignored except ComfyUI's ``feature_flags`` handshake, which is answered.
    """
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    conn = hub.connect(client_id, ws)
    conn.offer(encode_message("status", status_data(queue_remaining, sid=client_id)))
    for kind, data in on_connect:
        conn.offer(encode_message(kind, data))
    writer = asyncio.create_task(conn.pump())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and _is_feature_flags(msg.data):
                conn.offer(encode_message("feature_flags", feature_flags))
    finally:
        hub.disconnect(conn)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


def _is_feature_flags(text: str) -> bool:
    try:
        message = jsonio.loads(text)  # bounded nesting: a client's 10,000 "[" is just not a flag
    except (ValueError, TypeError):
        return False
    return isinstance(message, dict) and message.get("type") == "feature_flags"
