"""Security: path traversal against /view and uploads, cross-origin requests, DNS rebinding,
oversized bodies, the token, and the bind policy."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiohttp import FormData
from graph_helpers import load_image_graph
from latentgraph.cli import main as cli_main
from latentgraph.executor.paths import UnsafePath, check_name
from latentgraph.web import routes_files
from latentgraph.web.security import UnsafeBind, check_bind, is_loopback, normalize_origin
from PIL import Image
from web_helpers import save_graph

pytestmark = pytest.mark.asyncio

SECRET = b"TOP-SECRET-CONTENT"


def png_bytes(size: tuple[int, int] = (4, 4), color: tuple[int, ...] = (9, 9, 9)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def planted(tmp_path: Path, data_dir: Path) -> Path:
    """Secrets outside the served folders, and symlinks inside them that point at the secrets."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "secret.png").write_bytes(png_bytes(color=(1, 2, 3)))
    for kind in ("input", "output", "temp"):
        folder = data_dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "escape").symlink_to(outside, target_is_directory=True)
        (folder / "link.png").symlink_to(outside / "secret.png")
    (data_dir / "secret.txt").write_bytes(SECRET)  # next to the database, outside every folder
    return outside


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under root (not following symlinks) with a hash of its bytes."""
    files = {}
    for current, _dirs, names in os.walk(root):
        for name in names:
            path = Path(current, name)
            if path.is_symlink() or "latentgraph.sqlite3" in name or name.endswith(".lock"):
                continue  # the queue database changes on its own terms
            files[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


VIEW_ATTEMPTS = [
    {"filename": "../secret.txt"},
    {"filename": "../../secret.txt"},
    {"filename": "../../outside/secret.txt"},
    {"filename": "/etc/passwd"},
    {"filename": "secret.txt", "subfolder": ".."},
    {"filename": "secret.txt", "subfolder": "../.."},
    {"filename": "latentgraph.sqlite3", "subfolder": ".."},
    {"filename": "..%2fsecret.txt"},
    {"filename": "%2e%2e/secret.txt"},
    {"filename": "%252e%252e%252fsecret.txt"},
    {"filename": "secret.txt", "subfolder": "%2e%2e"},
    {"filename": "..\\secret.txt"},
    {"filename": "secret.txt", "subfolder": "..\\.."},
    {"filename": "secret.txt\x00.png"},
    {"filename": "secret.txt", "subfolder": "\x00.."},
    {"filename": "link.png"},
    {"filename": "link.png", "type": "input"},
    {"filename": "secret.txt", "subfolder": "escape"},
    {"filename": "secret.png", "subfolder": "escape", "type": "temp"},
    {"filename": "escape/secret.txt"},
    {"filename": "C:\\Windows\\win.ini"},
    {"filename": "C:secret.txt"},
    {"filename": "CON"},
    {"filename": "nul.png"},
    {"filename": "aux", "subfolder": "com1"},
    {"filename": "~/secret.txt"},
    {"filename": "secret.txt", "subfolder": "~"},
    {"filename": "secret.txt", "type": "../"},
    {"filename": "secret.txt", "type": "models"},
    {"filename": ".."},
    {"filename": ".", "subfolder": ".."},
    {"filename": "../secret.txt [output]"},
    {"filename": "secret.txt [../..]"},
    {"filename": "....//secret.txt"},
    {"filename": "secret.txt", "subfolder": "/tmp"},
    {"filename": "secret.txt", "subfolder": "sub/../../.."},
    {"filename": "../latentgraph.sqlite3", "type": "input"},
    {"filename": "secret.txt", "subfolder": "escape", "preview": "webp"},
    {"filename": "link.png", "channel": "a"},
]

RAW_VIEW_URLS = [
    "/view?filename=..%2Fsecret.txt",
    "/view?filename=%2e%2e%2fsecret.txt&subfolder=%2e%2e",
    "/view?filename=secret.txt&subfolder=%2E%2E%2F%2E%2E",
    "/api/view?filename=..%5Csecret.txt",
    "/view?filename=secret.txt%00&subfolder=..",
]


async def test_view_traversal_corpus(client, planted, tmp_path):
    before = snapshot(tmp_path)
    statuses = []
    for params in VIEW_ATTEMPTS:
        response = await client.get("/view", params=params)
        body = await response.read()
        statuses.append(response.status)
        assert response.status in (400, 403, 404), (params, response.status)
        assert SECRET not in body and b"SQLite format" not in body and b"\x89PNG" not in body, params
    for url in RAW_VIEW_URLS:
        response = await client.get(aiohttp.client.URL(url, encoded=True))
        assert response.status in (400, 403, 404), url
        assert SECRET not in await response.read()
    assert snapshot(tmp_path) == before
    assert statuses.count(400) > len(statuses) // 2  # most are refused by name, not just missing


def _upload(data: bytes, filename: str, **fields: str) -> FormData:
    form = FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form


UPLOAD_ATTEMPTS = [
    ("../evil.png", {}),
    ("../../evil.png", {}),
    ("../../outside/evil.png", {}),
    ("/tmp/evil.png", {}),
    ("..\\evil.png", {}),
    ("sub/../../evil.png", {}),
    ("evil.png", {"subfolder": ".."}),
    ("evil.png", {"subfolder": "../../outside"}),
    ("evil.png", {"subfolder": "/abs"}),
    ("evil.png", {"subfolder": "sub\\..\\.."}),
    ("evil.png", {"subfolder": "%2e%2e"}),
    ("evil.png", {"subfolder": "escape"}),
    ("evil.png", {"subfolder": "escape/deeper"}),
    ("evil.png", {"subfolder": "~"}),
    ("evil.png", {"subfolder": "x\x00/.."}),
    ("evil.png", {"type": "../output"}),
    ("evil.png", {"type": "models"}),
    ("link.png", {"overwrite": "true"}),
    ("CON", {}),
    ("nul.png", {"subfolder": "lpt1"}),
    ("..", {}),
    ("%2e%2e%2fevil.png", {}),
]

MASK_REFS = [
    {"filename": "../outside/secret.png", "type": "input"},
    {"filename": "secret.png", "subfolder": "..", "type": "input"},
    {"filename": "secret.png", "subfolder": "escape", "type": "input"},
    {"filename": "link.png", "type": "input"},
    {"filename": "secret.png", "type": "../outside"},
    {"filename": "/etc/passwd"},
    {"filename": "secret.png", "subfolder": "../../outside", "type": "output"},
]


def _raw_multipart(image: bytes, filename: str, **fields: str) -> tuple[bytes, dict[str, str]]:
    """A form as a browser writes it: the file name raw inside quotes, not percent-encoded."""
    boundary = "----latentgraph-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n"]
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_upload_traversal_corpus(client, planted, tmp_path):
    before = snapshot(tmp_path)
    image = png_bytes()
    for filename, fields in UPLOAD_ATTEMPTS:
        response = await client.post("/upload/image", data=_upload(image, filename, **fields))
        assert response.status in (400, 403, 404), (filename, fields, response.status, await response.text())
        body, headers = _raw_multipart(image, filename, **fields)
        response = await client.post("/api/upload/image", data=body, headers=headers)
        assert response.status in (400, 403, 404), (filename, fields, response.status, await response.text())
    for ref in MASK_REFS:
        form = _upload(image, "mask.png", original_ref=json.dumps(ref))
        response = await client.post("/api/upload/mask", data=form)
        assert response.status in (400, 403, 404), (ref, response.status)
    assert snapshot(tmp_path) == before  # nothing written anywhere, inside the folders or out
    assert (planted / "secret.txt").read_bytes() == SECRET


async def test_load_image_cannot_leave_the_input_folder(client, planted):
    for name in ("../secret.txt", "link.png", "escape/secret.png", "/etc/passwd", "..\\x.png"):
        response = await client.post("/prompt", json={"prompt": load_image_graph(name)})
        assert response.status == 400, name


# --- names file systems refuse, and failing file operations --------------------------------------

LONG_PART = "a" * 256 + ".png"
LONG_TOTAL = "/".join(["b" * 200] * 6)  # every part allowed, 1,205 bytes in all
DEEP = "/".join(["d"] * 40)
VERY_DEEP = "/".join(["d"] * 2000)


async def test_name_limits():
    check_name("a" * 255)
    check_name("é" * 127 + "a")  # 255 bytes in UTF-8
    check_name("/".join(["d"] * 32))
    for name in ("a" * 256, "é" * 128, LONG_TOTAL, "/".join(["d"] * 33), VERY_DEEP, "x\ud800.png"):
        with pytest.raises(UnsafePath):
            check_name(name)


async def test_overlong_deep_and_odd_names_are_400_not_500(client, data_dir):
    (data_dir / "input" / "afile.png").write_bytes(png_bytes())
    image = png_bytes()
    uploads = [(LONG_PART, {}), ("x.png", {"subfolder": "c" * 300}), ("x.png", {"subfolder": LONG_TOTAL}),
               ("x.png", {"subfolder": DEEP}), ("x.png", {"subfolder": VERY_DEEP}),
               ("x.png", {"subfolder": "/".join(["d"] * 32)}),  # 32 folders + the file: 33 levels
               ("x.png", {"subfolder": "afile.png"}), ("x.png", {"subfolder": "afile.png/deeper"})]
    for filename, fields in uploads:
        response = await client.post("/upload/image", data=_upload(image, filename, **fields))
        assert response.status == 400, (filename, fields, response.status, await response.text())
    # A line break inside a part's header (a raw file name with CR/LF) is a malformed form.
    for filename in ("a\r\nb.png", "a\r\nX-Injected: 1\r\n.png", "a\nb.png", "a\rb.png"):
        body, headers = _raw_multipart(image, filename)
        response = await client.post("/upload/image", data=body, headers=headers)
        assert response.status == 400, (filename, response.status, await response.text())
    views = [{"filename": LONG_PART}, {"filename": "x.png", "subfolder": LONG_TOTAL},
             {"filename": "x.png", "subfolder": DEEP}, {"filename": "x.png", "subfolder": VERY_DEEP},
             {"filename": "x.png", "subfolder": "afile.png"}]
    for params in views:
        assert (await client.get("/view", params=params)).status in (400, 404), params
    (await client.post("/userdata/workflows%2Fa.json", data=b"{}")).raise_for_status()
    quoted = [name.replace("/", "%2F") for name in (LONG_PART, LONG_TOTAL, DEEP, VERY_DEEP)]
    for name in quoted:
        for method, url in (("GET", f"/userdata/{name}"), ("POST", f"/userdata/{name}"),
                            ("DELETE", f"/userdata/{name}"), ("POST", f"/userdata/workflows%2Fa.json/move/{name}")):
            response = await client.request(method, url, data=b"{}")
            assert response.status == 400, (method, url[:60], response.status, await response.text())
    for name in (LONG_PART, LONG_TOTAL, DEEP, VERY_DEEP):
        assert (await client.get("/userdata", params={"dir": name})).status == 400
        assert (await client.get("/v2/userdata", params={"path": name})).status == 400
    # Writing through a file: the client's mistake.
    response = await client.post("/userdata/workflows%2Fa.json%2Fb.json", data=b"{}")
    assert response.status == 400 and (await response.json())["error"]["type"] == "unsafe_path"
    assert (await client.get("/userdata", params={"dir": "workflows/a.json/x"})).status in (400, 404)
    assert (await client.get("/v2/userdata", params={"path": "workflows/a.json/x"})).status in (400, 404)
    assert (await client.post("/userdata/workflows%2Fa.json/move/workflows%2Fa.json%2Fc")).status == 400
    assert not [p for p in (data_dir / "input").rglob("*") if p.name != "afile.png"]


async def test_a_full_disk_is_told_as_such(client, data_dir, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(routes_files.tempfile, "mkstemp", full)
    response = await client.post("/upload/image", data=_upload(png_bytes(), "x.png"))
    assert response.status == 507 and "No space left" in (await response.json())["error"]["message"]
    assert str(data_dir) not in await response.text()  # the server's paths stay its own


async def test_upload_never_reads_through_a_symlink(client, planted, data_dir):
    """Without overwrite, an upload over a symlink must not compare against (so reveal) what the
    link points at: the same answer whether the outside file is identical, different or missing."""
    input_dir = data_dir / "input"
    (input_dir / "gone.png").symlink_to(planted / "missing.png")
    (input_dir / "sub").mkdir()
    (input_dir / "sub" / "link.png").symlink_to(planted / "secret.png")
    (input_dir / "link (1).png").symlink_to(planted / "missing-too.png")  # a taken "unique" name
    secret_png = (planted / "secret.png").read_bytes()
    answers = []
    for filename, fields, data in (("link.png", {}, secret_png), ("link.png", {}, png_bytes(color=(7, 7, 7))),
                                   ("gone.png", {}, secret_png), ("link.png", {"subfolder": "sub"}, secret_png),
                                   ("link.png", {"overwrite": "false"}, secret_png)):
        response = await client.post("/upload/image", data=_upload(data, filename, **fields))
        assert response.status == 200, (filename, fields, await response.text())
        answers.append((await response.json())["name"])
    assert answers[0] == "link (2).png" and answers[2] == "gone (1).png" and answers[3] == "link (1).png"
    assert all(name not in ("link.png", "gone.png") for name in answers)  # never "already there"
    for name in ("link.png", "gone.png", "link (1).png", "sub/link.png"):
        assert (input_dir / name).is_symlink()  # the links themselves untouched
    assert (input_dir / "link (2).png").read_bytes() == secret_png and not (input_dir / "link (2).png").is_symlink()
    assert not (planted / "missing.png").exists() and (planted / "secret.png").read_bytes() == secret_png
    # overwrite never replaces a link (inside the folder or out) and never writes through one.
    (input_dir / "inner.png").symlink_to(input_dir / "link (2).png")
    for name in ("link.png", "gone.png", "inner.png"):
        response = await client.post("/upload/image", data=_upload(png_bytes(), name, overwrite="true"))
        assert response.status == 400, name
    assert (input_dir / "link (2).png").read_bytes() == secret_png
    assert not (planted / "missing.png").exists()


# --- origins, hosts ----------------------------------------------------------------------------

async def test_cross_origin_posts_are_refused(client, data_dir):
    own = f"http://127.0.0.1:{client.port}"
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:" + str(client.port)):
        response = await client.post("/prompt", json={"prompt": save_graph()}, headers={"Origin": origin})
        assert response.status == 403, origin
        upload = await client.post("/upload/image", data=_upload(png_bytes(), "x.png"), headers={"Origin": origin})
        assert upload.status == 403
        assert (await client.post("/interrupt", headers={"Origin": origin})).status == 403
        assert (await client.post("/queue", json={"clear": True}, headers={"Origin": origin})).status == 403
    assert not (data_dir / "input" / "x.png").exists()
    assert (await (await client.get("/prompt")).json())["exec_info"]["queue_remaining"] == 0
    same = await client.post("/prompt", json={"prompt": save_graph()}, headers={"Origin": own})
    assert same.status == 200
    scripted = await client.post("/prompt", json={"prompt": save_graph(5)})  # no Origin: not a browser
    assert scripted.status == 200
    read = await client.get("/object_info/LG_Float", headers={"Origin": "http://evil.example"})
    assert read.status == 200 and "Access-Control-Allow-Origin" not in read.headers


async def test_cross_origin_websocket_is_refused(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws?clientId=x", headers={"Origin": "http://evil.example"})
    assert err.value.status == 403


async def test_allowed_cors_origin(make_client):
    client = await make_client(cors_origins=("http://localhost:5173/",))
    origin = "http://localhost:5173"
    response = await client.post("/prompt", json={"prompt": save_graph()}, headers={"Origin": origin})
    assert response.status == 200 and response.headers["Access-Control-Allow-Origin"] == origin
    preflight = await client.options("/prompt", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status == 204 and "POST" in preflight.headers["Access-Control-Allow-Methods"]
    refused = await client.options("/prompt", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert refused.status == 403
    assert (await client.post("/prompt", json={"prompt": save_graph()},
                              headers={"Origin": "http://evil.example"})).status == 403


async def test_dns_rebinding_host_is_refused(client):
    for host in ("evil.example", f"evil.example:{client.port}", "127.0.0.1.evil.example", "0.0.0.0"):
        response = await client.get("/object_info", headers={"Host": host})
        assert response.status == 403, host
    for host in (f"localhost:{client.port}", f"[::1]:{client.port}", "127.0.0.1"):
        assert (await client.get("/prompt", headers={"Host": host})).status == 200, host


# --- sizes -------------------------------------------------------------------------------------

async def test_oversized_bodies_and_uploads_are_refused(make_client, data_dir):
    client = await make_client(max_body_mb=0.01, max_upload_mb=0.01)  # 10 KiB each
    big_prompt = save_graph()
    big_prompt["2"]["inputs"]["filename_prefix"] = "x" * 20_000
    response = await client.post("/prompt", json={"prompt": big_prompt})
    assert response.status == 413
    noise = Image.frombytes("RGB", (100, 100), os.urandom(30_000))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 20_000
    # Caught while streaming (the declared length is within the form overhead) ...
    response = await client.post("/upload/image", data=_upload(buffer.getvalue(), "big.png"))
    assert response.status == 413
    # ... and up front, from Content-Length.
    response = await client.post("/upload/image", data=_upload(os.urandom(400_000), "huge.png"))
    assert response.status == 413
    assert not [p for p in (data_dir / "input").rglob("*") if p.is_file()]
    small = await client.post("/upload/image", data=_upload(png_bytes(), "small.png"))
    assert small.status == 200


# --- the token ---------------------------------------------------------------------------------

async def test_token_is_required_everywhere(make_client):
    client = await make_client(auth_token="s3cret-token")
    good = {"Authorization": "Bearer s3cret-token"}
    for path in ("/object_info", "/api/queue", "/view?filename=x.png", "/history", "/system_stats",
                 "/extensions/latentgraph/latentgraph.js"):
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401, path
        assert (await client.get(path, headers=good)).status in (200, 404), path
    response = await client.post("/prompt", json={"prompt": save_graph()})
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.post("/upload/image", data=_upload(png_bytes(), "t.png"))).status == 401
    queued = await client.post("/prompt", json={"prompt": save_graph()}, headers=good)
    assert queued.status == 200
    via_query = await client.get("/prompt?token=s3cret-token")
    assert via_query.status == 200 and "latentgraph_token" in via_query.cookies
    cookie = via_query.cookies["latentgraph_token"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    with_cookie = await client.get("/prompt", headers={"Cookie": "latentgraph_token=s3cret-token"})
    assert with_cookie.status == 200
    client.session.cookie_jar.clear()
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await client.ws_connect("/ws?clientId=a")
    assert err.value.status == 401
    ws = await client.ws_connect("/ws?clientId=a&token=s3cret-token")
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()
    ws = await client.ws_connect("/ws?clientId=b", headers=good)
    assert (await ws.receive_json())["type"] == "status"
    await ws.close()


# --- binding -----------------------------------------------------------------------------------

async def test_bind_policy(tmp_path):
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None)
        assert is_loopback(host)
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.com"):
        with pytest.raises(UnsafeBind):
            check_bind(host, None)
        check_bind(host, "token")
    assert cli_main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "latentgraph.sqlite3").exists()  # refused before anything started


async def test_origin_normalization():
    assert normalize_origin("HTTP://LocalHost:80/") == "http://localhost"
    assert normalize_origin("https://a.example:443") == "https://a.example"
    assert normalize_origin("http://[::1]:8188") == "http://[::1]:8188"
    assert normalize_origin("null") == ""
