"""What the server offers: node schemas, system facts, features and the editor extensions."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from aiohttp import web

from .. import __version__
from ..executor.node import NodeSpec
from ..executor.paths import UnsafePath, confined
from ..executor.schema import object_info
from .file_access import list_images
from .routing import add_routes, json_error
from .state import ServerState, state_of

routes = web.RouteTableDef()

EXTENSION_DIR = Path(__file__).resolve().parent / "extension"
EXTENSION_URL = "/extensions/latentgraph"


def node_info(spec: NodeSpec, input_files: list[str]) -> dict[str, Any]:
    """``object_info`` with upload inputs shown as ComfyUI shows LoadImage's: a combo of the files
    in the input folder plus ``image_upload``, which makes the editor add its upload button."""
    info = object_info(spec)
    for section in info["input"].values():
        for name, entry in section.items():
            in_spec = spec.inputs[name]
            if in_spec.hints.get("image_upload"):
                options = dict(entry[1]) if len(entry) > 1 else {}
                options["image_upload"] = True
                section[name] = [list(input_files), options]
    return info


def _all_info(state: ServerState, class_type: str | None) -> dict[str, Any]:
    specs = [n.spec for n in state.executor.registry if class_type in (None, n.class_type)]
    uploads = any(s.hints.get("image_upload") for spec in specs for s in spec.inputs.values())
    files = list_images(state.config.folders.input) if uploads else []
    return {spec.class_type: node_info(spec, files) for spec in specs}


@routes.get("/object_info")
async def get_object_info(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(_all_info, state_of(request), None))


@routes.get("/object_info/{node_class}")
async def get_node_info(request: web.Request) -> web.Response:
    info = await asyncio.to_thread(_all_info, state_of(request), request.match_info["node_class"])
    return web.json_response(info)  # {} for an unknown class, as ComfyUI


def _memory() -> tuple[int, int]:
    """(total, available) RAM in bytes, from /proc/meminfo where there is one."""
    try:
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.count(":") == 1}
        return fields["MemTotal"], fields.get("MemAvailable", fields.get("MemFree", 0))
    except (OSError, KeyError, ValueError, IndexError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return 0, 0


def _devices(device: torch.device, ram: tuple[int, int]) -> list[dict[str, Any]]:
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, total = torch.cuda.mem_get_info(index)
        reserved = torch.cuda.memory_reserved(index)
        allocated = torch.cuda.memory_allocated(index)
        return [{"name": f"cuda:{index} {torch.cuda.get_device_name(index)}", "type": "cuda", "index": index,
                 "vram_total": total, "vram_free": free, "torch_vram_total": reserved,
                 "torch_vram_free": reserved - allocated}]
    return [{"name": str(device), "type": device.type, "index": None, "vram_total": ram[0],
             "vram_free": ram[1], "torch_vram_total": 0, "torch_vram_free": 0}]


@routes.get("/system_stats")
async def get_system_stats(request: web.Request) -> web.Response:
    state = state_of(request)
    ram = _memory()
    return web.json_response({
        "system": {
            "os": sys.platform, "platform": platform.platform(), "ram_total": ram[0], "ram_free": ram[1],
            "comfyui_version": f"latentgraph {__version__}", "latentgraph_version": __version__,
            "python_version": sys.version, "pytorch_version": torch.__version__, "embedded_python": False,
            # Not the real argv: it may hold --auth-token.
            "argv": ["latentgraph", "serve"],
        },
        "devices": _devices(state.executor.device, ram),
    })


def feature_flags(state: ServerState) -> dict[str, Any]:
    return {"supports_preview_metadata": False, "max_upload_size": state.config.max_upload_bytes}


@routes.get("/features")
async def get_features(request: web.Request) -> web.Response:
    return web.json_response(feature_flags(state_of(request)))


@routes.get("/embeddings")
async def get_embeddings(request: web.Request) -> web.Response:
    return web.json_response([])  # textual-inversion embeddings: none of our loaders use them


@routes.get("/extensions")
async def get_extensions(request: web.Request) -> web.Response:
    scripts = sorted(p.relative_to(EXTENSION_DIR).as_posix() for p in EXTENSION_DIR.rglob("*.js")) \
        if EXTENSION_DIR.is_dir() else []
    return web.json_response([f"{EXTENSION_URL}/{name}" for name in scripts])


@routes.get(EXTENSION_URL + "/{path:.+}")
async def get_extension_file(request: web.Request) -> web.StreamResponse:
    try:
        path = confined(EXTENSION_DIR, request.match_info["path"], must_exist=True)
    except UnsafePath as err:
        return json_error(400, str(err), "unsafe_path")
    except OSError:
        return json_error(404, "no such file", "not_found")
    return web.FileResponse(path)


def register(app: web.Application) -> None:
    add_routes(app, routes)
