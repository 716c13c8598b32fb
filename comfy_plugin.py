"""The node pack as ComfyUI sees it: classic node classes generated from our declarations.

This is the ComfyUI adapter: INPUT_TYPES, RETURN_TYPES, FUNCTION, ... made from each node's
spec (through the same ``/object_info`` entry our own server sends), the services a node asks
of its host when ComfyUI runs it (:class:`HostContext`), expansion in ComfyUI's ``{"result",
"expand"}`` form, ComfyUI's model folders and its ``on_prompt`` hook.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from .executor.context import PACKAGE_MODELS, Context, Event, Folders, RunState, resolve_device
from .executor.expansion import rewrite_expansion
from .executor.literals import check_literal
from .executor.node import Expand, Node, NodeSpec, output_values
from .executor.schema import object_info
from .executor.workflow import is_link
from .nodes import default_registry

# ComfyUI fills these hidden inputs in (execution.get_input_data); their names must not clash
# with a node's own inputs. Every node gets its id (to make expanded node ids unique), the
# dynamic prompt (to link expanded nodes to our own inputs' sources, so ComfyUI's cache keys see
# them) and the prompt (a loader records its models under its call there, a saving node reads
# what is upstream of it); output nodes also get the editor's workflow, which saved PNGs carry.
HIDDEN_INPUTS = {"unique_id": "UNIQUE_ID", "dynprompt": "DYNPROMPT", "prompt": "PROMPT"}
OUTPUT_HIDDEN_INPUTS = {"extra_pnginfo": "EXTRA_PNGINFO"}
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class HostContext:
    """The executor-side services a node needs, when ComfyUI (not our executor) runs it."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.interrupt = threading.Event()
        # What nodes keep for later nodes (loaders record their models' dtypes for saved PNGs),
        # shared for the host's lifetime as our executor shares its info.
        self.info: dict[str, Any] = {}

    def context(self, node_cls: type[Node], node_id: str | None = None, prompt: dict[str, Any] | None = None,
                ui_workflow: dict[str, Any] | None = None) -> Context:
        state = RunState(str(uuid.uuid4()), prompt or {}, ui_workflow, _report_progress, self.interrupt)
        return Context(resolve_device("auto"), self.folders, state, node_id or "comfy",
                       node_cls.class_type, self.info)

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


def comfy_class(node_cls: type[Node], host: HostContext) -> type:
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
    """ComfyUI's ``{"result", "expand"}`` form. A ParentInput becomes the expanding node's own
    link when ComfyUI told us the prompt, else the value it ran with, as it is (ComfyUI passes a
    literal on untouched); ``values`` has the defaults filled in: ComfyUI does not validate
    expanded nodes, and an input left out of the prompt must not reach them as None."""

    def parent_input(name: str) -> Any:
        own = own_inputs.get(name)
        return own if is_link(own) else values.get(name)

    graph, outputs = rewrite_expansion(expansion, prefix, parent_input)
    # comfy_execution.graph_utils.is_link wants a list, not a tuple
    return {"result": tuple([node_id, index] for node_id, index in outputs), "expand": graph}


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


def comfy_folders() -> Folders:
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
        # Workflows reach ComfyUI from its clients: loaders read names inside the model folders
        # (links there are followed), never an arbitrary absolute path, as ComfyUI's own do.
        absolute_models=False,
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
    host = HostContext(comfy_folders())
    classes: dict[str, Any] = {}
    display: dict[str, str] = {}
    for node in default_registry():
        classes[node.class_type] = comfy_class(node, host)
        display[node.class_type] = node.spec.display_name
    _install_prompt_hook()
    return classes, display
