"""Workflow JSON: ComfyUI's API format (canonical), its UI format, and PNGs that carry either.

API format::

    {"3": {"class_type": "LG_FloatMath", "inputs": {"a": ["2", 0], "b": 1.5, "op": "add"}}}

An input is a literal, a link ``[node_id, output_index]``, or ``{"__value__": [...]}`` for a
literal list (so it is never mistaken for a link).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel

from . import jsonio
from .node import NodeRegistry
from .types import WIDGET_TYPES


class WorkflowFormatError(ValueError):
    """The data is not a workflow in any format we read.

    ``node_id`` (and ``input``) name the node (and its input) where the problem is, when it is
    in one node: hosts report it there, as they report validation issues.
    """

    def __init__(
        self, message: str, *, node_id: str | None = None, input: str | None = None
    ) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.input = input


class NodeCall(BaseModel):
    """One node of an API-format workflow."""

    # ComfyUI writes extra keys such as "_meta": {"title": ...}; keep them, ignore them.
    model_config = ConfigDict(extra="allow")

    class_type: str
    inputs: dict[str, Any] = {}


class ApiWorkflow(RootModel[dict[str, NodeCall]]):
    """ComfyUI's API format: node id -> node call. ``ApiWorkflow.model_json_schema()`` is the
    published schema; validation itself reports per-node issues instead of raising."""


@dataclass
class Workflow:
    """A parsed workflow: the API-format graph, plus the UI-format JSON when it is known."""

    nodes: dict[str, dict[str, Any]]
    ui: dict[str, Any] | None = None
    source: str | None = None


def is_link(value: Any) -> bool:
    """``[node_id, output_index]`` as ComfyUI writes links (ids may be str or int)."""
    return (
        type(value) is list
        and len(value) == 2
        and type(value[1]) is int
        and (
            type(value[0]) in _LINK_ID_TYPES
            or (isinstance(value[0], str | int) and not isinstance(value[0], bool))
        )
    )


_LINK_ID_TYPES = (
    str,
    int,
)  # exact types answer without isinstance (bool is an int subclass, not a link id)


def literal_input(value: Any) -> Any:
    """A literal as an API-format input: a list as ``{"__value__": [...]}``, never a link."""
    return {"__value__": value} if isinstance(value, list) else value


def is_ui_format(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("nodes"), list) and "links" in data


def parse_api(data: Any) -> dict[str, dict[str, Any]]:
    """Check the outer shape of an API-format workflow and normalise ids to strings.

    Raises :class:`WorkflowFormatError` for data that is not a workflow at all; everything
    about individual nodes is left to validation, which reports all problems at once.
    """
    if not isinstance(data, Mapping):
        raise WorkflowFormatError(f"a workflow is a JSON object, got {type(data).__name__}")
    if "prompt" in data and isinstance(data["prompt"], Mapping) and "class_type" not in data:
        data = data["prompt"]  # the body of a POST /prompt
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, call in data.items():
        nodes[str(node_id)] = call if isinstance(call, dict) else {"__malformed__": call}
    return nodes


def load_workflow(
    source: str | Path | Mapping[str, Any] | Workflow, registry: NodeRegistry
) -> Workflow:
    """Read a workflow from a dict, a JSON file (API or UI format) or a PNG from LG_SaveImage.

    ``registry`` has the node schemas a UI-format graph is converted through (the package's
    ``latentgraph.load_workflow`` passes the installed node pack)."""
    if isinstance(source, Workflow):
        return source
    if isinstance(source, Mapping):
        return _from_data(dict(source), registry, None)
    if not isinstance(source, str | Path):
        raise WorkflowFormatError(
            f"a workflow is a JSON object or a file path, got {type(source).__name__}"
        )
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise WorkflowFormatError(f"cannot read {path}: {err.strerror or err}") from None
    if raw.startswith(b"\x89PNG"):
        return _from_png(path, registry)
    try:
        data = jsonio.loads(raw)
    except jsonio.InvalidJson as err:
        raise WorkflowFormatError(
            f"{path} is neither JSON nor a PNG with a workflow: {err}"
        ) from None
    return _from_data(data, registry, str(path))


def _from_data(data: Any, registry: NodeRegistry, source: str | None) -> Workflow:
    if isinstance(data, Mapping) and is_ui_format(data):
        api = ui_to_api(data, registry)
        return Workflow(nodes=api, ui=dict(data), source=source)
    return Workflow(nodes=parse_api(data), source=source)


def _from_png(path: Path, registry: NodeRegistry) -> Workflow:
    from PIL import Image

    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or {})
    except Exception as err:  # PIL raises many types for damaged files
        raise WorkflowFormatError(f"{path} is not a readable PNG: {err}") from None
    try:
        ui = jsonio.loads(text["workflow"]) if "workflow" in text else None
        if "prompt" in text:
            return Workflow(
                nodes=parse_api(jsonio.loads(text["prompt"])),
                ui=ui if isinstance(ui, dict) else None,
                source=str(path),
            )
    except jsonio.InvalidJson as err:
        raise WorkflowFormatError(
            f"{path}: the workflow stored in the PNG is damaged: {err}"
        ) from None
    if ui is not None:
        return _from_data(ui, registry, str(path))
    raise WorkflowFormatError(f"{path} carries no workflow (no 'prompt' or 'workflow' text chunk)")


# --- UI format -> API format -------------------------------------------------------------------

_SEED_CONTROLS = frozenset({"fixed", "increment", "decrement", "randomize"})
_MUTED, _BYPASSED = 2, 4
_VIRTUAL = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
UiId = int | str  # the editor numbers nodes and links; newer frontends also write strings


def _kind(value: Any) -> str:
    """The JSON type of ``value``, for messages."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }
    return names.get(type(value), "a number")


def _ui_id(value: Any, what: str, node_id: str | None = None, input: str | None = None) -> UiId:
    if (
        type(value) is int or type(value) is str
    ):  # not bool, not float: 1.0 would never match 1's key
        return value
    raise WorkflowFormatError(
        f"{what} must be an integer or a string, not {_kind(value)}", node_id=node_id, input=input
    )


def _links_by_id(ui: Mapping[str, Any]) -> dict[UiId, tuple[UiId, int]]:
    """link id -> (origin node, origin slot), from either spelling of a link (a list
    ``[id, origin_id, origin_slot, target_id, target_slot, type]`` or an object with those keys);
    the target is the input that names the link, so its half of the link is not needed."""
    raw = ui.get("links")
    if raw is None:
        return {}
    if type(raw) is not list:
        raise WorkflowFormatError(f"'links' must be a list, not {_kind(raw)}")
    links: dict[UiId, tuple[UiId, int]] = {}
    for i, link in enumerate(raw):
        if type(link) is list and len(link) >= 5:
            link_id, origin, slot = link[0], link[1], link[2]
        elif type(link) is dict:
            missing = [key for key in ("id", "origin_id", "origin_slot") if key not in link]
            if missing:
                raise WorkflowFormatError(
                    f"links[{i}] has no {', '.join(repr(k) for k in missing)}"
                )
            link_id, origin, slot = link["id"], link["origin_id"], link["origin_slot"]
        elif link is None:
            continue
        else:
            raise WorkflowFormatError(
                f"links[{i}] must be [id, origin_id, origin_slot, target_id, target_slot, type] or an"
                f" object with those keys, not {_kind(link)}"
                + (f" of {len(link)}" if type(link) is list else "")
            )
        if type(slot) is not int or slot < 0:
            raise WorkflowFormatError(
                f"links[{i}]'s origin slot must be an output index (0, 1, ...), "
                f"not {_kind(slot) if type(slot) is not int else slot}"
            )
        links[_ui_id(link_id, f"links[{i}]'s id")] = (
            _ui_id(origin, f"links[{i}]'s origin node id"),
            slot,
        )
    return links


def _ui_nodes(ui: Mapping[str, Any]) -> dict[UiId, dict[str, Any]]:
    """node id -> node, after checking every part of a node the conversion reads."""
    nodes: dict[UiId, dict[str, Any]] = {}
    for i, node in enumerate(ui["nodes"]):
        if type(node) is not dict:
            raise WorkflowFormatError(f"nodes[{i}] must be an object, not {_kind(node)}")
        if "id" not in node:
            raise WorkflowFormatError(f"nodes[{i}] has no 'id'")
        node_id = _ui_id(node["id"], f"nodes[{i}]'s id")
        name = str(node_id)
        kind = node.get("type")
        if type(kind) is not str:
            raise WorkflowFormatError(
                f"node {name}: 'type' (the node's class) must be a string, not {_kind(kind)}",
                node_id=name,
            )
        if type(node.get("mode") or 0) is not int:
            raise WorkflowFormatError(
                f"node {name}: 'mode' must be an integer, not {_kind(node['mode'])}", node_id=name
            )
        for key in ("inputs", "outputs"):
            entries = node.get(key)
            if entries is None:
                continue
            if type(entries) is not list:
                raise WorkflowFormatError(
                    f"node {name}: '{key}' must be a list, not {_kind(entries)}", node_id=name
                )
            for j, entry in enumerate(entries):
                if type(entry) is not dict:
                    raise WorkflowFormatError(
                        f"node {name}: {key}[{j}] must be an object, not {_kind(entry)}",
                        node_id=name,
                    )
                if key == "outputs":
                    continue
                input_name = entry.get("name")
                if type(input_name) is not str and kind not in _VIRTUAL:
                    raise WorkflowFormatError(
                        f"node {name}: inputs[{j}] needs a 'name' (a string)", node_id=name
                    )
                if entry.get("link") is not None:
                    _ui_id(
                        entry["link"],
                        f"node {name}: the link of input '{input_name}'",
                        name,
                        input_name if type(input_name) is str else None,
                    )
        values = node.get("widgets_values")
        if values is not None and type(values) is not list and type(values) is not dict:
            raise WorkflowFormatError(
                f"node {name}: 'widgets_values' must be a list or an object, not {_kind(values)}",
                node_id=name,
            )
        nodes[node_id] = node
    return nodes


def ui_to_api(ui: Mapping[str, Any], registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Convert the editor's format (nodes + links + widgets_values) to the API format.

    Widget values are matched to inputs through the node schemas, skipping the seed control
    value ("fixed", "randomize", ...) the editor stores after seed widgets. Muted nodes are
    dropped; bypassed nodes, reroutes and primitive nodes are resolved into direct links or
    literals, as ComfyUI's frontend does when it queues a graph.

    Raises :class:`WorkflowFormatError` (naming the node, or the entry of ``nodes``/``links``)
    for data that is not shaped like a UI-format graph; what the shape allows but the node
    schemas do not (an unknown class, a bad literal) is validation's to report.
    """
    if type(ui.get("nodes")) is not list:
        raise WorkflowFormatError(f"'nodes' must be a list, not {_kind(ui.get('nodes'))}")
    nodes = _ui_nodes(ui)
    links = _links_by_id(ui)

    resolved: dict[UiId, Any] = {}  # link id -> its source: many inputs may share one chain

    def source_of(link_id: UiId | None) -> Any:
        """Follow a link through reroutes/bypasses to a real output, or to a primitive's value.

        A loop rather than recursion, and every link passed on the way remembers the answer:
        a chain of reroutes may be as long as the graph, and many inputs may end in it."""
        path: list[UiId] = []
        source: Any = None
        while link_id is not None and link_id in links:
            if link_id in resolved:
                source = resolved[link_id]
                break
            resolved[link_id] = None  # a link met again on this walk is a loop: no source
            path.append(link_id)
            origin, slot = links[link_id]
            node = nodes.get(origin)
            if node is None:
                source = [str(origin), slot]
                break
            kind, mode = node["type"], node.get("mode") or 0
            if kind == "PrimitiveNode":
                values = node.get("widgets_values")
                source = {"__literal__": values[0] if type(values) is list and values else None}
                break
            if kind != "Reroute" and mode != _BYPASSED:
                source = [str(origin), slot]
                break
            outputs = node.get("outputs") or []
            out_type = outputs[slot].get("type") if slot < len(outputs) else None
            link_id = next(
                (
                    inp["link"]
                    for inp in node.get("inputs") or ()
                    if inp.get("link") is not None
                    and (kind == "Reroute" or inp.get("type") == out_type)
                ),
                None,
            )
        for passed in path:
            resolved[passed] = source
        return source[:] if type(source) is list else source

    api: dict[str, dict[str, Any]] = {}
    for node_id, node in nodes.items():
        kind = node["type"]
        if kind in _VIRTUAL or (node.get("mode") or 0) in (_MUTED, _BYPASSED):
            continue
        node_cls = registry.get(kind)
        inputs: dict[str, Any] = {}
        if node_cls is not None:
            inputs.update(_widget_inputs(node_cls.spec, node.get("widgets_values")))
        for inp in node.get("inputs") or ():
            src = source_of(inp.get("link"))
            if isinstance(src, dict):
                inputs[inp["name"]] = src["__literal__"]
            elif src is not None:
                inputs[inp["name"]] = src
        call: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        if node.get("title"):
            call["_meta"] = {"title": node["title"]}
        api[str(node_id)] = call
    return api


def _widget_inputs(spec: Any, values: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    widgets = [
        s
        for s in spec.inputs.values()
        if s.socket.type in WIDGET_TYPES and not s.hints.get("forceInput")
    ]
    if isinstance(values, dict):
        return {s.name: values[s.name] for s in widgets if s.name in values}
    out: dict[str, Any] = {}
    values = values or []
    at = 0
    for spec_in in widgets:
        if at >= len(values):
            break
        out[spec_in.name] = values[at]
        at += 1
        # the seed control after a seed widget; any other value (a list, a number) is the next widget's
        if (
            spec_in.type == "INT"
            and at < len(values)
            and type(values[at]) is str
            and values[at] in _SEED_CONTROLS
        ):
            at += 1
    return out


def api_to_ui(api: Mapping[str, Mapping[str, Any]], registry: NodeRegistry) -> dict[str, Any]:
    """Lay out an API-format graph as a UI-format graph the editor can open.

    Nodes are placed in columns by depth; this is what a PNG's ``workflow`` chunk carries when a
    graph arrived in API format.
    """
    depth: dict[str, int] = {}

    def depth_of(node_id: str, trail: frozenset[str] = frozenset()) -> int:
        if node_id in depth:
            return depth[node_id]
        if node_id in trail or node_id not in api:
            return 0
        parents = [v[0] for v in api[node_id].get("inputs", {}).values() if is_link(v)]
        depth[node_id] = 1 + max((depth_of(str(p), trail | {node_id}) for p in parents), default=-1)
        return depth[node_id]

    numeric = {node_id: i + 1 for i, node_id in enumerate(api)}
    ui_nodes: list[dict[str, Any]] = []
    ui_links: list[list[Any]] = []
    rows: dict[int, int] = {}
    for node_id, call in api.items():
        col = depth_of(node_id)
        row = rows.get(col, 0)
        rows[col] = row + 1
        cls = registry.get(call.get("class_type", ""))
        spec = cls.spec if cls else None
        node: dict[str, Any] = {
            "id": numeric[node_id],
            "type": call.get("class_type"),
            "pos": [40 + 340 * col, 40 + 220 * row],
            "size": [300, 160],
            "flags": {},
            "order": len(ui_nodes),
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {"Node name for S&R": call.get("class_type")},
            "widgets_values": [],
        }
        if spec is not None:
            node["outputs"] = [
                {"name": o.name, "type": o.type, "links": [], "slot_index": i}
                for i, o in enumerate(spec.outputs)
            ]
            for name, s in spec.inputs.items():
                default = s.default if s.has_default else None
                value = call.get("inputs", {}).get(name, default)
                if s.socket.is_widget and not s.hints.get("forceInput"):
                    node["widgets_values"].append(default if is_link(value) else value)
                    if s.type == "INT" and (
                        s.hints.get("control_after_generate") or name in ("seed", "noise_seed")
                    ):
                        node["widgets_values"].append("fixed")
                if is_link(value) or not s.socket.is_widget:
                    entry: dict[str, Any] = {"name": name, "type": s.type, "link": None}
                    if s.socket.is_widget:
                        entry["widget"] = {"name": name}
                    node["inputs"].append(entry)
        ui_nodes.append(node)
    by_numeric = {n["id"]: n for n in ui_nodes}
    for node_id, call in api.items():
        target = by_numeric[numeric[node_id]]
        for slot, entry in enumerate(target["inputs"]):
            value = call.get("inputs", {}).get(entry["name"])
            if not is_link(value) or str(value[0]) not in numeric:
                continue
            origin = by_numeric[numeric[str(value[0])]]
            link_id = len(ui_links) + 1
            ui_links.append([link_id, origin["id"], value[1], target["id"], slot, entry["type"]])
            entry["link"] = link_id
            if value[1] < len(origin["outputs"]):
                origin["outputs"][value[1]]["links"].append(link_id)
    return {
        "last_node_id": len(ui_nodes),
        "last_link_id": len(ui_links),
        "nodes": ui_nodes,
        "links": ui_links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
