"""Server throughput: many small prompts from concurrent clients against a real server process.

Starts ``latentgraph serve`` on a free loopback port with a temporary data directory (or uses
``--server URL``), then runs ``--clients`` clients at once. Each client keeps its WebSocket open
and submits its share of ``--prompts`` one after another (closed loop: the next prompt goes when
the previous one finished), so ``--clients`` prompts are in flight at any time. Every prompt is
LG_EmptyImage (8x8, a colour of its own so nothing is served from the cache) -> LG_SaveImage.

At the end it checks that nothing was lost: every prompt id is in /history with status
success and its PNG is on disk, and the queue is empty. Prints one table:

    python bench/server.py [--prompts 1000] [--clients 20] [--device cpu|cuda] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp


@dataclass
class ClientStats:
    submit_s: list[float] = field(default_factory=list)  # POST /prompt round trip
    complete_s: list[float] = field(default_factory=list)  # POST sent -> execution_success received
    prompt_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def graph(client: int, index: int) -> dict:
    color = (client * 7919 + index * 104729) % 0xFFFFFF
    return {
        "1": {"class_type": "LG_EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "LG_SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"bench/c{client:02d}"}},
    }


async def run_client(url: str, client: int, count: int, stats: ClientStats) -> None:
    client_id = f"bench-{client}-{uuid.uuid4().hex[:8]}"
    ws_url = url.replace("http://", "ws://", 1) + f"/ws?clientId={client_id}"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        for index in range(count):
            started = time.perf_counter()
            async with session.post(f"{url}/prompt", json={"prompt": graph(client, index), "client_id": client_id}) as r:
                answer = await r.json()
            stats.submit_s.append(time.perf_counter() - started)
            if r.status != 200:
                stats.failures.append(json.dumps(answer))
                continue
            prompt_id = answer["prompt_id"]
            stats.prompt_ids.append(prompt_id)
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                message = json.loads(msg.data)
                data = message.get("data") or {}
                if data.get("prompt_id") != prompt_id:
                    continue
                if message["type"] == "execution_success":
                    stats.complete_s.append(time.perf_counter() - started)
                    break
                if message["type"] in ("execution_error", "execution_interrupted"):
                    stats.failures.append(f"{prompt_id}: {message['type']}")
                    break
            else:
                stats.failures.append(f"{prompt_id}: the WebSocket closed")
                return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_ready(url: str, process: subprocess.Popen | None) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            try:
                async with session.get(f"{url}/prompt") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the server did not come up within 60 s")


async def verify(url: str, ids: list[str], data_dir: Path | None) -> tuple[int, int, int]:
    """(in history with success, PNGs on disk, still queued) for the submitted ids."""
    history: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        while True:  # page by page, oldest first: one answer holds at most history_page_limit
            params = {"max_items": "1000", "offset": str(len(history))}
            async with session.get(f"{url}/history", params=params) as response:
                page = await response.json()
            if not page or set(page) <= set(history):
                break
            history.update(page)
        async with session.get(f"{url}/prompt") as response:
            remaining = (await response.json())["exec_info"]["queue_remaining"]
    succeeded = [i for i in ids if history.get(i, {}).get("status", {}).get("status_str") == "success"]
    on_disk = 0
    for prompt_id in succeeded:
        for image in history[prompt_id]["outputs"]["2"]["images"]:
            if data_dir is None or (data_dir / "output" / image["subfolder"] / image["filename"]).is_file():
                on_disk += 1
    return len(succeeded), on_disk, remaining


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def bench(args: argparse.Namespace) -> int:
    process = None
    data_dir: Path | None = None
    temp = None
    url = args.server.rstrip("/") if args.server else None
    if url is None:
        temp = tempfile.TemporaryDirectory(prefix="latentgraph-bench-")
        data_dir = Path(temp.name)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "latentgraph", "serve", "--port", str(port), "--data-dir", str(data_dir),
             "--device", args.device], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await wait_ready(url, process)
        per_client = [args.prompts // args.clients + (1 if c < args.prompts % args.clients else 0)
                      for c in range(args.clients)]
        stats = [ClientStats() for _ in range(args.clients)]
        started = time.perf_counter()
        await asyncio.gather(*(run_client(url, c, n, s) for c, (n, s) in enumerate(zip(per_client, stats, strict=True))))
        wall = time.perf_counter() - started
        ids = [i for s in stats for i in s.prompt_ids]
        succeeded, on_disk, remaining = await verify(url, ids, data_dir)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if temp is not None:
            temp.cleanup()

    submit = [x for s in stats for x in s.submit_s]
    complete = [x for s in stats for x in s.complete_s]
    failures = [f for s in stats for f in s.failures]
    lost = args.prompts - succeeded
    rows = [
        ("prompts submitted", f"{len(ids)} / {args.prompts}"),
        ("concurrent clients", f"{args.clients}"),
        ("completed (history: success)", f"{succeeded}"),
        ("outputs on disk", f"{on_disk}" if data_dir is not None else "n/a (external server)"),
        ("lost", f"{lost}"),
        ("still queued at the end", f"{remaining}"),
        ("failures reported", f"{len(failures)}"),
        ("wall time", f"{wall:.2f} s"),
        ("prompts completed / s", f"{len(complete) / wall:.1f}"),
        ("POST /prompt requests / s", f"{len(submit) / wall:.1f}"),
        ("submit latency p50 / p99", f"{percentile(submit, 50) * 1e3:.1f} / {percentile(submit, 99) * 1e3:.1f} ms"),
        ("end-to-end latency p50 / p99", f"{percentile(complete, 50) * 1e3:.1f} / {percentile(complete, 99) * 1e3:.1f} ms"),
        ("end-to-end latency mean", f"{statistics.fmean(complete) * 1e3:.1f} ms" if complete else "n/a"),
    ]
    width = max(len(name) for name, _ in rows)
    where = f"spawned on {url}, device {args.device}" if process else url
    print(f"latentgraph server bench ({where}, {os.cpu_count()} CPUs)")
    print("-" * (width + 28))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 28))
    for failure in failures[:10]:
        print(f"failure: {failure}")
    return 0 if lost == 0 and not failures and remaining == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="device of the spawned server (default cpu)")
    parser.add_argument("--server", help="use a running server instead of starting one (its data dir is not checked)")
    args = parser.parse_args()
    if args.clients < 1 or args.prompts < args.clients:
        parser.error("need at least one client and at least one prompt per client")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
