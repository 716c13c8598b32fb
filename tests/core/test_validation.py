"""Validation reports every problem at once, structured, before anything runs."""

from __future__ import annotations

import pytest
from graph_helpers import Graph
from latentgraph.executor import validate
from latentgraph.executor.validate import node_errors
from nodes_for_tests import registry

REG = registry()


def issues_of(graph, targets=()):
    graph_obj, issues = validate(graph, REG, targets)
    assert (graph_obj is None) == bool(issues)
    return issues


def ok_graph():
    g = Graph()
    tensor = g.node("LG_TestTensor", id="1", value=1.0)
    added = g.node("LG_TestAdd", id="2", latent=tensor, amount=2.0)
    g.node("LG_TestOutput", id="3", latent=added)
    return g.build()


def test_valid_graph_has_no_issues():
    assert issues_of(ok_graph()) == []


# The cases break the valid graph as raw JSON on purpose: each is about the shape validation sees.
CASES = [
    ("unknown_class_type", lambda g: g["2"].update(class_type="LG_Nope"), "2", None),
    ("required_input_missing", lambda g: g["2"]["inputs"].pop("latent"), "2", "latent"),
    ("unknown_input", lambda g: g["2"]["inputs"].update(colour=1), "2", "colour"),
    ("return_type_mismatch", lambda g: g.update({"4": {"class_type": "LG_Float", "inputs": {"value": 1.0}}})
     or g["2"]["inputs"].update(latent=["4", 0]), "2", "latent"),
    ("missing_node", lambda g: g["2"]["inputs"].update(latent=["99", 0]), "2", "latent"),
    ("bad_output_index", lambda g: g["2"]["inputs"].update(latent=["1", 3]), "2", "latent"),
    ("invalid_input_type", lambda g: g["2"]["inputs"].update(amount="lots"), "2", "amount"),
    ("invalid_input_type", lambda g: g["1"]["inputs"].update(size=2.5), "1", "size"),
    ("invalid_input_type", lambda g: g["2"]["inputs"].update(latent=1.0), "2", "latent"),
    ("value_smaller_than_min", lambda g: g["1"]["inputs"].update(size=0), "1", "size"),
    ("value_not_in_list", lambda g: g.update({"4": {"class_type": "LG_FloatMath", "inputs": {"op": "mod"}}}), "4", "op"),
    ("dependency_cycle", lambda g: g["1"].update(class_type="LG_TestAdd", inputs={"latent": ["2", 0]}), "1", None),
    ("invalid_prompt", lambda g: g.update({"5": "not a node"}), "5", None),
    ("invalid_prompt", lambda g: g.update({"5": {"inputs": {}}}), "5", "class_type"),
]


@pytest.mark.parametrize("kind, break_it, node_id, input_name", CASES, ids=[c[0] for c in CASES])
def test_each_error_kind_is_reported_with_node_and_input(kind, break_it, node_id, input_name):
    graph = ok_graph()
    break_it(graph)
    issues = issues_of(graph)
    matching = [i for i in issues if i.type == kind]
    found = [i for i in matching if i.node_id == node_id and i.input == input_name]
    assert found, matching
    assert found[0].message and found[0].class_type != ""
    assert set(found[0].to_dict()) == {"node_id", "class_type", "input", "type", "message", "expected", "received"}


def test_no_output_node():
    graph = ok_graph()
    del graph["3"]
    assert [i.type for i in issues_of(graph)] == ["prompt_no_outputs"]
    assert issues_of(graph, targets=["2"]) == []


def test_all_problems_are_reported_at_once():
    graph = ok_graph()
    graph["1"]["inputs"]["size"] = -3
    graph["2"]["inputs"]["amount"] = "x"
    graph["2"]["inputs"]["extra"] = 1
    graph["3"]["inputs"]["latent"] = ["42", 0]
    kinds = sorted(i.type for i in issues_of(graph))
    assert kinds == ["invalid_input_type", "missing_node", "unknown_input", "value_smaller_than_min"]


def test_range_error_says_what_was_expected_and_received():
    graph = ok_graph()
    graph["1"]["inputs"]["size"] = 0
    (issue,) = issues_of(graph)
    assert issue.expected == {"type": "INT", "min": 1, "max": None} and issue.received == 0


def test_literal_list_escape_is_not_a_link():
    graph = ok_graph()
    graph["2"]["inputs"]["amount"] = {"__value__": [1, 2]}
    (issue,) = issues_of(graph)
    assert issue.type == "invalid_input_type" and issue.received == {"__value__": [1, 2]}


def test_node_errors_render_in_comfyui_shape():
    graph = ok_graph()
    graph["2"]["inputs"]["amount"] = "x"
    rendered = node_errors(issues_of(graph), graph)
    assert rendered["error"]["type"] == "prompt_outputs_failed_validation"
    entry = rendered["node_errors"]["2"]
    assert entry["class_type"] == "LG_TestAdd"
    assert entry["dependent_outputs"] == ["3"]
    (err,) = entry["errors"]
    assert err["type"] == "invalid_input_type"
    assert err["extra_info"]["input_name"] == "amount" and err["extra_info"]["received_value"] == "x"


def test_graph_level_error_renders_as_top_level_error():
    graph = ok_graph()
    del graph["3"]
    rendered = node_errors(issues_of(graph), graph)
    assert rendered["error"]["type"] == "prompt_no_outputs" and rendered["node_errors"] == {}
