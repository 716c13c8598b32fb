"""From a node declaration to the ``/object_info`` entry ComfyUI's HTTP API and editor read.

The classic node classes ComfyUI itself loads are generated from the same entry by the pack's
ComfyUI adapter (``comfy_plugin``), which sits above the executor."""

from __future__ import annotations

from typing import Any

from .node import InputSpec, NodeSpec
from .types import COMBO


def input_options(spec: InputSpec) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if spec.has_default and spec.default is not None:
        options["default"] = spec.default
    if spec.ge is not None:
        options["min"] = spec.ge
    if spec.le is not None:
        options["max"] = spec.le
    if spec.tooltip:
        options["tooltip"] = spec.tooltip
    options.update(spec.hints)
    return options


def input_entry(spec: InputSpec) -> tuple[Any, ...]:
    """``(TYPE, options)``; a combo's TYPE is its list of choices, as ComfyUI writes it."""
    kind: Any = list(spec.socket.choices or ()) if spec.type == COMBO else spec.type
    options = input_options(spec)
    return (kind, options) if options else (kind,)


# The editor recognises a node pack by a module named "custom_nodes.<pack>" (it shows "?" as the
# source badge of anything else); inside ComfyUI that is what our module is called too.
PYTHON_MODULE = "custom_nodes.latentgraph"


def object_info(spec: NodeSpec, python_module: str = PYTHON_MODULE) -> dict[str, Any]:
    required = {n: input_entry(s) for n, s in spec.inputs.items() if s.required}
    optional = {n: input_entry(s) for n, s in spec.inputs.items() if not s.required}
    inputs: dict[str, Any] = {"required": required}
    if optional:
        inputs["optional"] = optional
    return {
        "input": inputs,
        "input_order": {
            "required": list(required),
            **({"optional": list(optional)} if optional else {}),
        },
        "output": [o.type for o in spec.outputs],
        "output_is_list": [False for _ in spec.outputs],
        "output_name": [o.name for o in spec.outputs],
        "output_tooltips": [o.tooltip or "" for o in spec.outputs],
        "name": spec.class_type,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": python_module,
        "category": spec.category,
        "output_node": spec.output_node,
        "deprecated": spec.deprecated,
        "experimental": False,
    }
