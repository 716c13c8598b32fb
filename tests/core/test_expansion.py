"""Node expansion, written once (executor.expansion) and used by both hosts: our executor and the
ComfyUI adapter. They differ only in what a ParentInput becomes."""

from __future__ import annotations

import torch
from latentgraph.comfy_plugin import HostContext, comfy_class
from latentgraph.executor import Expand, Folders, ParentInput
from latentgraph.executor.expansion import rewrite_expansion
from latentgraph.executor.workflow import literal_input
from nodes_for_tests import Repeat, registry

# The expansion and its rewrites are raw JSON on purpose: their exact form (an int id too) is the test.
EXPANSION = Expand(
    nodes={
        "a": {"class_type": "LG_TestAdd", "inputs": {"latent": ParentInput("latent"), "amount": 0.5}},
        1: {"class_type": "LG_TestAdd", "inputs": {"latent": ["a", 0], "amount": ParentInput("amount")}},
    },
    outputs=(("a", 0), (1, 0)),
)


def test_ids_get_the_prefix_links_follow_them_and_literals_stay():
    asked: list[str] = []

    def parent_input(name: str) -> object:
        asked.append(name)
        return f"<{name}>"

    graph, outputs = rewrite_expansion(EXPANSION, "7.", parent_input)
    assert graph == {
        "7.a": {"class_type": "LG_TestAdd", "inputs": {"latent": "<latent>", "amount": 0.5}},
        "7.1": {"class_type": "LG_TestAdd", "inputs": {"latent": ["7.a", 0], "amount": "<amount>"}},
    }
    assert outputs == [("7.a", 0), ("7.1", 0)]
    assert asked == ["latent", "amount"]
    # the expansion itself is left as it was: a node may return the same one again
    assert EXPANSION.nodes[1]["inputs"]["latent"] == ["a", 0]


def test_a_literal_list_is_escaped_for_the_executor():
    """Our executor reads an API-format list as a link; ComfyUI gets the value as it is."""
    assert literal_input([1, 2]) == {"__value__": [1, 2]}
    assert literal_input(2.5) == 2.5 and literal_input("x") == "x" and literal_input(None) is None


def test_both_hosts_expand_to_the_same_nodes_and_values(make_executor, builder, tmp_path):
    t = builder.node("LG_TestTensor", id="t", value=1.0)
    builder.node("LG_TestRepeat", id="r", latent=t, amount=2.0, times=3)
    graph = builder.build()
    ours = make_executor(registry=registry()).run(graph, targets=["r"])
    expanded = [n for n in ours.executed if n.startswith("r.")]
    assert expanded == ["r.add0", "r.add1", "r.add2"]

    class DynPrompt:
        def get_node(self, node_id):
            return graph[node_id]

    cls = comfy_class(Repeat, HostContext(Folders.under(tmp_path)))
    theirs = cls().execute(unique_id="r", dynprompt=DynPrompt(), latent={"samples": torch.ones(4)},
                           amount=2.0, times=3)
    assert list(theirs["expand"]) == expanded
    assert theirs["result"] == (["r.add2", 0],)
    # A ParentInput: the expanding node's own link where it had one, else the value it ran with.
    assert theirs["expand"]["r.add0"]["inputs"] == {"latent": ["t", 0], "amount": 2.0}
    assert theirs["expand"]["r.add1"]["inputs"] == {"latent": ["r.add0", 0], "amount": 2.0}
    assert ours.outputs["r"][0]["samples"].tolist() == [7.0] * 4
