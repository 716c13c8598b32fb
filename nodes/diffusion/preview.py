"""A cheap RGB preview of a latent, for progress events (no autoencoder call)."""

from __future__ import annotations

import torch

from ...executor.pixels import pixels_to_image, unit_to_image


def latent_preview(samples: torch.Tensor, max_side: int = 256) -> torch.Tensor:
    """(B,C,H,W) latent -> IMAGE (1,H,W,3) in 0..1 of the first batch item.

    Pixel-space latents (3 channels in [-1, 1]) map back exactly; other latents show their first
    three channels, each stretched to its own range, enough to watch structure emerge.
    """
    x = samples[:1].detach().float()
    step = max(1, max(x.shape[-2:]) // max_side)
    if x.shape[1] == 3:
        return pixels_to_image(x[..., ::step, ::step]).cpu()
    channels = x[:, :3] if x.shape[1] >= 3 else x[:, :1].expand(-1, 3, -1, -1)
    low = channels.amin(dim=(2, 3), keepdim=True)
    high = channels.amax(dim=(2, 3), keepdim=True)
    rgb = (channels - low) / (high - low).clamp_min(1e-6)
    return unit_to_image(rgb[..., ::step, ::step]).cpu()
