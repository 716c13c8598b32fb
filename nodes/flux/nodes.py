"""FLUX's own nodes: the distilled guidance scale on the conditioning (as ComfyUI's FluxGuidance),
and the loader of GGUF-quantised transformers (``gguf_files``)."""

from __future__ import annotations

import dataclasses

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..diffusion.denoiser import TextEmbeds
from ..diffusion.sockets import TextEmbedsSocket
from .gguf_files import LoadFluxGGUF
from .models import DEFAULT_GUIDANCE


class FluxGuidance(Node):
    """Set the guidance scale a guidance-distilled model (FLUX.1-dev) is conditioned on: the
    network takes it as an input instead of running an unconditional branch (FluxPipeline's
    guidance_scale; 3.5 when none is set). schnell has no guidance embedding and ignores it."""

    class_type = "LG_FluxGuidance"
    category = "latentgraph/conditioning"

    class In(Inputs):
        embeds: TextEmbedsSocket
        guidance: float = Input(DEFAULT_GUIDANCE, ge=0.0, le=100.0, step=0.1)

    class Out(Outputs):
        embeds: TextEmbedsSocket

    def run(self, x: In) -> Out:
        if not isinstance(x.embeds, TextEmbeds):
            raise InputError("embeds", f"expected TEXT_EMBEDS, got {type(x.embeds).__name__}")
        return self.Out(embeds=dataclasses.replace(x.embeds, guidance=x.guidance))


NODES = [FluxGuidance, LoadFluxGGUF]
