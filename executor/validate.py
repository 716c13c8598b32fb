"""Validation of a whole workflow before anything runs; every problem is reported at once.

The same pass produces the :class:`Graph` the executor runs: literals coerced, defaults filled,
links resolved, nodes in topological order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx
from pydantic import ValidationError

from .jsonio import MAX_DEPTH, InvalidJson, check_tree
from .literals import coerce_cached
from .node import Node, NodeRegistry
from .types import accepts
from .workflow import NodeCall, is_link


@dataclass(frozen=True)
class Issue:
    """One validation problem, in the structured form every host renders from."""

    node_id: str | None
    class_type: str | None
    input: str | None
    type: str
    message: str
    expected: Any = None
    received: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"node {self.node_id} ({self.class_type})" if self.node_id else "workflow"
        if self.input:
            where += f", input '{self.input}'"
        return f"{where}: {self.message}"


class WorkflowInvalid(Exception):
    """Raised by the executor when validation found problems; carries all of them."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__(f"{len(issues)} problem(s) in the workflow:\n" + "\n".join(f"  - {i}" for i in issues))


@dataclass
class GraphNode:
    """A validated node: its class, coerced literals and resolved links."""

    id: str
    cls: type[Node]
    literals: dict[str, Any]
    links: dict[str, tuple[str, int]]


@dataclass
class Graph:
    nodes: dict[str, GraphNode]
    order: list[str]  # topological
    #: For each node, which of its outputs the graph's links read.
    read_outputs: dict[str, set[int]] = field(default_factory=dict)
    #: With ``keep_source``: a copy of the workflow as validated, deep enough that later edits
    #: of the caller's dict do not reach it (links and literal lists copied, scalars shared).
    source: dict[str, Any] | None = None


def _literal_list(value: Any) -> Any:
    """``{"__value__": [...]}`` is ComfyUI's escape for a literal list."""
    if type(value) is dict and set(value) == {"__value__"}:
        return value["__value__"]
    return value


def validate(
    nodes: Mapping[str, Mapping[str, Any]],
    registry: NodeRegistry,
    targets: Iterable[str] = (),
    *,
    require_output: bool = True,
    known_outputs: Mapping[str, tuple[str, ...]] | None = None,
    keep_source: bool = False,
) -> tuple[Graph | None, list[Issue]]:
    """Check every node, input, link and literal; return the runnable graph or all issues.

    ``known_outputs`` maps ids outside ``nodes`` (the enclosing graph, for expansions) to their
    output types, so links may point there. ``keep_source`` fills ``Graph.source`` (copied in
    the same pass, cheaper than copying afterwards).
    """
    issues: list[Issue] = []
    add = issues.append
    graph_nodes: dict[str, GraphNode] = {}
    known_outputs = known_outputs or {}
    read_outputs: dict[str, set[int]] = {}
    source: dict[str, Any] | None = {} if keep_source else None
    # Whether every link points to a node listed earlier: then the listing is already a
    # topological order (and the one the depth-first sort would give), so no sort is needed.
    in_order = True

    types_of: dict[str, tuple[str, ...] | None] = {}  # a source feeds many inputs: look it up once

    def output_types(node_id: str) -> tuple[str, ...] | None:
        if node_id in types_of:
            return types_of[node_id]
        call = nodes.get(node_id)
        if call is not None:
            mapping = type(call) is dict or isinstance(call, Mapping)
            cls = registry.get(call.get("class_type")) if mapping else None
            types = cls.spec.output_types if cls else None
        else:
            types = known_outputs.get(node_id)
        types_of[node_id] = types
        return types

    for node_id, call in nodes.items():
        mapping = type(call) is dict or isinstance(call, Mapping)
        class_type = call.get("class_type") if mapping else None
        raw_inputs = call.get("inputs", {}) if mapping else None
        if type(class_type) is not str or type(raw_inputs) is not dict:
            _structure_issues(node_id, call, add)
            continue
        cls = registry.get(class_type)
        if cls is None:
            add(Issue(node_id, class_type, None, "unknown_class_type",
                      f"no node named '{class_type}' is installed", None, class_type))
            continue
        spec = cls.spec
        literals: dict[str, Any] = {}
        links: dict[str, tuple[str, int]] = {}
        copied: dict[str, Any] = {}
        for name, value in raw_inputs.items():
            in_spec = spec.inputs.get(name)
            if in_spec is None:
                add(Issue(node_id, class_type, name, "unknown_input",
                          f"'{class_type}' has no input '{name}'", sorted(spec.inputs), name))
                continue
            if type(value) is list and (
                len(value) == 2 and type(value[1]) is int and type(value[0]) is str or is_link(value)
            ):
                src, index = value
                if type(src) is not str:
                    src = str(src)
                types = types_of[src] if src in types_of else output_types(src)
                if types is None:
                    if src in nodes or src in known_outputs:
                        continue  # the source node is itself broken and reported on its own
                    add(Issue(node_id, class_type, name, "missing_node",
                              f"links to node '{src}', which is not in the workflow", None, value))
                    continue
                if not 0 <= index < len(types):
                    add(Issue(node_id, class_type, name, "bad_output_index",
                              f"links to output {index} of node '{src}', which has {len(types)} output(s)",
                              f"0..{len(types) - 1}", index))
                    continue
                if in_spec.type != types[index] and not accepts(in_spec.type, types[index]):
                    add(Issue(node_id, class_type, name, "return_type_mismatch",
                              f"expects {in_spec.type} but is linked to a {types[index]} output",
                              in_spec.type, types[index]))
                    continue
                links[name] = (src, index)
                reads = read_outputs.get(src)
                if reads is None:
                    read_outputs[src] = {index}
                else:
                    reads.add(index)
                if src not in graph_nodes and src in nodes:
                    in_order = False
                if source is not None:
                    copied[name] = value[:]
                continue
            if type(value) in _CONTAINERS:
                try:  # a literal list or object: before anything walks it recursively
                    check_tree(value, MAX_DEPTH, finite=False)
                except InvalidJson as err:
                    add(Issue(node_id, class_type, name, "invalid_input_type", str(err), in_spec.type,
                              _jsonable(value)))
                    continue
                if source is not None:
                    copied[name] = copy.deepcopy(value)
            elif source is not None:
                copied[name] = value
            coerced, problem = coerce_cached(in_spec, _literal_list(value) if type(value) is dict else value)
            if problem is not None:
                expected: Any = in_spec.type
                if in_spec.socket.choices is not None:
                    expected = list(in_spec.socket.choices)
                elif in_spec.ge is not None or in_spec.le is not None:
                    expected = {"type": in_spec.type, "min": in_spec.ge, "max": in_spec.le}
                add(Issue(node_id, class_type, name, problem[0], problem[1], expected, _jsonable(value)))
                continue
            literals[name] = coerced
        for name, in_spec in spec.inputs.items() if len(links) + len(literals) < len(spec.inputs) else ():
            if name in links or name in literals or name in raw_inputs:
                continue
            if in_spec.has_default:
                literals[name] = in_spec.default
            elif in_spec.socket.is_widget:
                add(Issue(node_id, class_type, name, "required_input_missing",
                          f"required input '{name}' has no value", in_spec.type, None))
            else:
                add(Issue(node_id, class_type, name, "required_input_missing",
                          f"required input '{name}' is not linked to a {in_spec.type} output",
                          in_spec.type, None))
        graph_nodes[node_id] = GraphNode(node_id, cls, literals, links)
        if source is not None:
            source[node_id] = {**call, "inputs": copied}

    order, cycle_members = (list(graph_nodes), set()) if in_order else _toposort(graph_nodes)
    if cycle_members:
        digraph = nx.DiGraph()
        digraph.add_edges_from(
            (src, n.id) for n in graph_nodes.values() for src, _ in n.links.values() if src in graph_nodes
        )
        for cycle in nx.simple_cycles(digraph):
            path = " -> ".join([*cycle, cycle[0]])
            for node_id in cycle:
                add(Issue(node_id, graph_nodes[node_id].cls.class_type, None, "dependency_cycle",
                          f"is part of a cycle: {path}", "an acyclic graph", path))
            break  # one cycle names the problem; listing every cycle can be exponential

    targets = [str(t) for t in targets]
    for target in targets:
        if target not in nodes:
            add(Issue(target, None, None, "missing_node", f"requested node '{target}' is not in the workflow"))
    if require_output and not targets and not any(
        n.cls.spec.output_node for n in graph_nodes.values()
    ) and not any(i.type == "unknown_class_type" for i in issues):
        add(Issue(None, None, None, "prompt_no_outputs",
                  "the workflow has no output node (such as LG_SaveImage) and no requested nodes",
                  "at least one output node", None))
    if issues:
        return None, issues
    return Graph(graph_nodes, order, read_outputs, source), []


_CONTAINERS = (list, dict)  # literals that a caller could edit in place


def _toposort(nodes: dict[str, GraphNode]) -> tuple[list[str], set[str]]:
    """Depth-first post-order from each node in workflow order (deterministic); nodes reached
    again while still on the stack are on a cycle, and are returned for reporting."""
    state: dict[str, int] = {}  # 1: on the stack, 2: placed
    order: list[str] = []
    on_cycle: set[str] = set()
    for start in nodes:
        if start in state:
            continue
        stack = [(start, iter(nodes[start].links.values()))]
        state[start] = 1
        while stack:
            node_id, parents = stack[-1]
            for src, _ in parents:
                if src not in nodes:
                    continue
                seen = state.get(src)
                if seen is None:
                    state[src] = 1
                    stack.append((src, iter(nodes[src].links.values())))
                    break
                if seen == 1:
                    on_cycle.add(src)
            else:
                stack.pop()
                state[node_id] = 2
                order.append(node_id)
    if on_cycle:
        order = [n for n in order if n not in on_cycle]
    return order, on_cycle


def _structure_issues(node_id: str, call: Any, add: Any) -> None:
    if not isinstance(call, Mapping) or "__malformed__" in call:
        received = call.get("__malformed__") if isinstance(call, Mapping) else call
        add(Issue(node_id, None, None, "invalid_prompt",
                  "a node must be an object with 'class_type' and 'inputs'",
                  "{class_type, inputs}", _jsonable(received)))
        return
    try:
        NodeCall.model_validate(call)
    except ValidationError as err:
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"])
            add(Issue(node_id, None, field, "invalid_prompt", f"'{field}': {e['msg']}",
                      "class_type: string, inputs: object", _jsonable(e.get("input"))))


_JSONABLE_DEPTH = 16  # an error report shows the start of a nested value, not all of it


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as strict JSON can carry it, for an issue's ``received``: non-finite floats
    and other objects as their repr, nesting cut at ``_JSONABLE_DEPTH`` levels."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple | Mapping) and depth >= _JSONABLE_DEPTH:
        return "..."
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return repr(value)


def node_errors(issues: list[Issue], nodes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Render issues in the shape of ComfyUI's ``POST /prompt`` error response."""
    by_node: dict[str, Any] = {}
    general: list[Issue] = []
    for issue in issues:
        if issue.node_id is None or (nodes is not None and issue.node_id not in nodes):
            general.append(issue)
            continue
        entry = by_node.setdefault(issue.node_id, {
            "errors": [], "dependent_outputs": [], "class_type": issue.class_type,
        })
        entry["errors"].append({
            "type": issue.type,
            "message": issue.message,
            "details": f"{issue.input}: {issue.message}" if issue.input else issue.message,
            "extra_info": {
                "input_name": issue.input,
                "input_config": issue.expected,
                "received_value": issue.received,
            },
        })
    if nodes is not None:
        _fill_dependent_outputs(by_node, nodes)
    if general:
        first = general[0]
        error = {"type": first.type, "message": first.message,
                 "details": "; ".join(i.message for i in general[1:]), "extra_info": {}}
    else:
        error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                 "details": "", "extra_info": {}}
    return {"error": error, "node_errors": by_node}


#: At most this many dependent outputs are listed per broken node: listing all of them costs
#: time quadratic in the graph (a chain whose every node also feeds an output of its own).
DEPENDENT_OUTPUTS_SHOWN = 100


def _fill_dependent_outputs(by_node: dict[str, Any], nodes: Mapping[str, Any]) -> None:
    """For each broken node, the output nodes downstream of it (as ComfyUI lists them): the
    nodes reachable from it that feed nothing, at most :data:`DEPENDENT_OUTPUTS_SHOWN`."""
    children: dict[str, list[str]] = {}
    for node_id, call in nodes.items():
        inputs = call.get("inputs", {}) if isinstance(call, Mapping) else {}
        for value in inputs.values() if isinstance(inputs, Mapping) else ():
            if is_link(value):
                children.setdefault(str(value[0]), []).append(node_id)
    leaves = _reachable_leaves(list(by_node), children, DEPENDENT_OUTPUTS_SHOWN)
    for node_id, entry in by_node.items():
        entry["dependent_outputs"] = sorted(leaves[node_id])


def _reachable_leaves(starts: list[str], children: Mapping[str, list[str]], cap: int) -> dict[str, Any]:
    """node -> the set of childless nodes reachable from it (itself included), for every node
    reachable from ``starts``; each set cut at ``cap`` members.

    One pass of Tarjan's strongly connected components, iterative: a component is finished
    only after every component it reaches, so its set is the union of theirs (the members of a
    cycle share one set), computed once, and a node with one way out shares its child's set.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    leaves_of: dict[str, Any] = {}  # filled as components finish
    no_children: list[str] = []
    for root in starts:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(children.get(root, no_children)))]
        while work:
            node, pending = work[-1]
            for child in pending:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(children.get(child, no_children))))
                    break
                if child in on_stack and index[child] < low[node]:
                    low[node] = index[child]
            else:
                work.pop()
                if work and low[node] < low[work[-1][0]]:
                    low[work[-1][0]] = low[node]
                if low[node] != index[node]:
                    continue
                members = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.append(member)
                    if member == node:
                        break
                if len(members) == 1 and not children.get(node):
                    found: Any = frozenset((node,))
                else:
                    inside = set(members)
                    outside = [leaves_of[c] for m in members for c in children.get(m, ()) if c not in inside]
                    distinct = {id(s): s for s in outside}
                    if len(distinct) == 1:
                        found = outside[0]
                    else:
                        union: set[str] = set()
                        for part in distinct.values():
                            union.update(part)
                            if len(union) >= cap:
                                break
                        found = frozenset(sorted(union)[:cap])
                for member in members:
                    leaves_of[member] = found
    return leaves_of
