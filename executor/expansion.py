"""Node expansion: the subgraph a node returns, rewritten into the graph of the host running it.

A node's ``run`` may return an :class:`~latentgraph.executor.node.Expand` whose ids are local to
it and whose inputs may be :class:`~latentgraph.executor.node.ParentInput` placeholders. Every
host (our executor, the ComfyUI adapter) rewrites it the same way, here: each id gets the
expanding node's id as a prefix, so it is unique in the whole graph and the same on every run
(caches find the nodes again); links between expanded nodes follow their ids; a literal is kept
as it is. What a ``ParentInput`` becomes is the one thing the hosts decide themselves: the
expanding node's own link where it had one (so signatures keep flowing from upstream), else the
value it ran with, written as that host writes a literal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .node import Expand, ParentInput
from .workflow import is_link

#: name of one of the expanding node's inputs -> what an expanded node's input gets in its place
ParentInputs = Callable[[str], Any]


def rewrite_expansion(
    expansion: Expand, prefix: str, parent_input: ParentInputs
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, int]]]:
    """The expansion as an API-format graph with prefixed ids, and the ``(node id, output
    index)`` that makes each output of the expanding node."""
    graph: dict[str, dict[str, Any]] = {}
    for local_id, call in expansion.nodes.items():
        inputs: dict[str, Any] = {}
        for name, value in call.get("inputs", {}).items():
            if isinstance(value, ParentInput):
                inputs[name] = parent_input(value.name)
            elif is_link(value):
                inputs[name] = [prefix + str(value[0]), value[1]]
            else:
                inputs[name] = value
        graph[prefix + str(local_id)] = {"class_type": call["class_type"], "inputs": inputs}
    return graph, [(prefix + str(local_id), index) for local_id, index in expansion.outputs]
