"""The visual editor: ComfyUI's own frontend served over our API, and what it asks for at startup.

The frontend is the PyPI package ``comfyui-frontend-package``, pinned by latentgraph's optional
``editor`` extra (``pip install 'latentgraph[editor]'``): optional, so that inside ComfyUI, which
pins and serves its own, nothing conflicts. Its wheel holds the built files under
``comfyui_frontend_package/static``, served here at ``/`` (``index.html``) with the assets, shims
(``/scripts/app.js`` that extensions import) and core extension files beside it. Without it the
API works as ever and ``/`` answers a page saying how to get the editor (logged at startup too);
another version than the pinned one is served, with a warning. The per-user storage (settings,
saved workflows) is in ``routes_userdata``; our own editor extension is listed by
``/extensions`` (``routes_info``).

Templates are the shared graphs in ``graphs/``, laid out for the editor by
:func:`latentgraph.executor.workflow.api_to_ui`. The editor's template browser reads two lists:
the core index (``/templates/index.json``, with titles, descriptions and thumbnails) and the
node packs' templates (``/workflow_templates``); ours are served by both URLs, listed only in
the core index so the browser shows each graph once. Template names are looked up in the set
of graphs, never joined to a path.

The rest of what the frontend fetches at startup (``/i18n``, ``/experiment/models``,
``/global_subgraphs``, ``/node_replacements``, ``/models``) is answered with empty data of the
right shape: we have no translations, no model library and no shared subgraphs.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from ..executor import NodeRegistry
from ..executor.workflow import api_to_ui, is_ui_format, parse_api
from .routing import add_routes, json_error
from .state import state_of

routes = web.RouteTableDef()
log = logging.getLogger(__name__)

GRAPHS_DIR = Path(__file__).resolve().parents[1] / "graphs"
TEMPLATE_MODULE = "latentgraph"
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}


def frontend_root() -> Path | None:
    """The built frontend's folder, or None when the package is missing."""
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    root = Path(comfyui_frontend_package.__file__).resolve().parent / "static"
    return root if (root / "index.html").is_file() else None


def frontend_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("comfyui-frontend-package")
    except Exception:
        return None


EDITOR_INSTALL = "pip install 'latentgraph[editor]'"
FRONTEND_PACKAGE = "comfyui-frontend-package"


def pinned_frontend_version() -> str | None:
    """The frontend version latentgraph's ``editor`` extra pins, from the installed package's
    metadata (None when that cannot be read, e.g. a source tree that was never installed)."""
    try:
        from importlib.metadata import requires

        wanted = requires("latentgraph") or []
    except Exception:
        return None
    for requirement in wanted:
        match = re.match(re.escape(FRONTEND_PACKAGE) + r"\s*==\s*([^\s;]+)", requirement)
        if match:
            return match.group(1)
    return None


def frontend_problem() -> str | None:
    """What is wrong with the editor's frontend, for the startup log; None when all is well."""
    if frontend_root() is None:
        return (f"the editor's frontend ({FRONTEND_PACKAGE}) is not installed, so / serves only a "
                f"page saying how to get it; the API works. Install it with: {EDITOR_INSTALL}")
    installed, pinned = frontend_version(), pinned_frontend_version()
    if installed and pinned and installed != pinned:
        return (f"{FRONTEND_PACKAGE} {installed} is installed but latentgraph's editor answers what "
                f"{pinned} asks for; parts of the editor may not work. {EDITOR_INSTALL} installs {pinned}")
    return None


# --- templates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    name: str
    title: str
    description: str
    ui: dict[str, Any]


def _descriptions(readme: Path) -> dict[str, str]:
    """``graphs/README.md``'s table rows: | `name.json` | what it does |."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return {}
    rows = re.findall(r"^\|\s*`([^`]+)\.json`\s*\|\s*(.+?)\s*\|\s*$", text, re.MULTILINE)
    return {name: re.sub(r"`([^`]*)`", r"\1", description) for name, description in rows}


def _with_graph_ids(api: dict[str, dict[str, Any]], ui: dict[str, Any]) -> dict[str, Any]:
    """The graph's own node ids (api_to_ui numbers nodes 1..n in file order) and titles, so a
    node in the editor has the id that graphs/README.md and ``--set NODE.INPUT`` use."""
    ids = list(api)
    numeric = all(i.isdigit() for i in ids)
    renumber = {n + 1: int(i) for n, i in enumerate(ids)} if numeric else {}
    for call, node in zip(api.values(), ui["nodes"], strict=True):
        node["id"] = renumber.get(node["id"], node["id"])
        title = (call.get("_meta") or {}).get("title")
        if title:
            node["title"] = title
    for link in ui["links"]:
        link[1] = renumber.get(link[1], link[1])
        link[3] = renumber.get(link[3], link[3])
    if renumber:
        ui["last_node_id"] = max(renumber.values(), default=0)
    return ui


def load_templates(registry: NodeRegistry, graphs_dir: Path = GRAPHS_DIR) -> dict[str, Template]:
    """Every API-format graph in ``graphs_dir`` as an editor (UI-format) workflow, by name."""
    descriptions = _descriptions(graphs_dir / "README.md")
    templates: dict[str, Template] = {}
    for path in sorted(graphs_dir.glob("*.json")) if graphs_dir.is_dir() else []:
        name = path.stem
        if not _TEMPLATE_NAME.match(name):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and is_ui_format(data):
                ui = data
            else:
                api = parse_api(data)
                ui = _with_graph_ids(api, api_to_ui(api, registry))
        except Exception:  # a broken graph is the graph tests' business, not the editor's
            continue
        ui["extra"] = {**ui.get("extra", {}), "latentgraph": {"template": name}}
        title = name.replace("_", " ").capitalize()
        templates[name] = Template(name, title, descriptions.get(name, title), ui)
    return templates


def thumbnail_svg(template: Template) -> str:
    """A small drawing of the graph's nodes and links, for the template browser."""
    nodes = template.ui["nodes"]
    if not nodes:
        return '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 60"/>'
    width = max(n["pos"][0] + 300 for n in nodes) + 40
    height = max(n["pos"][1] + 160 for n in nodes) + 40
    by_id = {n["id"]: n for n in nodes}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}">',
             f'<rect width="{width}" height="{height}" fill="#202020"/>']
    for link in template.ui["links"]:
        origin, target = by_id.get(link[1]), by_id.get(link[3])
        if origin and target:
            x1, y1 = origin["pos"][0] + 300, origin["pos"][1] + 60
            x2, y2 = target["pos"][0], target["pos"][1] + 60
            parts.append(f'<path d="M{x1},{y1} C{x1 + 60},{y1} {x2 - 60},{y2} {x2},{y2}" '
                         'stroke="#8a8" stroke-width="6" fill="none"/>')
    for node in nodes:
        x, y = node["pos"]
        label = html.escape(str(node.get("title") or node.get("type") or "?"))
        parts.append(f'<rect x="{x}" y="{y}" width="300" height="120" rx="14" fill="#353535" '
                     'stroke="#666" stroke-width="3"/>')
        parts.append(f'<text x="{x + 16}" y="{y + 40}" font-family="sans-serif" font-size="26" '
                     f'fill="#ddd">{label[:22]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _core_index(templates: dict[str, Template]) -> list[dict[str, Any]]:
    """ComfyUI's template index: one category holding our graphs."""
    return [{
        "moduleName": "default", "title": "latentgraph", "type": "image", "category": "latentgraph",
        "templates": [{"name": t.name, "title": t.title, "description": t.description,
                       "mediaType": "image", "mediaSubtype": "svg", "tags": ["latentgraph"]}
                      for t in templates.values()],
    }]


async def _templates(request: web.Request) -> dict[str, Template]:
    return await asyncio.to_thread(load_templates, state_of(request).executor.registry)


async def _template_file(request: web.Request, name: str, kind: str) -> web.Response:
    template = (await _templates(request)).get(name)
    if template is None:
        return json_error(404, f"no template named {name!r}", "not_found")
    if kind == "json":
        return web.json_response(template.ui)
    return web.Response(text=thumbnail_svg(template), content_type="image/svg+xml")


@routes.get("/workflow_templates")
async def get_workflow_templates(request: web.Request) -> web.Response:
    # Node packs' templates by module. Ours are listed in the core index instead (see above),
    # so the browser shows each once; their files answer under /workflow_templates/latentgraph/.
    return web.json_response({})


@routes.get("/workflow_templates/" + TEMPLATE_MODULE + "/{name:[A-Za-z0-9_-]+}.{kind:json|jpg|svg}")
async def get_module_template(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    return await _template_file(request, request.match_info["name"], "json" if kind == "json" else "image")


@routes.get("/templates/index.json")
async def get_template_index(request: web.Request) -> web.Response:
    return web.json_response(_core_index(await _templates(request)))


@routes.get("/templates/index_logo.json")
async def get_template_logos(request: web.Request) -> web.Response:
    return web.json_response({})


@routes.get("/templates/fuse_options.json")
async def get_template_search_options(request: web.Request) -> web.Response:
    return web.json_response(None)  # the frontend's default search options


@routes.get("/templates/{name:[A-Za-z0-9_-]+}.json")
async def get_template(request: web.Request) -> web.Response:
    return await _template_file(request, request.match_info["name"], "json")


@routes.get("/templates/{name:[A-Za-z0-9_-]+}-{index:[0-9]+}.{kind:svg|webp|jpg|png}")
async def get_template_thumbnail(request: web.Request) -> web.Response:
    return await _template_file(request, request.match_info["name"], "image")


# --- what the frontend asks for at startup -----------------------------------------------------

@routes.get("/i18n")
async def get_i18n(request: web.Request) -> web.Response:
    return web.json_response({})  # no translations of our node names yet


@routes.get("/models")
async def get_model_types(request: web.Request) -> web.Response:
    return web.json_response([])  # our loaders take paths under --models-dir, not ComfyUI's folders


@routes.get("/models/{folder}")
async def get_models(request: web.Request) -> web.Response:
    return json_error(404, "no such model folder", "not_found")


@routes.get("/experiment/models")
async def get_model_folders(request: web.Request) -> web.Response:
    return web.json_response([])


@routes.get("/experiment/models/{folder}")
async def get_model_folder(request: web.Request) -> web.Response:
    return web.json_response([])


@routes.get("/global_subgraphs")
async def get_global_subgraphs(request: web.Request) -> web.Response:
    return web.json_response({})


@routes.get("/global_subgraphs/{id}")
async def get_global_subgraph(request: web.Request) -> web.Response:
    return json_error(404, "no such subgraph", "not_found")


@routes.get("/node_replacements")
async def get_node_replacements(request: web.Request) -> web.Response:
    return web.json_response({})


# --- the static frontend -----------------------------------------------------------------------

def _frontend_routes(app: web.Application, root: Path) -> None:
    """``/`` and every file and folder at the top of the build, without an ``/api`` twin."""

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(root / "index.html", headers=_NO_CACHE)

    async def empty_css(request: web.Request) -> web.Response:
        # index.html links /user.css (ComfyUI's own folder has none either); the user's real
        # stylesheet is /api/userdata/user.css.
        return web.Response(text="", content_type="text/css")

    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/user.css", empty_css)
    if (root / "assets" / "favicon.ico").is_file():
        app.router.add_get("/favicon.ico", _file_handler(root / "assets" / "favicon.ico"))
    for entry in sorted(root.iterdir()):
        if entry.name == "index.html" or entry.name.startswith("."):
            continue
        if entry.is_file():
            app.router.add_get("/" + entry.name, _file_handler(entry))
        elif entry.is_dir() and entry.name == "extensions":
            # /extensions itself and /extensions/latentgraph/ are ours (routes_info).
            for sub in sorted(p for p in entry.iterdir() if p.is_dir()):
                app.router.add_static(f"/extensions/{sub.name}", sub, append_version=False)
        elif entry.is_dir():
            app.router.add_static("/" + entry.name, entry, append_version=False)


def _file_handler(path: Path):
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    return handler


FRONTEND_MISSING_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>latentgraph: the editor is not installed</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;line-height:1.5}}
code{{background:#eee;padding:.1em .3em}}</style></head>
<body><h1>The editor is not installed</h1>
<p>This latentgraph server runs, and its API answers (<code>/prompt</code>, <code>/queue</code>,
<code>/history</code>, <code>/object_info</code>, <code>/ws</code>, ...; the same under
<code>/api/</code>), but the visual editor, ComfyUI's frontend from the package
<code>{FRONTEND_PACKAGE}</code>, is not installed beside it.</p>
<p>To get the editor, install latentgraph's <code>editor</code> extra in the same environment
and restart the server:</p>
<pre><code>{EDITOR_INSTALL}</code></pre>
<p>(from a clone: <code>pip install -e '.[editor]'</code>). Without it, workflows still run with
<code>latentgraph run</code> and <code>latentgraph submit</code>.</p>
</body></html>
"""


async def _frontend_missing(request: web.Request) -> web.Response:
    # 503: the server is up, this one service of it is not; browsers show the page all the same.
    return web.Response(status=503, content_type="text/html", text=FRONTEND_MISSING_PAGE,
                        headers=_NO_CACHE)


def register(app: web.Application) -> None:
    add_routes(app, routes)
    problem = frontend_problem()
    if problem is not None:
        log.warning("%s", problem)
    root = frontend_root()
    if root is None:
        app.router.add_get("/", _frontend_missing)
        app.router.add_get("/index.html", _frontend_missing)
    else:
        _frontend_routes(app, root)

