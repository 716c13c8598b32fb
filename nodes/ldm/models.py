"""SD 1.x's U-Net as a DENOISER and its KL autoencoder (SD-VAE) as an AUTOENCODER, driving the
diffusers modules the way StableDiffusion(Img2Img)Pipeline does."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..common.models import Autoencoder, HoldsModules
from ..common.schedules import TrainingSchedule
from ..diffusion.denoiser import Denoiser, TextEmbeds


class UNetDenoiser(Denoiser, HoldsModules):
    """UNet2DConditionModel predicting epsilon (or v) from x_t, t and the CLIP embeddings."""

    _modules = ("unet",)

    def __init__(self, unet: Any, training: TrainingSchedule) -> None:
        self.unet = unet
        self.schedule = training.schedule
        self.spacing = training.spacing
        self.steps_offset = training.steps_offset

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None
    ) -> torch.Tensor:
        if context is None:
            raise ValueError("the SD U-Net is conditioned on text: connect a positive prompt")
        device, dtype = self.placement
        with torch.no_grad():
            # The pipeline hands the scheduler's 0-d timestep straight to the U-Net, which
            # broadcasts it over the batch itself; so do we.
            out = self.unet(
                sample.to(device, dtype),
                timestep.to(device),
                encoder_hidden_states=context.embeddings.to(device, dtype),
                return_dict=False,
            )[0]
        return out.to(sample.dtype)


class KLAutoencoder(Autoencoder):
    """AutoencoderKL: encoding samples its diagonal Gaussian posterior (or takes the mode).

    Latents are ``(z - shift_factor) * scaling_factor``, as the pipelines keep them: SD-VAE has
    no shift (SD 1.x's arithmetic, ``scaling_factor * z``, exactly); SD3's and FLUX's 16-channel
    VAEs have one in their config."""

    kind = "sd-vae"
    _modules = ("vae",)
    stochastic = True

    def __init__(self, vae: Any, latent_dtype: torch.dtype) -> None:
        self.vae = vae
        config = vae.config
        self.latent_channels = int(config.latent_channels)
        self.scaling_factor = float(config.scaling_factor)
        self.downsample = 2 ** (len(config.block_out_channels) - 1)
        self.latent_dtype = latent_dtype
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)

    def encode(
        self, pixels: torch.Tensor, generator: torch.Generator | None, sample: bool = True
    ) -> torch.Tensor:
        device, dtype = self.placement
        with torch.no_grad():
            posterior = self.vae.encode(pixels.to(device, dtype)).latent_dist
            if not _finite(posterior.parameters):
                posterior = self._in_fp32().encode(pixels.to(device, torch.float32)).latent_dist
            # DiagonalGaussianDistribution.sample draws randn(mean.shape) from the generator, as
            # the img2img pipeline's retrieve_latents does, before the pipeline draws its noise.
            z = posterior.sample(generator) if sample else posterior.mode()
        if self.shift_factor:
            z = z - self.shift_factor
        return (self.scaling_factor * z).to(self.latent_dtype)

    def decode(self, latents: torch.Tensor, tiled: bool = False) -> torch.Tensor:
        device, dtype = self.placement
        with torch.no_grad():
            image = _decode(self.vae, self._unscaled(latents.to(device, dtype)), tiled)
            if not _finite(image):
                image = _decode(self._in_fp32(), self._unscaled(latents.to(device, torch.float32)), tiled)
        return image

    def _unscaled(self, latents: torch.Tensor) -> torch.Tensor:
        """The VAE's own z of pipeline latents: ``latents / scaling_factor + shift_factor``."""
        z = latents / self.scaling_factor
        return z + self.shift_factor if self.shift_factor else z

    def _in_fp32(self) -> Any:
        """A float32 copy of the VAE, for the rare half-precision result that overflowed (SD
        VAEs can, on some latents; the web UIs retry in fp32 the same way). Not kept: it is
        needed once in a long while, and keeping it would double the VAE's memory."""
        return copy.deepcopy(self.vae).float()


def _decode(vae: Any, z: torch.Tensor, tiled: bool) -> torch.Tensor:
    if tiled:
        return vae.tiled_decode(z, return_dict=False)[0]
    return vae.decode(z, return_dict=False)[0]


def _finite(tensor: torch.Tensor) -> bool:
    """fp32 results count as final; a half-precision one must be free of inf and NaN (one
    device sync, at the end of the encode or decode)."""
    return tensor.dtype == torch.float32 or bool(torch.isfinite(tensor).all())
