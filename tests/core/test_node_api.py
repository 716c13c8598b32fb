"""Node declarations: checked at class definition, compiled to ComfyUI's schema and adapter."""

from __future__ import annotations

from typing import Literal, Optional

import latentgraph
import pytest
import torch
from latentgraph.executor import Input, Inputs, Node, NodeRegistry, Outputs
from latentgraph.executor.schema import object_info
from latentgraph.executor.types import Latent
from latentgraph.nodes import default_registry


def test_object_info_has_comfyui_shape():
    info = object_info(default_registry()["LG_IntMath"].spec)
    assert set(info) >= {"input", "output", "output_name", "name", "display_name", "category",
                         "description", "output_node"}
    assert info["name"] == "LG_IntMath"
    assert info["output"] == ["INT"] and info["output_name"] == ["result"]
    a_type, a_opts = info["input"]["required"]["a"]
    assert a_type == "INT" and a_opts["default"] == 0 and a_opts["min"] == -(2**63 - 1)
    op_choices, op_opts = info["input"]["required"]["op"]
    assert op_choices == ["add", "sub", "mul", "div", "min", "max", "pow"] and op_opts["default"] == "add"
    assert info["output_node"] is False


def test_optional_inputs_and_tooltips_go_where_comfyui_expects_them():
    class WithOptional(Node):
        """A node with an optional socket and a tooltip."""

        class_type = "LG_TestWithOptional"

        class In(Inputs):
            latent: Latent
            mask: Optional[Latent] = None  # noqa: UP045 - the spelling users write
            strength: float = Input(0.5, ge=0.0, le=1.0, step=0.05, tooltip="how much")

        class Out(Outputs):
            latent: Latent

        def run(self, x):
            return self.Out(latent=x.latent)

    info = object_info(WithOptional.spec)
    assert info["input"]["required"]["latent"] == ("LATENT",)
    assert info["input"]["optional"]["mask"] == ("LATENT",)
    assert info["input"]["required"]["strength"] == (
        "FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "tooltip": "how much", "step": 0.05})


def test_every_shipped_node_is_prefixed_versioned_and_described():
    for node in default_registry():
        spec = node.spec
        assert spec.class_type.startswith("LG_")
        assert spec.version.count(".") == 2 and spec.description


def test_comfy_adapter_matches_classic_interface():
    mappings = latentgraph.NODE_CLASS_MAPPINGS
    assert set(mappings) == {n.class_type for n in default_registry()}
    assert set(latentgraph.NODE_DISPLAY_NAME_MAPPINGS) == set(mappings)
    assert latentgraph.WEB_DIRECTORY == "./web/extension"
    cls = mappings["LG_FloatMath"]
    types = cls.INPUT_TYPES()
    assert types["required"]["op"][0] == ["add", "sub", "mul", "div", "min", "max", "pow"]
    assert cls.RETURN_TYPES == ("FLOAT",) and cls.RETURN_NAMES == ("result",)
    assert cls.FUNCTION == "execute" and cls.CATEGORY == "latentgraph/primitives"
    assert cls.OUTPUT_NODE is False
    assert getattr(cls(), cls.FUNCTION)(a=2.0, b=3.0, op="pow") == (8.0,)
    assert mappings["LG_SaveImage"].OUTPUT_NODE is True
    assert hasattr(mappings["LG_LoadImage"], "IS_CHANGED")
    assert not hasattr(mappings["LG_FloatMath"], "IS_CHANGED")


def _declare(**attrs):
    class In(Inputs):
        x: int = 0

    class Out(Outputs):
        y: int

    body = {"__doc__": "doc", "class_type": "LG_Bad", "In": In, "Out": Out,
            "run": lambda self, x: self.Out(y=x.x)}
    body.update(attrs)
    return type("Bad", (Node,), body)


@pytest.mark.parametrize("attrs, message", [
    ({"class_type": "Bad"}, "must look like 'LG_Name'"),
    ({"version": "1.0"}, "semver"),
    ({"__doc__": None}, "docstring"),
    ({"run": Node.run}, "must define run"),
    ({"In": dict}, "subclass of Inputs"),
])
def test_broken_declarations_fail_at_definition(attrs, message):
    with pytest.raises(TypeError, match=message):
        _declare(**attrs)


def test_bad_annotations_and_defaults_fail_at_definition():
    class BadIn(Inputs):
        x: list = []

    with pytest.raises(TypeError, match="cannot map annotation"):
        _declare(In=BadIn)

    class OutOfRange(Inputs):
        x: int = Input(5, ge=0, le=3)

    with pytest.raises(TypeError, match="default 5 is invalid"):
        _declare(In=OutOfRange)

    class BadChoice(Inputs):
        x: Literal["a", "b"] = "c"

    with pytest.raises(TypeError, match="default 'c' is invalid"):
        _declare(In=BadChoice)


def test_registry_rejects_two_nodes_with_one_name():
    first = _declare()
    second = _declare()
    with pytest.raises(ValueError, match="two nodes claim"):
        NodeRegistry([first, second])


# The ComfyUI adapter's node and expansion below are raw JSON on purpose: that shape is ComfyUI's.
def test_comfy_adapter_expansion_uses_unique_ids_and_own_links(tmp_path):
    from latentgraph.comfy_plugin import HostContext, comfy_class
    from latentgraph.executor.context import Folders
    from nodes_for_tests import Repeat

    class FakeDynPrompt:
        def get_node(self, node_id):
            assert node_id == "12"
            return {"class_type": "LG_TestRepeat", "inputs": {"latent": ["4", 0], "amount": 2.0, "times": 2}}

    cls = comfy_class(Repeat, HostContext(Folders.under(tmp_path)))
    assert cls.INPUT_TYPES()["hidden"] == {"unique_id": "UNIQUE_ID", "dynprompt": "DYNPROMPT", "prompt": "PROMPT"}
    out = cls().execute(unique_id="12", dynprompt=FakeDynPrompt(), latent={"samples": None}, amount=2.0, times=2)
    assert out["result"] == (["12.add1", 0],)
    assert out["expand"] == {
        "12.add0": {"class_type": "LG_TestAdd", "inputs": {"latent": ["4", 0], "amount": 2.0}},
        "12.add1": {"class_type": "LG_TestAdd", "inputs": {"latent": ["12.add0", 0], "amount": 2.0}},
    }


def test_comfy_adapter_takes_tuple_results_and_computes_lazy_outputs(tmp_path):
    """Under ComfyUI every output may be read, so a node's lazy outputs are always made."""
    from latentgraph.comfy_plugin import HostContext, comfy_class
    from latentgraph.executor import Folders
    from nodes_for_tests import TwoWays

    cls = comfy_class(TwoWays, HostContext(Folders.under(tmp_path)))
    plus_one, doubled = cls().execute(latent={"samples": torch.ones(2)})
    assert plus_one["samples"].tolist() == [2.0, 2.0] and doubled["samples"].tolist() == [2.0, 2.0]


def test_inputs_from_validated_values_equal_model_construct():
    class Both(Inputs):
        count: int = 1
        name: str = "a"

    fast = Both.from_validated({"count": 3, "name": "b"})
    slow = Both.model_construct(count=3, name="b")
    assert fast == slow and fast.model_fields_set == slow.model_fields_set == {"count", "name"}
    assert fast.model_dump() == {"count": 3, "name": "b"}
    with pytest.raises(Exception, match="frozen"):
        fast.count = 4
    # A value missing (a caller that did not fill defaults) takes model_construct's path.
    partial = Both.from_validated({"count": 3})
    assert partial.name == "a" and partial.model_fields_set == {"count"}
