"""The editor's per-user storage: /users, /settings, /userdata and /v2/userdata.

Everything lives under ``DATA_DIR/user/default/`` as in ComfyUI (saved workflows in
``workflows/``, settings in ``comfy.settings.json``). The server is single-user, like ComfyUI
without ``--multi-user``: ``POST /users`` records a name in ``DATA_DIR/user/users.json`` and
answers its id, but every request reads and writes the default user's folder.

Every name a request gives goes through :func:`latentgraph.executor.paths.confined`: ``..``,
absolute paths, backslashes, NUL bytes, percent-encoded forms (after the one decoding of the
URL) and symlinks that resolve outside the folder are refused with 400, and nothing outside the
folder is ever read, listed, written, moved or deleted. Listings do not follow symlinks out of
the folder. Writes go to a temporary file that is renamed into place.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from ..executor.paths import UnsafePath, confined
from .file_access import file_error
from .routing import add_routes, json_error, read_json
from .state import state_of

routes = web.RouteTableDef()

DEFAULT_USER = "default"
SETTINGS_FILE = "comfy.settings.json"
STARTUP_FOLDERS = ("workflows", "subgraphs")
# Answered for settings the user never set. ShowVersionUpdates: the editor would otherwise ask
# comfy.org for ComfyUI's release notes (which say nothing about this server) on every start.
# TutorialCompleted: a new user gets a first graph of our nodes (the extension swaps ComfyUI's
# default graph for the core_demo template) instead of a blank canvas under the template browser.
SETTING_DEFAULTS: dict[str, Any] = {"Comfy.Notification.ShowVersionUpdates": False,
                                    "Comfy.TutorialCompleted": True}
USERS_FILE = "users.json"
USER_CSS = "user.css"
# Read-modify-write of the settings file and users.json, one at a time.
WRITE_LOCK = web.AppKey("latentgraph_userdata_lock", asyncio.Lock)
# Served inline with their own type; anything else is an attachment, and types a browser would
# run (HTML, SVG, JavaScript, ...) are served as octet-stream (stored XSS guard, as ComfyUI).
_SAFE_TYPES = frozenset({"application/json", "text/plain", "text/csv", "image/png", "image/jpeg",
                         "image/webp", "image/gif", "application/octet-stream"})


def users_dir(request: web.Request) -> Path:
    return state_of(request).config.data_dir / "user"


def user_root(request: web.Request, create: bool = True) -> Path:
    """The request's user folder (always the default user: the server is single-user), made
    with the folders the editor lists at startup, so a new user's listings are empty, not 404."""
    root = users_dir(request) / DEFAULT_USER
    if create and not root.is_dir():
        for folder in STARTUP_FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
    return root.resolve() if root.exists() else root


def _bad(err: UnsafePath) -> web.Response:
    return json_error(400, str(err), "unsafe_path")


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (a symlink too) resolves to ``root`` or below it."""
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return resolved == root or root in resolved.parents


def _file_info(path: Path, relative_to: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": path.relative_to(relative_to).as_posix(), "size": stat.st_size,
            "modified": int(stat.st_mtime * 1000), "created": int(stat.st_ctime * 1000)}


def _walk_files(root: Path, directory: Path, recurse: bool) -> list[Path]:
    """Regular files in ``directory`` (below it with ``recurse``), hidden ones and symlinks that
    leave ``root`` left out; symlinked folders are not descended into."""
    found: list[Path] = []
    for current, dirs, names in os.walk(directory, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recurse else []
        for name in sorted(names):
            path = Path(current, name)
            if name.startswith(".") or not _inside(root, path) or not path.is_file():
                continue
            found.append(path)
    return found


def _listing(root: Path, directory: str, recurse: bool, full_info: bool, split: bool) -> Any:
    path = confined(root, directory)
    if not path.is_dir():
        raise FileNotFoundError(directory)
    results: list[Any] = []
    for file in _walk_files(root, path, recurse):
        if full_info:
            results.append(_file_info(file, path))
            continue
        relative = file.relative_to(path).as_posix()
        results.append([relative, *relative.split("/")] if split else relative)
    return results


def _listing_v2(root: Path, wanted: str) -> list[dict[str, Any]]:
    target = confined(root, wanted) if wanted else root
    if not target.exists():
        if target == root:
            return []
        raise FileNotFoundError(wanted)
    if not target.is_dir():
        raise NotADirectoryError(wanted)
    results: list[dict[str, Any]] = []
    for current, dirs, names in os.walk(target, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and _inside(root, Path(current, d)))
        for name in dirs:
            results.append({"name": name, "path": Path(current, name).relative_to(root).as_posix(),
                            "type": "directory"})
        for name in sorted(names):
            path = Path(current, name)
            if name.startswith(".") or not _inside(root, path) or not path.is_file():
                continue
            stat = path.stat()
            results.append({"name": name, "path": path.relative_to(root).as_posix(), "type": "file",
                            "size": stat.st_size, "modified": stat.st_mtime})
    results.sort(key=lambda entry: (entry["type"] != "directory", entry["name"].lower()))
    return results


def _write_atomic(root: Path, name: str, body: bytes, overwrite: bool) -> Path | None:
    """Write ``body`` as ``name`` inside ``root``; None when it exists and ``overwrite`` is off."""
    target = confined(root, name)
    if target.exists() and not overwrite:
        return None
    if target.is_dir():
        raise IsADirectoryError(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target = confined(root, name)  # again, now that the folders exist (a symlink raced in?)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".userdata-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def _move(root: Path, source_name: str, dest_name: str, overwrite: bool) -> Path | None:
    source = confined(root, source_name, must_exist=True)
    dest = confined(root, dest_name)
    if dest.exists() and not overwrite:
        return None
    if dest.is_dir():
        raise IsADirectoryError(dest_name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest = confined(root, dest_name)
    os.replace(source, dest)
    return dest


def _flag(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    return raw.lower() not in ("false", "0", "") if default else raw.lower() in ("true", "1")


def _saved(path: Path, root: Path, full_info: bool) -> web.Response:
    return web.json_response(_file_info(path, root) if full_info else path.relative_to(root).as_posix())


# --- users ------------------------------------------------------------------------------------

@routes.get("/users")
async def get_users(request: web.Request) -> web.Response:
    # Single-user: the editor skips its user picker and stores everything on the server.
    return web.json_response({"storage": "server",
                              "migrated": (users_dir(request) / DEFAULT_USER).is_dir()})


def _read_json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json_file(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path.parent.resolve(), path.name, json.dumps(data, indent=4).encode(), True)


@routes.post("/users")
async def post_users(request: web.Request) -> web.Response:
    body = await read_json(request, {})
    name = body.get("username") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        return web.json_response({"error": "username not provided"}, status=400)
    name = name.strip()
    path = users_dir(request) / USERS_FILE
    async with request.app[WRITE_LOCK]:
        users = await asyncio.to_thread(_read_json_file, path)
        if name in users.values():
            return web.json_response({"error": "Duplicate username."}, status=400)
        user_id = f"{re.sub(r'[^a-zA-Z0-9_-]+', '-', name)}_{uuid.uuid4()}"
        users[user_id] = name
        try:
            await asyncio.to_thread(_write_json_file, path, users)
        except OSError as err:
            return file_error(err, "record the user")
    return web.json_response(user_id)


# --- settings ---------------------------------------------------------------------------------

def _settings_path(request: web.Request) -> Path:
    return user_root(request) / SETTINGS_FILE


@routes.get("/settings")
async def get_settings(request: web.Request) -> web.Response:
    saved = await asyncio.to_thread(_read_json_file, _settings_path(request))
    return web.json_response({**SETTING_DEFAULTS, **saved})


@routes.get("/settings/{id}")
async def get_setting(request: web.Request) -> web.Response:
    settings = await asyncio.to_thread(_read_json_file, _settings_path(request))
    setting_id = request.match_info["id"]
    return web.json_response(settings.get(setting_id, SETTING_DEFAULTS.get(setting_id)))


@routes.post("/settings")
async def post_settings(request: web.Request) -> web.Response:
    update = await read_json(request, {})
    if not isinstance(update, dict):
        return json_error(400, "expected a JSON object of settings")
    path = _settings_path(request)
    async with request.app[WRITE_LOCK]:
        settings = await asyncio.to_thread(_read_json_file, path)
        try:
            await asyncio.to_thread(_write_json_file, path, {**settings, **update})
        except OSError as err:
            return file_error(err, "save the settings")
    return web.Response(status=200)


@routes.post("/settings/{id}")
async def post_setting(request: web.Request) -> web.Response:
    value = await read_json(request, None)
    path = _settings_path(request)
    async with request.app[WRITE_LOCK]:
        settings = await asyncio.to_thread(_read_json_file, path)
        settings[request.match_info["id"]] = value
        try:
            await asyncio.to_thread(_write_json_file, path, settings)
        except OSError as err:
            return file_error(err, "save the settings")
    return web.Response(status=200)


# --- userdata ---------------------------------------------------------------------------------

@routes.get("/userdata")
async def list_userdata(request: web.Request) -> web.Response:
    directory = request.query.get("dir", "")
    if not directory:
        return json_error(400, "dir is required")
    try:
        listing = await asyncio.to_thread(
            _listing, user_root(request), directory, _flag(request, "recurse", False),
            _flag(request, "full_info", False), _flag(request, "split", False))
    except UnsafePath as err:
        return _bad(err)
    except (FileNotFoundError, NotADirectoryError):
        return json_error(404, "no such directory", "not_found")
    except OSError as err:
        return file_error(err, "list that folder")
    return web.json_response(listing)


@routes.get("/v2/userdata")
async def list_userdata_v2(request: web.Request) -> web.Response:
    try:
        listing = await asyncio.to_thread(_listing_v2, user_root(request), request.query.get("path", ""))
    except UnsafePath as err:
        return _bad(err)
    except FileNotFoundError:
        return json_error(404, "no such path", "not_found")
    except NotADirectoryError:
        return json_error(400, "the path is not a directory")
    except OSError as err:
        return file_error(err, "list that folder")
    return web.json_response(listing)


@routes.get("/userdata/{file}")
async def get_userdata(request: web.Request) -> web.StreamResponse:
    root = user_root(request)
    name = request.match_info["file"]
    try:
        path = confined(root, name, must_exist=True)
    except UnsafePath as err:
        return _bad(err)
    except OSError:
        if name == USER_CSS:  # index.html links it; none yet is an empty stylesheet
            return web.Response(text="", content_type="text/css")
        return json_error(404, "no such file", "not_found")
    if path == root / USER_CSS:
        content_type, disposition = "text/css", "inline"
    else:
        guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        content_type = guessed if guessed in _SAFE_TYPES else "application/octet-stream"
        disposition = "attachment"
    return web.FileResponse(path, headers={"Content-Type": content_type, "Content-Disposition": disposition})


@routes.post("/userdata/{file}")
async def post_userdata(request: web.Request) -> web.Response:
    root = user_root(request)
    body = await request.read()
    try:
        path = await asyncio.to_thread(_write_atomic, root, request.match_info["file"], body,
                                       _flag(request, "overwrite", True))
    except UnsafePath as err:
        return _bad(err)
    except IsADirectoryError:
        return json_error(400, "that name is a folder")
    except OSError as err:  # a parent that is a file, a full disk, ...
        return file_error(err, "write that file")
    if path is None:
        return json_error(409, "the file already exists", "conflict")
    return _saved(path, root, _flag(request, "full_info", False))


@routes.delete("/userdata/{file}")
async def delete_userdata(request: web.Request) -> web.Response:
    try:
        path = confined(user_root(request), request.match_info["file"], must_exist=True)
        await asyncio.to_thread(path.unlink)
    except UnsafePath as err:
        return _bad(err)
    except FileNotFoundError:
        return json_error(404, "no such file", "not_found")
    except OSError as err:
        return file_error(err, "delete that file")
    return web.Response(status=204)


@routes.post("/userdata/{file}/move/{dest}")
async def move_userdata(request: web.Request) -> web.Response:
    root = user_root(request)
    try:
        path = await asyncio.to_thread(_move, root, request.match_info["file"], request.match_info["dest"],
                                       _flag(request, "overwrite", True))
    except UnsafePath as err:
        return _bad(err)
    except IsADirectoryError:
        return json_error(400, "the destination is a folder")
    except FileNotFoundError:
        return json_error(404, "no such file", "not_found")
    except OSError as err:
        return file_error(err, "move that file")
    if path is None:
        return json_error(409, "the destination already exists", "conflict")
    return _saved(path, root, _flag(request, "full_info", False))


def register(app: web.Application) -> None:
    app[WRITE_LOCK] = asyncio.Lock()
    add_routes(app, routes)
