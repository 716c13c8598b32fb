"""The HTTP server: ComfyUI's API over the latentgraph executor.

    latentgraph serve --data-dir ./lg --port 8188          # http://127.0.0.1:8188/api/...
    latentgraph submit graphs/core_demo.json --server http://127.0.0.1:8188

Every route answers with and without ``/api``. Queue and history live in
``DATA_DIR/latentgraph.sqlite3``; files in ``DATA_DIR/{input,output,temp,user}``. ``/`` serves
ComfyUI's own editor (the pinned ``comfyui-frontend-package``) with our extension from
``web/extension``; a route module is any ``routes_*`` with a ``register(app)``, listed in
``app.ROUTE_MODULES`` or passed as ``create_app(extra_routes=...)``.

Modules, one job each:

* ``app``            -- ``create_app`` (the factory tests use) and ``serve`` (the CLI's)
* ``config``         -- ``ServerConfig``, every setting in one frozen object
* ``security``       -- bind policy, Host/Origin checks, CORS, the bearer token
* ``queue_store``    -- queue and history in SQLite (survive a kill)
* ``runner``         -- runs prompts on a worker thread, forwards events, writes the history
* ``cluster_runner`` -- ``serve --ray``: the same, with the prompts on a Ray cluster's workers
* ``prompt_intake``  -- ``POST /prompt`` body -> queue item or ComfyUI's ``node_errors``
* ``ws``             -- WebSocket connections, outboxes, message and preview framing
* ``previews``       -- IMAGE tensor -> small PNG for live previews
* ``file_access``    -- the input/output/temp folders and confined names in them
* ``routes_*``       -- the HTTP routes, each registered with and without ``/api``: prompt and
                        queue, files, info, WebSocket, editor (frontend, templates), userdata
                        (settings, users, saved workflows), jobs
* ``client``         -- the ``latentgraph submit`` client
"""

from .app import create_app, serve
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]
