"""The one way tests build API-format graphs: the executor's GraphBuilder, plus what tests keep
needing, so that no test writes ``{"1": {"class_type": ..., "inputs": ...}}`` by hand.

    g = Graph()
    ckpt = g.node("LG_LoadCheckpoint", id="1", path="sd/tiny")
    g.node("LG_EmptyLatent", id="2", autoencoder=g.output(ckpt, "autoencoder"), width=64)
    graph = g.build()

- ``Graph.extend(workflow)`` starts from an existing workflow (a shipped graph) to add nodes to;
- ``g.set(node, **inputs)`` changes inputs of a node already in the graph;
- ``g.output(node, name)`` is a node's output by its declared name rather than its index;
- ``NodeRef("7")`` stands for a node the builder did not make (one of a shipped graph's).

Raw JSON stays only where a test is about the raw shape (malformed workflows, fuzzing, UI or
ComfyUI formats); such a file says so once.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Any

from latentgraph.executor import NodeRegistry
from latentgraph.executor.graph_builder import GraphBuilder, NodeRef

__all__ = ["Graph", "NodeRef", "load_image_graph", "one_node", "save_image_graph"]


@functools.cache
def _default_registry() -> NodeRegistry:
    from latentgraph.nodes import default_registry

    return default_registry()


def _resolve(value: Any) -> Any:
    return value.out(0) if isinstance(value, NodeRef) else value


class Graph(GraphBuilder):
    """A GraphBuilder that can also start from a workflow, edit a node and name outputs.

    ``registry`` is only read by :meth:`output` (for nodes that exist only in a test's registry).
    """

    def __init__(self, prefix: str = "", registry: NodeRegistry | None = None) -> None:
        super().__init__(prefix)
        self.registry = registry

    @classmethod
    def extend(cls, workflow: Mapping[str, Any], registry: NodeRegistry | None = None) -> Graph:
        """A builder holding a copy of ``workflow``'s nodes (give new nodes explicit ids)."""
        g = cls(registry=registry)
        for node_id, call in workflow.items():
            g.nodes[node_id] = {"class_type": call["class_type"], "inputs": copy.deepcopy(call["inputs"])}
        return g

    def set(self, node: NodeRef | str, **inputs: Any) -> NodeRef:
        """Change (or add) inputs of a node already in the graph."""
        ref = node if isinstance(node, NodeRef) else NodeRef(node)
        self.nodes[ref.id]["inputs"].update({k: _resolve(v) for k, v in inputs.items()})
        return ref

    def output(self, node: NodeRef, name: str) -> list[Any]:
        """The link to ``node``'s output called ``name``."""
        class_type = self.nodes[node.id]["class_type"]
        names = (self.registry or _default_registry())[class_type].spec.output_names
        if name not in names:
            raise KeyError(f"{class_type} has no output {name!r}; it has {', '.join(names)}")
        return node.out(names.index(name))


def one_node(class_type: str, id: str = "1", **inputs: Any) -> dict[str, dict[str, Any]]:
    """A workflow of one node (a loader, a source), id "1" unless told."""
    g = Graph()
    g.node(class_type, id=id, **inputs)
    return g.build()


def save_image_graph(prefix: str = "t", **image: Any) -> dict[str, dict[str, Any]]:
    """LG_EmptyImage "1" -> LG_SaveImage "2" (the image's inputs as given)."""
    g = Graph()
    image_node = g.node("LG_EmptyImage", id="1", **image)
    g.node("LG_SaveImage", id="2", images=image_node, filename_prefix=prefix)
    return g.build()


def load_image_graph(image: str, **save: Any) -> dict[str, dict[str, Any]]:
    """LG_LoadImage "1" (of the input file ``image``) -> LG_SaveImage "2"."""
    g = Graph()
    loaded = g.node("LG_LoadImage", id="1", image=image)
    g.node("LG_SaveImage", id="2", images=loaded, **save)
    return g.build()
