"""Executor semantics: caching by signature, eviction, disk tier, expansion, errors, interrupts."""

from __future__ import annotations

import asyncio
import json
import platform
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from graph_helpers import Graph, NodeRef, one_node
from latentgraph.executor import (
    Executor,
    Inputs,
    Interrupted,
    Node,
    NodeFailed,
    Outputs,
    WorkflowInvalid,
)
from nodes_for_tests import RUNS, Progress, registry


@pytest.fixture(autouse=True)
def clear_runs():
    RUNS.clear()


@pytest.fixture
def ex(make_executor) -> Executor:
    return make_executor(registry=registry())


def chain(builder, n=5, value=1.0, size=4, prefix=""):
    node = builder.node("LG_TestTensor", id=f"{prefix}t", value=value, size=size)
    for i in range(n):
        node = builder.node("LG_TestAdd", id=f"{prefix}a{i}", latent=node, amount=float(i))
    builder.node("LG_TestOutput", id=f"{prefix}out", latent=node)
    return builder.build()


def test_rerun_executes_nothing(ex, builder):
    graph = chain(builder)
    first = ex.run(graph)
    assert first.executed == ["t", "a0", "a1", "a2", "a3", "a4", "out"]
    assert first.ui["out"] == {"sum": [4 * (1.0 + 0 + 1 + 2 + 3 + 4)]}
    again = ex.run(graph)
    assert again.executed == [] and again.cached == ["out"]
    assert again.ui == first.ui


def test_edits_in_place_between_runs_are_seen(ex, builder):
    """The executor reuses its last validation only for an equal workflow: editing the
    caller's dict in place (a link, a literal list) must not slip past it."""
    chain(builder)
    builder.node("LG_TestAdd", id="bypass", latent=NodeRef("t"), amount=100.0)
    graph = builder.build()
    first = ex.run(graph)
    graph["out"]["inputs"]["latent"][0] = "bypass"  # the link list itself, edited in place
    relinked = ex.run(graph)
    assert relinked.executed == ["bypass", "out"] and relinked.ui["out"] == {"sum": [4 * (1.0 + 100.0)]}
    assert relinked.ui != first.ui
    graph["bypass"]["inputs"]["amount"] = {"__value__": [1, 2]}  # now invalid: not a float
    with pytest.raises(WorkflowInvalid):
        ex.run(graph)


def test_a_workflow_listed_out_of_order_runs_in_dependency_order(ex, builder):
    graph = chain(builder)
    reversed_listing = dict(reversed(graph.items()))
    result = ex.run(reversed_listing)
    assert result.executed == ["t", "a0", "a1", "a2", "a3", "a4", "out"]
    assert result.ui == ex.run(graph).ui


def test_changing_one_literal_executes_exactly_its_descendants(ex, builder):
    graph = chain(builder)
    ex.run(graph)
    graph["a2"]["inputs"]["amount"] = 10.0
    result = ex.run(graph)
    assert result.executed == ["a2", "a3", "a4", "out"]


def test_only_what_targets_need_runs(ex, builder):
    chain(builder)
    builder.node("LG_TestTensor", id="side", value=9.0)
    graph = builder.build()
    result = ex.run(graph, targets=["a1"])
    assert "side" not in result.executed and "out" in result.executed
    assert torch.equal(result.outputs["a1"][0]["samples"], torch.full((4,), 2.0))


def test_signatures_do_not_depend_on_node_ids(ex, builder):
    ex.run(chain(builder))
    renamed = chain(Graph(), prefix="x")
    assert ex.run(renamed).executed == []


def test_defaults_and_explicit_values_share_a_signature(ex, builder):
    t = builder.node("LG_TestTensor", id="t", value=0.0)
    builder.node("LG_TestOutput", id="o", latent=t)
    ex.run(builder.build())
    explicit = builder.build()
    explicit["t"]["inputs"]["size"] = 4
    assert ex.run(explicit).executed == []


def test_byte_bound_evicts_least_recently_used(make_executor, builder):
    # Each tensor is 1000 float32 = 4000 bytes; room for about two of them.
    ex = make_executor(registry=registry(), cache_bytes=9000)
    for value in (1.0, 2.0, 3.0):
        ex.run(one_node("LG_TestTensor", id="t", value=value, size=1000), targets=["t"])
    assert ex.cache.values.bytes <= 9000
    graph = one_node("LG_TestTensor", id="t", value=1.0, size=1000)
    assert ex.run(graph, targets=["t"]).executed == ["t"]  # the oldest was evicted
    graph = one_node("LG_TestTensor", id="t", value=3.0, size=1000)
    assert ex.run(graph, targets=["t"]).executed == []  # the newest was kept


def test_a_value_larger_than_the_cache_is_still_returned(make_executor, builder):
    ex = make_executor(registry=registry(), cache_bytes=100)
    graph = chain(builder, size=1000)
    result = ex.run(graph, targets=["a4"])
    assert result.outputs["a4"][0]["samples"].shape == (1000,)


DISK_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from nodes_for_tests import registry
from latentgraph.executor import Executor, Folders
ex = Executor(device="cpu", cache_dir={cache!r}, disk_min_seconds=0.0, registry=registry(),
              folders=Folders.under({root!r}))
graph = json.loads({graph!r})
r = ex.run(graph, targets=["a4"])
print(json.dumps({{"executed": r.executed, "value": r.outputs["a4"][0]["samples"].tolist()}}))
"""


def _in_new_process(tmp_path: Path, graph: dict) -> dict:
    script = DISK_SCRIPT.format(tests=str(Path(__file__).parent), cache=str(tmp_path / "cache"),
                                root=str(tmp_path), graph=json.dumps(graph))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


HEAP_SCRIPT = """
import resource, sys
sys.path.insert(0, {tests!r})
from nodes_for_tests import registry
from latentgraph.executor import Executor
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.executor.run import settle_heap
settle_heap()
g = GraphBuilder()
node = g.node("LG_TestTensor", id="0", size=16384)  # 64 KiB
for i in range(1, 200):
    node = g.node("LG_TestAdd", id=str(i), latent=node)
graph = g.build()
def run():
    Executor(device="cpu", registry=registry()).run(graph, targets=["199"])
run()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc malloc's")
def test_a_settled_process_reuses_the_memory_of_earlier_runs():
    """A cold run keeps all 200 outputs (200 x 16 pages); the next run should find them mapped.
    (Unsettled, glibc usually hands the heap top back in between, ~3,200 faults here; not always,
    depending on where the heap happens to end, so only the settled process is asserted.)"""
    script = HEAP_SCRIPT.format(tests=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) < 400


def test_disk_tier_is_reused_by_a_later_process(tmp_path, builder):
    graph = chain(builder)
    first = _in_new_process(tmp_path, graph)
    assert len(first["executed"]) == 7
    second = _in_new_process(tmp_path, graph)
    # Output nodes are never restored from disk (their files belong to one process run).
    assert second["executed"] == ["out"] and second["value"] == first["value"]


def test_corrupt_or_foreign_cache_files_are_ignored(make_executor, tmp_path, builder):
    cache_dir = tmp_path / "cache"
    graph = chain(builder)
    ex = make_executor(registry=registry(), cache_dir=cache_dir, disk_min_seconds=0.0)
    ex.run(graph, targets=["a4"])
    files = sorted(cache_dir.glob("*.safetensors"))
    assert files
    # Damage one file, and file another's content under a wrong name.
    files[0].write_bytes(b"garbage" * 10)
    if len(files) > 2:
        files[2].write_bytes(files[1].read_bytes())
    fresh = make_executor(registry=registry(), cache_dir=cache_dir, disk_min_seconds=0.0)
    result = fresh.run(graph, targets=["a4"])
    assert torch.equal(result.outputs["a4"][0]["samples"], torch.full((4,), 11.0))
    clean = make_executor(registry=registry())
    assert torch.equal(clean.run(graph, targets=["a4"]).outputs["a4"][0]["samples"],
                       result.outputs["a4"][0]["samples"])


def test_disk_tier_is_bounded(make_executor, tmp_path, builder):
    ex = make_executor(registry=registry(), cache_dir=tmp_path / "c", disk_min_seconds=0.0, disk_bytes=10_000)
    ex.run(chain(builder, size=1000), targets=["a4"])
    total = sum(p.stat().st_size for p in (tmp_path / "c").glob("*.safetensors"))
    assert 0 < total <= 10_000 + 2048  # headers are not counted in the tensor bound


def test_expansion_runs_and_caches_its_nodes(ex, builder):
    t = builder.node("LG_TestTensor", id="t", value=0.0)
    r = builder.node("LG_TestRepeat", id="r", latent=t, amount=2.0, times=3)
    builder.node("LG_TestOutput", id="o", latent=r)
    graph = builder.build()
    result = ex.run(graph)
    assert result.executed == ["t", "r.add0", "r.add1", "r.add2", "r", "o"]
    assert result.ui["o"] == {"sum": [24.0]}
    assert ex.run(graph).executed == []
    graph["r"]["inputs"]["times"] = 4  # the first three steps have the same signatures
    assert ex.run(graph).executed == ["r.add3", "r", "o"]


def test_expanded_nodes_share_cache_with_an_unrolled_graph(ex, builder):
    t = builder.node("LG_TestTensor", id="t", value=0.0)
    node = t
    for i in range(3):
        node = builder.node("LG_TestAdd", id=f"s{i}", latent=node, amount=2.0)
    ex.run(builder.build(), targets=["s2"])
    rolled = Graph()
    rolled.node("LG_TestRepeat", id="r", latent=rolled.node("LG_TestTensor", id="t", value=0.0), amount=2.0,
                times=3)
    assert ex.run(rolled.build(), targets=["r"]).executed == ["r"]


def test_node_error_is_reported_and_executor_recovers(ex, builder):
    events = []
    t = builder.node("LG_TestTensor", id="t")
    f = builder.node("LG_TestFail", id="f", latent=t)
    builder.node("LG_TestOutput", id="o", latent=f)
    graph = builder.build()
    with pytest.raises(NodeFailed) as info:
        ex.run(graph, on_event=events.append)
    assert info.value.node_id == "f" and "input 'fail'" in str(info.value)
    error = [e for e in events if e.type == "execution_error"][0].data
    assert error["node_id"] == "f" and error["node_type"] == "LG_TestFail"
    assert error["exception_type"] == "InputError" and error["executed"] == ["t"]
    graph["f"]["inputs"]["fail"] = False
    assert ex.run(graph).executed == ["f", "o"]  # "t" survived in the cache


def test_invalid_workflow_runs_nothing(ex, builder):
    graph = chain(builder)
    graph["a1"]["inputs"]["amount"] = "x"
    with pytest.raises(WorkflowInvalid) as info:
        ex.run(graph)
    assert [i.type for i in info.value.issues] == ["invalid_input_type"]
    assert not RUNS


def test_event_sequence(make_executor, builder):
    ex = make_executor(registry=registry(), previews=True)
    t = builder.node("LG_TestTensor", id="t")
    p = builder.node("LG_TestProgress", id="p", latent=t, steps=2)
    builder.node("LG_TestOutput", id="o", latent=p)
    graph = builder.build()
    events = []
    ex.run(graph, on_event=events.append)
    kinds = [e.type for e in events]
    assert kinds == ["execution_start", "executing", "executing", "progress", "progress",
                     "executing", "executed", "executing", "execution_success"]
    assert events[-2].data["node"] is None
    assert events[3].data["preview"].shape == (1, 2, 2, 3)
    events.clear()
    ex.run(graph, on_event=events.append)
    assert [e.type for e in events] == ["execution_start", "execution_cached", "executed", "executing",
                                        "execution_success"]
    assert events[1].data["nodes"] == ["o"] and events[2].data["output"] == {"sum": [0.0]}


def test_without_a_listener_no_event_is_built_but_interrupts_still_land(make_executor, builder, monkeypatch):
    from latentgraph.executor import context, run

    built = []
    for module in (context, run):
        monkeypatch.setattr(module, "Event", lambda *args: built.append(args))
    ex = make_executor(registry=registry(), previews=True)
    t = builder.node("LG_TestTensor", id="t")
    p = builder.node("LG_TestProgress", id="p", latent=t, steps=3)
    builder.node("LG_TestOutput", id="o", latent=p)
    graph = builder.build()
    assert ex.run(graph).executed == ["t", "p", "o"] and not built
    graph["p"]["inputs"]["steps"] = 4
    ex.interrupt("stop")
    with pytest.raises(Interrupted):
        ex.run(graph, prompt_id="stop")  # the interrupt is seen at the node boundary or a progress report
    assert not built


def test_lazy_outputs_are_made_only_when_read_and_the_cache_knows_the_gap(ex, builder):
    t = builder.node("LG_TestTensor", id="t", value=3.0)
    two = builder.node("LG_TestTwoWays", id="two", latent=t)
    builder.node("LG_TestOutput", id="o", latent=two.out(0))
    graph = builder.build()
    assert ex.run(graph).executed == ["t", "two", "o"]
    assert ex.run(graph).executed == []  # the gap does not matter to a run that does not read it

    # Reading the skipped output runs the node again (its other consumers stay cached).
    builder.node("LG_TestOutput", id="o2", latent=two.out(1))
    graph = builder.build()
    result = ex.run(graph)
    assert result.executed == ["two", "o2"] and RUNS["two"] == 2
    assert result.ui["o2"] == {"sum": [24.0]}
    # Asked for as a target, a node hands over every output.
    lone = {"t": graph["t"], "two": graph["two"]}
    assert ex.run(lone, ["two"]).outputs["two"][1]["samples"].tolist() == [6.0] * 4


def test_a_node_cannot_name_a_lazy_output_it_does_not_have():
    with pytest.raises(TypeError, match="lazy_outputs names no output: nope"):
        type("Broken", (Node,), {"__doc__": "x", "class_type": "LG_TestBroken", "In": Inputs,
                                 "Out": Outputs, "lazy_outputs": ("nope",), "run": lambda self, x: None})


def test_interrupt_stops_a_run_and_keeps_the_cache_consistent(ex, builder):
    t = builder.node("LG_TestTensor", id="t")
    p = builder.node("LG_TestProgress", id="p", latent=t, steps=5, wait_at=2)
    builder.node("LG_TestOutput", id="o", latent=p)
    graph = builder.build()
    Progress.GATE.clear()
    Progress.REACHED.clear()
    events, errors = [], []

    def work():
        try:
            ex.run(graph, on_event=events.append)
        except Interrupted as err:
            errors.append(err)

    worker = threading.Thread(target=work)
    worker.start()
    assert Progress.REACHED.wait(10)
    ex.interrupt()
    Progress.GATE.set()
    worker.join(10)
    assert errors and [e.type for e in events[-2:]] == ["execution_interrupted", "executing"]
    assert events[-2].data["node_id"] == "p" and events[-1].data["node"] is None
    graph["p"]["inputs"]["wait_at"] = -1
    assert ex.run(graph).executed == ["p", "o"]


def test_interrupt_for_a_prompt_that_has_not_started_yet(ex, builder):
    graph = chain(builder, n=2)
    ex.interrupt()  # nothing running: no effect on the next run
    assert ex.run(graph, prompt_id="first").executed
    ex.interrupt("second")
    with pytest.raises(Interrupted):
        ex.run(chain(Graph(), n=3, value=5.0), prompt_id="second")


def test_outputs_limit_which_output_nodes_run(ex, builder):
    chain(builder, n=1)
    builder.node("LG_TestOutput", id="out2", latent=NodeRef("t"))
    graph = builder.build()
    result = ex.run(graph, outputs=["out2"])
    assert set(result.ui) == {"out2"} and "a0" not in result.executed


def test_stream_yields_events_async(ex, builder):
    graph = chain(builder, n=2)

    async def collect():
        return [e.type async for e in ex.stream(graph)]

    kinds = asyncio.run(collect())
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
