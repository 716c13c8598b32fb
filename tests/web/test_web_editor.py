"""The editor's routes: the pinned frontend, users, settings, userdata (with its confinement),
templates from graphs/, the jobs API and the startup stubs."""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from graph_helpers import one_node
from latentgraph.executor.workflow import parse_api, ui_to_api
from latentgraph.web import queue_store
from latentgraph.web.queue_store import QueuedPrompt, QueueStore, RunOutcome
from latentgraph.web.routes_editor import GRAPHS_DIR, frontend_root, load_templates
from latentgraph.web.routes_jobs import history_job
from web_helpers import queue_prompt, save_graph, wait_for_history, web_registry

pytestmark = pytest.mark.asyncio

REPO = Path(__file__).resolve().parents[2]
SECRET = b"TOP-SECRET-CONTENT"


def user_dir(data_dir: Path) -> Path:
    return data_dir / "user" / "default"


# --- the frontend ------------------------------------------------------------------------------

async def test_frontend_version_is_pinned_and_installed():
    pins = re.findall(r'"comfyui-frontend-package([^"]*)"', (REPO / "pyproject.toml").read_text())
    assert len(pins) == 1 and re.fullmatch(r"==\d+\.\d+\.\d+", pins[0]), pins
    assert version("comfyui-frontend-package") == pins[0][2:]
    assert frontend_root() is not None


async def test_index_and_assets_are_served(client):
    response = await client.get("/")
    html = await response.text()
    assert response.status == 200 and 'id="vue-app"' in html
    assert response.headers["Cache-Control"] == "no-cache"
    scripts = re.findall(r'src="\./(assets/[^"]+\.js)"', html)
    assert scripts
    for path in (scripts[0], "scripts/app.js", "scripts/api.js", "materialdesignicons.min.css"):
        response = await client.get("/" + path)
        assert response.status == 200, path
        assert len(await response.read()) > 0
    assert (await client.get("/user.css")).headers["Content-Type"].startswith("text/css")
    for escape in ("/assets/..%2F..%2F__init__.py", "/assets/%2E%2E/%2E%2E/__init__.py", "/scripts/..%5C..%5Capp.js"):
        response = await client.get(raw(escape))
        assert response.status in (400, 403, 404), escape
        assert b"importlib" not in await response.read()


async def test_without_the_frontend_package_says_how_to_install_it(aiohttp_client, make_config, monkeypatch,
                                                                     caplog):
    import sys

    from latentgraph.web import create_app

    # The package absent, as after a plain `pip install latentgraph`: importing it fails.
    monkeypatch.setitem(sys.modules, "comfyui_frontend_package", None)
    assert frontend_root() is None
    with caplog.at_level("WARNING", logger="latentgraph.web.routes_editor"):
        client = await aiohttp_client(create_app(make_config(), registry=web_registry()))
    assert any("pip install 'latentgraph[editor]'" in r.getMessage() for r in caplog.records)
    for path in ("/", "/index.html"):
        response = await client.get(path)
        page = await response.text()
        assert response.status == 503 and response.content_type == "text/html", path
        assert "pip install 'latentgraph[editor]'" in page
    assert (await client.get("/api/settings")).status == 200  # the API does not need it
    assert (await client.get("/object_info")).status == 200
    assert (await client.get("/templates/index.json")).status == 200


async def test_another_frontend_version_is_served_with_a_warning(client, make_config, monkeypatch, caplog):
    from latentgraph.web import create_app, routes_editor

    monkeypatch.setattr(routes_editor, "pinned_frontend_version", lambda: "0.0.1")
    with caplog.at_level("WARNING", logger="latentgraph.web.routes_editor"):
        create_app(make_config(), registry=web_registry())
    assert any("0.0.1" in r.getMessage() and "may not work" in r.getMessage() for r in caplog.records)
    assert (await client.get("/")).status == 200


async def test_extensions_list_ours(client):
    scripts = await (await client.get("/api/extensions")).json()
    assert "/extensions/latentgraph/latentgraph.js" in scripts
    assert "/extensions/latentgraph/var_preview.js" in scripts
    for script in scripts:
        response = await client.get(script)
        body = await response.text()
        assert response.status == 200 and "app.registerExtension" in body
        assert 'from "../../scripts/app.js"' in body  # resolves to the frontend's shim
    assert (await client.get("/extensions/core/groupNode.js")).status == 200


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_startup_stubs_have_the_right_shape(client, prefix):
    expected: dict[str, Any] = {
        "/i18n": {}, "/models": [], "/experiment/models": [], "/experiment/models/checkpoints": [],
        "/global_subgraphs": {}, "/node_replacements": {}, "/workflow_templates": {},
        "/templates/index_logo.json": {},
    }
    for path, value in expected.items():
        response = await client.get(prefix + path)
        assert response.status == 200, path
        assert await response.json() == value, path
    assert (await client.get(prefix + "/global_subgraphs/nothing")).status == 404


# --- users and settings ------------------------------------------------------------------------

async def test_users(client, data_dir):
    answer = await (await client.get("/api/users")).json()
    assert answer == {"storage": "server", "migrated": False}
    response = await client.post("/api/users", json={"username": "Ada L."})
    user_id = await response.json()
    assert response.status == 200 and re.fullmatch(r"Ada-L-_[0-9a-f-]{36}", user_id)
    assert json.loads((data_dir / "user" / "users.json").read_text()) == {user_id: "Ada L."}
    duplicate = await client.post("/api/users", json={"username": "Ada L."})
    assert duplicate.status == 400 and "Duplicate" in (await duplicate.json())["error"]
    for body in ({}, {"username": "  "}, {"username": 3}, []):
        assert (await client.post("/users", json=body)).status == 400
    escaping = await (await client.post("/users", json={"username": "../../x"})).json()
    assert "/" not in escaping and ".." not in escaping
    await client.get("/api/settings")
    assert (await (await client.get("/users")).json())["migrated"] is True


async def test_settings_round_trip(client, data_dir):
    defaults = await (await client.get("/api/settings")).json()
    assert defaults["Comfy.Notification.ShowVersionUpdates"] is False
    assert (await client.post("/api/settings", json={"Comfy.A": 1, "Comfy.B": "x"})).status == 200
    assert (await client.post("/api/settings/Comfy.C", json={"nested": [1, 2]})).status == 200
    assert (await client.post("/api/settings", json={"Comfy.A": 2})).status == 200
    settings = await (await client.get("/settings")).json()
    assert settings["Comfy.A"] == 2 and settings["Comfy.B"] == "x" and settings["Comfy.C"] == {"nested": [1, 2]}
    assert await (await client.get("/api/settings/Comfy.C")).json() == {"nested": [1, 2]}
    assert await (await client.get("/api/settings/Comfy.Missing")).json() is None
    assert await (await client.get("/api/settings/Comfy.TutorialCompleted")).json() is True
    stored = json.loads((user_dir(data_dir) / "comfy.settings.json").read_text())
    assert stored == {"Comfy.A": 2, "Comfy.B": "x", "Comfy.C": {"nested": [1, 2]}}
    assert (await client.post("/api/settings", json=[1, 2])).status == 400
    assert (await client.post("/api/settings", data=b"{not json")).status == 400


# --- userdata ----------------------------------------------------------------------------------

def raw(path: str) -> aiohttp.client.URL:
    """A URL sent exactly as written (percent escapes kept, as the editor's encodeURIComponent)."""
    return aiohttp.client.URL(path, encoded=True)


async def test_userdata_save_list_load_move_delete(client, data_dir):
    workflow = json.dumps({"nodes": [], "links": []}).encode()
    response = await client.post(raw("/api/userdata/workflows%2Fmy%20graph.json?overwrite=true&full_info=true"),
                                 data=workflow)
    info = await response.json()
    assert response.status == 200 and info["path"] == "workflows/my graph.json" and info["size"] == len(workflow)
    assert isinstance(info["modified"], int) and info["modified"] > 10**12  # milliseconds
    assert (user_dir(data_dir) / "workflows" / "my graph.json").read_bytes() == workflow
    assert not list(user_dir(data_dir).rglob("*.part"))

    response = await client.post(raw("/api/userdata/workflows%2Fmy%20graph.json?overwrite=false"), data=b"{}")
    assert response.status == 409
    await client.post(raw("/api/userdata/workflows%2Fsub%2Fdeep.json"), data=b"{}")
    (user_dir(data_dir) / "workflows" / ".hidden.json").write_text("{}")

    listing = await (await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true",
                                                               "split": "false", "full_info": "true"})).json()
    assert sorted(entry["path"] for entry in listing) == ["my graph.json", "sub/deep.json"]
    flat = await (await client.get("/api/userdata", params={"dir": "workflows"})).json()
    assert flat == ["my graph.json"]
    split = await (await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true",
                                                            "split": "true"})).json()
    assert ["sub/deep.json", "sub", "deep.json"] in split
    assert (await client.get("/api/userdata", params={"dir": "nothing"})).status == 404
    assert (await client.get("/api/userdata")).status == 400

    response = await client.get(raw("/api/userdata/workflows%2Fmy%20graph.json"))
    assert await response.read() == workflow
    assert response.headers["Content-Disposition"] == "attachment"

    response = await client.post(raw("/api/userdata/workflows%2Fmy%20graph.json/move/workflows%2Frenamed.json"
                                     "?overwrite=false&full_info=true"))
    assert response.status == 200 and (await response.json())["path"] == "workflows/renamed.json"
    assert not (user_dir(data_dir) / "workflows" / "my graph.json").exists()
    response = await client.post(raw("/api/userdata/workflows%2Fsub%2Fdeep.json/move/workflows%2Frenamed.json"
                                     "?overwrite=false"))
    assert response.status == 409
    response = await client.post(raw("/api/userdata/workflows%2Fmissing.json/move/workflows%2Fx.json"))
    assert response.status == 404

    assert (await client.delete(raw("/api/userdata/workflows%2Frenamed.json"))).status == 204
    assert (await client.delete(raw("/api/userdata/workflows%2Frenamed.json"))).status == 404
    assert (await client.get(raw("/api/userdata/workflows%2Frenamed.json"))).status == 404


async def test_userdata_v2_listing(client, data_dir):
    await client.post(raw("/api/userdata/workflows%2Fa.json"), data=b"{}")
    await client.post(raw("/api/userdata/workflows%2Fsub%2Fb.json"), data=b"{}")
    entries = await (await client.get("/api/v2/userdata", params={"path": "workflows"})).json()
    assert [(e["type"], e["path"]) for e in entries] == [
        ("directory", "workflows/sub"), ("file", "workflows/a.json"), ("file", "workflows/sub/b.json")]
    assert entries[1]["size"] == 2 and isinstance(entries[1]["modified"], float)
    root = await (await client.get("/api/v2/userdata")).json()
    assert {"name": "workflows", "path": "workflows", "type": "directory"} in root
    assert (await client.get("/api/v2/userdata", params={"path": "nothing"})).status == 404
    assert (await client.get("/api/v2/userdata", params={"path": "workflows/a.json"})).status == 400


async def test_user_css_is_a_stylesheet(client, data_dir):
    response = await client.get("/api/userdata/user.css")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/css")
    await client.post("/api/userdata/user.css", data=b"body { color: red }")
    response = await client.get("/api/userdata/user.css")
    assert await response.text() == "body { color: red }" and response.headers["Content-Disposition"] == "inline"


async def test_userdata_never_serves_runnable_types_inline(client):
    await client.post("/api/userdata/page.html", data=b"<script>alert(1)</script>")
    response = await client.get("/api/userdata/page.html")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"] == "attachment"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- userdata security -------------------------------------------------------------------------

@pytest.fixture
def planted(tmp_path: Path, data_dir: Path) -> Path:
    """A secret beside the user folder and outside the data dir, and symlinks inside the user
    folder that point at them."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret.json").write_bytes(SECRET)
    root = user_dir(data_dir)
    (root / "workflows").mkdir(parents=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "workflows" / "link.json").symlink_to(outside / "secret.json")
    (root / "workflows" / "ok.json").write_text("{}")
    (data_dir / "user" / "secret.txt").write_bytes(SECRET)  # beside the user's folder
    (data_dir / "secret.txt").write_bytes(SECRET)
    return outside


def snapshot(root: Path) -> dict[str, str]:
    files = {}
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = Path(current, name)
            if path.is_symlink() or "latentgraph.sqlite3" in name or name.endswith(".lock"):
                continue
            files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


# Each is sent as the editor sends names: percent-encoded once into one path segment.
TRAVERSAL_NAMES = [
    "..%2Fsecret.txt",
    "..%2F..%2Fsecret.txt",
    "..%2F..%2F..%2Foutside%2Fsecret.txt",
    "%2E%2E%2Fsecret.txt",
    "workflows%2F..%2F..%2Fsecret.txt",
    "%252E%252E%252Fsecret.txt",             # double-encoded: still encoded after one decode
    "..%255Csecret.txt",
    "..%5Csecret.txt",                       # backslash
    "workflows%5C..%5C..%5Csecret.txt",
    "%2Fetc%2Fpasswd",                       # absolute
    "%2F" + "%2F".join(["tmp", "x.json"]),
    "C%3A%5CWindows%5Cwin.ini",
    "C%3Asecret.txt",
    "~%2Fsecret.txt",
    "secret.txt%00.json",                    # NUL
    "workflows%2Fa%00b.json",
    "escape%2Fsecret.txt",                   # through a symlinked folder
    "escape%2Fsecret.json",
    "workflows%2Flink.json",                 # a symlinked file
    "%2E%2E",                                # (a bare ".." never reaches the route: URLs normalise it)
    "....%2F%2Fsecret.txt",
    "CON",
    "workflows%2Fnul.json",
]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
async def test_userdata_traversal_is_refused(client, planted, tmp_path, name):
    before = snapshot(tmp_path)
    responses = [
        await client.get(raw(f"/api/userdata/{name}")),
        await client.get(raw(f"/userdata/{name}")),
        await client.post(raw(f"/api/userdata/{name}?overwrite=true"), data=b"EVIL"),
        await client.delete(raw(f"/api/userdata/{name}")),
        await client.post(raw(f"/api/userdata/{name}/move/workflows%2Fstolen.json")),
        await client.post(raw(f"/api/userdata/workflows%2Fok.json/move/{name}?overwrite=true")),
        await client.get(raw(f"/api/userdata?dir={name}&recurse=true&full_info=true")),
        await client.get(raw(f"/api/v2/userdata?path={name}")),
    ]
    for response in responses:
        body = await response.read()
        assert response.status in (400, 403, 404, 405), (name, response.method, response.url, response.status)
        assert SECRET not in body and b"root:" not in body
    assert snapshot(tmp_path) == before  # nothing read out, written, moved or deleted anywhere
    assert (planted / "secret.txt").read_bytes() == SECRET
    assert (planted / "secret.json").read_bytes() == SECRET
    assert (user_dir(tmp_path / "data") / "workflows" / "ok.json").exists()
    assert not (user_dir(tmp_path / "data") / "workflows" / "stolen.json").exists()


async def test_most_traversal_names_are_refused_as_unsafe(client, planted):
    kinds = []
    for name in TRAVERSAL_NAMES:
        response = await client.get(raw(f"/api/userdata/{name}"))
        kinds.append(response.status)
    assert kinds.count(400) >= len(TRAVERSAL_NAMES) - 4, kinds  # refused by name, not just missing


async def test_listings_do_not_follow_symlinks_out(client, planted):
    listing = await (await client.get("/api/userdata", params={"dir": "workflows", "recurse": "true",
                                                               "full_info": "true"})).json()
    assert [entry["path"] for entry in listing] == ["ok.json"]
    everything = json.dumps(await (await client.get("/api/v2/userdata")).json())
    assert "secret" not in everything and "link.json" not in everything
    assert "escape" not in everything


async def test_a_symlink_planted_after_the_check_cannot_redirect_a_write(client, planted, data_dir):
    # A folder that is a symlink to the outside, named as the parent of a new file.
    (user_dir(data_dir) / "workflows" / "out").symlink_to(planted, target_is_directory=True)
    response = await client.post(raw("/api/userdata/workflows%2Fout%2Fnew.json"), data=b"EVIL")
    assert response.status == 400
    assert not (planted / "new.json").exists()


# --- templates ---------------------------------------------------------------------------------

async def test_templates_come_from_graphs(client):
    index = await (await client.get("/templates/index.json")).json()
    names = [t["name"] for t in index[0]["templates"]]
    assert names == sorted(p.stem for p in GRAPHS_DIR.glob("*.json"))
    core = next(t for t in index[0]["templates"] if t["name"] == "core_demo")
    assert "EmptyImage" in core["description"] and core["mediaSubtype"] == "svg"
    assert index[0]["moduleName"] == "default"

    ui = await (await client.get("/templates/core_demo.json")).json()
    assert [n["type"] for n in ui["nodes"]] == ["LG_Int", "LG_IntMath", "LG_EmptyImage", "LG_SaveImage"]
    assert ui["nodes"][0]["title"] == "Base size" and len(ui["links"]) == 4
    assert await (await client.get("/api/workflow_templates/latentgraph/core_demo.json")).json() == ui

    thumbnail = await client.get("/templates/core_demo-1.svg")
    assert thumbnail.headers["Content-Type"].startswith("image/svg+xml") and "Base size" in await thumbnail.text()
    for missing in ("/templates/nothing.json", "/templates/..%2Fpyproject.json", "/templates/nothing-1.svg",
                    "/api/workflow_templates/latentgraph/nothing.json", "/api/workflow_templates/other/core_demo.json"):
        assert (await client.get(raw(missing))).status == 404, missing


async def test_every_template_converts_back_to_its_graph():
    registry = web_registry()
    for name, template in load_templates(registry).items():
        api = parse_api(json.loads((GRAPHS_DIR / f"{name}.json").read_text()))
        back = ui_to_api(template.ui, registry)
        assert set(back) == set(api), name  # the graph's own node ids
        for node_id, call in api.items():
            assert back[node_id]["class_type"] == call["class_type"]
            for key, value in call["inputs"].items():  # the UI also carries every default
                assert back[node_id]["inputs"][key] == value, (name, node_id, key)


# --- jobs --------------------------------------------------------------------------------------

async def test_jobs_list_finished_prompts(client):
    answer = await queue_prompt(client, save_graph(prefix="jobs"), extra_data={"create_time": 1234})
    await wait_for_history(client, answer["prompt_id"])
    jobs = await (await client.get("/api/jobs", params={"status": "completed,failed,cancelled",
                                                        "limit": "64", "offset": "0"})).json()
    assert jobs["pagination"] == {"offset": 0, "limit": 64, "total": 1, "has_more": False}
    job = jobs["jobs"][0]
    assert job["id"] == answer["prompt_id"] and job["status"] == "completed" and job["create_time"] == 1234
    assert job["outputs_count"] == 1 and job["preview_output"]["filename"].startswith("jobs_")
    assert job["preview_output"]["nodeId"] == "2" and job["preview_output"]["mediaType"] == "images"
    assert job["execution_start_time"] <= job["execution_end_time"]
    detail = await (await client.get(f"/api/jobs/{answer['prompt_id']}")).json()
    assert detail["outputs"]["2"]["images"] and detail["workflow"]["prompt"]["2"]["class_type"] == "LG_SaveImage"
    assert (await client.get("/api/jobs/nothing")).status == 404
    queued = await (await client.get("/api/jobs", params={"status": "in_progress,pending"})).json()
    assert queued["jobs"] == []
    assert (await client.get("/api/jobs", params={"status": "bogus"})).status == 400


async def test_jobs_list_pending_prompts(paused_client):
    first = await queue_prompt(paused_client, save_graph(prefix="a"))
    second = await queue_prompt(paused_client, save_graph(prefix="b"))
    jobs = (await (await paused_client.get("/api/jobs", params={"status": "in_progress,pending"})).json())["jobs"]
    assert {j["id"] for j in jobs} == {first["prompt_id"], second["prompt_id"]}
    assert all(j["status"] == "pending" and isinstance(j["create_time"], int) for j in jobs)
    page = await (await paused_client.get("/api/jobs", params={"limit": "1", "offset": "1"})).json()
    assert len(page["jobs"]) == 1 and page["pagination"]["total"] == 2 and not page["pagination"]["has_more"]
    detail = await (await paused_client.get(f"/api/jobs/{first['prompt_id']}")).json()
    assert detail["status"] == "pending"


def _finished(store: QueueStore, number: int, prompt_id: str, extra: dict[str, Any], ok: bool,
              start: int, end: int) -> None:
    store.enqueue(QueuedPrompt(number, prompt_id, one_node("LG_Float"), extra, []))
    assert store.claim_next().prompt_id == prompt_id
    last = "execution_success" if ok else "execution_error"
    store.finish(prompt_id, RunOutcome({}, "success" if ok else "error", ok,
                                       [["execution_start", {"timestamp": start}], [last, {"timestamp": end}]]))


def _fill_history(data_dir: Path, count: int) -> list[str]:
    """``count`` finished prompts straight into the server's store: every third failed, two
    workflows, create times in order, durations with ties (ids in the order they finished)."""
    store = QueueStore(data_dir / "latentgraph.sqlite3")
    ids = [f"p{i:03}" for i in range(count)]
    for i, prompt_id in enumerate(ids):
        extra = {"create_time": 10_000 + 10 * i, "extra_pnginfo": {"workflow": {"id": f"w{i % 2}"}}}
        _finished(store, i + 1, prompt_id, extra, ok=i % 3 != 0, start=20_000 + i, end=20_000 + i + i % 4)
    store.close()
    return ids


def _reference_page(jobs: list[dict[str, Any]], queued: int, params: dict[str, str]) -> list[str]:
    """The page as the decode-everything implementation defined it: filter, then sort by the key
    (queue jobs first among equal keys, finished ones in the order they finished, reversed for
    desc), then slice."""
    wanted = set(params.get("status", "pending,in_progress,completed,failed").replace("cancelled", "failed").split(","))
    duration = params.get("sort_by") == "execution_duration"
    descending = params.get("sort_order", "desc") != "asc"

    def key(item: tuple[int, dict[str, Any]]) -> tuple[float, int, int]:
        index, job = item
        value = job["execution_end_time"] - job["execution_start_time"] if duration and "execution_end_time" in job \
            else (0 if duration else job["create_time"])
        group = 0 if index < queued else 1
        position = index if group == 0 or not descending else -index
        return (-value if descending else value, group, position)

    chosen = [(i, job) for i, job in enumerate(jobs) if job["status"] in wanted
              and params.get("workflow_id") in (None, job.get("workflow_id"))]
    offset, limit = int(params.get("offset", 0)), int(params.get("limit", 10**9))
    return [job["id"] for _, job in sorted(chosen, key=key)][offset:offset + limit]


async def test_jobs_pages_match_the_whole_list(make_client, data_dir):
    _fill_history(data_dir, 30)
    client = await make_client(run_queue=False)
    for create_time in (10_095, 99_999):  # one among the finished ones, one after all of them
        await queue_prompt(client, save_graph(prefix=str(create_time)), extra_data={"create_time": create_time})
    listed = (await (await client.get("/api/jobs", params={"status": "pending"})).json())["jobs"]
    order = [item[1] for item in (await (await client.get("/queue")).json())["queue_pending"]]
    queued = sorted(listed, key=lambda job: order.index(job["id"]))  # in queue order
    history = await (await client.get("/history")).json()
    everything = queued + [history_job(prompt_id, entry) for prompt_id, entry in history.items()]
    cases = [{"limit": "5"}, {"limit": "5", "offset": "3"}, {"limit": "4", "offset": "28"},
             {"limit": "7", "sort_order": "asc"}, {"limit": "6", "offset": "2", "sort_by": "execution_duration"},
             {"limit": "9", "sort_by": "execution_duration", "sort_order": "asc", "offset": "1"},
             {"status": "failed", "limit": "3", "offset": "2"}, {"status": "completed,cancelled", "limit": "50"},
             {"status": "completed,failed", "limit": "5", "offset": "10", "workflow_id": "w1"},
             {"workflow_id": "w0", "limit": "4"}, {"status": "pending", "limit": "1", "offset": "1"}, {}]
    for params in cases:
        answer = await (await client.get("/api/jobs", params=params)).json()
        assert [job["id"] for job in answer["jobs"]] == _reference_page(everything, len(queued), params), params
        assert answer["jobs"] == [next(j for j in everything if j["id"] == job["id"]) for job in answer["jobs"]]
        total = len(_reference_page(everything, len(queued), {**params, "offset": "0", "limit": str(10**9)}))
        assert answer["pagination"]["total"] == total, params
        assert answer["pagination"]["has_more"] == (int(params.get("offset", 0)) + len(answer["jobs"]) < total)


async def test_a_page_of_jobs_decodes_only_its_rows(make_client, data_dir, monkeypatch):
    ids = _fill_history(data_dir, 60)
    client = await make_client(run_queue=False, history_page_limit=20)
    decoded: list[str] = []

    def counting_loads(text: str, **kwargs: Any) -> Any:
        decoded.append(text)
        return json.loads(text, **kwargs)

    monkeypatch.setattr(queue_store, "json", SimpleNamespace(**{**vars(json), "loads": counting_loads}))
    for params in ({"limit": "5"}, {"limit": "5", "offset": "50"},
                   {"status": "completed,failed,cancelled", "limit": "5", "offset": "20"}):
        decoded.clear()
        answer = await (await client.get("/api/jobs", params=params)).json()
        offset = int(params.get("offset", 0))
        assert [job["id"] for job in answer["jobs"]] == ids[::-1][offset:offset + 5]
        assert answer["pagination"]["total"] == 60 and answer["pagination"]["has_more"]
        assert len(decoded) <= 5 * 5, params  # five JSON columns per row, five rows
    decoded.clear()
    capped = await (await client.get("/api/jobs")).json()  # no limit: the configured page size
    assert len(capped["jobs"]) == 20 and capped["pagination"]["limit"] == 20 and len(decoded) <= 20 * 5
    assert len((await (await client.get("/api/jobs", params={"limit": "500"})).json())["jobs"]) == 20
