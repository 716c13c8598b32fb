"""The node pack as ComfyUI sees it: classic node classes generated from our declarations."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .executor.context import PACKAGE_MODELS, Folders
from .executor.schema import _HostContext, comfy_class
from .nodes import default_registry

# ComfyUI's model folder type for our weights: ComfyUI/models/latentgraph by default, and any
# `latentgraph:` entry of extra_model_paths.yaml.
FOLDER_TYPE = "latentgraph"
COMFY_MODELS_HINT = (f"put it in ComfyUI's models/{FOLDER_TYPE} folder or add a '{FOLDER_TYPE}:' "
                     "entry to extra_model_paths.yaml (the latentgraph CLI's --models-dir does not apply here)")


def model_folders(folder_paths: Any) -> list[Path]:
    """Register our folder type with ComfyUI's ``folder_paths`` and return where loaders look.

    ComfyUI reads extra_model_paths.yaml before it loads custom nodes, so its ``latentgraph:``
    entries may already be registered; they are kept (and come first), and ComfyUI's
    models/latentgraph is added after them once. Loaders then search every folder of the type,
    ComfyUI's models folder itself (so a name like ``checkpoints/x.safetensors`` works), and
    last the pack's own models folder, whose shipped weights are used where they are, not copied.
    """
    default = os.path.join(folder_paths.models_dir, FOLDER_TYPE)
    registered = folder_paths.folder_names_and_paths.get(FOLDER_TYPE)
    if registered is None or default not in registered[0]:
        folder_paths.add_model_folder_path(FOLDER_TYPE, default)
    folders = [Path(p) for p in folder_paths.get_folder_paths(FOLDER_TYPE)]
    return [*folders, Path(folder_paths.models_dir), PACKAGE_MODELS]


def _comfy_folders() -> Folders:
    """ComfyUI's own input/output/temp folders and model search list when running inside it."""
    try:
        import folder_paths  # type: ignore[import-not-found]  # ComfyUI's module
    except ImportError:
        return Folders.under(Path.cwd())
    first, *more = model_folders(folder_paths)
    return Folders(
        Path(folder_paths.get_input_directory()),
        Path(folder_paths.get_output_directory()),
        Path(folder_paths.get_temp_directory()),
        first,
        more_models=tuple(more),
        models_hint=COMFY_MODELS_HINT,
    )


def fill_defaults(json_data: Any) -> Any:
    """ComfyUI's ``on_prompt`` hook: give our nodes in a posted prompt the inputs they left out.

    Our workflows (graphs/*.json) may leave out an input that has a default, and our executor
    fills it in; ComfyUI's validator instead reports every "required" input missing from the
    prompt (``required_input_missing``) before any node runs. ComfyUI calls this with the body of
    every ``POST /prompt`` before it validates, so the prompt it runs, stores and embeds in PNGs
    is complete. Present inputs and other packs' nodes are never touched.
    """
    registry = default_registry()
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    if not isinstance(prompt, dict):
        return json_data
    for call in prompt.values():
        class_type = call.get("class_type") if isinstance(call, dict) else None
        node = registry.get(class_type) if isinstance(class_type, str) else None
        inputs = call.get("inputs") if isinstance(call, dict) else None
        if node is None or not isinstance(inputs, dict):
            continue
        for name, spec in node.spec.inputs.items():
            if spec.required and spec.has_default and name not in inputs:
                inputs[name] = spec.default
    return json_data


def _install_prompt_hook() -> None:
    # ComfyUI's main.py imports its `server` module and creates the PromptServer before it loads
    # custom nodes; outside ComfyUI there is none (and nothing is imported to look for one).
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    handlers = getattr(instance, "on_prompt_handlers", None)
    if instance is not None and isinstance(handlers, list) and fill_defaults not in handlers:
        instance.add_on_prompt_handler(fill_defaults)


def comfy_mappings() -> tuple[dict[str, type], dict[str, str]]:
    host = _HostContext(_comfy_folders())
    classes: dict[str, Any] = {}
    display: dict[str, str] = {}
    for node in default_registry():
        classes[node.class_type] = comfy_class(node, host)
        display[node.class_type] = node.spec.display_name
    _install_prompt_hook()
    return classes, display
