"""FLUX.1's transformer as a DENOISER, driven exactly as FluxPipeline drives it: the latent packed
into 2x2 patches (B, H/2 * W/2, 4C) with their (0, row, column) position ids for RoPE, the T5
tokens with zero ids, the pooled CLIP-L vector, the timestep divided by 1000, and for the
guidance-distilled dev model the guidance scale as an input of the network (no uncond branch).
schnell has no guidance embedding. True CFG with a negative prompt (FluxPipeline's
true_cfg_scale) runs the two branches as two forwards, as the pipeline does."""

from __future__ import annotations

from typing import Any

import torch

from ..common.models import HoldsModules
from ..diffusion.denoiser import Denoiser, TextEmbeds, _spread
from ..diffusion.math import ArgumentError
from ..sd3.models import check_widths
from ..sd3.scheduling import FlowMatch

#: FluxPipeline's default guidance_scale, for a dev prompt no LG_FluxGuidance set.
DEFAULT_GUIDANCE = 3.5


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): each 2x2 patch a token, channels-major within it."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`pack` for a latent of height x width."""
    b, _, channels = tokens.shape
    patches = tokens.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, channels // 4, height, width)


def image_ids(rows: int, columns: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(rows * columns, 3) position ids (0, row, column) of the packed tokens."""
    ids = torch.zeros(rows, columns, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(rows)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(columns)[None, :]
    return ids.reshape(rows * columns, 3).to(device=device, dtype=dtype)


def check_patches(sample: torch.Tensor, argument: str = "sample") -> None:
    height, width = sample.shape[-2:]
    if height % 2 or width % 2:
        raise ArgumentError(
            argument,
            f"FLUX packs the latent into 2x2 patches, and its {height}x{width} is odd: use an "
            "image whose sides are multiples of twice the autoencoder's factor (16 for FLUX's VAE)",
        )


class FluxDenoiser(Denoiser, HoldsModules):
    """FluxTransformer2DModel predicting the flow velocity noise - x0."""

    family = "flux"
    spacing = "linspace"
    steps_offset = 0
    _modules = ("transformer",)

    def __init__(self, transformer: Any, training: FlowMatch) -> None:
        self.transformer = transformer
        self.training = training
        self.schedule = training.schedule
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        self._id_cache: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def plan_options(self, latent: torch.Tensor) -> dict[str, Any]:
        """FluxPipeline's plan: mu from the packed token count, on the pipeline's sigmas."""
        check_patches(latent, "latent")
        height, width = latent.shape[-2:]
        return self.training.plan_options((height // 2) * (width // 2))

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, context: TextEmbeds | None
    ) -> torch.Tensor:
        if context is None or context.pooled is None:
            raise ArgumentError(
                "positive",
                "FLUX is conditioned on T5 tokens with a pooled CLIP-L vector: connect the "
                "TEXT_EMBEDS of a FLUX text encoding",
            )
        check_widths(self.transformer.config, context, "FLUX", "T5 + pooled CLIP-L")
        check_patches(sample)
        device, dtype = self.placement
        batch, _, height, width = sample.shape
        guidance = None
        if self.guidance_embeds:
            scale = DEFAULT_GUIDANCE if context.guidance is None else context.guidance
            guidance = torch.full([1], scale, device=device, dtype=torch.float32).expand(batch)
        # FluxPipeline: t.expand(B).to(latents.dtype), then divided by 1000 in the call.
        t = timestep.to(device).expand(batch).to(dtype)
        embeddings = context.embeddings.to(device, dtype)
        txt_ids, img_ids = self._ids(embeddings.shape[1], height // 2, width // 2, device, dtype)
        with torch.no_grad():
            out = self.transformer(
                hidden_states=pack(sample.to(device, dtype)),
                timestep=t / 1000,
                guidance=guidance,
                pooled_projections=context.pooled.to(device, dtype),
                encoder_hidden_states=embeddings,
                txt_ids=txt_ids,
                img_ids=img_ids,
                return_dict=False,
            )[0]
        return unpack(out, height, width)

    def _ids(
        self, tokens: int, rows: int, columns: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The text (zeros) and image position ids, made once per shape as the pipeline makes
        them once per call (the transformer only reads them)."""
        key = (tokens, rows, columns, device, dtype)
        if key not in self._id_cache:
            if len(self._id_cache) > 8:
                self._id_cache.clear()
            self._id_cache[key] = (
                torch.zeros(tokens, 3, device=device, dtype=dtype),
                image_ids(rows, columns, device, dtype),
            )
        return self._id_cache[key]

    def predict(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        positive: TextEmbeds | None,
        negative: TextEmbeds | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cond, uncond): FluxPipeline's true CFG runs the negative prompt as a second forward
        (with the positive's guidance), not batched with the positive."""
        if negative is None:
            return super().predict(sample, timestep, positive, None)
        if positive is None:
            raise ArgumentError("negative", "a negative prompt needs a positive one")
        batch = sample.shape[0]
        positive = _spread(positive, batch, "positive")
        negative = _spread(negative, batch, "negative")
        if negative.guidance is None and positive.guidance is not None:
            negative = TextEmbeds(negative.embeddings, negative.mask, negative.pooled, positive.guidance)
        cond = self.forward(sample, timestep, positive)
        return cond, self.forward(sample, timestep, negative)
