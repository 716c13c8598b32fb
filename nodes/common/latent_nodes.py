"""Latents of an autoencoder: empty ones for text-to-image, encoded images for image-to-image,
and decoding back to an IMAGE (B,H,W,3 in 0..1)."""

from __future__ import annotations

from typing import Literal, Optional

import torch

from ...executor.limits import TooLarge
from ...executor.node import Input, InputError, Inputs, Node, Outputs
from ...executor.pixels import image_to_pixels, pixels_to_image
from ...executor.types import Image, Latent
from ..diffusion.noise_nodes import SEED_MAX, generator, samples_of
from ..diffusion.sockets import RngSocket
from .interfaces import AutoencoderProtocol
from .sockets import AutoencoderSocket

CATEGORY = "latentgraph/latent"
# "auto" tiling decodes in tiles above this many pixels: decoder activations grow with the image
# area (SD-VAE's last stage holds several 128-channel full-resolution maps, 0.5 GB each in fp32 at
# 1024x1024 and 2 GB at 2048x2048), and a CPU process rarely has the GPU's headroom.
AUTO_TILE_PIXELS = {"cpu": 1024 * 1024, "cuda": 2048 * 2048}


def checked_autoencoder(value: object) -> AutoencoderProtocol:
    if not isinstance(value, AutoencoderProtocol):
        raise InputError("autoencoder", f"expected an AUTOENCODER, got {type(value).__name__}")
    return value


class EmptyLatent(Node):
    """Zeros shaped like the autoencoder's latents of a width x height image: the start of
    text-to-image (the sampler adds the noise)."""

    class_type = "LG_EmptyLatent"
    category = CATEGORY

    class In(Inputs):
        autoencoder: AutoencoderSocket
        width: int = Input(512, ge=8, le=16384, step=8)
        height: int = Input(512, ge=8, le=16384, step=8)
        batch: int = Input(1, ge=1, le=4096)

    class Out(Outputs):
        latent: Latent

    def run(self, x: In) -> Out:
        ae = checked_autoencoder(x.autoencoder)
        for name, size in (("width", x.width), ("height", x.height)):
            if size % ae.downsample:
                raise InputError(
                    name,
                    f"{size} is not a multiple of the {ae.kind}'s downsampling factor {ae.downsample}",
                )
        try:  # counted in the pixels its decode will make, the same bound as an image's
            self.ctx.limits.check_pixels(x.width, x.height, x.batch)
        except TooLarge as err:
            raise InputError("batch" if x.batch > 1 else "width", str(err)) from None
        shape = (x.batch, ae.latent_channels, x.height // ae.downsample, x.width // ae.downsample)
        return self.Out(
            latent={"samples": torch.zeros(shape, dtype=ae.latent_dtype, device=self.ctx.device)}
        )


class AutoencoderEncode(Node):
    """Encode an IMAGE into scaled latents (image-to-image). SD-VAE samples its posterior with
    `seed`, or continues `rng` so that a sampler can continue the same stream: the img2img
    pipeline draws the VAE sample first and then the noise, from one generator."""

    class_type = "LG_AutoencoderEncode"
    category = CATEGORY

    class In(Inputs):
        autoencoder: AutoencoderSocket
        image: Image
        seed: int = Input(0, ge=0, le=SEED_MAX, control_after_generate=True)
        sample: bool = Input(
            True, tooltip="SD-VAE: sample the posterior as pipelines do, or take its mode"
        )
        rng: Optional[RngSocket] = Input(None, tooltip="continue this stream instead of seeding")  # noqa: UP045

    class Out(Outputs):
        latent: Latent
        rng: RngSocket

    def run(self, x: In) -> Out:
        ae = checked_autoencoder(x.autoencoder)
        image = x.image
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
            raise InputError(
                "image", f"expected an IMAGE (B,H,W,3), got {getattr(image, 'shape', type(image))}"
            )
        height, width = image.shape[1:3]
        if height % ae.downsample or width % ae.downsample:
            raise InputError(
                "image",
                f"{width}x{height} is not a multiple of the {ae.kind}'s downsampling factor "
                f"{ae.downsample}; resize or crop it first",
            )
        # As VaeImageProcessor normalises it, channels-last in memory (see image_to_pixels).
        pixels = image_to_pixels(image[..., :3])
        gen = generator(x.seed, x.rng)
        draw = ae.stochastic and x.sample
        latent = ae.encode(pixels, gen if draw else None, sample=draw)
        return self.Out(latent={"samples": latent}, rng=gen.get_state())


class AutoencoderDecode(Node):
    """Decode latents (divided by the scaling factor) into an IMAGE; `tiling` decodes in
    overlapping tiles blended at the seams, to bound memory for large images."""

    class_type = "LG_AutoencoderDecode"
    category = CATEGORY

    class In(Inputs):
        autoencoder: AutoencoderSocket
        latent: Latent
        tiling: Literal["auto", "off", "on"] = Input("auto", tooltip="auto: tile only large images")

    class Out(Outputs):
        image: Image

    def run(self, x: In) -> Out:
        ae = checked_autoencoder(x.autoencoder)
        latents = samples_of(x.latent, "latent")
        if latents.ndim != 4 or latents.shape[1] != ae.latent_channels:
            raise InputError(
                "latent",
                f"expected ({ae.latent_channels}-channel) latents of this {ae.kind}, "
                f"got shape {tuple(latents.shape)}",
            )
        pixels = latents.shape[2] * latents.shape[3] * ae.downsample**2
        tiled = x.tiling == "on" or (
            x.tiling == "auto" and pixels > AUTO_TILE_PIXELS.get(self.ctx.device.type, 2048**2)
        )
        self.ctx.check_interrupted()
        decoded = ae.decode(latents, tiled=tiled)
        return self.Out(image=pixels_to_image(decoded))


class AutoencoderInfo(Node):
    """What an autoencoder's latent space looks like: its kind (sd-vae, dc-ae), latent channels,
    the scaling factor latents are multiplied by, and the spatial downsampling factor."""

    class_type = "LG_AutoencoderInfo"
    category = CATEGORY

    class In(Inputs):
        autoencoder: AutoencoderSocket

    class Out(Outputs):
        kind: str
        latent_channels: int
        scaling_factor: float
        downsample: int

    def run(self, x: In) -> Out:
        ae = checked_autoencoder(x.autoencoder)
        return self.Out(
            kind=ae.kind,
            latent_channels=ae.latent_channels,
            scaling_factor=ae.scaling_factor,
            downsample=ae.downsample,
        )


NODES = [EmptyLatent, AutoencoderEncode, AutoencoderDecode, AutoencoderInfo]
