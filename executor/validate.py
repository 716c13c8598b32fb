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
from .literals import Problem, coerce_cached
from .node import InputSpec, Node, NodeRegistry, NodeSpec
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
        super().__init__(
            f"{len(issues)} problem(s) in the workflow:\n" + "\n".join(f"  - {i}" for i in issues)
        )


@dataclass(slots=True)
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

    Issues come in the order of the steps: node by node (its shape, its class, each input as
    listed, then the inputs left out), then a cycle, then the requested nodes and outputs.
    """
    check = _Validation(nodes, registry, known_outputs or {}, keep_source)
    node = check.node
    for node_id, call in nodes.items():
        node(node_id, call)
    order = check.dependency_order()
    check.requested(targets, require_output)
    if check.issues:
        return None, check.issues
    return Graph(check.graph_nodes, order, check.read_outputs, check.source), []


class _Validation:
    """One validation pass: what it has found so far, and one method per step."""

    __slots__ = (
        "nodes",
        "registry",
        "known_outputs",
        "source",
        "issues",
        "graph_nodes",
        "read_outputs",
        "types_of",
        "in_order",
    )

    def __init__(
        self,
        nodes: Mapping[str, Mapping[str, Any]],
        registry: NodeRegistry,
        known_outputs: Mapping[str, tuple[str, ...]],
        keep_source: bool,
    ) -> None:
        self.nodes = nodes
        self.registry = registry
        self.known_outputs = known_outputs
        self.source: dict[str, Any] | None = {} if keep_source else None
        self.issues: list[Issue] = []
        self.graph_nodes: dict[str, GraphNode] = {}
        self.read_outputs: dict[str, set[int]] = {}
        self.types_of: dict[
            str, tuple[str, ...] | None
        ] = {}  # a source feeds many inputs: looked up once
        # Whether every link points to a node listed earlier: then the listing is already a
        # topological order (and the one the depth-first sort would give), so no sort is needed.
        self.in_order = True

    # --- per node ------------------------------------------------------------------------------

    def node(self, node_id: str, call: Any) -> None:
        """One node: its shape, its class, its inputs; a node that passes joins the graph."""
        mapping = type(call) is dict or isinstance(call, Mapping)
        class_type = call.get("class_type") if mapping else None
        raw_inputs = call.get("inputs", {}) if mapping else None
        if type(class_type) is not str or type(raw_inputs) is not dict:
            _structure_issues(node_id, call, self.issues.append)
            return
        cls = self.registry.get(class_type)
        if cls is None:
            self.issues.append(
                Issue(
                    node_id,
                    class_type,
                    None,
                    "unknown_class_type",
                    f"no node named '{class_type}' is installed",
                    None,
                    class_type,
                )
            )
            return
        spec = cls.spec
        literals, links, copied = self.inputs(node_id, class_type, spec, raw_inputs)
        if len(links) + len(literals) < len(spec.inputs):
            self.left_out(node_id, class_type, spec, raw_inputs, literals, links)
        self.graph_nodes[node_id] = GraphNode(node_id, cls, literals, links)
        if self.source is not None:
            self.source[node_id] = {**call, "inputs": copied}

    def inputs(
        self, node_id: str, class_type: str, spec: NodeSpec, raw_inputs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, tuple[str, int]], dict[str, Any]]:
        """The inputs given, as listed: each a link (see :meth:`link`) or a literal the input
        accepts, coerced. Returns the literals, the links and (with ``keep_source``) the copy."""
        literals: dict[str, Any] = {}
        links: dict[str, tuple[str, int]] = {}
        copied: dict[str, Any] = {}
        keep = self.source is not None
        declared = spec.inputs
        for name, value in raw_inputs.items():
            in_spec = declared.get(name)
            if in_spec is None:
                self.issues.append(
                    Issue(
                        node_id,
                        class_type,
                        name,
                        "unknown_input",
                        f"'{class_type}' has no input '{name}'",
                        sorted(declared),
                        name,
                    )
                )
                continue
            if type(value) is list and (
                len(value) == 2
                and type(value[1]) is int
                and type(value[0]) is str
                or is_link(value)
            ):
                link = self.link(node_id, class_type, name, in_spec.type, value)
                if link is not None:
                    links[name] = link
                    if keep:
                        copied[name] = value[:]
                continue
            if type(value) in _CONTAINERS:
                if not self.literal_tree(node_id, class_type, name, in_spec, value):
                    continue
                if keep:
                    copied[name] = copy.deepcopy(value)
            elif keep:
                copied[name] = value
            coerced, problem = coerce_cached(
                in_spec, _literal_list(value) if type(value) is dict else value
            )
            if problem is not None:
                self.bad_literal(node_id, class_type, name, in_spec, value, problem)
                continue
            literals[name] = coerced
        return literals, links, copied

    def link(
        self, node_id: str, class_type: str, name: str, in_type: str, value: list[Any]
    ) -> tuple[str, int] | None:
        """``[source, index]`` if the source is a node with that output and its type feeds
        ``in_type``; the output is then recorded as read. Else the problem is reported."""
        src, index = value
        if type(src) is not str:
            src = str(src)
        earlier = self.graph_nodes.get(src)
        if earlier is not None:  # a valid node listed before this one: the common case
            types: tuple[str, ...] | None = earlier.cls.spec.output_types
        else:
            types = self.types_of.get(src, _UNSEEN)
            if types is _UNSEEN:
                types = self.output_types(src)
        if (
            types is None
            or not 0 <= index < len(types)
            or (in_type != types[index] and not accepts(in_type, types[index]))
        ):
            self.bad_link(node_id, class_type, name, in_type, value, src, types)
            return None
        read_outputs = self.read_outputs
        reads = read_outputs.get(src)
        if reads is None:
            read_outputs[src] = {index}
        else:
            reads.add(index)
        if earlier is None and src in self.nodes:
            self.in_order = False
        return src, index

    def output_types(self, node_id: str) -> tuple[str, ...] | None:
        """The output types of a node of the workflow (or of the enclosing graph); None for one
        that is missing or broken."""
        call = self.nodes.get(node_id)
        if call is not None:
            mapping = type(call) is dict or isinstance(call, Mapping)
            cls = self.registry.get(call.get("class_type")) if mapping else None
            types = cls.spec.output_types if cls else None
        else:
            types = self.known_outputs.get(node_id)
        self.types_of[node_id] = types
        return types

    def bad_link(
        self,
        node_id: str,
        class_type: str,
        name: str,
        in_type: str,
        value: list[Any],
        src: str,
        types: tuple[str, ...] | None,
    ) -> None:
        """What is wrong with a link :meth:`link` refused."""
        index = value[1]
        if types is None:
            if src in self.nodes or src in self.known_outputs:
                return  # the source node is itself broken and reported on its own
            self.issues.append(
                Issue(
                    node_id,
                    class_type,
                    name,
                    "missing_node",
                    f"links to node '{src}', which is not in the workflow",
                    None,
                    value,
                )
            )
        elif not 0 <= index < len(types):
            self.issues.append(
                Issue(
                    node_id,
                    class_type,
                    name,
                    "bad_output_index",
                    f"links to output {index} of node '{src}', which has {len(types)} output(s)",
                    f"0..{len(types) - 1}",
                    index,
                )
            )
        else:
            self.issues.append(
                Issue(
                    node_id,
                    class_type,
                    name,
                    "return_type_mismatch",
                    f"expects {in_type} but is linked to a {types[index]} output",
                    in_type,
                    types[index],
                )
            )

    def literal_tree(
        self, node_id: str, class_type: str, name: str, in_spec: InputSpec, value: Any
    ) -> bool:
        """Whether a literal list or object is shallow enough to walk (checked before anything
        walks it recursively)."""
        try:
            check_tree(value, MAX_DEPTH, finite=False)
        except InvalidJson as err:
            self.issues.append(
                Issue(
                    node_id,
                    class_type,
                    name,
                    "invalid_input_type",
                    str(err),
                    in_spec.type,
                    _jsonable(value),
                )
            )
            return False
        return True

    def bad_literal(
        self,
        node_id: str,
        class_type: str,
        name: str,
        in_spec: InputSpec,
        value: Any,
        problem: Problem,
    ) -> None:
        expected: Any = in_spec.type
        if in_spec.socket.choices is not None:
            expected = list(in_spec.socket.choices)
        elif in_spec.ge is not None or in_spec.le is not None:
            expected = {"type": in_spec.type, "min": in_spec.ge, "max": in_spec.le}
        self.issues.append(
            Issue(node_id, class_type, name, problem[0], problem[1], expected, _jsonable(value))
        )

    def left_out(
        self,
        node_id: str,
        class_type: str,
        spec: NodeSpec,
        raw_inputs: dict[str, Any],
        literals: dict[str, Any],
        links: dict[str, tuple[str, int]],
    ) -> None:
        """The inputs not given: their defaults, or an issue for each required one."""
        for name, in_spec in spec.inputs.items():
            if name in links or name in literals or name in raw_inputs:
                continue
            if in_spec.has_default:
                literals[name] = in_spec.default
            elif in_spec.socket.is_widget:
                self.issues.append(
                    Issue(
                        node_id,
                        class_type,
                        name,
                        "required_input_missing",
                        f"required input '{name}' has no value",
                        in_spec.type,
                        None,
                    )
                )
            else:
                self.issues.append(
                    Issue(
                        node_id,
                        class_type,
                        name,
                        "required_input_missing",
                        f"required input '{name}' is not linked to a {in_spec.type} output",
                        in_spec.type,
                        None,
                    )
                )

    # --- the whole graph -----------------------------------------------------------------------

    def dependency_order(self) -> list[str]:
        """The valid nodes, each after the nodes it reads; a cycle is reported instead."""
        if self.in_order:
            return list(self.graph_nodes)
        order, cycle_members = _toposort(self.graph_nodes)
        if cycle_members:
            self.cycle()
        return order

    def cycle(self) -> None:
        """One cycle, named on each of its nodes (listing every cycle can be exponential)."""
        graph_nodes = self.graph_nodes
        digraph = nx.DiGraph()
        digraph.add_edges_from(
            (src, n.id)
            for n in graph_nodes.values()
            for src, _ in n.links.values()
            if src in graph_nodes
        )
        for cycle in nx.simple_cycles(digraph):
            path = " -> ".join([*cycle, cycle[0]])
            for node_id in cycle:
                self.issues.append(
                    Issue(
                        node_id,
                        graph_nodes[node_id].cls.class_type,
                        None,
                        "dependency_cycle",
                        f"is part of a cycle: {path}",
                        "an acyclic graph",
                        path,
                    )
                )
            break

    def requested(self, targets: Iterable[str], require_output: bool) -> None:
        """Each requested node is in the workflow; with ``require_output``, something is
        requested or the workflow has an output node."""
        wanted = [str(t) for t in targets]
        for target in wanted:
            if target not in self.nodes:
                self.issues.append(
                    Issue(
                        target,
                        None,
                        None,
                        "missing_node",
                        f"requested node '{target}' is not in the workflow",
                    )
                )
        if (
            require_output
            and not wanted
            and not any(n.cls.spec.output_node for n in self.graph_nodes.values())
            and not any(i.type == "unknown_class_type" for i in self.issues)
        ):
            self.issues.append(
                Issue(
                    None,
                    None,
                    None,
                    "prompt_no_outputs",
                    "the workflow has no output node (such as LG_SaveImage) and no requested nodes",
                    "at least one output node",
                    None,
                )
            )


_CONTAINERS = (list, dict)  # literals that a caller could edit in place
_UNSEEN: Any = object()  # a source not looked up yet


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
        add(
            Issue(
                node_id,
                None,
                None,
                "invalid_prompt",
                "a node must be an object with 'class_type' and 'inputs'",
                "{class_type, inputs}",
                _jsonable(received),
            )
        )
        return
    try:
        NodeCall.model_validate(call)
    except ValidationError as err:
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"])
            add(
                Issue(
                    node_id,
                    None,
                    field,
                    "invalid_prompt",
                    f"'{field}': {e['msg']}",
                    "class_type: string, inputs: object",
                    _jsonable(e.get("input")),
                )
            )


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
        entry = by_node.setdefault(
            issue.node_id,
            {
                "errors": [],
                "dependent_outputs": [],
                "class_type": issue.class_type,
            },
        )
        entry["errors"].append(
            {
                "type": issue.type,
                "message": issue.message,
                "details": f"{issue.input}: {issue.message}" if issue.input else issue.message,
                "extra_info": {
                    "input_name": issue.input,
                    "input_config": issue.expected,
                    "received_value": issue.received,
                },
            }
        )
    if nodes is not None:
        _fill_dependent_outputs(by_node, nodes)
    if general:
        first = general[0]
        error = {
            "type": first.type,
            "message": first.message,
            "details": "; ".join(i.message for i in general[1:]),
            "extra_info": {},
        }
    else:
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        }
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


def _reachable_leaves(
    starts: list[str], children: Mapping[str, list[str]], cap: int
) -> dict[str, Any]:
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
                    outside = [
                        leaves_of[c]
                        for m in members
                        for c in children.get(m, ())
                        if c not in inside
                    ]
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
