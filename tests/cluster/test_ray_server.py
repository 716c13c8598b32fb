"""``serve --ray``: the server's queue runs on the cluster's workers and its clients hear the
workers' events, previews and files as from a local run; an interrupt reaches the worker; a
cluster that cannot be reached is logged and the server runs prompts itself."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from aiohttp import WSMsgType
from cluster_helpers import GRAPHS, RAY_TIMEOUT_S, shapes_prompt
from latentgraph.web import ServerConfig, create_app
from latentgraph.web.cluster_runner import ClusterRunner
from latentgraph.web.runner import PromptRunner
from latentgraph.web.state import STATE

pytestmark = [pytest.mark.asyncio, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

ENDS = ("execution_success", "execution_error", "execution_interrupted")


async def queue(client, prompt: dict, client_id: str = "alice") -> str:
    response = await client.post("/prompt", json={"prompt": prompt, "client_id": client_id})
    assert response.status == 200, await response.text()
    return (await response.json())["prompt_id"]


async def until_end(ws, prompt_id: str) -> list:
    """Messages (dicts, and bytes for preview frames) up to the end of ``prompt_id``."""
    messages: list = []

    async def collect() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                messages.append(msg.data)
                continue
            data = json.loads(msg.data)
            messages.append(data)
            if data["type"] in ENDS and data["data"].get("prompt_id") == prompt_id:
                return

    await asyncio.wait_for(collect(), RAY_TIMEOUT_S)
    return messages


async def wait_for(condition, timeout: float = RAY_TIMEOUT_S) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def history(client, prompt_id: str) -> dict:
    for _ in range(RAY_TIMEOUT_S * 20):
        entry = (await (await client.get(f"/history/{prompt_id}")).json()).get(prompt_id)
        if entry is not None:
            return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prompt_id} never reached the history")


async def test_the_queue_runs_on_the_cluster(local_ray, aiohttp_client, tmp_path: Path):
    config = ServerConfig(data_dir=tmp_path, device="cpu", ray_address="auto", ray_workers=2,
                          shutdown_grace_s=5.0)
    app = create_app(config)
    client = await aiohttp_client(app)
    assert isinstance(app[STATE].runner, ClusterRunner) and app[STATE].runner.cluster.alive == 2
    ws = await client.ws_connect("/ws?clientId=alice")

    prompt_id = await queue(client, shapes_prompt(seed=5))
    messages = await until_end(ws, prompt_id)
    events = [m for m in messages if isinstance(m, dict) and m["type"] != "status"]
    kinds = [m["type"] for m in events]
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
    assert {"executing", "progress", "executed"} <= set(kinds)
    assert any(isinstance(m, bytes) for m in messages)  # the sampler's previews, from the worker
    assert all(m["data"]["prompt_id"] == prompt_id for m in events)
    shown = next(m["data"]["output"] for m in events if m["type"] == "executed")
    entry = await history(client, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["7"] == shown == {"images": [
        {"filename": "shapes_sd_00001_.png", "subfolder": "", "type": "output"}]}
    view = await client.get("/view", params={"filename": "shapes_sd_00001_.png", "type": "output"})
    assert view.status == 200 and (await view.read()).startswith(b"\x89PNG")

    # the same prompt again: its worker has it all cached and names the same file, as locally
    again = await queue(client, shapes_prompt(seed=5))
    kinds = [m["type"] for m in await until_end(ws, again) if isinstance(m, dict)]
    assert "execution_cached" in kinds and "progress" not in kinds
    assert (await history(client, again))["outputs"]["7"] == shown
    assert len(list((tmp_path / "output").iterdir())) == 1

    # several at once; each file gets a name of its own in the server's folder
    ids = [await queue(client, shapes_prompt(seed=s)) for s in (6, 7, 8)]
    entries = [await history(client, pid) for pid in ids]
    assert [e["status"]["status_str"] for e in entries] == ["success"] * 3
    names = {e["outputs"]["7"]["images"][0]["filename"] for e in entries}
    assert names == {"shapes_sd_00002_.png", "shapes_sd_00003_.png", "shapes_sd_00004_.png"}

    # an interrupt reaches the prompt on its worker
    long = await queue(client, shapes_prompt(seed=9, steps=400))
    while True:
        message = await asyncio.wait_for(ws.receive(), RAY_TIMEOUT_S)
        if message.type == WSMsgType.TEXT and json.loads(message.data)["type"] == "progress":
            break
    assert (await client.post("/interrupt", json={"prompt_id": long})).status == 200
    assert (await until_end(ws, long))[-1]["type"] == "execution_interrupted"
    assert (await history(client, long))["status"]["status_str"] == "error"

    # a worker killed under its prompt: the prompt goes back to the queue and completes elsewhere
    runner = app[STATE].runner
    doomed = await queue(client, shapes_prompt(seed=10, steps=20))
    await wait_for(lambda: any(doomed in w.in_flight for w in runner.cluster.router.workers.values()))
    victim = next(n for n, w in runner.cluster.router.workers.items() if doomed in w.in_flight)
    local_ray.kill(runner.cluster.actors[victim])
    assert (await history(client, doomed))["status"]["status_str"] == "success"
    assert victim not in runner.cluster.actors and runner.cluster.alive == 1

    # the last one killed too: its next prompt finds it dead, and the server runs it itself
    local_ray.kill(next(iter(runner.cluster.actors.values())))
    alone = await queue(client, json.loads((GRAPHS / "core_demo.json").read_text()))
    entry = await history(client, alone)
    assert entry["status"]["status_str"] == "success" and runner.cluster.alive == 0
    assert entry["outputs"]["4"]["images"][0]["filename"] == "core_demo_00001_.png"
    names = sorted(p.name for p in (tmp_path / "output").iterdir())
    # every prompt that succeeded left one file: none lost with its worker, none written twice
    assert names == ["core_demo_00001_.png", *(f"shapes_sd_{i:05d}_.png" for i in range(1, 6))]


async def test_an_unreachable_cluster_is_logged_and_the_server_runs_prompts_itself(
        local_ray, aiohttp_client, tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(local_ray, "is_initialized", lambda: False)  # as a fresh process
    caplog.set_level(logging.ERROR, logger="latentgraph.web.cluster_runner")
    app = create_app(ServerConfig(data_dir=tmp_path, device="cpu", ray_address="127.0.0.1:1"))
    client = await aiohttp_client(app)
    runner = app[STATE].runner
    assert type(runner) is PromptRunner
    assert ("--ray 127.0.0.1:1: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused; "
            "running prompts on this server") in caplog.text
    prompt_id = await queue(client, json.loads((GRAPHS / "core_demo.json").read_text()))
    assert (await history(client, prompt_id))["status"]["status_str"] == "success"
