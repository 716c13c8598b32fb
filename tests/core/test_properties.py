"""Property-based checks: random DAGs run or fail with a structured error; random malformed
workflows always come back as structured issues, never as an uncaught exception."""

from __future__ import annotations

import math

from graph_helpers import Graph, NodeRef
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from latentgraph.executor import Executor, Issue, NodeFailed, validate
from latentgraph.nodes import default_registry

REG = default_registry()
OPS = ["add", "sub", "mul", "div", "min", "max", "pow"]
EXECUTOR = Executor(device="cpu", registry=REG, cache_bytes=1 << 20)


@st.composite
def random_dags(draw):
    n = draw(st.integers(1, 25))
    g = Graph()
    for i in range(n):
        inputs = {"op": draw(st.sampled_from(OPS))}
        for name in ("a", "b"):
            if i and draw(st.booleans()):
                inputs[name] = NodeRef(str(draw(st.integers(0, i - 1))))
            else:
                inputs[name] = draw(st.floats(-4, 4, allow_nan=False))
        g.node("LG_FloatMath", id=str(i), **inputs)
    return g.build()


class Undefined(Exception):
    """The plain-Python evaluation has no finite real answer, so the node must fail."""


def reference(graph, node_id, memo):
    if node_id in memo:
        return memo[node_id]
    call = graph[node_id]["inputs"]
    a, b = (reference(graph, v[0], memo) if isinstance(v, list) else v for v in (call["a"], call["b"]))
    ops = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b,
           "min": lambda: min(a, b), "max": lambda: max(a, b), "pow": lambda: a**b}
    try:
        value = ops[call["op"]]()
    except (ZeroDivisionError, OverflowError) as err:
        raise Undefined() from err
    if isinstance(value, complex) or math.isinf(value):
        raise Undefined()
    memo[node_id] = value
    return value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dags())
def test_random_dags_match_python_or_fail_structured(graph):
    last = str(len(graph) - 1)
    try:
        expected = reference(graph, last, {})
    except Undefined:
        expected = None
    try:
        result = EXECUTOR.run(graph, targets=[last])
    except NodeFailed as err:
        assert expected is None, err
        assert err.node_id in graph and err.class_type == "LG_FloatMath"
        return
    assert expected is not None
    got = result.outputs[last][0]
    assert got == expected or (math.isnan(expected) and math.isnan(got))


# Malformed workflows are drawn as raw JSON on purpose: their shape is what is under test.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
class_types = st.sampled_from(["LG_FloatMath", "LG_SaveImage", "LG_EmptyImage", "LG_Nope", "", 3])
inputs = st.dictionaries(
    st.sampled_from(["a", "b", "op", "images", "width", "value", "zz"]),
    json_values | st.tuples(st.sampled_from(["0", "1", "2", "9"]), st.integers(-1, 3)).map(list),
    max_size=4,
)
nodes = st.fixed_dictionaries({"class_type": class_types, "inputs": inputs}) | json_values
workflows = st.dictionaries(st.sampled_from(["0", "1", "2", "3"]), nodes, max_size=4)


@settings(max_examples=300, deadline=None)
@given(workflows)
def test_malformed_workflows_give_structured_issues(workflow):
    from latentgraph.executor.workflow import parse_api

    graph, issues = validate(parse_api(workflow), REG)
    assert (graph is None) == bool(issues)
    for issue in issues:
        assert isinstance(issue, Issue) and issue.type and issue.message
        assert issue.node_id is None or issue.node_id in workflow
