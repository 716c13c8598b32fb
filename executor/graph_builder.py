"""Build API-format graphs in Python: for tests, scripts and node expansions.

g = GraphBuilder()
a = g.node("LG_Float", value=2.0)
b = g.node("LG_FloatMath", a=a, b=3.0, op="mul")   # a node stands for its output 0
g.node("LG_SaveImage", images=img.out(0))
workflow = g.build()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NodeRef:
    id: str

    def out(self, index: int = 0) -> list[Any]:
        return [self.id, index]


class GraphBuilder:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.nodes: dict[str, dict[str, Any]] = {}

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> NodeRef:
        node_id = id if id is not None else f"{self.prefix}{len(self.nodes) + 1}"
        if node_id in self.nodes:
            raise ValueError(f"node id {node_id!r} is already used")
        resolved = {k: v.out(0) if isinstance(v, NodeRef) else v for k, v in inputs.items()}
        self.nodes[node_id] = {"class_type": class_type, "inputs": resolved}
        return NodeRef(node_id)

    def build(self) -> dict[str, dict[str, Any]]:
        return {
            k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])}
            for k, v in self.nodes.items()
        }
