"""Small nodes that exist only for the executor's tests: counting, failing, slow, expanding."""

from __future__ import annotations

import threading
from collections import Counter

import torch
from latentgraph.executor import (
    Expand,
    Input,
    InputError,
    Inputs,
    Node,
    NodeRegistry,
    Outputs,
    ParentInput,
)
from latentgraph.executor.graph_builder import GraphBuilder
from latentgraph.executor.types import Image, Latent
from latentgraph.nodes import default_registry

RUNS: Counter[str] = Counter()


class Tensor(Node):
    """A tensor of `size` float32 elements filled with `value` (as a LATENT)."""

    class_type = "LG_TestTensor"

    class In(Inputs):
        value: float = 0.0
        size: int = Input(4, ge=1)

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        RUNS[self.ctx.node_id] += 1
        return self.Out(latent={"samples": torch.full((x.size,), x.value)})


class AddLatent(Node):
    """latent + amount."""

    class_type = "LG_TestAdd"

    class In(Inputs):
        latent: Latent
        amount: float = 1.0

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        RUNS[self.ctx.node_id] += 1
        return self.Out(latent={"samples": x.latent["samples"] + x.amount})


class Fail(Node):
    """Raises when `fail` is true, otherwise passes the latent through."""

    class_type = "LG_TestFail"

    class In(Inputs):
        latent: Latent
        fail: bool = True

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        RUNS[self.ctx.node_id] += 1
        if x.fail:
            raise InputError("fail", "asked to fail")
        return self.Out(latent=x.latent)


class Progress(Node):
    """Reports `steps` progress events; waits on GATE at step `wait_at` (for interrupt tests)."""

    class_type = "LG_TestProgress"
    GATE = threading.Event()
    REACHED = threading.Event()

    class In(Inputs):
        latent: Latent
        steps: int = Input(3, ge=1)
        wait_at: int = -1

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        RUNS[self.ctx.node_id] += 1
        for i in range(x.steps):
            if i == x.wait_at:
                Progress.REACHED.set()
                Progress.GATE.wait(10)
            self.ctx.progress(i + 1, x.steps, preview=lambda: torch.zeros(1, 2, 2, 3))
        return self.Out(latent=x.latent)


class Repeat(Node):
    """Adds `amount` to a latent `times` times, by expanding into a chain of LG_TestAdd nodes."""

    class_type = "LG_TestRepeat"

    class In(Inputs):
        latent: Latent
        amount: float = 1.0
        times: int = Input(3, ge=1)

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Expand:
        RUNS[self.ctx.node_id] += 1
        g, previous = GraphBuilder(), ParentInput("latent")
        for i in range(x.times):
            previous = g.node("LG_TestAdd", id=f"add{i}", latent=previous, amount=ParentInput("amount"))
        return Expand(nodes=g.build(), outputs=((previous.id, 0),))


class Output(Node):
    """An output node that reports the latent's sum in its UI payload."""

    class_type = "LG_TestOutput"
    output_node = True

    class In(Inputs):
        latent: Latent

    class Out(Outputs):
        pass

    def run(self, x: In) -> Out:
        RUNS[self.ctx.node_id] += 1
        self.ui = {"sum": [float(x.latent["samples"].sum())]}
        return self.Out()


class ToImage(Node):
    """A 1x8x8x3 image whose brightness is the latent's mean (for PNG tests)."""

    class_type = "LG_TestToImage"

    class In(Inputs):
        latent: Latent

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        return self.Out(image=torch.full((1, 8, 8, 3), float(x.latent["samples"].mean()) % 1.0))


class TwoWays(Node):
    """The latent plus one, and (lazily) times two: the doubled output is made only when read."""

    class_type = "LG_TestTwoWays"
    lazy_outputs = ("doubled",)

    class In(Inputs):
        latent: Latent

    class Out(Outputs):
        plus_one: Latent
        doubled: Latent

    def run(self, x: In) -> tuple:
        RUNS[self.ctx.node_id] += 1
        samples = x.latent["samples"]
        doubled = {"samples": samples * 2} if self.ctx.wants("doubled") else None
        return {"samples": samples + 1}, doubled


TEST_NODES = [Tensor, AddLatent, Fail, Progress, Repeat, Output, ToImage, TwoWays]


def registry() -> NodeRegistry:
    return NodeRegistry([*default_registry(), *TEST_NODES])
