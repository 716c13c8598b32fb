"""The WebSocket's messages for a run, a cached re-run, an error, an interrupt; previews; and
clients that come and go while a prompt runs."""

from __future__ import annotations

import asyncio
import struct

import pytest
from web_helpers import (
    Steps,
    ends,
    fail_graph,
    kinds,
    math_graph,
    queue_prompt,
    receive_until,
    wait_for_history,
    wait_until,
)

pytestmark = pytest.mark.asyncio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_run_then_cached_rerun_sequence(client):
    ws = await client.ws_connect("/ws?clientId=alice")
    hello = (await receive_until(ws, ends("status")))[0]
    assert hello["data"] == {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "alice"}

    prompt_id = (await queue_prompt(client, math_graph(steps=2), client_id="alice"))["prompt_id"]
    messages = await receive_until(ws, ends("execution_success"))
    assert kinds(messages) == [
        "execution_start", "executing", "executing", "executing",
        "progress", "binary", "progress", "binary",
        "executed", "executing", "execution_success",
    ]
    events = [m for m in messages if isinstance(m, dict) and m["type"] != "status"]
    assert all(m["data"]["prompt_id"] == prompt_id for m in events)
    assert [m["data"]["node"] for m in events if m["type"] == "executing"] == ["1", "2", "3", None]
    progress = [m["data"] for m in events if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 2, "3"), (2, 2, "3")]
    assert "preview" not in progress[0]
    executed = next(m["data"] for m in events if m["type"] == "executed")
    assert executed["node"] == "3" and executed["output"] == {"value": [30.0]}
    frame = next(m for m in messages if isinstance(m, bytes))
    assert struct.unpack(">II", frame[:8]) == (1, 2) and frame[8:16] == PNG_SIGNATURE
    statuses = [m["data"]["status"]["exec_info"]["queue_remaining"] for m in messages
                if isinstance(m, dict) and m["type"] == "status"]
    assert statuses[0] == 1

    again = (await queue_prompt(client, math_graph(steps=2), client_id="alice"))["prompt_id"]
    messages = await receive_until(ws, ends("execution_success", again))
    assert kinds(messages) == ["execution_start", "execution_cached", "executed", "executing", "execution_success"]
    cached = next(m["data"] for m in messages if m["type"] == "execution_cached")
    assert cached["nodes"] == ["3"]
    executed = next(m["data"] for m in messages if m["type"] == "executed")
    assert executed["output"] == {"value": [30.0]}  # the editor shows cached outputs again
    entry = await wait_for_history(client, again)
    assert entry["outputs"] == {"3": {"value": [30.0]}}
    await ws.close()


async def test_error_sequence(client):
    ws = await client.ws_connect("/api/ws?clientId=bob")
    await receive_until(ws, ends("status"))
    prompt_id = (await queue_prompt(client, fail_graph(), client_id="bob"))["prompt_id"]
    messages = await receive_until(ws, lambda m: isinstance(m, dict) and m["type"] == "executing"
                                   and m["data"]["node"] is None)
    assert kinds(messages) == ["execution_start", "executing", "executing", "execution_error", "executing"]
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert error["prompt_id"] == prompt_id and error["node_id"] == "2" and error["node_type"] == "LG_WebTestFail"
    assert error["exception_type"] == "InputError" and "refusing 4.0" in error["exception_message"]
    await ws.close()


async def test_interrupt_stops_the_run_and_the_queue_goes_on(client):
    ws = await client.ws_connect("/ws?clientId=carol")
    held = (await queue_prompt(client, math_graph(steps=3, hold_at=1), client_id="carol"))["prompt_id"]
    behind = (await queue_prompt(client, math_graph(a=5.0), client_id="carol"))["prompt_id"]
    await wait_until(Steps.REACHED.is_set)
    queue = await (await client.get("/queue")).json()  # the server answers while a prompt runs
    assert [item[1] for item in queue["queue_running"]] == [held]
    assert [item[1] for item in queue["queue_pending"]] == [behind]
    assert (await client.post("/interrupt", json={"prompt_id": behind})).status == 200  # not running: no-op
    assert (await client.post("/api/interrupt", json={"prompt_id": held})).status == 200
    messages = await receive_until(ws, ends("execution_interrupted", held))
    interrupted = messages[-1]["data"]
    assert interrupted["node_id"] == "3" and interrupted["executed"] == ["1", "2"]
    entry = await wait_for_history(client, held)
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert (await wait_for_history(client, behind))["status"]["status_str"] == "success"
    await ws.close()


async def test_client_that_disconnects_mid_run_breaks_nothing(client):
    ws = await client.ws_connect("/ws?clientId=dave")
    prompt_id = (await queue_prompt(client, math_graph(steps=3, hold_at=1), client_id="dave"))["prompt_id"]
    await wait_until(Steps.REACHED.is_set)
    await ws.close()
    Steps.HOLD.set()
    assert (await wait_for_history(client, prompt_id))["status"]["status_str"] == "success"
    follow_up = (await queue_prompt(client, math_graph(a=7.0), client_id="dave"))["prompt_id"]
    assert (await wait_for_history(client, follow_up))["status"]["status_str"] == "success"


async def test_reconnecting_client_hears_the_running_node(client):
    first = await client.ws_connect("/ws?clientId=erin")
    prompt_id = (await queue_prompt(client, math_graph(steps=2, hold_at=0), client_id="erin"))["prompt_id"]
    await receive_until(first, lambda m: isinstance(m, dict) and m["type"] == "executing"
                        and m["data"]["node"] == "3")
    await first.close()
    again = await client.ws_connect("/ws?clientId=erin")
    greeting = await receive_until(again, ends("executing"))
    assert greeting[0]["type"] == "status" and greeting[0]["data"]["status"]["exec_info"]["queue_remaining"] == 1
    assert greeting[-1]["data"] == {"node": "3", "display_node": "3", "prompt_id": prompt_id}
    Steps.HOLD.set()
    await receive_until(again, ends("execution_success", prompt_id))
    await again.close()


async def test_events_go_to_their_client_and_anonymous_prompts_to_all(client):
    frank = await client.ws_connect("/ws?clientId=frank")
    grace = await client.ws_connect("/ws?clientId=grace")
    own = (await queue_prompt(client, math_graph(a=11.0), client_id="frank"))["prompt_id"]
    anonymous = (await queue_prompt(client, math_graph(a=12.0)))["prompt_id"]
    frank_saw = await receive_until(frank, ends("execution_success", anonymous))
    grace_saw = await receive_until(grace, ends("execution_success", anonymous))
    assert any(isinstance(m, dict) and m["data"].get("prompt_id") == own for m in frank_saw)
    assert not any(isinstance(m, dict) and m["data"].get("prompt_id") == own for m in grace_saw)
    await asyncio.gather(frank.close(), grace.close())


async def test_feature_flags_handshake_and_generated_client_id(client):
    ws = await client.ws_connect("/ws")
    hello = (await receive_until(ws, ends("status")))[0]
    assert len(hello["data"]["sid"]) == 32
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": False}})
    flags = (await receive_until(ws, ends("feature_flags")))[-1]
    assert "max_upload_size" in flags["data"]
    await ws.close()


async def test_status_settles_on_the_final_queue_length(paused_client):
    ws = await paused_client.ws_connect("/ws?clientId=henry")
    await receive_until(ws, ends("status"))
    for value in range(6):  # faster than the status interval: most changes are folded together
        await queue_prompt(paused_client, math_graph(a=float(value)))
    messages = await receive_until(ws, lambda m: isinstance(m, dict) and m["type"] == "status"
                                   and m["data"]["status"]["exec_info"]["queue_remaining"] == 6)
    counts = [m["data"]["status"]["exec_info"]["queue_remaining"] for m in messages]
    assert counts == sorted(counts)
    await ws.close()


async def test_slow_client_loses_previews_first_then_its_connection():
    from latentgraph.web.ws import Connection

    class StuckSocket:
        closed_with: int | None = None

        async def close(self, code: int) -> bool:
            self.closed_with = code
            return True

    socket = StuckSocket()
    conn = Connection("slow", socket, outbox_size=4)  # type: ignore[arg-type]
    for _ in range(3):
        conn.offer(b"preview", droppable=True)
    assert conn.outbox.qsize() == 2  # previews stop at half the outbox
    for index in range(3):
        conn.offer(f"event {index}")
    assert conn.outbox.qsize() == 4 and conn.overflowed
    await conn.closing
    assert socket.closed_with is not None
