"""While a run is in progress the cyclic collector's full passes are deferred (a raised
generation-2 threshold); the thresholds come back after every run, failed, invalid, nested or
concurrent, and what a run left for the collector is still collected."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from graph_helpers import one_node
from latentgraph.executor import (
    Executor,
    Inputs,
    Node,
    NodeFailed,
    NodeRegistry,
    Outputs,
    WorkflowInvalid,
)
from latentgraph.executor.run import fewer_full_collections

SEEN: list[tuple[int, int, int]] = []
RELEASE = threading.Event()
STARTED = threading.Event()
LEFT_BEHIND: list[weakref.ref] = []


class Cycle:
    def __init__(self) -> None:
        self.me = self


class Probe(Node):
    """Records the collector's thresholds; optionally fails, runs a nested workflow, waits for
    RELEASE, or leaves a reference cycle behind."""

    class_type = "LG_TestGcProbe"

    class In(Inputs):
        fail: bool = False
        nested: bool = False
        wait: bool = False
        cycle: bool = False

    class Out(Outputs):
        value: int

    def run(self, x: In) -> Out:
        SEEN.append(gc.get_threshold())
        if x.nested:
            Executor(device="cpu", registry=REGISTRY).run(probe(), targets=["1"])
            SEEN.append(gc.get_threshold())  # the inner run ended; this one still runs
        if x.wait:
            STARTED.set()
            assert RELEASE.wait(30)
        if x.cycle:
            garbage = Cycle()
            LEFT_BEHIND.append(weakref.ref(garbage))
        if x.fail:
            raise RuntimeError("as asked")
        return self.Out(value=len(SEEN))


REGISTRY = NodeRegistry([Probe])


def probe(**inputs: bool) -> dict:
    return one_node("LG_TestGcProbe", **inputs)


@pytest.fixture(autouse=True)
def cpython_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    SEEN.clear()
    RELEASE.clear()
    STARTED.clear()
    yield
    gc.set_threshold(*before)


def raised() -> tuple[int, int, int]:
    return (700, 10, fewer_full_collections.full_every)


def executor() -> Executor:
    return Executor(device="cpu", registry=REGISTRY)


def test_raised_during_a_run_and_restored_after():
    executor().run(probe(), targets=["1"])
    assert SEEN == [raised()]
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_a_failed_and_an_invalid_run():
    with pytest.raises(NodeFailed):
        executor().run(probe(fail=True), targets=["1"])
    assert SEEN == [raised()] and gc.get_threshold() == (700, 10, 10)
    with pytest.raises(WorkflowInvalid):
        executor().run(one_node("LG_NoSuchNode"), targets=["1"])
    assert gc.get_threshold() == (700, 10, 10)


def test_nested_runs_restore_once_the_outermost_ends():
    executor().run(probe(nested=True), targets=["1"])
    assert SEEN == [raised()] * 3
    assert gc.get_threshold() == (700, 10, 10)


def test_concurrent_runs_restore_once_the_last_ends():
    slow = threading.Thread(target=lambda: executor().run(probe(wait=True), targets=["1"]))
    slow.start()
    try:
        assert STARTED.wait(30)
        executor().run(probe(), targets=["1"])  # starts and ends while the other one runs
        assert gc.get_threshold() == raised()
    finally:
        RELEASE.set()
        slow.join(30)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_set_during_the_run_is_kept_and_off_stays_off():
    class Setter(Probe):
        """Sets its own thresholds mid-run."""

        class_type = "LG_TestGcSetter"

        def run(self, x: Probe.In) -> Probe.Out:
            gc.set_threshold(500, 5, 5)
            return self.Out(value=0)

    Executor(device="cpu", registry=NodeRegistry([*REGISTRY, Setter])).run(
        one_node("LG_TestGcSetter"), targets=["1"])
    assert gc.get_threshold() == (500, 5, 5)
    gc.set_threshold(0, 10, 10)  # automatic collection off: the run leaves it so
    executor().run(probe(), targets=["1"])
    assert SEEN == [(0, 10, 10)] and gc.get_threshold() == (0, 10, 10)


def test_cycles_left_by_a_run_are_still_collected():
    executor().run(probe(cycle=True), targets=["1"])
    gc.collect()
    assert LEFT_BEHIND[-1]() is None and not gc.garbage
