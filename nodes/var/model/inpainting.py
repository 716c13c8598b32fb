"""Zero-shot in-painting and out-painting with a class-conditional VAR (Tian et al. 2024, Fig. 8).

No training is involved: at every scale the tokens of the known region are teacher-forced to the
reference image's tokens at that scale, and only the masked region is sampled. Out-painting is
the same operation with the mask covering the outside of the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .generation import ForcedTokens, GenerationResult, generate
from .var import VAR
from .vqvae import VQVAE


def known_token_masks(
    generate_mask: torch.Tensor, patch_nums: Sequence[int], batch_size: int
) -> tuple[torch.Tensor, ...]:
    """Per-scale bool masks [B, pn*pn], True where the reference token is kept.

    `generate_mask` is [H, W] or [B or 1, 1, H, W] at any resolution, 1 (or True) where content is
    to be generated. A token is generated if any part of its cell is, so the seam is resampled.
    """
    mask = generate_mask.float()
    if mask.ndim == 2:
        mask = mask[None, None]
    masks = []
    for pn in patch_nums:
        coverage = F.interpolate(mask, size=(pn, pn), mode="area")
        known = (coverage <= 0).reshape(coverage.shape[0], pn * pn)
        masks.append(known.expand(batch_size, -1))
    return tuple(masks)


def inpaint_constraints(
    reference_indices: Sequence[torch.Tensor],
    generate_mask: torch.Tensor,
    patch_nums: Sequence[int],
) -> tuple[ForcedTokens, ...]:
    """Pair each scale's reference tokens with the mask of positions to keep."""
    batch = reference_indices[0].shape[0]
    masks = known_token_masks(generate_mask.to(reference_indices[0].device), patch_nums, batch)
    return tuple(
        ForcedTokens(indices=idx, known=known)
        for idx, known in zip(reference_indices, masks, strict=True)
    )


def inpaint(
    var: VAR,
    vqvae: VQVAE,
    reference_indices: Sequence[torch.Tensor],
    generate_mask: torch.Tensor,
    labels: torch.Tensor | int | None,
    *,
    seed: int | None = None,
    cfg: float = 1.5,
    top_k: int = 0,
    top_p: float = 0.0,
    more_smooth: bool = False,
) -> GenerationResult:
    """Regenerate the masked region of a reference image given as token maps (`quantize_image`).

    For a stepwise node, pass `inpaint_constraints(...)[k]` as `forced` to `scale_step` at scale k.
    """
    patch_nums = var.config.patch_nums
    if len(reference_indices) != len(patch_nums):
        raise ValueError(
            f"reference has {len(reference_indices)} scales, VAR expects {len(patch_nums)}"
        )
    return generate(
        var,
        vqvae,
        labels,
        batch_size=reference_indices[0].shape[0],
        seed=seed,
        cfg=cfg,
        top_k=top_k,
        top_p=top_p,
        more_smooth=more_smooth,
        forced_per_scale=inpaint_constraints(reference_indices, generate_mask, patch_nums),
    )
