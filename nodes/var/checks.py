"""Turning widget text and linked objects into checked model inputs, with errors that name the input.

Every check raises :class:`InputError`, so the executor reports the node and the input at fault
(e.g. ``node 5 (LG_VARSampler) failed: input 'class_labels': 12 is not a class of this VAR``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...executor.limits import Limits, TooLarge
from ...executor.node import InputError
from ...executor.pixels import image_to_pixels
from .model import VAR, VQVAE

# torch.Generator.manual_seed accepts any unsigned 64-bit value.
SEED_MAX = 2**64 - 1
# A class label of -1 asks for VAR's null class: an unconditional sample.
NULL_CLASS_LABEL = -1


def parse_ints(text: str, input_name: str) -> tuple[int, ...]:
    """'3, 7' -> (3, 7); commas and/or whitespace separate the numbers."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise InputError(input_name, "expected a comma-separated list of integers, got nothing")
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise InputError(input_name, f"expected comma-separated integers, got {text!r}") from None


def parse_patch_nums(text: str) -> tuple[int, ...]:
    """The scale schedule: side lengths of the token maps, coarse to fine."""
    patch_nums = parse_ints(text, "patch_nums")
    if patch_nums[0] < 1 or any(b <= a for a, b in zip(patch_nums, patch_nums[1:], strict=False)):
        raise InputError("patch_nums", f"must be positive and increasing, got {text!r}")
    return patch_nums


def parse_class_labels(text: str, var: VAR) -> torch.Tensor:
    """Class ids [B] on the VAR's device; the number of labels is the batch size."""
    labels = parse_ints(text, "class_labels")
    num_classes = var.config.num_classes
    for label in labels:
        if not (0 <= label < num_classes or label == NULL_CLASS_LABEL):
            raise InputError(
                "class_labels",
                f"{label} is not a class of this VAR (0..{num_classes - 1}, or -1 for unconditional)",
            )
    ids = [num_classes if label == NULL_CLASS_LABEL else label for label in labels]
    return torch.tensor(ids, dtype=torch.long, device=var.device)


def check_batch(count: int, side: int, limits: Limits) -> None:
    """``count`` class labels ask for as many ``side`` x ``side`` images: within the limits?"""
    try:
        limits.check_pixels(side, side, count)
    except TooLarge as err:
        raise InputError("class_labels", f"{count:,} labels: {err}") from None


def check_state_size(count: int, var: VAR, limits: Limits) -> None:
    """The generation state holds a latent (z_channels x the last token map) per label; bound it
    before allocating (the image side needs the VQVAE, which the scale steps check)."""
    full = var.config.patch_nums[-1]
    try:
        limits.check_elements((count, var.config.z_channels, full, full), "a latent")
    except TooLarge as err:
        raise InputError("class_labels", f"{count:,} labels: {err}") from None


def check_pair(var: VAR, vqvae: VQVAE) -> None:
    """The VAR predicts ids in the VQVAE's codebook and reads its latent: both must agree."""
    var_shape = (var.config.vocab_size, var.config.z_channels)
    vqvae_shape = (vqvae.config.vocab_size, vqvae.config.z_channels)
    if var_shape != vqvae_shape:
        raise InputError(
            "vqvae",
            f"codebook of {vqvae_shape[0]} entries x {vqvae_shape[1]} channels does not fit the "
            f"VAR, which predicts {var_shape[0]} entries x {var_shape[1]} channels",
        )


def check_schedules_match(var: VAR, vqvae: VQVAE) -> None:
    """Quantizing an image for the VAR needs the VQVAE to use the VAR's scale schedule."""
    if vqvae.config.patch_nums != var.config.patch_nums:
        raise InputError(
            "vqvae",
            f"patch_nums {_text(vqvae.config.patch_nums)} differ from the VAR's "
            f"{_text(var.config.patch_nums)}; set patch_nums on LG_LoadVQVAE to match",
        )


def check_top_k(top_k: int, var: VAR) -> None:
    if top_k > var.config.vocab_size:
        raise InputError("top_k", f"{top_k} exceeds the vocabulary of {var.config.vocab_size}")


def image_side(vqvae: VQVAE, patch_nums: Sequence[int]) -> int:
    """Pixel side of images whose latent is the last scale's token map."""
    downsample = 2 ** (len(vqvae.config.ch_mult) - 1)
    return patch_nums[-1] * downsample


def checked_image(image: torch.Tensor, side: int, batch: int | None = None) -> torch.Tensor:
    """IMAGE (B,H,W,3) in 0..1 -> the VQVAE's input (B,3,H,W) in -1..1, after checking its size."""
    if image.ndim != 4 or image.shape[-1] != 3:
        raise InputError("image", f"expected an RGB IMAGE (B,H,W,3), got shape {tuple(image.shape)}")
    if tuple(image.shape[1:3]) != (side, side):
        raise InputError(
            "image", f"is {image.shape[2]}x{image.shape[1]} pixels; this VQVAE needs {side}x{side}"
        )
    if batch is not None and image.shape[0] not in (1, batch):
        raise InputError("image", f"holds {image.shape[0]} images for {batch} class labels")
    return image_to_pixels(image)


def checked_mask(mask: torch.Tensor, side: int, batch: int) -> torch.Tensor:
    """MASK (B,H,W) or (H,W), 1 where to generate -> (B or 1, 1, H, W) at the image's size."""
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3:
        raise InputError("mask", f"expected a MASK (B,H,W), got shape {tuple(mask.shape)}")
    if tuple(mask.shape[1:]) != (side, side):
        raise InputError(
            "mask", f"is {mask.shape[2]}x{mask.shape[1]} pixels; the image is {side}x{side}"
        )
    if mask.shape[0] not in (1, batch):
        raise InputError("mask", f"holds {mask.shape[0]} masks for a batch of {batch}")
    return mask.unsqueeze(1)


def _text(patch_nums: Sequence[int]) -> str:
    return "'" + ",".join(map(str, patch_nums)) + "'"
