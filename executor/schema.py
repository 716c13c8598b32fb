"""From a node declaration to ComfyUI's shapes: the ``/object_info`` entry and a classic node
class (INPUT_TYPES, RETURN_TYPES, FUNCTION, ...) so the same node pack loads inside ComfyUI."""

from __future__ import annotations

import inspect
import os
import threading
import uuid
from typing import Any

from .context import Context as NodeContext
from .context import Event, Folders, RunState, resolve_device
from .literals import check_literal
from .node import Expand, InputSpec, Node, NodeSpec, output_values
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
        "input_order": {"required": list(required), **({"optional": list(optional)} if optional else {})},
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


# ComfyUI fills these hidden inputs in (execution.get_input_data); their names must not clash
# with a node's own inputs. Every node gets its id (to make expanded node ids unique) and the
# prompt (to link expanded nodes to our own inputs' sources, so ComfyUI's cache keys see them);
# output nodes also get the prompt and the editor's workflow, which saved PNGs carry.
HIDDEN_INPUTS = {"unique_id": "UNIQUE_ID", "dynprompt": "DYNPROMPT"}
OUTPUT_HIDDEN_INPUTS = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class _HostContext:
    """The executor-side services a node needs, when ComfyUI (not our executor) runs it."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.interrupt = threading.Event()

    def context(self, node_cls: type[Node], node_id: str | None = None, prompt: dict[str, Any] | None = None,
                ui_workflow: dict[str, Any] | None = None) -> NodeContext:
        state = RunState(str(uuid.uuid4()), prompt or {}, ui_workflow, _report_progress, self.interrupt)
        return NodeContext(resolve_device("auto"), self.folders, state, node_id or "comfy",
                           node_cls.class_type, {})

    def input_images(self) -> list[str]:
        """Image files in the input folder as ``sub/name.png``, sorted: the choices of an upload
        input, as ComfyUI's LoadImage lists them (hidden entries skipped, symlinks not followed)."""
        root = self.folders.input
        found = []
        for current, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = os.path.relpath(current, root)
            for name in files:
                if not name.startswith(".") and os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES:
                    found.append(name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}")
        return sorted(found)


def _report_progress(event: Event) -> None:
    if event.type != "progress":
        return
    try:  # ComfyUI's progress bar, when we are loaded inside ComfyUI
        from comfy.utils import ProgressBar  # type: ignore[import-not-found]
    except ImportError:
        return
    ProgressBar(event.data["max"]).update_absolute(event.data["value"], event.data["max"])


def comfy_class(node_cls: type[Node], host: _HostContext) -> type:
    """A ComfyUI classic node class wrapping a latentgraph node.

    Expansion is returned in ComfyUI's ``{"result": ..., "expand": ...}`` form; links to the
    expanding node's own inputs are resolved to the values ComfyUI passed in.

    An upload input (``image_upload``) is shown as ComfyUI shows LoadImage's: a combo of the files
    in the input folder, which is what makes ComfyUI's editor add its upload button; as in
    LoadImage, ``VALIDATE_INPUTS`` then takes over its check, so annotated names
    (``"x.png [output]"``) and files uploaded into subfolders stay valid.
    """
    spec = node_cls.spec
    hidden = {**HIDDEN_INPUTS, **(OUTPUT_HIDDEN_INPUTS if spec.output_node else {})}
    clash = set(hidden) & set(spec.inputs)
    if clash:
        raise TypeError(f"{spec.class_type}: inputs {sorted(clash)} clash with ComfyUI's hidden inputs")
    uploads = [n for n, s in spec.inputs.items() if s.hints.get("image_upload")]

    def INPUT_TYPES(cls: type) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        info = object_info(spec)
        types: dict[str, dict[str, Any]] = {
            k: {n: tuple(v) for n, v in section.items()} for k, section in info["input"].items()
        }
        for section in types.values():
            for name in uploads:
                if name in section:
                    options = dict(section[name][1]) if len(section[name]) > 1 else {}
                    section[name] = (host.input_images(), {**options, "image_upload": True})
        types["hidden"] = dict(hidden)
        return types

    def execute(self: Any, unique_id: str | None = None, dynprompt: Any = None, prompt: Any = None,
                extra_pnginfo: Any = None, **kwargs: Any) -> Any:
        ui_workflow = extra_pnginfo.get("workflow") if isinstance(extra_pnginfo, dict) else None
        node = node_cls(host.context(node_cls, unique_id, prompt, ui_workflow))
        values = _with_defaults(spec, kwargs)
        result = node.run(node_cls.In.model_construct(**values))
        if isinstance(result, Expand):
            own_inputs = dynprompt.get_node(unique_id).get("inputs", {}) if dynprompt is not None else {}
            return _comfy_expansion(result, values, own_inputs, f"{unique_id or 'lg'}.")
        outputs = output_values(result, node_cls)
        return {"ui": node.ui, "result": outputs} if node.ui else outputs

    attrs: dict[str, Any] = {
        "INPUT_TYPES": classmethod(INPUT_TYPES),
        "RETURN_TYPES": tuple(o.type for o in spec.outputs),
        "RETURN_NAMES": tuple(o.name for o in spec.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip or "" for o in spec.outputs),
        "FUNCTION": "execute",
        "CATEGORY": spec.category,
        "DESCRIPTION": spec.description,
        "OUTPUT_NODE": spec.output_node,
        "DEPRECATED": spec.deprecated,
        "execute": execute,
        "latentgraph_node": node_cls,
    }
    if uploads:
        def VALIDATE_INPUTS(cls: type, **values: Any) -> bool | str:  # noqa: N802 - ComfyUI's name
            for name, value in values.items():
                problem = None if value is None else check_literal(spec.inputs[name], value)  # None: a link
                if problem is not None:
                    return f"{name}: {problem[1]}"
            return True

        # ComfyUI passes, and skips its own checks for, exactly the inputs named in the signature
        # (inspect.getfullargspec(...).args), so name the upload inputs there and nothing else.
        VALIDATE_INPUTS.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("cls", *uploads)])
        attrs["VALIDATE_INPUTS"] = classmethod(VALIDATE_INPUTS)
    if spec.reads_files:
        def IS_CHANGED(cls: type, **kwargs: Any) -> str:  # noqa: N802 - ComfyUI's name
            return repr(node_cls.fingerprint(_with_defaults(spec, kwargs), host.folders))

        attrs["IS_CHANGED"] = classmethod(IS_CHANGED)
    return type(spec.class_type, (), attrs)


def _with_defaults(spec: NodeSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    full = {n: s.default for n, s in spec.inputs.items() if s.has_default}
    full.update(kwargs)
    return full


def _comfy_expansion(
    expansion: Expand, values: dict[str, Any], own_inputs: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """ComfyUI's ``{"result", "expand"}`` form. Ids get the expanding node's id as a prefix
    (ComfyUI needs them unique in the whole prompt); a ParentInput becomes the expanding node's
    own link when ComfyUI told us the prompt, else the value it ran with (``values`` has the
    defaults filled in: ComfyUI does not validate expanded nodes, and an input left out of the
    prompt must not reach them as None)."""
    from .node import ParentInput
    from .workflow import is_link

    graph = {}
    for local_id, call in expansion.nodes.items():
        inputs = {}
        for name, value in call.get("inputs", {}).items():
            if isinstance(value, ParentInput):
                own = own_inputs.get(value.name)
                inputs[name] = own if is_link(own) else values.get(value.name)
            elif is_link(value):
                inputs[name] = [prefix + str(value[0]), value[1]]
            else:
                inputs[name] = value
        graph[prefix + str(local_id)] = {"class_type": call["class_type"], "inputs": inputs}
    return {"result": tuple([prefix + str(n), i] for n, i in expansion.outputs), "expand": graph}
