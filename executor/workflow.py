"""Workflow JSON: ComfyUI's API format (canonical), its UI format, and PNGs that carry either.

API format::

    {"3": {"class_type": "LG_FloatMath", "inputs": {"a": ["2", 0], "b": 1.5, "op": "add"}}}

An input is a literal, a link ``[node_id, output_index]``, or ``{"__value__": [...]}`` for a
literal list (so it is never mistaken for a link).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, RootModel

from .node import NodeRegistry
from .types import WIDGET_TYPES


class WorkflowFormatError(ValueError):
    """The data is not a workflow in any format we read."""


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
        and (type(value[0]) in _LINK_ID_TYPES or (isinstance(value[0], str | int) and not isinstance(value[0], bool)))
    )


_LINK_ID_TYPES = (str, int)  # exact types answer without isinstance (bool is an int subclass, not a link id)


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
    source: str | Path | Mapping[str, Any] | Workflow, registry: NodeRegistry | None = None
) -> Workflow:
    """Read a workflow from a dict, a JSON file (API or UI format) or a PNG from LG_SaveImage."""
    if isinstance(source, Workflow):
        return source
    if isinstance(source, Mapping):
        return _from_data(dict(source), registry, None)
    if not isinstance(source, str | Path):
        raise WorkflowFormatError(f"a workflow is a JSON object or a file path, got {type(source).__name__}")
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise WorkflowFormatError(f"cannot read {path}: {err.strerror or err}") from None
    if raw.startswith(b"\x89PNG"):
        return _from_png(path, registry)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WorkflowFormatError(f"{path} is neither JSON nor a PNG with a workflow: {err}") from None
    return _from_data(data, registry, str(path))


def _from_data(data: Any, registry: NodeRegistry | None, source: str | None) -> Workflow:
    if isinstance(data, Mapping) and is_ui_format(data):
        from ..nodes import default_registry  # local: nodes sit above the executor

        api = ui_to_api(data, registry or default_registry())
        return Workflow(nodes=api, ui=dict(data), source=source)
    return Workflow(nodes=parse_api(data), source=source)


def _from_png(path: Path, registry: NodeRegistry | None) -> Workflow:
    from PIL import Image

    try:
        with Image.open(path) as img:
            text = dict(getattr(img, "text", {}) or {})
    except Exception as err:  # PIL raises many types for damaged files
        raise WorkflowFormatError(f"{path} is not a readable PNG: {err}") from None
    try:
        ui = json.loads(text["workflow"]) if "workflow" in text else None
        if "prompt" in text:
            return Workflow(nodes=parse_api(json.loads(text["prompt"])), ui=ui, source=str(path))
        if ui is not None:
            return _from_data(ui, registry, str(path))
    except json.JSONDecodeError as err:
        raise WorkflowFormatError(f"{path}: the workflow stored in the PNG is damaged: {err}") from None
    raise WorkflowFormatError(f"{path} carries no workflow (no 'prompt' or 'workflow' text chunk)")


# --- UI format -> API format -------------------------------------------------------------------

_SEED_CONTROLS = frozenset({"fixed", "increment", "decrement", "randomize"})
_MUTED, _BYPASSED = 2, 4
_VIRTUAL = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


def _links_by_id(ui: Mapping[str, Any]) -> dict[int, tuple[int, int, int, int]]:
    """link id -> (origin node, origin slot, target node, target slot), both link spellings."""
    links = {}
    for link in ui.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            links[link[0]] = (link[1], link[2], link[3], link[4])
        elif isinstance(link, dict):
            links[link["id"]] = (
                link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"]
            )
    return links


def ui_to_api(ui: Mapping[str, Any], registry: NodeRegistry) -> dict[str, dict[str, Any]]:
    """Convert the editor's format (nodes + links + widgets_values) to the API format.

    Widget values are matched to inputs through the node schemas, skipping the seed control
    value ("fixed", "randomize", ...) the editor stores after seed widgets. Muted nodes are
    dropped; bypassed nodes, reroutes and primitive nodes are resolved into direct links or
    literals, as ComfyUI's frontend does when it queues a graph.
    """
    nodes = {n["id"]: n for n in ui.get("nodes", []) if isinstance(n, dict) and "id" in n}
    links = _links_by_id(ui)

    def source_of(link_id: int | None, seen: frozenset = frozenset()) -> Any:
        """Follow a link through reroutes/bypasses to a real output, or to a primitive's value."""
        if link_id is None or link_id not in links or link_id in seen:
            return None
        origin, slot, _, _ = links[link_id]
        node = nodes.get(origin)
        if node is None:
            return [str(origin), slot]
        kind, mode = node.get("type"), node.get("mode", 0)
        if kind == "PrimitiveNode":
            values = node.get("widgets_values") or [None]
            return {"__literal__": values[0]}
        if kind == "Reroute" or mode == _BYPASSED:
            out_type = (node.get("outputs") or [{}])[slot].get("type") if node.get("outputs") else None
            for inp in node.get("inputs") or []:
                if inp.get("link") is not None and (kind == "Reroute" or inp.get("type") == out_type):
                    return source_of(inp["link"], seen | {link_id})
            return None
        return [str(origin), slot]

    api: dict[str, dict[str, Any]] = {}
    for node_id, node in nodes.items():
        kind = node.get("type")
        if kind in _VIRTUAL or node.get("mode", 0) in (_MUTED, _BYPASSED):
            continue
        node_cls = registry.get(kind)
        inputs: dict[str, Any] = {}
        if node_cls is not None:
            inputs.update(_widget_inputs(node_cls.spec, node.get("widgets_values")))
        for inp in node.get("inputs") or []:
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


def _widget_inputs(spec: Any, values: Any) -> dict[str, Any]:
    widgets = [s for s in spec.inputs.values() if s.socket.type in WIDGET_TYPES and not s.hints.get("forceInput")]
    if isinstance(values, dict):
        return {s.name: values[s.name] for s in widgets if s.name in values}
    out: dict[str, Any] = {}
    queue = list(values or [])
    for spec_in in widgets:
        if not queue:
            break
        out[spec_in.name] = queue.pop(0)
        if spec_in.type == "INT" and queue and queue[0] in _SEED_CONTROLS:
            queue.pop(0)
    return out


def api_to_ui(api: Mapping[str, Mapping[str, Any]], registry: NodeRegistry) -> dict[str, Any]:
    """Lay out an API-format graph as a UI-format graph the editor can open.

    Nodes are placed in columns by depth; this is what a PNG's ``workflow`` chunk carries when a
    graph arrived in API format.
    """
    depth: dict[str, int] = {}

    def depth_of(node_id: str, trail: frozenset = frozenset()) -> int:
        if node_id in depth:
            return depth[node_id]
        if node_id in trail or node_id not in api:
            return 0
        parents = [v[0] for v in api[node_id].get("inputs", {}).values() if is_link(v)]
        depth[node_id] = 1 + max((depth_of(str(p), trail | {node_id}) for p in parents), default=-1)
        return depth[node_id]

    numeric = {node_id: i + 1 for i, node_id in enumerate(api)}
    ui_nodes, ui_links, rows = [], [], {}
    for node_id, call in api.items():
        col = depth_of(node_id)
        row = rows.get(col, 0)
        rows[col] = row + 1
        cls = registry.get(call.get("class_type", ""))
        spec = cls.spec if cls else None
        node: dict[str, Any] = {
            "id": numeric[node_id], "type": call.get("class_type"), "pos": [40 + 340 * col, 40 + 220 * row],
            "size": [300, 160], "flags": {}, "order": len(ui_nodes), "mode": 0, "inputs": [], "outputs": [],
            "properties": {"Node name for S&R": call.get("class_type")}, "widgets_values": [],
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
                    if s.type == "INT" and (s.hints.get("control_after_generate") or name in ("seed", "noise_seed")):
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
        "last_node_id": len(ui_nodes), "last_link_id": len(ui_links), "nodes": ui_nodes,
        "links": ui_links, "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }
