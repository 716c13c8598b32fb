"""Prompt -> TEXT_EMBEDS with whichever text encoder the graph loaded."""

from __future__ import annotations

from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ..diffusion.sockets import TextEmbedsSocket
from .interfaces import TextEncoderProtocol
from .sockets import TextEncoderSocket


class TextEncode(Node):
    """Encode a prompt as the model's reference pipeline does: CLIP (SD 1.x) pads to 77 tokens
    and takes the last hidden state; Gemma-2 (SANA) lower-cases, prepends the complex human
    instruction, keeps BOS + the last 299 of 300 positions and an attention mask."""

    class_type = "LG_TextEncode"
    category = "latentgraph/conditioning"

    class In(Inputs):
        encoder: TextEncoderSocket
        text: str = Input("", multiline=True)
        instruction: bool = Input(
            True,
            tooltip="SANA only: prepend SanaPipeline's complex human instruction "
            "(the pipeline leaves it off the negative prompt)",
        )

    class Out(Outputs):
        embeds: TextEmbedsSocket

    def run(self, x: In) -> Out:
        if not isinstance(x.encoder, TextEncoderProtocol):
            raise InputError("encoder", f"expected a TEXT_ENCODER, got {type(x.encoder).__name__}")
        self.ctx.check_interrupted()
        return self.Out(embeds=x.encoder.encode([x.text], instruction=x.instruction))


NODES = [TextEncode]
