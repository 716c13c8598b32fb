"""IMAGE <-> pixels <-> bytes: every conversion between the layouts images travel in, written once.

The names say the layout and range:

- *image*: the IMAGE socket ComfyUI defines, (B,H,W,C) float in 0..1;
- *pixels*: what autoencoders and pixel-space models take, (B,C,H,W) in -1..1;
- *unit*: channels first (or an array's own layout) in 0..1;
- *uint8*: bytes 0..255, as files, PIL and previews hold them.

Each function keeps the order of operations of the reference it stands for (diffusers'
``VaeImageProcessor``, ComfyUI's ``SaveImage``), so results are the same bits whichever node calls
it. It sits in the executor, the lowest layer, because nodes, the server's previews and the
trainers all convert images; it knows nothing about models.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image as PILImage

__all__ = [
    "image_to_pixels",
    "image_to_uint8",
    "pixels_to_image",
    "uint8_to_pil",
    "uint8_to_pixels",
    "uint8_to_unit",
    "unit_to_image",
]


def image_to_pixels(image: torch.Tensor) -> torch.Tensor:
    """IMAGE (B,H,W,C) in 0..1 -> pixels (B,C,H,W) in -1..1: ``2x - 1``, as
    ``VaeImageProcessor.normalize``.

    Computed on the permuted view, so the result stays channels-last in memory as the pipeline's
    numpy transpose leaves it (convolutions then pick the same kernels, and latents match the
    pipeline's bit for bit); ``.contiguous()`` it where a plain layout matters.
    """
    return 2.0 * image.permute(0, 3, 1, 2) - 1.0


def pixels_to_image(pixels: torch.Tensor) -> torch.Tensor:
    """pixels (B,C,H,W) in -1..1 -> IMAGE (B,H,W,C) float32, contiguous: ``x / 2 + 1/2`` clamped
    to 0..1 (``VaeImageProcessor.denormalize``) in the pixels' own dtype, as the pipelines do it,
    then float32. (``(x + 1) / 2`` gives the same bits: both are the correctly rounded (x + 1) / 2.)"""
    return unit_to_image(pixels * 0.5 + 0.5)


def unit_to_image(unit: torch.Tensor) -> torch.Tensor:
    """(B,C,H,W) in 0..1 -> IMAGE (B,H,W,C) float32, contiguous; clamped to 0..1 first."""
    return unit.clamp(0, 1).float().permute(0, 2, 3, 1).contiguous()


def image_to_uint8(image: torch.Tensor) -> npt.NDArray[np.uint8]:
    """IMAGE (..., H, W, C) -> uint8 array on the CPU: clamp, scale, round half to even, as
    ComfyUI's SaveImage (and PIL) expect."""
    return (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def uint8_to_pil(array: npt.NDArray[np.uint8]) -> PILImage.Image:
    """(H,W,C) uint8 -> a PIL image: C=1 grey, 3 RGB, 4 RGBA."""
    return PILImage.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def uint8_to_unit(
    array: npt.ArrayLike | PILImage.Image, dtype: npt.DTypeLike = np.float32
) -> npt.NDArray[np.floating]:
    """uint8 values (an array or a PIL image) -> floats in 0..1 of ``dtype``, layout unchanged."""
    return np.asarray(array, dtype=dtype) / 255.0


def uint8_to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,C,H,W) -> pixels float32 in -1..1: ``x / 127.5 - 1`` (the trainers' data)."""
    return images.float() / 127.5 - 1
