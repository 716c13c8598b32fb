"""Nothing lost: the queue and history outlive the server, whether it stops or is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from latentgraph.web import create_app
from latentgraph.web.queue_store import DataDirInUse, QueuedPrompt, QueueStore
from latentgraph.web.state import STATE
from web_helpers import (
    PATIENCE_S,
    Steps,
    math_graph,
    queue_prompt,
    save_graph,
    wait_for_history,
    wait_until,
)

pytestmark = pytest.mark.asyncio


async def test_queued_prompts_run_after_restart(make_client, data_dir):
    before = await make_client(run_queue=False)
    ids = [(await queue_prompt(before, save_graph(color)))["prompt_id"] for color in (1, 2, 3)]
    urgent = (await queue_prompt(before, save_graph(4), front=True))["prompt_id"]
    await before.close()

    after = await make_client()
    for prompt_id in [urgent, *ids]:
        entry = await wait_for_history(after, prompt_id)
        assert entry["status"]["status_str"] == "success"
        image = entry["outputs"]["2"]["images"][0]
        assert (data_dir / "output" / image["filename"]).is_file()
    history = await (await after.get("/history")).json()
    assert list(history) == [urgent, *ids]  # run in queue order, the front one first
    assert (await (await after.get("/prompt")).json())["exec_info"]["queue_remaining"] == 0


async def test_prompt_left_running_is_requeued(make_client):
    before = await make_client(run_queue=False)
    first = (await queue_prompt(before, math_graph(a=1.0)))["prompt_id"]
    second = (await queue_prompt(before, math_graph(a=2.0)))["prompt_id"]
    store = before.app[STATE].store
    assert store.claim_next().prompt_id == first  # as if a worker had started it, then died
    assert [i.prompt_id for i in store.running()] == [first]
    await before.close()

    after = await make_client()
    for prompt_id in (first, second):
        assert (await wait_for_history(after, prompt_id))["status"]["status_str"] == "success"


async def test_stopping_mid_run_requeues_instead_of_failing(make_client):
    before = await make_client()
    prompt_id = (await queue_prompt(before, math_graph(steps=3, hold_at=1)))["prompt_id"]
    await wait_until(Steps.REACHED.is_set)
    await before.close()  # interrupts the run; the prompt goes back to pending

    Steps.HOLD.set()
    after = await make_client()
    entry = await wait_for_history(after, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert "execution_interrupted" not in [m[0] for m in entry["status"]["messages"]]


async def test_prompt_whose_node_vanished_fails_cleanly(make_client, make_config, aiohttp_client):
    before = await make_client(run_queue=False)
    orphan = (await queue_prompt(before, math_graph()))["prompt_id"]  # uses LG_WebTestSteps
    await before.close()
    after = await aiohttp_client(create_app(make_config()))  # the default nodes only
    ws = await after.ws_connect("/ws")
    fine = (await queue_prompt(after, save_graph()))["prompt_id"]
    entry = await wait_for_history(after, orphan)
    assert entry["status"]["status_str"] == "error"
    kind, error = entry["status"]["messages"][-1]
    assert kind == "execution_error" and error["exception_type"] == "WorkflowInvalid"
    assert error["node_type"] == "LG_WebTestSteps" and error["node_id"] == "3"
    assert (await wait_for_history(after, fine))["status"]["status_str"] == "success"
    await ws.close()


async def test_history_survives_restart(make_client):
    before = await make_client()
    prompt_id = (await queue_prompt(before, math_graph(a=4.0)))["prompt_id"]
    entry = await wait_for_history(before, prompt_id)
    await before.close()
    after = await make_client(run_queue=False)
    assert (await (await after.get(f"/history/{prompt_id}")).json()) == {prompt_id: entry}


async def test_one_server_per_data_dir(tmp_path):
    store = QueueStore(tmp_path / "q.sqlite3")
    with pytest.raises(DataDirInUse):
        QueueStore(tmp_path / "q.sqlite3")
    store.enqueue(QueuedPrompt(1, "p1", {}, {}, []))
    store.close()
    reopened = QueueStore(tmp_path / "q.sqlite3")
    assert [i.prompt_id for i in reopened.pending()] == ["p1"]
    assert reopened.take_number() == 2  # numbering continues past what is stored
    reopened.close()


async def test_history_keeps_the_newest_entries(tmp_path):
    from latentgraph.web.queue_store import RunOutcome

    store = QueueStore(tmp_path / "q.sqlite3", history_limit=3)
    for index in range(5):
        store.enqueue(QueuedPrompt(index + 1, f"p{index}", {}, {}, []))
        assert store.claim_next().prompt_id == f"p{index}"
        store.finish(f"p{index}", RunOutcome({}, "success", True, []))
    assert list(store.history()) == ["p2", "p3", "p4"]
    assert store.remaining() == 0
    store.close()


# The tables as the first release wrote them (schema version 1), frozen here on purpose.
V1_SCHEMA = """
CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, prompt_id TEXT NOT NULL UNIQUE, number REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running')), prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL, outputs_to_execute TEXT NOT NULL, queued_at REAL NOT NULL);
CREATE INDEX queue_order ON queue (state, number, seq);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, prompt_id TEXT NOT NULL UNIQUE, number REAL NOT NULL,
    prompt TEXT NOT NULL, extra_data TEXT NOT NULL, outputs_to_execute TEXT NOT NULL,
    outputs TEXT NOT NULL, status TEXT NOT NULL, finished_at REAL NOT NULL);
PRAGMA user_version=1;
"""


def _v1_status(ok: bool, start: int, end: int) -> str:
    last = "execution_success" if ok else "execution_error"
    return json.dumps({"status_str": "success" if ok else "error", "completed": ok,
                       "messages": [["execution_start", {"timestamp": start}], [last, {"timestamp": end}]]})


async def test_a_version_1_database_is_migrated_in_place(data_dir, make_client):
    data_dir.mkdir(parents=True)
    path = data_dir / "latentgraph.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    rows = [("old", {"create_time": 500, "extra_pnginfo": {"workflow": {"id": "wf"}}}, True, 1000, 1300),
            ("older", {}, False, 200, 250),  # no create_time: the run's start stands in
            ("newest", {"create_time": 900}, True, 2000, 2001)]
    for number, (prompt_id, extra, ok, start, end) in enumerate(rows, 1):
        db.execute("INSERT INTO history (prompt_id, number, prompt, extra_data, outputs_to_execute, outputs,"
                   " status, finished_at) VALUES (?, ?, '{}', ?, '[]', '{}', ?, 0)",
                   (prompt_id, number, json.dumps(extra), _v1_status(ok, start, end)))
    db.commit()
    db.close()

    client = await make_client(run_queue=False)
    jobs = await (await client.get("/api/jobs", params={"limit": "2"})).json()
    assert [j["id"] for j in jobs["jobs"]] == ["newest", "old"] and jobs["pagination"]["total"] == 3
    failed = await (await client.get("/api/jobs", params={"status": "failed"})).json()
    assert [(j["id"], j["create_time"]) for j in failed["jobs"]] == [("older", 200)]
    longest = await (await client.get("/api/jobs", params={"sort_by": "execution_duration", "limit": "1"})).json()
    assert longest["jobs"][0]["id"] == "old"
    by_workflow = await (await client.get("/api/jobs", params={"workflow_id": "wf"})).json()
    assert [j["id"] for j in by_workflow["jobs"]] == ["old"]
    assert list(await (await client.get("/history")).json()) == ["old", "older", "newest"]  # untouched

    check = sqlite3.connect(path)  # beside the running server (WAL): what the migration left
    assert check.execute("PRAGMA user_version").fetchone()[0] == 2
    for column in ("create_time", "duration"):
        plan = " ".join(row[3] for row in check.execute(
            f"EXPLAIN QUERY PLAN SELECT {column}, seq FROM history WHERE job_status IN ('failed')"
            f" ORDER BY {column} DESC, seq DESC LIMIT 5 OFFSET 5"))
        assert f"COVERING INDEX history_by_{column}" in plan and "TEMP B-TREE" not in plan, plan
    check.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "latentgraph", "serve", "--port", str(port), "--data-dir", str(data_dir),
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def _wait_ready(session: aiohttp.ClientSession, url: str, process: subprocess.Popen[bytes]) -> None:
    async def poll() -> None:
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            try:
                async with session.get(f"{url}/prompt") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), PATIENCE_S)


async def test_killed_server_process_loses_nothing(tmp_path):
    """SIGKILL a real server with prompts queued; the next one finishes every one of them."""
    data_dir, port = tmp_path / "data", _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start_server(data_dir, port)
    ids: list[str] = []
    async with aiohttp.ClientSession() as session:
        try:
            await _wait_ready(session, url, process)
            # A big first prompt keeps the worker busy, so the kill most likely finds one prompt
            # running and the rest pending (the test holds either way).
            big = save_graph(0, size=2048)
            big["1"]["inputs"]["batch_size"] = 4
            for graph in [big, *(save_graph(color, size=64) for color in range(1, 40))]:
                async with session.post(f"{url}/prompt", json={"prompt": graph}) as response:
                    ids.append((await response.json())["prompt_id"])
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            if process.stdout:
                process.stdout.close()

        process = _start_server(data_dir, port)
        try:
            await _wait_ready(session, url, process)

            async def all_done() -> dict:
                while True:
                    async with session.get(f"{url}/history") as response:
                        history = await response.json()
                    if set(ids) <= set(history):
                        return history
                    await asyncio.sleep(0.1)

            history = await asyncio.wait_for(all_done(), PATIENCE_S)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=PATIENCE_S)
            if process.stdout:
                process.stdout.close()
    assert all(history[i]["status"]["status_str"] == "success" for i in ids)
    files = {image["filename"] for i in ids for image in history[i]["outputs"]["2"]["images"]}
    assert len(files) == len(ids) + 3 and all((data_dir / "output" / f).is_file() for f in files)
