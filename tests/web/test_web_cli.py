"""``latentgraph submit`` against a live test server: exit codes 0, 2 and 1, overrides, token."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from latentgraph.cli import main as cli_main
from web_helpers import fail_graph, save_graph

pytestmark = pytest.mark.asyncio


def write(tmp_path: Path, graph: dict, name: str = "wf.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(graph))
    return str(path)


async def submit(*args: str) -> int:
    # The CLI runs its own event loop; give it a thread so the test server keeps serving.
    return await asyncio.to_thread(cli_main, ["submit", *args])


async def test_submit_success_prints_outputs(client, tmp_path, data_dir, capsys):
    code = await submit(write(tmp_path, save_graph()), "--server", str(client.make_url("")),
                        "--set", "1.color=255", "--set", "2.filename_prefix=\"cli/run\"")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "wrote output/cli/run_00001_.png" in out
    history = await (await client.get("/history")).json()
    (entry,) = history.values()
    assert entry["prompt"][2]["1"]["inputs"]["color"] == 255
    assert (data_dir / "output" / "cli" / "run_00001_.png").is_file()


async def test_submit_validation_error_exits_2(client, tmp_path, capsys):
    graph = save_graph()
    graph["1"]["inputs"]["width"] = 0
    code = await submit(write(tmp_path, graph), "--server", str(client.make_url("")))
    err = capsys.readouterr().err
    assert code == 2
    assert "node 1 (LG_EmptyImage), input 'width'" in err


async def test_submit_execution_error_exits_1(client, tmp_path, capsys):
    code = await submit(write(tmp_path, fail_graph()), "--server", str(client.make_url("")))
    err = capsys.readouterr().err
    assert code == 1
    assert "node 2 (LG_WebTestFail) failed: InputError" in err


async def test_submit_with_token(make_client, tmp_path, capsys):
    client = await make_client(auth_token="tok-123")
    workflow = write(tmp_path, save_graph())
    assert await submit(workflow, "--server", str(client.make_url("")), "--token", "tok-123") == 0
    assert await submit(workflow, "--server", str(client.make_url(""))) == 1
    assert "token" in capsys.readouterr().err


async def test_submit_reports_an_unreachable_server(tmp_path, unused_tcp_port, capsys):
    code = await submit(write(tmp_path, save_graph()), "--server", f"127.0.0.1:{unused_tcp_port}")
    assert code == 1
    assert "cannot talk to" in capsys.readouterr().err


async def test_submit_refuses_a_bad_override(tmp_path, capsys):
    assert await submit(write(tmp_path, save_graph()), "--set", "9.x=1") == 2
