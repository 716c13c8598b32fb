"""The node pack as ComfyUI sees it: classic node classes generated from our declarations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .executor.context import Folders
from .executor.schema import _HostContext, comfy_class
from .nodes import default_registry


def _comfy_folders() -> Folders:
    """ComfyUI's own input/output/temp/models folders when running inside it."""
    try:
        import folder_paths  # type: ignore[import-not-found]  # ComfyUI's module
    except ImportError:
        return Folders.under(Path.cwd())
    return Folders(
        Path(folder_paths.get_input_directory()),
        Path(folder_paths.get_output_directory()),
        Path(folder_paths.get_temp_directory()),
        Path(folder_paths.models_dir),
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
