"""LG_CUDAGraphs: the U-Net's forward replayed as a CUDA graph gives the eager numbers; off CUDA
the node hands the denoiser on untouched, so a graph using it runs anywhere."""

from __future__ import annotations

import pytest
import torch
from graph_helpers import Graph, NodeRef
from latentgraph import Executor
from latentgraph.nodes.diffusion.cuda_graphs import GraphedDenoiser
from latentgraph.nodes.diffusion.denoiser import TextEmbeds


def with_cuda_graphs(graph: dict) -> dict:
    """The shipped txt2img graph with LG_CUDAGraphs between the loader and the sampler."""
    g = Graph.extend(graph)
    g.set("5", denoiser=g.node("LG_CUDAGraphs", id="20", denoiser=NodeRef("1")))
    return g.build()


def test_off_cuda_the_denoiser_passes_through(sd_executor, sd_graph):
    plain = sd_graph("sd_txt2img")
    graphed = with_cuda_graphs(plain)
    result = sd_executor.run(graphed, ["20", "6", "1"])
    assert result.outputs["20"][0] is result.outputs["1"][0]
    assert torch.equal(result.outputs["6"][0], sd_executor.run(plain, ["6"]).outputs["6"][0])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_replay_equals_the_eager_forward(sd_root):
    executor = Executor(device="cuda", folders=sd_root)
    g = Graph()
    g.node("LG_CUDAGraphs", id="2", denoiser=g.node("LG_LoadCheckpoint", id="1", path="sd/tiny"))
    result = executor.run(g.build(), ["1", "2"])
    eager, graphed = result.outputs["1"][0], result.outputs["2"][0]
    assert isinstance(graphed, GraphedDenoiser)
    gen = torch.Generator().manual_seed(0)

    def inputs(side: int) -> tuple:
        sample = torch.randn(2, 4, side, side, generator=gen).cuda()
        context = TextEmbeds(torch.randn(2, 77, 64, generator=gen).cuda())
        return sample, torch.tensor(500 - side, device="cuda"), context

    for side in (8, 8, 16, 8):  # a second call refills the buffers; a new shape records again
        args = inputs(side)
        assert torch.equal(graphed.forward(*args), eager.forward(*args))
    assert len(graphed._recordings) == 2

    eager.to("cpu"), eager.to("cuda")  # the model tier moved the weights: record again
    args = inputs(8)
    assert torch.equal(graphed.forward(*args), eager.forward(*args))
    assert len(graphed._recordings) == 1


def test_recorded_buffers_take_every_context_field():
    """What a replay copies in: every tensor of the text embeddings (here with a mask), and the
    shapes, dtypes and missing fields that decide which recording a call uses."""
    from latentgraph.nodes.diffusion.cuda_graphs import _copy_context, _fill_context, _key

    first = TextEmbeds(torch.zeros(2, 5, 8), torch.ones(2, 5))
    static = _copy_context(first)
    assert static.embeddings is not first.embeddings and static.pooled is None
    second = TextEmbeds(torch.full((2, 5, 8), 3.0), torch.zeros(2, 5))
    _fill_context(static, second)
    assert torch.equal(static.embeddings, second.embeddings) and torch.equal(static.mask, second.mask)
    sample, t = torch.zeros(2, 4, 8, 8), torch.tensor(1)
    assert _key(sample, t, first) == _key(sample, t, second)
    assert _key(sample, t, first) != _key(sample, t, TextEmbeds(torch.zeros(2, 5, 8)))  # no mask
    assert _key(sample, t, first) != _key(sample[:1], t, first)
