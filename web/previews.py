"""IMAGE tensors to the small PNGs sent as live previews."""

from __future__ import annotations

import io
from typing import Any

import torch

from ..executor.pixels import image_to_uint8, uint8_to_pil

PREVIEW_MAX_SIDE = 512


def preview_png(image: Any, max_side: int = PREVIEW_MAX_SIDE) -> bytes | None:
    """The first image of an IMAGE batch (B,H,W,C float 0..1) as PNG bytes, at most ``max_side``
    pixels on its longer side; None for anything that is not an image tensor.

    Called on the worker thread, so the event loop never pays for encoding.
    """
    if not isinstance(image, torch.Tensor):
        return None
    frame = image.detach()
    if frame.ndim == 4:
        frame = frame[0]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4) or frame.numel() == 0:
        return None
    pil = uint8_to_pil(image_to_uint8(frame))
    pil.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=1)  # speed over size: it is thrown away soon
    return buffer.getvalue()
