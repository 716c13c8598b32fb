"""UI-format (editor) workflows convert to the API format through the node schemas."""

from __future__ import annotations

from latentgraph.executor.workflow import api_to_ui, ui_to_api
from latentgraph.nodes import default_registry

REG = default_registry()
# API-format graphs here are raw JSON on purpose: they are the conversion's inputs and expected results.


def node(id, type, widgets=(), inputs=(), outputs=(), mode=0):
    return {"id": id, "type": type, "mode": mode, "widgets_values": list(widgets),
            "inputs": list(inputs), "outputs": list(outputs)}


def test_widgets_links_and_seed_control_values():
    ui = {
        "nodes": [
            node(1, "LG_Int", [7, "randomize"], outputs=[{"name": "value", "type": "INT", "links": [1]}]),
            node(2, "LG_IntMath", [0, 5, "mul"],
                 inputs=[{"name": "a", "type": "INT", "link": 1, "widget": {"name": "a"}}]),
        ],
        "links": [[1, 1, 0, 2, 0, "INT"]],
    }
    api = ui_to_api(ui, REG)
    assert api == {
        "1": {"class_type": "LG_Int", "inputs": {"value": 7}},
        "2": {"class_type": "LG_IntMath", "inputs": {"a": ["1", 0], "b": 5, "op": "mul"}},
    }


def test_muted_bypassed_reroute_and_primitive_nodes_are_resolved():
    ui = {
        "nodes": [
            node(1, "LG_EmptyImage", [8, 8, 1, 0], outputs=[{"name": "image", "type": "IMAGE", "links": [1]}]),
            node(2, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}],
                 outputs=[{"name": "", "type": "IMAGE", "links": [2]}]),
            node(3, "LG_PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 2}],
                 outputs=[{"name": "images", "type": "IMAGE", "links": [3]}], mode=4),
            node(4, "LG_SaveImage", ["kept"], inputs=[{"name": "images", "type": "IMAGE", "link": 3}]),
            node(5, "PrimitiveNode", ["from-primitive"], outputs=[{"name": "STRING", "type": "STRING", "links": [4]}]),
            node(6, "LG_SaveImage", ["x"], inputs=[{"name": "images", "type": "IMAGE", "link": None},
                                                   {"name": "filename_prefix", "type": "STRING", "link": 4,
                                                    "widget": {"name": "filename_prefix"}}]),
            node(7, "LG_SaveImage", ["muted"], mode=2),
            node(8, "Note", ["a comment"]),
        ],
        "links": [[1, 1, 0, 2, 0, "*"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"],
                  {"id": 4, "origin_id": 5, "origin_slot": 0, "target_id": 6, "target_slot": 1, "type": "STRING"}],
    }
    api = ui_to_api(ui, REG)
    assert set(api) == {"1", "4", "6"}
    assert api["4"]["inputs"] == {"filename_prefix": "kept", "images": ["1", 0]}
    assert api["6"]["inputs"]["filename_prefix"] == "from-primitive"


def test_api_to_ui_round_trips():
    api = {
        "1": {"class_type": "LG_Int", "inputs": {"value": 3}},
        "2": {"class_type": "LG_IntMath", "inputs": {"a": ["1", 0], "b": 4, "op": "pow"}},
        "3": {"class_type": "LG_EmptyImage", "inputs": {"width": ["2", 0], "height": 8, "batch_size": 1, "color": 5}},
        "4": {"class_type": "LG_SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "r"}},
    }
    ui = api_to_ui(api, REG)
    assert ui_to_api(ui, REG) == api
