"""Replay a denoiser's forward as a CUDA graph: one launch per step instead of one per kernel.

At 512 px a U-Net step is a thousand-odd small kernels, and issuing them from Python takes about
as long as the GPU takes to run them, so the step waits on the host. A CUDA graph records the
whole forward once and replays it with a single launch (the same kernels, in the same order, on
the same weights, so the same numbers). It is what ``torch.compile(mode="reduce-overhead")`` does,
without the compile.

Inputs are copied into buffers the graph was recorded with, and the output is copied out before
the next replay overwrites it. One graph is recorded per input shape (a new resolution, batch or
prompt length records another). Off CUDA, or for a forward that cannot be recorded, the denoiser
runs as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import torch

from ...executor.node import Inputs, Node, Outputs
from .denoiser import Denoiser, TextEmbeds
from .sockets import DenoiserSocket

log = logging.getLogger(__name__)
WARMUP_CALLS = 2  # lazy initialisation (cuBLAS workspaces, kernel selection) happens before recording


@dataclass
class _Recording:
    graph: torch.cuda.CUDAGraph
    sample: torch.Tensor
    timestep: torch.Tensor
    context: TextEmbeds | None
    output: torch.Tensor


def _tensors_of(context: TextEmbeds | None) -> list[torch.Tensor | None]:
    """The context's fields in declaration order (embeddings, mask, pooled)."""
    return [] if context is None else [getattr(context, f.name) for f in fields(context)]


def _key(sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> tuple:
    tensors = [sample, timestep, *_tensors_of(context)]
    return tuple(None if t is None else (t.shape, t.dtype, t.device) for t in tensors)


def _copy_context(context: TextEmbeds | None) -> TextEmbeds | None:
    if context is None:
        return None
    return TextEmbeds(*(None if t is None else t.clone() for t in _tensors_of(context)))


def _fill_context(static: TextEmbeds | None, context: TextEmbeds | None) -> None:
    for target, value in zip(_tensors_of(static), _tensors_of(context), strict=False):
        if target is not None:
            target.copy_(value)


class GraphedDenoiser(Denoiser):
    """A denoiser whose forward replays a recorded CUDA graph; everything else is the wrapped
    denoiser's (schedule, spacing, placement, the modules the model tier moves)."""

    def __init__(self, inner: Denoiser) -> None:
        self.inner = inner
        self.schedule = inner.schedule
        self.spacing = inner.spacing
        self.steps_offset = inner.steps_offset
        self._recordings: dict[tuple, _Recording | None] = {}  # None: could not be recorded
        self._recorded_moves = getattr(inner, "moves", 0)
        self._pool: Any = None

    def to(self, device: torch.device | str) -> GraphedDenoiser:
        self.inner.to(device)  # type: ignore[attr-defined]
        return self

    def _drop_stale(self) -> None:
        """Recordings hold the weights' addresses: once the model tier has moved the weights
        (offloaded and brought back, through this wrapper or the loader's own entry), replaying
        them would read freed memory, so they are recorded again."""
        moves = getattr(self.inner, "moves", 0)
        if moves != self._recorded_moves:
            self._recordings.clear()
            self._recorded_moves = moves

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> torch.Tensor:
        if sample.device.type != "cuda" or torch.cuda.is_current_stream_capturing():
            return self.inner.forward(sample, timestep, context)
        self._drop_stale()
        timestep = timestep.to(sample.device)
        key = _key(sample, timestep, context)
        if key not in self._recordings:
            self._recordings[key] = self._record(sample, timestep, context)
        recording = self._recordings[key]
        if recording is None:
            return self.inner.forward(sample, timestep, context)
        recording.sample.copy_(sample)
        recording.timestep.copy_(timestep)
        _fill_context(recording.context, context)
        recording.graph.replay()
        return recording.output.clone()

    def _record(self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None) -> _Recording | None:
        static_sample, static_timestep, static_context = sample.clone(), timestep.clone(), _copy_context(context)
        side = torch.cuda.Stream(sample.device)
        side.wait_stream(torch.cuda.current_stream(sample.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self.inner.forward(static_sample, static_timestep, static_context)
            torch.cuda.current_stream(sample.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                output = self.inner.forward(static_sample, static_timestep, static_context)
        except Exception as err:  # noqa: BLE001 - anything the capture refuses: run eagerly
            torch.cuda.synchronize(sample.device)
            log.warning("denoiser forward could not be recorded as a CUDA graph (%s); running it eagerly", err)
            return None
        return _Recording(graph, static_sample, static_timestep, static_context, output)


class CUDAGraphs(Node):
    """Replay the denoiser's network as a CUDA graph: one launch per step instead of one per
    kernel, the same numbers. Worth it where the host is the bottleneck (U-Nets, small
    batches). Records once per input shape; off CUDA the denoiser is passed on unchanged."""

    class_type = "LG_CUDAGraphs"
    category = "latentgraph/sampling"

    class In(Inputs):
        denoiser: DenoiserSocket

    class Out(Outputs):
        denoiser: DenoiserSocket

    def run(self, x: In) -> Out:
        if self.ctx.device.type != "cuda" or isinstance(x.denoiser, GraphedDenoiser):
            return self.Out(denoiser=x.denoiser)
        return self.Out(denoiser=GraphedDenoiser(x.denoiser))


NODES = [CUDAGraphs]
