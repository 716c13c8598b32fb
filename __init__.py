"""latentgraph: typed node graphs for generative image models, with a caching DAG executor.

Python API::

    from latentgraph import Executor, load_workflow
    result = Executor(device="cpu").run(load_workflow("graphs/shapes_sd.json"))

This folder is also a ComfyUI custom-node pack: ComfyUI reads NODE_CLASS_MAPPINGS,
NODE_DISPLAY_NAME_MAPPINGS and WEB_DIRECTORY from here. Reading the mappings registers the
``latentgraph`` model folder type with ComfyUI's ``folder_paths`` (see ``comfy_plugin``), so
loaders find weights in ComfyUI's models/latentgraph, in extra_model_paths.yaml's ``latentgraph:``
entries, and in this pack's own models/ folder.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

WEB_DIRECTORY = "./web/extension"

__all__ = ["Executor", "load_workflow", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import latentgraph` stays cheap and ComfyUI pays only when it asks.
    if name in ("Executor", "load_workflow"):
        from . import api  # the executor with this node pack and version filled in

        return getattr(api, name)
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from .comfy_plugin import comfy_mappings

        classes, display = comfy_mappings()
        globals().update(NODE_CLASS_MAPPINGS=classes, NODE_DISPLAY_NAME_MAPPINGS=display)
        return globals()[name]
    raise AttributeError(f"module 'latentgraph' has no attribute {name!r}")
