"""``latentgraph submit``: queue a workflow on a running server and follow it to the end.

The WebSocket is opened before the prompt is posted, so no event of the run can be missed; the
final outputs are read from ``/history`` (the record the server keeps), which also covers a
socket that drops mid-run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from ..executor import Event

EXIT_OK, EXIT_RUNTIME, EXIT_INVALID = 0, 1, 2
_TERMINAL = frozenset({"execution_success", "execution_error", "execution_interrupted"})
_POLL_SECONDS = 0.5


class SubmitError(Exception):
    """The server could not be reached or answered something unexpected."""


@dataclass
class SubmitOutcome:
    exit_code: int
    prompt_id: str | None = None
    rejection: dict[str, Any] | None = None  # the 400 body: error + node_errors
    error: dict[str, Any] | None = None  # the execution_error / execution_interrupted data
    outputs: dict[str, Any] = field(default_factory=dict)


def server_url(server: str) -> URL:
    url = URL(server if "://" in server else f"http://{server}")
    if url.scheme not in ("http", "https") or not url.host:
        raise SubmitError(f"--server must be an http(s) URL, got {server!r}")
    return url


def _endpoint(base: URL, path: str) -> URL:
    return base.with_path(base.path.rstrip("/") + path)


def describe_rejection(body: dict[str, Any]) -> list[str]:
    """Lines naming every problem of a refused prompt, from ComfyUI's error shape."""
    error = body.get("error") or {}
    lines = [f"the server refused the workflow: {error.get('message', 'unknown error')}"]
    if error.get("details") and error.get("details") != error.get("message"):
        lines.append(f"  {error['details']}")
    for node_id, entry in (body.get("node_errors") or {}).items():
        for problem in entry.get("errors", []):
            name = (problem.get("extra_info") or {}).get("input_name")
            where = f"node {node_id} ({entry.get('class_type')})" + (f", input '{name}'" if name else "")
            lines.append(f"  - {where}: {problem.get('message')}")
    return lines


def output_files(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for ui in outputs.values() if isinstance(ui, dict)
            for item in ui.get("images", []) if isinstance(item, dict)]


async def submit(
    server: str,
    prompt: dict[str, Any],
    *,
    ui_workflow: dict[str, Any] | None = None,
    token: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> SubmitOutcome:
    base = server_url(server)
    client_id = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: dict[str, Any] = {"prompt": prompt, "client_id": client_id}
    if ui_workflow is not None:
        body["extra_data"] = {"extra_pnginfo": {"workflow": ui_workflow}}
    ws_url = _endpoint(base, "/ws").with_scheme("wss" if base.scheme == "https" else "ws") \
        .with_query(clientId=client_id)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.ws_connect(ws_url, heartbeat=30.0) as ws:
                async with session.post(_endpoint(base, "/prompt"), json=body) as response:
                    answer = await _json(response)
                if response.status in (400, 413):  # invalid, or over the server's size limits
                    return SubmitOutcome(EXIT_INVALID, rejection=answer)
                if response.status != 200 or "prompt_id" not in answer:
                    raise SubmitError(f"POST /prompt answered {response.status}: {answer}")
                prompt_id = answer["prompt_id"]
                final = await _follow(ws, prompt_id, on_event)
            return await _finish(session, base, prompt_id, final)
    except aiohttp.WSServerHandshakeError as err:
        raise SubmitError(f"the WebSocket was refused ({err.status}): is the token right?") from None
    except aiohttp.ClientError as err:
        raise SubmitError(f"cannot talk to {base}: {err}") from None


async def _json(response: aiohttp.ClientResponse) -> Any:
    text = await response.text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"error": {"message": text.strip() or response.reason}}


async def _follow(
    ws: aiohttp.ClientWebSocketResponse[Any], prompt_id: str, on_event: Callable[[Event], None] | None
) -> Event | None:
    """Pass this prompt's messages to ``on_event`` until it ends; None if the socket closed."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # binary preview frames: a terminal has nowhere to show them
        message = json.loads(msg.data)
        data = message.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            continue
        event = Event(message.get("type", ""), data)
        if on_event is not None:
            on_event(event)
        if event.type in _TERMINAL:
            return event
    return None


async def _finish(session: aiohttp.ClientSession, base: URL, prompt_id: str, final: Event | None) -> SubmitOutcome:
    """Read the history entry (waiting for it if the socket closed before the end)."""
    while True:
        async with session.get(_endpoint(base, f"/history/{prompt_id}")) as response:
            history = await _json(response)
        entry = history.get(prompt_id) if response.status == 200 else None
        if entry is not None:
            break
        await asyncio.sleep(_POLL_SECONDS)
    status = entry.get("status") or {}
    outputs = entry.get("outputs") or {}
    if status.get("status_str") == "success":
        return SubmitOutcome(EXIT_OK, prompt_id, outputs=outputs)
    error = {"kind": final.type, **final.data} if final is not None and final.type in _TERMINAL - {
        "execution_success"} else None
    if error is None:
        for kind, data in status.get("messages") or []:
            if kind in ("execution_error", "execution_interrupted"):
                error = {"kind": kind, **data}
    return SubmitOutcome(EXIT_RUNTIME, prompt_id, error=error or {}, outputs=outputs)
