"""The server on a CUDA device (skipped without one): the GPU in /system_stats, previews
rendered from GPU tensors, images saved from GPU tensors, /free emptying the CUDA cache."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from web_helpers import ends, math_graph, queue_prompt, receive_until, save_graph, wait_for_history

pytestmark = [pytest.mark.asyncio,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


async def test_server_runs_on_cuda(make_client, data_dir):
    client = await make_client(device="cuda")
    stats = await (await client.get("/system_stats")).json()
    device = stats["devices"][0]
    assert device["type"] == "cuda" and device["vram_total"] > device["vram_free"] > 0

    ws = await client.ws_connect("/ws?clientId=gpu")
    prompt_id = (await queue_prompt(client, math_graph(steps=2), client_id="gpu"))["prompt_id"]
    messages = await receive_until(ws, ends("execution_success", prompt_id))
    frames = [m for m in messages if isinstance(m, bytes)]
    assert len(frames) == 2 and frames[0][8:16] == b"\x89PNG\r\n\x1a\n"

    saved = await wait_for_history(client, (await queue_prompt(client, save_graph(0x102030, size=64)))["prompt_id"])
    image = saved["outputs"]["2"]["images"][0]
    with Image.open(data_dir / "output" / image["filename"]) as img:
        assert img.size == (64, 64) and img.getpixel((5, 5)) == (0x10, 0x20, 0x30)
    assert (await client.post("/free", json={"unload_models": True, "free_memory": True})).status == 200
    await ws.close()
