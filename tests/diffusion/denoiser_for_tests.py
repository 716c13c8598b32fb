"""A small conditional denoiser for sampler tests: the ideal denoiser of a few random images,
nudged by the text embedding so that guidance changes the result."""

from __future__ import annotations

import torch
from latentgraph.executor import Input, Inputs, Node, NodeRegistry, Outputs
from latentgraph.nodes import default_registry
from latentgraph.nodes.diffusion.denoiser import TextEmbeds
from latentgraph.nodes.diffusion.ideal_denoiser import IdealDenoiser
from latentgraph.nodes.diffusion.math import Schedule
from latentgraph.nodes.diffusion.sockets import DenoiserSocket, ScheduleSocket, TextEmbedsSocket

SHAPE = (1, 3, 8, 8)  # a pixel-space latent of an 8x8 image


class ConditionalDenoiser(IdealDenoiser):
    def forward(self, sample, timestep, context):
        out = super().forward(sample, timestep, context)
        if context is not None:
            out = out + 0.05 * context.embeddings.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        return out


def make_denoiser(schedule: Schedule, spacing="leading", steps_offset=1) -> ConditionalDenoiser:
    data = torch.randn(3, *SHAPE[1:], generator=torch.Generator().manual_seed(7)).clamp(-1, 1)
    return ConditionalDenoiser(data, schedule, spacing, steps_offset)


class TestDenoiserNode(Node):
    """The conditional test denoiser for a schedule."""

    class_type = "LG_TestDenoiser"

    class In(Inputs):
        schedule: ScheduleSocket
        spacing: str = "leading"
        steps_offset: int = 1

    class Out(Outputs):
        denoiser: DenoiserSocket

    def run(self, x):
        return self.Out(denoiser=make_denoiser(x.schedule, x.spacing, x.steps_offset))


class TestEmbedsNode(Node):
    """A constant (1, 2, 4) text embedding."""

    class_type = "LG_TestEmbeds"

    class In(Inputs):
        value: float = Input(0.0)

    class Out(Outputs):
        embeds: TextEmbedsSocket

    def run(self, x):
        return self.Out(embeds=TextEmbeds(torch.full((1, 2, 4), x.value)))


def registry() -> NodeRegistry:
    return NodeRegistry([*default_registry(), TestDenoiserNode, TestEmbedsNode])
