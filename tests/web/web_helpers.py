"""Nodes and helpers for the server's tests: graphs of core nodes, a slow/progress node, a
failing node, and waiting on the server without asserting anything about time."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import torch
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from graph_helpers import Graph, save_image_graph
from latentgraph.executor import Input, InputError, Inputs, Node, NodeRegistry, Outputs
from latentgraph.nodes import default_registry

# Generous upper bounds for waiting; a test never asserts how long anything took.
PATIENCE_S = 60.0


class Steps(Node):
    """Reports `steps` progress events, each with an IMAGE preview; at step `hold_at` it waits
    for HOLD (checking for interruption) so a test can act while it runs."""

    class_type = "LG_WebTestSteps"
    output_node = True
    HOLD = threading.Event()
    REACHED = threading.Event()

    class In(Inputs):
        value: float = 0.0
        steps: int = Input(2, ge=1)
        hold_at: int = -1

    class Out(Outputs):
        value: float

    def run(self, x: In) -> Out:
        for i in range(x.steps):
            if i == x.hold_at:
                Steps.REACHED.set()
                while not Steps.HOLD.wait(0.01):
                    self.ctx.check_interrupted()
            self.ctx.progress(i + 1, x.steps,
                              preview=lambda: torch.full((1, 6, 4, 3), 0.5, device=self.ctx.device))
        self.ui = {"value": [x.value]}
        return self.Out(value=x.value)


class Fail(Node):
    """An output node that always raises (for execution_error)."""

    class_type = "LG_WebTestFail"
    output_node = True

    class In(Inputs):
        value: float = 0.0

    class Out(Outputs):
        pass

    def run(self, x: In) -> Out:
        raise InputError("value", f"refusing {x.value}")


def web_registry() -> NodeRegistry:
    return NodeRegistry([*default_registry(), Steps, Fail])


def reset_nodes() -> None:
    Steps.HOLD.clear()
    Steps.REACHED.clear()


# --- graphs ------------------------------------------------------------------------------------

def save_graph(color: int = 0x336699, prefix: str = "web", size: int = 8) -> dict[str, Any]:
    return save_image_graph(prefix, width=size, height=size, color=color)


def math_graph(a: float = 1.0, b: float = 2.0, steps: int = 2, hold_at: int = -1) -> dict[str, Any]:
    """LG_FloatMath -> LG_FloatMath -> LG_WebTestSteps (the output node)."""
    g = Graph()
    first = g.node("LG_FloatMath", id="1", a=a, b=b, op="add")
    second = g.node("LG_FloatMath", id="2", a=first, b=10.0, op="mul")
    g.node("LG_WebTestSteps", id="3", value=second, steps=steps, hold_at=hold_at)
    return g.build()


def fail_graph(value: float = 3.0) -> dict[str, Any]:
    g = Graph()
    first = g.node("LG_FloatMath", id="1", a=value, b=1.0, op="add")
    g.node("LG_WebTestFail", id="2", value=first)
    return g.build()


# --- talking to the server ---------------------------------------------------------------------

async def queue_prompt(client: TestClient, graph: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = await client.post("/prompt", json={"prompt": graph, **body})
    answer = await response.json()
    assert response.status == 200, answer
    return answer


async def wait_for_history(client: TestClient, prompt_id: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            response = await client.get(f"/history/{prompt_id}")
            entry = (await response.json()).get(prompt_id)
            if entry is not None:
                return entry
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), PATIENCE_S)


async def wait_until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), PATIENCE_S)


Message = dict[str, Any] | bytes


async def receive_until(ws: Any, done: Callable[[Message], bool]) -> list[Message]:
    """Messages (JSON as dicts, binary frames as bytes) up to and including the first ``done``."""
    received: list[Message] = []

    async def read() -> list[Message]:
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                item: Message = json.loads(msg.data)
            elif msg.type == WSMsgType.BINARY:
                item = msg.data
            else:
                raise AssertionError(f"the socket closed: {msg}")
            received.append(item)
            if done(item):
                return received

    return await asyncio.wait_for(read(), PATIENCE_S)


def ends(kind: str, prompt_id: str | None = None) -> Callable[[Message], bool]:
    def check(item: Message) -> bool:
        return isinstance(item, dict) and item["type"] == kind and (
            prompt_id is None or item["data"].get("prompt_id") == prompt_id)

    return check


def kinds(messages: list[Message], skip_status: bool = True) -> list[str]:
    return [("binary" if isinstance(m, bytes) else m["type"]) for m in messages
            if not (skip_status and isinstance(m, dict) and m["type"] == "status")]
