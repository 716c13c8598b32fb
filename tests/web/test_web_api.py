"""Each endpoint of the ComfyUI-compatible API, with and without the /api prefix."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from aiohttp import FormData
from graph_helpers import load_image_graph, one_node
from PIL import Image
from web_helpers import (
    ends,
    fail_graph,
    math_graph,
    queue_prompt,
    receive_until,
    save_graph,
    wait_for_history,
)

pytestmark = pytest.mark.asyncio


def png_bytes(color: tuple[int, ...] = (200, 10, 10), size: tuple[int, int] = (6, 4), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def upload_form(data: bytes, filename: str = "cat.png", **fields: str) -> FormData:
    form = FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


# --- /prompt -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_prompt_runs_and_lands_in_history(client, data_dir, prefix):
    response = await client.post(f"{prefix}/prompt", json={"prompt": save_graph(), "client_id": "c1"})
    answer = await response.json()
    assert response.status == 200
    assert set(answer) == {"prompt_id", "number", "node_errors"} and answer["node_errors"] == {}
    entry = await wait_for_history(client, answer["prompt_id"])
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    image = entry["outputs"]["2"]["images"][0]
    assert image["type"] == "output" and (data_dir / "output" / image["filename"]).is_file()
    number, prompt_id, prompt, extra, outputs = entry["prompt"]
    assert prompt_id == answer["prompt_id"] and prompt["2"]["class_type"] == "LG_SaveImage"
    assert extra["client_id"] == "c1" and outputs == ["2"]
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_success"]


async def test_validation_errors_use_comfyui_shape(client):
    graph = save_graph()
    graph["1"]["inputs"]["width"] = -5
    graph["2"]["inputs"]["images"] = ["9", 0]
    response = await client.post("/api/prompt", json={"prompt": graph})
    body = await response.json()
    assert response.status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert set(body["node_errors"]) == {"1", "2"}
    width = body["node_errors"]["1"]["errors"][0]
    assert width["type"] == "value_smaller_than_min" and width["extra_info"]["input_name"] == "width"
    assert body["node_errors"]["2"]["class_type"] == "LG_SaveImage"
    assert (await (await client.get("/queue")).json())["queue_pending"] == []


@pytest.mark.parametrize("body, kind", [
    ({}, "no_prompt"),
    ({"prompt": []}, "invalid_prompt"),
    ({"prompt": one_node("LG_Nope")}, "unknown_class_type"),
    ({"prompt": one_node("LG_Float")}, "prompt_no_outputs"),
    ({"prompt": save_graph(), "prompt_id": "../../x"}, "invalid_prompt"),
    ({"prompt": save_graph(), "extra_data": []}, "invalid_prompt"),
    ({"prompt": save_graph(), "number": "many"}, "invalid_prompt"),
])
async def test_malformed_prompts_are_refused(paused_client, body, kind):
    response = await paused_client.post("/prompt", json=body)
    answer = await response.json()
    assert response.status == 400
    errors = [answer["error"]["type"]] + [e["type"] for n in answer["node_errors"].values() for e in n["errors"]]
    assert kind in errors


async def test_invalid_json_body_is_400(client):
    response = await client.post("/prompt", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400


async def test_duplicate_prompt_id_is_refused(paused_client):
    await queue_prompt(paused_client, save_graph(), prompt_id="mine-1")
    response = await paused_client.post("/prompt", json={"prompt": save_graph(), "prompt_id": "mine-1"})
    assert response.status == 400


async def test_get_prompt_counts_remaining(paused_client):
    for color in (1, 2):
        await queue_prompt(paused_client, save_graph(color))
    for path in ("/prompt", "/api/prompt"):
        assert await (await paused_client.get(path)).json() == {"exec_info": {"queue_remaining": 2}}


async def test_load_image_must_name_an_input_file(client):
    graph = load_image_graph("missing.png")
    body = await (await client.post("/prompt", json={"prompt": graph})).json()
    assert body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"
    graph["1"]["inputs"]["image"] = "../output/x.png"
    body = await (await client.post("/prompt", json={"prompt": graph})).json()
    assert body["node_errors"]["1"]["errors"][0]["type"] == "invalid_file_name"


async def test_uploaded_image_feeds_load_image(client, data_dir):
    upload = await client.post("/upload/image", data=upload_form(png_bytes(), "in.png", subfolder="pasted"))
    assert await upload.json() == {"name": "in.png", "subfolder": "pasted", "type": "input"}
    graph = load_image_graph("pasted/in.png", filename_prefix="loaded")
    entry = await wait_for_history(client, (await queue_prompt(client, graph))["prompt_id"])
    saved = entry["outputs"]["2"]["images"][0]
    with Image.open(data_dir / "output" / saved["filename"]) as img:
        assert img.size == (6, 4) and img.getpixel((0, 0))[:3] == (200, 10, 10)


# --- /queue ------------------------------------------------------------------------------------

async def test_queue_lists_pending_in_order_and_front_jumps_ahead(paused_client):
    first = await queue_prompt(paused_client, save_graph(1))
    second = await queue_prompt(paused_client, save_graph(2))
    urgent = await queue_prompt(paused_client, save_graph(3), front=True)
    queue = await (await paused_client.get("/api/queue")).json()
    assert queue["queue_running"] == []
    assert [item[1] for item in queue["queue_pending"]] == [urgent["prompt_id"], first["prompt_id"], second["prompt_id"]]
    number, prompt_id, prompt, extra, outputs = queue["queue_pending"][1]
    assert number == first["number"] and prompt["1"]["inputs"]["color"] == 1 and outputs == ["2"]
    assert urgent["number"] < 0


async def test_queue_delete_and_clear(paused_client):
    ids = [(await queue_prompt(paused_client, save_graph(c)))["prompt_id"] for c in range(3)]
    assert (await paused_client.post("/queue", json={"delete": [ids[1]]})).status == 200
    pending = (await (await paused_client.get("/queue")).json())["queue_pending"]
    assert [item[1] for item in pending] == [ids[0], ids[2]]
    assert (await paused_client.post("/api/queue", json={"clear": True})).status == 200
    assert (await (await paused_client.get("/queue")).json())["queue_pending"] == []


# --- /history ----------------------------------------------------------------------------------

async def test_history_paging_delete_and_clear(client):
    ids = []
    for value in range(4):
        ids.append((await queue_prompt(client, math_graph(a=float(value))))["prompt_id"])
    for prompt_id in ids:
        await wait_for_history(client, prompt_id)
    assert list(await (await client.get("/history")).json()) == ids
    assert list(await (await client.get("/history?max_items=2")).json()) == ids[2:]
    assert list(await (await client.get("/api/history?max_items=2&offset=1")).json()) == ids[1:3]
    entry = (await (await client.get(f"/history/{ids[0]}")).json())[ids[0]]
    assert entry["outputs"] == {"3": {"value": [(0.0 + 2.0) * 10.0]}}
    assert await (await client.get("/history/nope")).json() == {}
    await client.post("/history", json={"delete": [ids[0]]})
    assert list(await (await client.get("/history")).json()) == ids[1:]
    await client.post("/api/history", json={"clear": True})
    assert await (await client.get("/history")).json() == {}


async def test_history_pages_are_capped(make_client):
    client = await make_client(history_page_limit=3)
    ids = [(await queue_prompt(client, math_graph(a=float(value))))["prompt_id"] for value in range(5)]
    for prompt_id in ids:
        await wait_for_history(client, prompt_id)

    async def page(query: str) -> list[str]:
        return list(await (await client.get(f"/history{query}")).json())

    assert await page("") == ids[2:]  # no max_items: the most recent, up to the cap
    assert await page("?max_items=100") == ids[2:]
    assert await page("?max_items=2") == ids[3:]  # as ComfyUI: the most recent max_items
    assert await page("?max_items=2&offset=0") == ids[:2]
    assert await page("?offset=1") == ids[1:4]
    assert await page("?max_items=3&offset=4") == ids[4:]
    assert await page("?max_items=0") == []
    assert ids[0] in await (await client.get(f"/history/{ids[0]}")).json()  # every entry stays reachable


async def test_partial_execution_targets_run_non_output_nodes(client):
    ws = await client.ws_connect("/ws?clientId=partial")
    await receive_until(ws, ends("status"))

    async def run(**body: object) -> tuple[list[str | None], dict[str, object]]:
        prompt_id = (await queue_prompt(client, math_graph(), client_id="partial", **body))["prompt_id"]
        messages = await receive_until(ws, ends("execution_success", prompt_id))
        executing = [m["data"]["node"] for m in messages if isinstance(m, dict) and m["type"] == "executing"]
        return executing, await wait_for_history(client, prompt_id)

    # Node 2 (a FloatMath) is no output node: it runs, with what it reads, and the output doesn't.
    executing, entry = await run(partial_execution_targets=["2"])
    assert executing == ["1", "2", None]
    assert entry["status"]["status_str"] == "success" and entry["prompt"][4] == ["2"] and entry["outputs"] == {}
    # It really ran: the whole graph now finds it in the cache and executes only the output node.
    executing, entry = await run()
    assert executing == ["3", None]
    cached = next(m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached")
    assert cached == ["2"] and entry["outputs"] == {"3": {"value": [30.0]}}
    await ws.close()


async def test_failed_prompt_is_recorded_as_error(client):
    entry = await wait_for_history(client, (await queue_prompt(client, fail_graph()))["prompt_id"])
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert kinds == ["execution_start", "execution_error"]
    assert entry["status"]["messages"][1][1]["node_id"] == "2"


# --- /object_info ------------------------------------------------------------------------------

async def test_object_info_lists_nodes_and_input_files(client, data_dir):
    (data_dir / "input" / "b.png").write_bytes(png_bytes())
    (data_dir / "input" / "sub").mkdir()
    (data_dir / "input" / "sub" / "a.jpg").write_bytes(b"")
    (data_dir / "input" / "notes.txt").write_text("not an image")
    info = await (await client.get("/object_info")).json()
    assert {"LG_SaveImage", "LG_FloatMath", "LG_LoadImage"} <= set(info)
    choices, options = info["LG_LoadImage"]["input"]["required"]["image"]
    assert choices == ["b.png", "sub/a.jpg"] and options["image_upload"] is True
    assert info["LG_FloatMath"]["output"] == ["FLOAT"]
    one = await (await client.get("/api/object_info/LG_EmptyImage")).json()
    assert list(one) == ["LG_EmptyImage"] and one["LG_EmptyImage"]["input"]["required"]["width"][0] == "INT"
    assert await (await client.get("/object_info/NoSuchNode")).json() == {}


# --- /view -------------------------------------------------------------------------------------

async def test_view_serves_outputs_previews_and_channels(client, data_dir):
    (data_dir / "output" / "sub").mkdir(parents=True)
    (data_dir / "output" / "sub" / "x.png").write_bytes(png_bytes((1, 2, 3, 128), mode="RGBA"))
    (data_dir / "temp" / "t.png").write_bytes(png_bytes())
    full = await client.get("/view", params={"filename": "x.png", "subfolder": "sub", "type": "output"})
    assert full.status == 200 and full.content_type == "image/png"
    assert await full.read() == (data_dir / "output" / "sub" / "x.png").read_bytes()
    webp = await client.get("/api/view", params={"filename": "x.png", "subfolder": "sub", "preview": "webp;50"})
    assert webp.content_type == "image/webp"
    with Image.open(io.BytesIO(await webp.read())) as img:
        assert img.size == (6, 4)
    alpha = await client.get("/view", params={"filename": "x.png", "subfolder": "sub", "channel": "a"})
    with Image.open(io.BytesIO(await alpha.read())) as img:
        assert img.getpixel((0, 0))[3] == 128
    temp = await client.get("/view", params={"filename": "t.png [temp]"})
    assert temp.status == 200
    assert (await client.get("/view", params={"filename": "nope.png"})).status == 404
    assert (await client.get("/view")).status == 400


async def test_view_sends_non_images_as_attachments(client, data_dir):
    (data_dir / "output" / "page.html").write_text("<script>alert(1)</script>")
    response = await client.get("/view", params={"filename": "page.html"})
    assert response.status == 200
    assert response.content_type == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# --- uploads -----------------------------------------------------------------------------------

async def test_upload_naming_duplicates_and_overwrite(client, data_dir):
    red, blue = png_bytes((255, 0, 0)), png_bytes((0, 0, 255))
    first = await (await client.post("/upload/image", data=upload_form(red))).json()
    assert first == {"name": "cat.png", "subfolder": "", "type": "input"}
    same = await (await client.post("/api/upload/image", data=upload_form(red))).json()
    assert same["name"] == "cat.png"  # identical content is not stored twice
    other = await (await client.post("/upload/image", data=upload_form(blue))).json()
    assert other["name"] == "cat (1).png"
    replaced = await (await client.post("/upload/image", data=upload_form(blue, overwrite="true"))).json()
    assert replaced["name"] == "cat.png"
    assert (data_dir / "input" / "cat.png").read_bytes() == blue
    temp = await (await client.post("/upload/image", data=upload_form(red, type="temp"))).json()
    assert temp["type"] == "temp" and (data_dir / "temp" / "cat.png").is_file()
    assert not [p for p in (data_dir / "input").iterdir() if p.name.startswith(".upload-")]


async def test_upload_refuses_what_is_not_an_image(client, data_dir):
    response = await client.post("/upload/image", data=upload_form(b"<html>hi</html>", "page.png"))
    assert response.status == 400
    assert not (data_dir / "input" / "page.png").exists()
    form = FormData()
    form.add_field("subfolder", "x")
    assert (await client.post("/upload/image", data=form)).status == 400


async def test_upload_mask_composites_alpha_into_original(client, data_dir):
    original = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(original, format="PNG", pnginfo=_text("workflow", "{}"))
    (data_dir / "input" / "photo.png").write_bytes(original.getvalue())
    mask = png_bytes((0, 0, 0, 64), size=(4, 4), mode="RGBA")
    ref = json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"})
    response = await client.post("/upload/mask", data=upload_form(mask, "photo-mask.png", original_ref=ref))
    answer = await response.json()
    assert response.status == 200 and answer["name"] == "photo-mask.png"
    with Image.open(data_dir / "input" / "photo-mask.png") as img:
        assert img.mode == "RGBA" and img.getpixel((1, 1)) == (10, 20, 30, 64)
        assert img.text.get("workflow") == "{}"
    missing = json.dumps({"filename": "nope.png", "type": "input"})
    response = await client.post("/upload/mask", data=upload_form(mask, "m.png", original_ref=missing))
    assert response.status == 404


def _text(key: str, value: str):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(key, value)
    return info


# --- the rest ----------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_small_info_routes(client, prefix):
    stats = await (await client.get(f"{prefix}/system_stats")).json()
    assert stats["devices"][0]["type"] == "cpu" and stats["system"]["pytorch_version"]
    assert "--auth-token" not in json.dumps(stats)
    features = await (await client.get(f"{prefix}/features")).json()
    assert features["max_upload_size"] == 100 * (1 << 20)
    assert await (await client.get(f"{prefix}/embeddings")).json() == []
    extensions = await (await client.get(f"{prefix}/extensions")).json()
    assert "/extensions/latentgraph/latentgraph.js" in extensions
    script = await client.get("/extensions/latentgraph/latentgraph.js")
    assert script.status == 200 and "registerExtension" in await script.text()
    assert (await client.get("/extensions/latentgraph/../app.py")).status in (400, 404)


async def test_free_and_interrupt_answer_when_idle(client):
    for path in ("/free", "/api/free"):
        assert (await client.post(path, json={"unload_models": True, "free_memory": True})).status == 200
    for path in ("/interrupt", "/api/interrupt"):
        assert (await client.post(path)).status == 200
    assert (await client.post("/interrupt", json={"prompt_id": "not-running"})).status == 200


async def test_free_memory_forces_re_execution(client):
    first = await wait_for_history(client, (await queue_prompt(client, math_graph()))["prompt_id"])
    await client.post("/free", json={"free_memory": True})
    second = await wait_for_history(client, (await queue_prompt(client, math_graph()))["prompt_id"])
    cached = [m for m in second["status"]["messages"] if m[0] == "execution_cached"]
    assert first["status"]["status_str"] == second["status"]["status_str"] == "success"
    assert cached == []


async def test_server_module_has_no_pickle():
    root = Path(__file__).resolve().parents[2] / "web"
    for source in root.rglob("*.py"):
        text = source.read_text()
        assert "import pickle" not in text and "pickle." not in text, source
