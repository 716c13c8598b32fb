"""The node pack as ComfyUI sees it: classic node classes generated from our declarations."""

from __future__ import annotations

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


def comfy_mappings() -> tuple[dict[str, type], dict[str, str]]:
    host = _HostContext(_comfy_folders())
    classes: dict[str, Any] = {}
    display: dict[str, str] = {}
    for node in default_registry():
        classes[node.class_type] = comfy_class(node, host)
        display[node.class_type] = node.spec.display_name
    return classes, display
