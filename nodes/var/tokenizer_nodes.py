"""The VQVAE as nodes: image -> multi-scale token maps (Tian et al. 2024, Alg. 1) and back (Alg. 2)."""

from __future__ import annotations

import torch

from ...executor.node import InputError, Inputs, Node, Outputs
from ...executor.pixels import pixels_to_image
from ...executor.types import Image
from .checks import checked_image, image_side
from .model import VQVAE, quantize_image
from .sockets import TokenMapsSocket, VQVAESocket

CATEGORY = "latentgraph/var"


@torch.no_grad()
def decode_latent(vqvae: VQVAE, f_hat: torch.Tensor, input_name: str) -> torch.Tensor:
    """Decode a quantized latent f_hat (B,C,h,w) to an IMAGE, checking its channel count first."""
    if f_hat.shape[1] != vqvae.config.z_channels:
        raise InputError(
            input_name,
            f"latent has {f_hat.shape[1]} channels; this VQVAE decodes {vqvae.config.z_channels}",
        )
    # Denormalised in float32, not in the VQVAE's (possibly half) dtype: one rounding fewer.
    return pixels_to_image(vqvae.latent_to_image(f_hat).float())


class VQVAEQuantize(Node):
    """Encode an image into VAR token maps, one per scale of the VQVAE's schedule (residual
    quantization, coarse to fine). The image must be patch_nums[-1] x 16 pixels square."""

    class_type = "LG_VQVAEQuantize"
    category = CATEGORY

    class In(Inputs):
        vqvae: VQVAESocket
        image: Image

    class Out(Outputs):
        token_maps: TokenMapsSocket

    def run(self, x: In) -> Out:
        vqvae = x.vqvae
        pixels = checked_image(x.image, image_side(vqvae, vqvae.config.patch_nums))
        weights = vqvae.quant_conv.weight
        return self.Out(token_maps=quantize_image(vqvae, pixels.to(weights.device, weights.dtype)))


class VQVAEDecode(Node):
    """Decode token maps to an image: the latent their tokens sum to, through the decoder."""

    class_type = "LG_VQVAEDecode"
    category = CATEGORY

    class In(Inputs):
        vqvae: VQVAESocket
        token_maps: TokenMapsSocket

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        # TOKEN_MAPS carry the cumulative latent after each scale, so partial maps decode too.
        return self.Out(image=decode_latent(x.vqvae, x.token_maps.f_hat, "token_maps"))


NODES = [VQVAEQuantize, VQVAEDecode]
